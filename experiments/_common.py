"""Helpers the experiment scripts share: atomic result files and the digits split."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from sklearn.datasets import load_digits

RESULTS = Path(__file__).resolve().parent / "results"


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary path)`` and move the file into place only once it is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, payload: dict) -> None:
    text = json.dumps(payload, indent=2)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def save_figure(path: Path, fig) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def digits_split(train: int = 1400):
    """scikit-learn's digits (shipped with it) as ((X, y), (X, y)): (N, 1, 8, 8) in [0, 1]."""
    data = load_digits()
    X = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    X, y = X[perm], y[perm]
    return (X[:train], y[:train]), (X[train:], y[train:])
