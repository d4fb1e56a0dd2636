"""The knapsack solvers (bit allocation) against brute force: budgets, ties and certificates."""

import dataclasses
import itertools
import re
import subprocess
import sys

import numpy as np
import pytest

import mip
from mip import KnapsackProblem, solve_knapsack


def solve_lagrangian(problem: KnapsackProblem, **options):
    return solve_knapsack(problem, method="lagrangian", **options)


def random_knapsack(
    seed: int, G: int, K: int, ties: bool = True, extra: bool = False, holes: bool = True,
    frac: float | None = None,
) -> KnapsackProblem:
    """Costs falling with size like quantization error (with noise, so not every instance is
    convex), integer sizes (sums are exact in float), a few options missing, random ties, and
    a budget strictly between the least and the largest feasible size."""
    rng = np.random.default_rng(seed)
    n = rng.integers(10, 200, G)
    bits = np.sort(rng.choice([0, 1, 2, 3, 4, 6, 8, 16], K, replace=False))
    size = n[:, None] * bits[None, :] + rng.integers(0, 20, (G, K)) * (bits > 0)
    cost = (rng.uniform(0.1, 5, G)[:, None] * n[:, None] * 2.0 ** (-bits)[None, :]
            * rng.uniform(0.5, 1.5, (G, K)))
    if holes and K >= 3:  # some groups lack their largest option
        missing = rng.random(G) < 0.3
        cost[missing, -1] = np.inf
    tie_sets: list[tuple[int, ...]] = []
    if ties and G >= 3:
        members = rng.permutation(G)[: int(rng.integers(2, min(G, 4) + 1))]
        tie_sets.append(tuple(int(g) for g in members))
        if G >= 6 and rng.random() < 0.5:  # a second tie that may overlap the first
            tie_sets.append(tuple(int(g) for g in rng.choice(G, 2, replace=False)))
        for tie in tie_sets:  # tied groups must share option sets
            mask = np.all([np.isfinite(cost[g]) for g in tie], axis=0)
            for g in tie:
                cost[g, ~mask] = np.inf
    e = E = None
    if extra:  # MACs-like: falls with the size for some groups, rises for others
        e = rng.integers(0, 50, (G, K, 1)).astype(float)
    probe = KnapsackProblem(cost, size, np.inf, extra=e,
                            extra_budget=None if e is None else [np.inf], ties=tie_sets)
    frac = float(rng.uniform(0.15, 0.85)) if frac is None else frac
    budget = float(np.floor(probe.min_budget + frac * (probe.max_budget - probe.min_budget)))
    if extra:
        big = probe.extra_used(np.argmax(np.where(probe.available, e[:, :, 0], -1), axis=1))
        E = [float(np.floor(probe.min_extra[0] + 0.6 * (big[0] - probe.min_extra[0])))]
    return dataclasses.replace(probe, budget=budget, extra_budget=E)


def brute_force(problem: KnapsackProblem) -> tuple[float, np.ndarray]:
    """The optimum over every choice in itertools.product (ties, masks and budgets checked)."""
    G, K = problem.cost.shape
    choices = np.array(list(itertools.product(range(K), repeat=G)))
    rows = np.arange(G)
    ok = problem.available[rows, choices].all(axis=1)
    for tie in problem.ties:
        ok &= (choices[:, list(tie)] == choices[:, [tie[0]]]).all(axis=1)
    choices = choices[ok]
    sizes = problem.size[rows, choices].sum(axis=1)  # integers: exact
    ok = sizes <= problem.budget
    if problem.extra is not None:
        ok &= problem.extra[rows, choices, 0].sum(axis=1) <= problem.extra_budget[0]
    choices = choices[ok]
    costs = problem.cost[rows, choices].sum(axis=1)
    best = int(np.argmin(costs))
    return float(costs[best]), choices[best]


