"""Helpers the experiment scripts share: atomic result files and the digits split."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from spr._atomic import write_atomic, write_text_atomic

__all__ = ["RESULTS", "digits_split", "save_figure", "write_atomic", "write_json"]

RESULTS = Path(__file__).resolve().parent / "results"


def write_json(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2))


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
