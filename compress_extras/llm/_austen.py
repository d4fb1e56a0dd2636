"""Jane Austen's six novels as plain text, from the R package janeaustenr's data (offline).

``make data`` unpacks ``Rdata.rdb``/``Rdata.rdx`` of the Debian package ``r-cran-janeaustenr``
into ``data/austen/``; :func:`austen_novels` reads them with the small R reader in
:mod:`compress_extras.llm._rdata`. Each novel is a character vector of printed lines; the text
joins them with newlines. For example (with ``make data`` run)::

    novels = austen_novels()
    novels["persuasion"][:10]        # 'Persuasion'
"""

from __future__ import annotations

import os

from compress_extras.llm._files import find_data
from compress_extras.llm._rdata import read_lazyload

__all__ = ["AUSTEN_NOVELS", "austen_novels"]

AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma",
                 "northangerabbey", "persuasion")


def austen_novels(root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``{name: text}`` for the six novels (names as in ``AUSTEN_NOVELS``)."""
    folder = find_data("austen", root, required=("Rdata.rdb", "Rdata.rdx"))
    objects = read_lazyload(folder / "Rdata.rdb", folder / "Rdata.rdx")
    missing = [n for n in AUSTEN_NOVELS if n not in objects]
    if missing:
        raise ValueError(f"{folder} lacks the novels {missing}; is it janeaustenr's data?")
    return {n: "\n".join(line or "" for line in objects[n]) for n in AUSTEN_NOVELS}