def check_feasible(problem: KnapsackProblem, result) -> None:
    assert result.choice.shape == (problem.n_groups,)
    assert problem.available[np.arange(problem.n_groups), result.choice].all()
    assert result.size_used == problem.size_used(result.choice) <= problem.budget
    if problem.extra is not None:
        assert (result.extra_used <= problem.extra_budget).all()
    for tie in problem.ties:
        assert len(set(result.choice[list(tie)].tolist())) == 1, (tie, result.choice)
    assert problem.violation(result.choice) == 0
    assert result.objective == pytest.approx(problem.objective(result.choice), rel=1e-12)
    assert result.bound <= result.objective


SEEDS = range(24)


def shape_of(seed: int) -> tuple[int, int]:
    return 2 + seed % 7, 2 + seed % 3  # 2..8 groups x 2..4 options


@pytest.mark.parametrize("seed", SEEDS)
def test_milp_equals_brute_force(seed):
    G, K = shape_of(seed)
    problem = random_knapsack(seed, G, K, ties=seed % 4 != 3, extra=seed % 3 == 0)
    optimum, _ = brute_force(problem)
    assert problem.min_budget < problem.budget < problem.max_budget  # the budget binds
    for reduce in (True, False):
        result = solve_knapsack(problem, reduce=reduce)
        check_feasible(problem, result)
        assert result.status == "optimal" and result.gap <= 1e-6
        assert result.objective == pytest.approx(optimum, rel=1e-6)
        assert result.bound <= optimum * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("seed", SEEDS)
def test_lagrangian_against_brute_force(seed):
    """Without the repair the bisection + greedy answer is feasible and its gap certifies it;
    with the repair (the default) it is optimal."""
    G, K = shape_of(seed)
    problem = random_knapsack(seed, G, K, ties=seed % 4 != 3)
    optimum, _ = brute_force(problem)
    bare = solve_lagrangian(problem, repair_groups=0)
    check_feasible(problem, bare)
    assert bare.bound <= optimum * (1 + 1e-12) + 1e-12
    assert bare.objective - optimum <= bare.gap * abs(bare.objective) * (1 + 1e-9) + 1e-12
    repaired = solve_lagrangian(problem)
    check_feasible(problem, repaired)
    assert repaired.objective == pytest.approx(optimum, rel=1e-6)


def test_objective_never_increases_with_the_budget():
    for seed in (1, 2):
        problem = random_knapsack(seed, 12, 5, extra=seed == 2)
        budgets = np.linspace(problem.min_budget, problem.max_budget, 25)
        values = [solve_knapsack(dataclasses.replace(problem, budget=b), mip_gap=0.0).objective
                  for b in budgets]
        steps = np.diff(values)
        assert (steps <= 1e-9 * np.abs(values[:-1])).all(), steps
        assert values[-1] < values[0]  # the sweep is not flat


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_never_worse_than_uniform_at_its_own_size(seed):
    """Every group at option k is feasible for the budget it uses, so the optimum is no worse."""
    problem = random_knapsack(seed, 30, 6, holes=False)
    G, K = problem.cost.shape
    beaten = 0
    for k in range(K):
        uniform = np.full(G, k)
        budget = problem.size_used(uniform)
        at = dataclasses.replace(problem, budget=budget)
        for result in (solve_knapsack(at), solve_lagrangian(at)):
            check_feasible(at, result)
            assert result.objective <= at.objective(uniform) * (1 + 1e-6)
        beaten += solve_knapsack(at).objective < at.objective(uniform) * (1 - 1e-3)
    assert beaten >= K - 2  # and usually strictly better (not just equal)


@pytest.mark.parametrize("seed", range(6))
def test_lagrangian_gap_bounds_its_suboptimality(seed):
    """On 200 groups: the Lagrangian bound is below the MILP optimum, and the reported gap is at
    least the true relative suboptimality (with and without the MILP repair)."""
    problem = random_knapsack(100 + seed, 200, 6, frac=0.1 + 0.15 * seed)
    exact = solve_knapsack(problem, reduce=False, mip_gap=1e-9)
    assert exact.status == "optimal"
    gaps = []
    for repair in (0, 2000):
        lag = solve_lagrangian(problem, repair_groups=repair)
        check_feasible(problem, lag)
        assert lag.bound <= exact.objective * (1 + 1e-9)
        suboptimality = (lag.objective - exact.objective) / abs(lag.objective)
        assert suboptimality <= lag.gap + 1e-9
        gaps.append(lag.gap)
    assert gaps[0] > 1e-6  # without the repair the gap is open here, so the check has teeth
    assert gaps[1] <= max(gaps[0], 1e-6)  # the repair never widens the gap
    assert gaps[1] <= 1e-6


