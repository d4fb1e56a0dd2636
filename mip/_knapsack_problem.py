"""The multiple-choice knapsack (bit allocation): the problem, its merged form and the result.

Groups ``g = 0..G-1`` (layers, row blocks), options ``k = 0..K-1`` per group (bit widths,
quantizers, "pruned"), cost ``c[g, k]`` (distortion), size ``s[g, k]`` (bits, overhead
included), optional extra resources ``e[g, k, r]`` (MACs, BOPs, latency) with budgets ``E[r]``::

    min_x  sum_{g,k} c[g,k] x[g,k]
    s.t.   sum_k x[g,k] = 1                       for every group g   (one option each)
           sum_{g,k} s[g,k] x[g,k] <= S                               (size budget)
           sum_{g,k} e[g,k,r] x[g,k] <= E[r]      for every resource r
           x[g,k] = x[g',k]                        for tied groups g ~ g'
           x[g,k] in {0, 1};  x[g,k] = 0 where option k is unavailable to g

Ties are removed before any solver runs, exactly: the connected components of the tie relation
become single groups whose cost, size and extras are the sums of their members' (tied groups must
offer the same options, so "same option index" is one choice of the merged group). This shrinks
the model and makes the tie hold by construction (:class:`MergedKnapsack`).

Feasibility is checked exactly: ``size_used`` and ``extra_used`` are correctly rounded sums
(:func:`math.fsum`) of the chosen entries. The solvers are in :mod:`mip._knapsack` (front end),
:mod:`mip._knapsack_lagrangian` and :mod:`mip._knapsack_milp`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["KnapsackProblem", "KnapsackResult", "MergedKnapsack"]


def _readonly(array: NDArray) -> NDArray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class KnapsackProblem:
    """A multiple-choice knapsack (module docstring for the model).

    Args:
        cost: (G, K) float, the cost (distortion) of option k in group g; ``np.inf`` marks an option
            the group lacks. NaN and ``-inf`` are errors (except where ``available`` is False).
        size: (G, K) float >= 0, bits of option k in group g (overhead included); only the entries
            of available options are read (they must be finite and >= 0).
        budget: S, the size budget (``np.inf``: none).
        available: optional (G, K) bool; False marks options a group lacks (combined with
            ``isfinite(cost)``).
        extra: optional (G, K, R) float, extra resources per option (finite where available).
        extra_budget: (R,) budgets of the extra resources (required with ``extra``).
        ties: tuples of group indices that must take the same option index (transitive: ties that
            share a group form one set). Tied groups must offer the same options.

    Attributes (after validation): the arrays as read-only float64 (``cost`` with ``inf`` at
    unavailable options, ``size`` and ``extra`` with 0 there), ``available`` (G, K) bool, and
    ``ties`` as a tuple of tuples of ints.

    >>> p = KnapsackProblem(cost=[[4.0, 1.0], [3.0, 2.0]], size=[[1, 3], [1, 2]], budget=4)
    >>> p.n_groups, p.n_options, p.min_budget, p.max_budget
    (2, 2, 2.0, 5.0)
    """

    cost: NDArray[np.float64]
    size: NDArray[np.float64]
    budget: float
    available: NDArray[np.bool_] | None = None
    extra: NDArray[np.float64] | None = None
    extra_budget: NDArray[np.float64] | None = None
    ties: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        cost = np.array(self.cost, dtype=np.float64)
        size = np.array(self.size, dtype=np.float64)
        if cost.ndim != 2 or cost.shape[0] < 1 or cost.shape[1] < 1:
            raise ValueError(f"cost must be a non-empty (G, K) array; got shape {cost.shape}")
        if size.shape != cost.shape:
            raise ValueError(f"size must have the shape of cost {cost.shape}; got {size.shape}")
        G, K = cost.shape
        if self.available is None:
            given = np.ones((G, K), bool)
        else:
            given = np.array(self.available)
            if given.shape != (G, K):
                raise ValueError(f"available must have shape {(G, K)}; got {given.shape}")
            if given.dtype != np.bool_:
                raise ValueError(f"available must be a bool array; got dtype {given.dtype}")
        bad = given & np.isnan(cost)
        if bad.any():
            raise ValueError(f"cost is NaN at (group, option) {_first(bad)}")
        bad = given & (cost == -np.inf)
        if bad.any():
            raise ValueError(f"cost is -inf at (group, option) {_first(bad)}")
        available = given & np.isfinite(cost)
        empty = ~available.any(axis=1)
        if empty.any():
            raise ValueError(f"group {int(np.flatnonzero(empty)[0])} has no available option")
        bad = available & ~np.isfinite(size)
        if bad.any():
            raise ValueError(f"size is not finite at available (group, option) {_first(bad)}")
        bad = available & (size < 0)
        if bad.any():
            raise ValueError(f"size is negative at (group, option) {_first(bad)}")
        budget = _budget("budget", self.budget)
        extra, extra_budget = self.extra, self.extra_budget
        if (extra is None) != (extra_budget is None):
            raise ValueError("extra and extra_budget must be given together")
        if extra is not None:
            extra = np.array(extra, dtype=np.float64)
            if extra.ndim == 2:
                extra = extra[:, :, None]
            if extra.ndim != 3 or extra.shape[:2] != (G, K):
                raise ValueError(f"extra must have shape (G, K, R) = ({G}, {K}, R); got "
                                 f"{extra.shape}")
            extra_budget = np.atleast_1d(np.array(extra_budget, dtype=np.float64))
            if extra_budget.shape != (extra.shape[2],):
                raise ValueError(f"extra_budget must have shape ({extra.shape[2]},); got "
                                 f"{extra_budget.shape}")
            bad = available[:, :, None] & ~np.isfinite(extra)
            if bad.any():
                raise ValueError(f"extra is not finite at (group, option, resource) "
                                 f"{_first(bad)}")
            for r, value in enumerate(extra_budget):
                _budget(f"extra_budget[{r}]", value)
            extra = np.where(available[:, :, None], extra, 0.0)
        ties = _check_ties(self.ties, available)
        set_ = object.__setattr__
        set_(self, "cost", _readonly(np.where(available, cost, np.inf)))
        set_(self, "size", _readonly(np.where(available, size, 0.0)))
        set_(self, "budget", budget)
        set_(self, "available", _readonly(available))
        set_(self, "extra", None if extra is None else _readonly(extra))
        set_(self, "extra_budget", None if extra_budget is None else _readonly(extra_budget))
        set_(self, "ties", ties)

    @property
    def n_groups(self) -> int:
        return self.cost.shape[0]

    @property
    def n_options(self) -> int:
        return self.cost.shape[1]

    @property
    def n_resources(self) -> int:
        return 0 if self.extra is None else self.extra.shape[2]

    @cached_property
    def merged(self) -> MergedKnapsack:
        """The problem with every tie set merged into one group (module docstring)."""
        return MergedKnapsack.from_problem(self)

    @cached_property
    def min_budget(self) -> float:
        """The least ``size_used`` of any choice that respects the ties: every (merged) group at
        its smallest option. A budget below it is infeasible."""
        merged = self.merged
        small = np.where(merged.available, merged.size, np.inf).argmin(axis=1)
        return self.size_used(merged.expand(small))

    @cached_property
    def max_budget(self) -> float:
        """``size_used`` of every (merged) group at its largest option: above it the size budget
        cannot bind."""
        merged = self.merged
        large = np.where(merged.available, merged.size, -np.inf).argmax(axis=1)
        return self.size_used(merged.expand(large))

    @cached_property
    def min_extra(self) -> NDArray[np.float64]:
        """(R,) the least ``extra_used[r]`` of any tie-respecting choice, per resource alone."""
        merged = self.merged
        out = np.empty(self.n_resources)
        for r in range(self.n_resources):
            small = np.where(merged.available, merged.extra[:, :, r], np.inf).argmin(axis=1)
            out[r] = self.extra_used(merged.expand(small))[r]
        return out

    def check_choice(self, choice: ArrayLike) -> NDArray[np.int64]:
        """``choice`` as a (G,) int array of available options, or ValueError."""
        choice = np.asarray(choice)
        if choice.shape != (self.n_groups,) or not np.issubdtype(choice.dtype, np.integer):
            raise ValueError(f"choice must be a ({self.n_groups},) int array; got "
                             f"{choice.dtype} {choice.shape}")
        if (choice < 0).any() or (choice >= self.n_options).any():
            raise ValueError(f"choice entries must lie in [0, {self.n_options})")
        rows = np.arange(self.n_groups)
        if not self.available[rows, choice].all():
            g = int(np.flatnonzero(~self.available[rows, choice])[0])
            raise ValueError(f"choice takes option {int(choice[g])} in group {g}, which lacks it")
        return choice.astype(np.int64)

    def objective(self, choice: ArrayLike) -> float:
        """``sum_g c[g, choice[g]]``, correctly rounded (math.fsum)."""
        choice = self.check_choice(choice)
        return math.fsum(self.cost[np.arange(self.n_groups), choice].tolist())

    def size_used(self, choice: ArrayLike) -> float:
        """``sum_g s[g, choice[g]]``, correctly rounded (math.fsum)."""
        choice = self.check_choice(choice)
        return math.fsum(self.size[np.arange(self.n_groups), choice].tolist())

    def extra_used(self, choice: ArrayLike) -> NDArray[np.float64]:
        """(R,) ``sum_g e[g, choice[g], r]``, correctly rounded (math.fsum)."""
        choice = self.check_choice(choice)
        if self.extra is None:
            return np.zeros(0)
        picked = self.extra[np.arange(self.n_groups), choice]  # (G, R)
        return np.array([math.fsum(picked[:, r].tolist()) for r in range(self.n_resources)])

    def violation(self, choice: ArrayLike) -> float:
        """How far ``choice`` breaks the budgets or the ties (0 when feasible, exactly)."""
        choice = self.check_choice(choice)
        worst = self.over_budget(choice)
        for tie in self.ties:
            if len(set(choice[list(tie)].tolist())) > 1:
                worst = max(worst, 1.0)
        return worst

    def over_budget(self, choice: ArrayLike) -> float:
        """How far ``choice`` exceeds the budgets (0 when within them, exactly); ties unchecked."""
        choice = self.check_choice(choice)
        worst = max(self.size_used(choice) - self.budget, 0.0)
        if self.extra is not None:
            worst = max(worst, float(np.max(self.extra_used(choice) - self.extra_budget)))
        return worst

    def check_budgets(self) -> None:
        """ValueError naming the minimum feasible budget if a budget is below it."""
        if self.budget < self.min_budget:
            tied = " with tied groups merged" if self.ties else ""
            raise ValueError(
                f"size budget {self.budget!r} is below the minimum feasible size budget "
                f"{self.min_budget!r} (every group at its smallest option{tied})")
        for r in range(self.n_resources):
            if self.extra_budget[r] < self.min_extra[r]:
                raise ValueError(
                    f"extra_budget[{r}] = {float(self.extra_budget[r])!r} is below the minimum "
                    f"feasible extra_budget[{r}] = {float(self.min_extra[r])!r} (every group at "
                    f"its option with the least resource {r})")


def _first(mask: NDArray[np.bool_]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _budget(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a float; got {value!r}") from None
    if math.isnan(number) or number == -np.inf:
        raise ValueError(f"{name} must be a float or +inf; got {value!r}")
    return number


def _check_ties(ties, available: NDArray[np.bool_]) -> tuple[tuple[int, ...], ...]:
    G = available.shape[0]
    out = []
    for tie in ties:
        try:
            items = tuple(tie)
        except TypeError:
            raise ValueError(f"a tie must be a tuple of group indices; got {tie!r}") from None
        if not all(isinstance(g, int | np.integer) and not isinstance(g, bool) for g in items):
            raise ValueError(f"a tie must hold integer group indices; got {tie!r}")
        members = tuple(int(g) for g in items)
        if not members:
            raise ValueError("a tie must name at least one group")
        unknown = [g for g in members if not 0 <= g < G]
        if unknown:
            raise ValueError(f"tie {members} names unknown group {unknown[0]} (groups are "
                             f"0..{G - 1})")
        first = available[members[0]]
        for g in members[1:]:
            if not np.array_equal(available[g], first):
                theirs = np.flatnonzero(available[g]).tolist()
                raise ValueError(
                    f"tie {members}: groups {members[0]} and {g} have different option sets "
                    f"({np.flatnonzero(first).tolist()} vs {theirs})")
        out.append(members)
    return tuple(out)


@dataclass(frozen=True, eq=False)
class MergedKnapsack:
    """The problem after merging every tie set into one group (G' <= G groups).

    Attributes:
        labels: (G,) int, the merged group of each original group.
        cost: (G', K) summed costs, ``inf`` where unavailable.
        size: (G', K) summed sizes, 0 where unavailable.
        extra: (G', K, R) summed extras, or None.
        available: (G', K) bool.
    """

    labels: NDArray[np.int64]
    cost: NDArray[np.float64]
    size: NDArray[np.float64]
    extra: NDArray[np.float64] | None
    available: NDArray[np.bool_]

    @classmethod
    def from_problem(cls, problem: KnapsackProblem) -> MergedKnapsack:
        G = problem.n_groups
        if not any(len(set(t)) > 1 for t in problem.ties):
            return cls(np.arange(G), problem.cost, problem.size, problem.extra,
                       problem.available)
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        pairs = np.array([(t[0], g) for t in problem.ties for g in t[1:]], dtype=np.int64)
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(G, G))
        n, labels = connected_components(graph, directed=False)
        labels = labels.astype(np.int64)

        def summed(values: NDArray) -> NDArray:  # (G, K) -> (n, K), a bincount per column
            return np.stack([np.bincount(labels, weights=values[:, k], minlength=n)
                             for k in range(values.shape[1])], axis=1)

        available = np.zeros((n, problem.n_options), bool)
        available[labels] = problem.available  # tied groups share their option set
        cost = np.where(available, summed(np.where(problem.available, problem.cost, 0.0)),
                        np.inf)
        extra = None
        if problem.extra is not None:
            extra = np.stack([summed(problem.extra[:, :, r])
                              for r in range(problem.n_resources)], axis=2)
        return cls(labels, cost, summed(problem.size), extra, available)

    @property
    def n_groups(self) -> int:
        return self.cost.shape[0]

    def expand(self, choice: NDArray[np.int64]) -> NDArray[np.int64]:
        """(G',) merged choice -> (G,) choice of the original groups."""
        return np.asarray(choice, dtype=np.int64)[self.labels]


@dataclass(frozen=True, eq=False)
class KnapsackResult:
    """A knapsack solution with its certificate.

    Attributes:
        choice: (G,) int, the option of every group.
        objective: ``sum_g c[g, choice[g]]`` (an upper bound on the optimum).
        bound: a proven lower bound on the optimum (MILP bound or Lagrangian dual value).
        gap: ``(objective - bound) / |objective|``.
        status: ``"optimal"`` (gap <= the requested gap), ``"time_limit"`` (MILP stopped early)
            or ``"feasible"`` (Lagrangian solution whose gap is above the requested one).
        seconds: wall time.
        size_used: ``sum_g s[g, choice[g]]`` (math.fsum), <= the budget.
        extra_used: (R,) ``sum_g e[g, choice[g], r]``, <= the extra budgets (empty without extras).
        method: how it was solved: ``"milp"`` (full merged model), ``"milp-core"`` (reduced-cost
            fixing, then the MILP over the core), ``"lagrangian"`` (bisection and greedy; from
            :func:`mip.solve_knapsack` when they already prove the gap), ``"lagrangian+milp"``.
        multiplier: the Lagrange multiplier mu of the size budget whose dual value is the bound
            (NaN for the full MILP).
        core_groups: (merged) groups left in the MILP after reduced-cost fixing.
        iterations: multipliers evaluated by the bisection.
        history: per bisection step ``{"mu", "dual", "size"}``.
    """

    choice: NDArray[np.int64]
    objective: float
    bound: float
    gap: float
    status: str
    seconds: float
    size_used: float
    extra_used: NDArray[np.float64]
    method: str = "milp"
    multiplier: float = float("nan")
    core_groups: int = 0
    iterations: int = 0
    history: list[dict] = field(default_factory=list)
