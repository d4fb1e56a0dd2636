"""The error raised when a dataset's files are not on this machine."""

from __future__ import annotations

__all__ = ["DatasetNotFoundError", "check_split"]

SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files were not found; the message lists where we looked and how to get them.

    A subclass of ``FileNotFoundError``, so ``except FileNotFoundError`` catches it too.
    """


def check_split(split: str) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise ``ValueError``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    return split