def test_milp_core_matches_full_model_on_medium_instances():
    for seed in range(3):
        problem = random_knapsack(200 + seed, 300, 8, extra=False)
        core, full = solve_knapsack(problem), solve_knapsack(problem, reduce=False)
        assert core.method == "milp-core" and full.method == "milp"
        assert core.core_groups < problem.n_groups
        assert core.objective == pytest.approx(full.objective, rel=2e-6)
        assert core.bound <= full.objective * (1 + 1e-9)


def test_budget_exact_with_fractional_sizes():
    """Float sizes, budgets set to the size of a particular choice: size_used <= budget holds in
    correctly rounded arithmetic, never violated by round-off."""
    rng = np.random.default_rng(5)
    G, K = 400, 5
    size = rng.uniform(1, 1000, (G, K)) * np.array([1.0, 2.1, 3.3, 4.7, 8.01])
    cost = 1e3 * np.exp(-size / 300) * rng.uniform(0.9, 1.1, (G, K))
    for trial in range(4):
        target = rng.integers(0, K, G)
        problem = KnapsackProblem(cost, size, 0.0)
        problem = dataclasses.replace(problem, budget=problem.size_used(target))
        for result in (solve_knapsack(problem), solve_lagrangian(problem)):
            check_feasible(problem, result)
            assert result.objective <= problem.objective(target) * (1 + 1e-6), trial


def test_ties_merge_transitively_and_hold():
    cost = np.array([[1.0, 0.0], [0.0, 5.0], [2.0, 1.0], [1.0, 1.0]])
    size = np.array([[1, 2], [1, 2], [1, 2], [1, 2]])
    problem = KnapsackProblem(cost, size, 7, ties=[(0, 1), (1, 2)])  # 0 ~ 1 ~ 2
    assert problem.merged.n_groups == 2
    for result in (solve_knapsack(problem), solve_lagrangian(problem)):
        assert result.choice[0] == result.choice[1] == result.choice[2]
        check_feasible(problem, result)
    assert brute_force(problem)[0] == pytest.approx(solve_knapsack(problem).objective)


@pytest.mark.parametrize("ties", [(), ((0, 1),)])
def test_budget_below_minimum_names_it(ties):
    cost = [[3.0, 1.0], [2.0, 1.0], [5.0, 4.0]]
    size = [[2, 4], [3, 1], [1, 2]]
    problem = KnapsackProblem(cost, size, 3.0, ties=ties)
    minimum = 2 + 1 + 1 if not ties else 5 + 1  # merged 0 ~ 1: options (5, 5) -> min 5
    assert problem.min_budget == minimum
    message = f"below the minimum feasible size budget {float(minimum)!r}"
    for solve in (solve_knapsack, solve_lagrangian):
        with pytest.raises(ValueError, match=re.escape(message)):
            solve(problem)
    solve_knapsack(dataclasses.replace(problem, budget=minimum))  # exactly the minimum works


