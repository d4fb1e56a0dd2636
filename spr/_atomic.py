"""Atomic writes: a file or a folder appears complete or not at all, never half-written."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary path)`` beside ``path``, flush it to disk and rename it into place,
    so ``path`` is either the old file or the complete new one. The temporary file is created
    with mode ``0o666`` (less the umask, applied by the system), so the result gets the usual
    permissions, not ``mkstemp``'s private ``0o600``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        fsync_path(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`write_atomic`)."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def new_file_mode(directory: str | os.PathLike) -> int:
    """The permission bits a new file gets in ``directory``: ``0o666`` less the umask (found by
    creating a file there; reading the umask would set it process-wide for a moment). For files
    that a library writes privately (safetensors' ``save_file`` makes them ``0o600``)."""
    probe = Path(directory) / f".mode-{secrets.token_hex(6)}.tmp"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        os.remove(probe)


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory entry on POSIX, to disk (best effort for directories)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path``.

    The folder is created with mode ``0o777`` less the umask (the usual permissions, not
    ``mkdtemp``'s private ``0o700``). If the body raises, it is deleted and ``path`` is left as
    it was. An existing ``path`` is renamed aside, the new folder renamed in (if that fails, the
    old one is put back), and only then the old one deleted, so at every instant one complete
    version exists; after a crash between the two renames the previous version survives as
    ``.<name>.old-*`` beside ``path``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     with atomic_dir(Path(root) / "run") as tmp:
    ...         _ = (tmp / "a.txt").write_text("1")
    ...     sorted(p.name for p in Path(root).iterdir()), (Path(root) / "run" / "a.txt").read_text()
    (['run'], '1')
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # os.mkdir is exclusive: a name taken by someone else is never reused
        tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(6)}"
        try:
            os.mkdir(tmp, 0o777)
            break
        except FileExistsError:
            continue
    old: Path | None = None
    done = False
    try:
        yield tmp
        fsync_path(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{secrets.token_hex(6)}"
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)  # put the previous version back
                old = None
            raise
        done = True
        fsync_path(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if done and old is not None:  # the previous version goes only once the new one is in
            shutil.rmtree(old, ignore_errors=True)
