"""How many CPU threads torch uses in ``spr demo`` and ``spr prune`` (``--threads``).

torch starts one intra-op thread per core and every step waits for the slowest of them, so on a
machine whose cores are busy with other work a step with as many threads as cores is much slower
than one with fewer (measured by ``experiments/bench_threads.py``). The default, ``auto``, takes
the cores this process may use less the one-minute load average, at least 1:
``max(1, min(cores, cores - round(loadavg)))``. ``OMP_NUM_THREADS`` (or ``--threads N``) wins.

>>> default_threads(cores=2, load=0.1), default_threads(cores=2, load=1.4), default_threads(2, 5.0)
(2, 1, 1)
>>> parse_threads("auto"), parse_threads("3")
(None, 3)
"""

from __future__ import annotations

import argparse
import os

__all__ = ["available_cores", "default_threads", "load_average", "parse_threads", "set_threads"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average() -> float | None:
    """The one-minute load average, or None where the system has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """``max(1, min(cores, cores - round(load)))``: one thread per core that is not busy."""
    cores = available_cores() if cores is None else cores
    if load is None:
        return cores
    return max(1, min(cores, cores - round(load)))


def parse_threads(text: str) -> int | None:
    """``--threads``: ``auto`` (None) or an integer >= 1; argparse's type function."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--threads must be 'auto' or an integer >= 1; got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads must be 'auto' or an integer >= 1; got {text}")
    return value


def set_threads(threads: int | None = None) -> tuple[int, str]:
    """Set torch's intra-op threads; return ``(threads, why)``.

    ``threads=None`` (``auto``): ``OMP_NUM_THREADS`` if set, else :func:`default_threads` of the
    current load average.
    """
    import torch

    if threads is not None:
        if not (isinstance(threads, int) and threads >= 1):
            raise ValueError(f"threads must be an integer >= 1 or None (auto); got {threads!r}")
        why = "--threads"
    elif os.environ.get("OMP_NUM_THREADS", "").strip().isdigit() and int(
            os.environ["OMP_NUM_THREADS"]) >= 1:
        threads, why = int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        cores, load = available_cores(), load_average()
        threads = default_threads(cores, load)
        why = (f"auto: {cores} cores, load average {load:.1f}" if load is not None
               else f"auto: {cores} cores")
    torch.set_num_threads(threads)
    return threads, why