def test_extra_budget_below_minimum_and_joint_infeasibility():
    cost = [[3.0, 1.0], [2.0, 1.0]]
    size = [[1, 4], [1, 4]]
    extra = np.array([[[5.0], [1.0]], [[5.0], [1.0]]])  # small size <=> large extra
    problem = KnapsackProblem(cost, size, 8, extra=extra, extra_budget=[1.0])
    with pytest.raises(ValueError, match=re.escape("minimum feasible extra_budget[0] = 2.0")):
        solve_knapsack(problem)
    jointly = dataclasses.replace(problem, budget=2.0, extra_budget=[2.0])  # each alone feasible
    with pytest.raises(ValueError, match="jointly infeasible"):
        solve_knapsack(jointly)
    with pytest.raises(ValueError, match="extra resources use mip.solve_knapsack"):
        solve_lagrangian(dataclasses.replace(problem, extra_budget=[10.0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cost": [[1.0, np.nan]]}, "cost is NaN at .group, option. .0, 1."),
        ({"cost": [[1.0, -np.inf]]}, "cost is -inf"),
        ({"size": [[1.0, 2.0, 3.0]]}, "size must have the shape of cost"),
        ({"size": [[1.0, -2.0]]}, "size is negative at .group, option. .0, 1."),
        ({"size": [[1.0, np.nan]]}, "size is not finite"),
        ({"cost": [[np.inf, np.inf]]}, "group 0 has no available option"),
        ({"cost": [1.0, 2.0], "size": [1.0, 2.0]}, "non-empty .G, K. array"),
        ({"budget": np.nan}, "budget must be a float or .inf"),
        ({"available": [[True]]}, "available must have shape"),
        ({"extra": [[1.0, 2.0]]}, "extra and extra_budget must be given together"),
        ({"extra": np.ones((1, 3, 1)), "extra_budget": [1.0]}, "extra must have shape"),
        ({"extra": np.ones((1, 2, 2)), "extra_budget": [1.0]}, "extra_budget must have shape"),
        ({"extra": [[1.0, np.nan]], "extra_budget": [1.0]}, "extra is not finite"),
        ({"ties": [(0, 3)]}, "tie .0, 3. names unknown group 3 .groups are 0..0."),
        ({"ties": [()]}, "at least one group"),
        ({"ties": [(0, 0.5)]}, "integer group indices"),
        ({"ties": [3]}, "a tie must be a tuple"),
    ],
)
def test_bad_inputs(kwargs, message):
    args = {"cost": [[1.0, 2.0]], "size": [[1.0, 2.0]], "budget": 5.0} | kwargs
    with pytest.raises(ValueError, match=message):
        KnapsackProblem(**args)


def test_ties_need_equal_option_sets_and_known_groups():
    cost = np.array([[1.0, 2.0], [1.0, np.inf], [1.0, 2.0]])
    size = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"groups 0 and 1 have different option sets"):
        KnapsackProblem(cost, size, 5, ties=[(0, 1)])
    with pytest.raises(ValueError, match="unknown group -1"):
        KnapsackProblem(cost, size, 5, ties=[(0, -1)])
    KnapsackProblem(cost, size, 5, ties=[(0, 2)])  # same option sets: fine
    masked = KnapsackProblem(cost, size, 5, available=np.array([[1, 0]] * 3, bool),
                             ties=[(0, 1)])  # the mask makes the sets equal
    assert solve_knapsack(masked).choice.tolist() == [0, 0, 0]


def test_missing_options_are_never_chosen():
    rng = np.random.default_rng(3)
    cost = rng.uniform(0, 1, (50, 4))
    cost[:, 3] = -1.0  # the best option, but masked away
    available = np.ones((50, 4), bool)
    available[:, 3] = False
    problem = KnapsackProblem(cost, rng.integers(1, 9, (50, 4)), 250, available=available)
    for result in (solve_knapsack(problem), solve_lagrangian(problem)):
        assert (result.choice != 3).all()
        check_feasible(problem, result)


def test_unbounded_budget_takes_the_cheapest_options():
    rng = np.random.default_rng(4)
    cost, size = rng.uniform(0, 1, (20, 3)), rng.uniform(1, 2, (20, 3))
    problem = KnapsackProblem(cost, size, np.inf)
    for result in (solve_knapsack(problem), solve_lagrangian(problem)):
        assert result.choice.tolist() == cost.argmin(axis=1).tolist()
        assert result.gap <= 1e-12  # the dual value at mu = 0, less its round-off margin


def test_public_names():
    for name in ("KnapsackProblem", "KnapsackResult", "solve_knapsack",
                 "solve_knapsack_lagrangian", "KNAPSACK_METHODS"):
        assert name in mip.__all__ and getattr(mip, name) is not None


def same_result(a, b) -> bool:
    """Every field of two KnapsackResults equal, but the wall time."""
    fields = [f.name for f in dataclasses.fields(a) if f.name != "seconds"]
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=f == "multiplier")
               if f in ("choice", "extra_used", "multiplier") else getattr(a, f) == getattr(b, f)
               for f in fields)


