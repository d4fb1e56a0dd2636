"""Random groups that land in a chosen case of the SPR formula, for tests of both twins.

Case 1: max(m/M, c*r) >= 1 (y* = 1); case 2: m/M <= c*r < 1 (y* = c*r);
case 3: c*r < m/M < 1 (y* = m/M). ``c = sqrt(alpha / (1 - alpha))``.
"""

from __future__ import annotations

import numpy as np


def case_of(w: np.ndarray, alpha: float, M: float) -> int:
    c = np.sqrt(alpha / (1 - alpha))
    m, r = np.max(np.abs(w)), np.linalg.norm(w)
    if max(m / M, c * r) >= 1:
        return 1
    return 2 if m / M <= c * r else 3


def random_group(rng: np.random.Generator, case: int, alpha: float) -> tuple[np.ndarray, float]:
    """One group w (n in 1..8 entries) and an M for which the formula is in ``case``."""
    c = np.sqrt(alpha / (1 - alpha))
    n = int(rng.integers(1, 9))
    w = rng.standard_normal(n) * rng.choice([1.0, 1e-3, 1e3])
    m, r = np.max(np.abs(w)), np.linalg.norm(w)
    if case == 1:
        w = w * rng.uniform(1.0, 5.0) / (c * r)  # c*r >= 1
        return w, float(rng.choice([np.inf, rng.uniform(0.1, 10.0)]))
    w = w * rng.uniform(0.02, 0.98) / (c * r)  # c*r < 1
    m, r = np.max(np.abs(w)), np.linalg.norm(w)
    if case == 2:  # m/M <= c*r  <=>  M >= m/(c*r)
        return w, float(rng.choice([np.inf, m / (c * r) * rng.uniform(1.0, 10.0)]))
    # case 3: m < M < m/(c*r), non-empty because c*r < 1
    return w, float(m * np.exp(rng.uniform(0.0, 1.0) * np.log(1.0 / (c * r))))


def random_groups(rng: np.random.Generator, count: int, alpha: float):
    """``count`` (w, M, case) triples cycling over the three cases (cases re-checked)."""
    out = []
    for i in range(count):
        w, M = random_group(rng, 1 + i % 3, alpha)
        out.append((w, M, case_of(w, alpha, M)))
    return out