@pytest.mark.parametrize("seed", SEEDS[::3])
def test_methods_against_brute_force(seed):
    """``"auto"`` is ``"milp"`` (the old solve_knapsack, field for field), both optimal; and
    ``"lagrangian"`` (the old solve_knapsack_lagrangian) is optimal with its repair."""
    G, K = shape_of(seed)
    problem = random_knapsack(seed, G, K, ties=seed % 4 != 3, extra=seed % 6 == 0)
    optimum, _ = brute_force(problem)
    for reduce in (True, False):
        auto = solve_knapsack(problem, reduce=reduce)
        milp = solve_knapsack(problem, method="milp", reduce=reduce)
        assert same_result(auto, milp)
        check_feasible(problem, milp)
        assert milp.status == "optimal" and milp.objective == pytest.approx(optimum, rel=1e-6)
    if problem.extra is None:
        lagrangian = solve_knapsack(problem, method="lagrangian")
        check_feasible(problem, lagrangian)
        assert lagrangian.objective == pytest.approx(optimum, rel=1e-6)
        assert lagrangian.method in ("lagrangian", "lagrangian+milp")


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_deprecated_lagrangian_alias_warns_and_equals_the_method(seed):
    problem = random_knapsack(seed, 40, 5)
    for options in ({}, {"repair_groups": 0}, {"max_iterations": 3, "mip_gap": 1e-3}):
        new = solve_knapsack(problem, method="lagrangian", **options)
        with pytest.warns(DeprecationWarning, match=re.escape(
                "solve_knapsack_lagrangian is deprecated; use solve_knapsack(problem, "
                'method="lagrangian")')):
            old = mip.solve_knapsack_lagrangian(problem, **options)
        assert same_result(old, new)
    with pytest.warns(DeprecationWarning):  # the old positional order still works
        old = mip.solve_knapsack_lagrangian(problem, 1e-3, 0, 30.0, 3)
    new = solve_knapsack(problem, method="lagrangian", mip_gap=1e-3, repair_groups=0,
                         time_limit=30.0, max_iterations=3)
    assert same_result(old, new)


def test_bad_method_and_settings():
    problem = random_knapsack(0, 4, 3)
    with pytest.raises(ValueError, match="method must be one of .'auto', 'milp', 'lagrangian'"):
        solve_knapsack(problem, method="greedy")
    with pytest.raises(ValueError, match="repair_groups >= 0"):
        solve_knapsack(problem, method="lagrangian", repair_groups=-1)
    with pytest.raises(ValueError, match="time_limit > 0"):
        solve_knapsack(problem, time_limit=0)
    with pytest.raises(TypeError):  # keywords after the problem
        solve_knapsack(problem, 60.0)


def test_knapsack_solvers_import_without_torch():
    code = ("import sys, mip; p = mip.KnapsackProblem([[1.0, 2.0]], [[2, 1]], 1); "
            "mip.solve_knapsack(p); mip.solve_knapsack(p, method='lagrangian'); "
            "assert 'torch' not in sys.modules, 'mip imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("reduce", [True, False])
def test_budget_a_hair_below_a_choice_is_met_exactly(reduce):
    """A budget computed as (T/n)*n lands one ulp below T: the solver's answer at T breaks it by
    round-off, the re-solve with a tightened budget must work without extra resources."""
    n = np.array([8192, 16384, 8192, 640])
    rows = np.array([128, 128, 64, 10])
    size = np.stack([n * b + 32 * rows for b in (2, 3)], axis=1).astype(float)
    budget = (size[:, 1].sum() / n.sum()) * n.sum()
    assert budget < size[:, 1].sum()
    problem = mip.KnapsackProblem(cost=np.stack([np.ones(4), np.zeros(4)], 1), size=size,
                                  budget=budget)
    result = mip.solve_knapsack(problem, reduce=reduce)
    assert result.size_used <= budget
    assert result.objective == pytest.approx(1.0)  # all but one group at 3 bits
