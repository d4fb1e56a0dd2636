"""Solver side of spr: numpy in, numpy out; Pyomo models, HiGHS, cvxpy. Imports no torch.

Public API:
    spr_penalty, spr_indicator      the closed-form perspective penalty and its minimising y
    LayerProblem                    the layer-wise input-group selection MIP (sufficient statistics)
    layer_model                     that MIP as a Pyomo model (to print, inspect, or hand to SCIP)
    solve_layer                     the layer MIP at any width: local search, perspective bound,
                                    branch and bound; proven or certified (bound and gap)
    LAYER_SOLVERS                   solve_layer's methods: name -> solver taking
                                    (problem, *, time_limit, mip_gap, progress)
    keep_curve, KeepCurve           solve_layer for every number of kept groups k
    solve_outer_approximation       outer approximation, HiGHS MILP masters: optimum, bound, gap
    solve_branch_and_bound          branch and bound over supports (leaps and bounds): exact, no
                                    MILP solver, fast where the relaxations are weak
    solve_brute_force               enumeration of supports (the oracle for tiny instances)
    solve_scip                      the MIQP solved by SCIP (needs pyscipopt)
    fit_support                     best weights for a fixed support (box-constrained ridge LS)
    big_m_relaxation, perspective_relaxation, perspective_lp_relaxation, Relaxation
    RELAXATIONS, relaxation         name -> relaxation taking (problem, *, time_limit); one by name
    MIPResult                       what the layer solvers return
    KnapsackProblem, KnapsackResult multiple-choice knapsack (bit allocation) and its answer
    solve_knapsack                  solves it: method "auto" (= "milp": exact, Lagrangian
                                    reduction first), "milp" or "lagrangian" (many groups)
    KNAPSACK_METHODS                solve_knapsack's methods: name -> solver

Deprecated (they warn, and go in the next release):
    solve_exact                     use solve_outer_approximation
    solve_knapsack_lagrangian       use solve_knapsack(problem, method="lagrangian")

Everything but the closed form is imported on first use, so ``import mip`` (and ``import spr``)
does not pay for Pyomo, SciPy's optimisers or cvxpy until a solver is asked for.
"""

import importlib

from mip._closed_form import spr_indicator, spr_penalty

_LAZY = {
    "KNAPSACK_METHODS": "mip._knapsack",
    "KeepCurve": "mip._keep_curve",
    "KnapsackProblem": "mip._knapsack_problem",
    "KnapsackResult": "mip._knapsack_problem",
    "LAYER_SOLVERS": "mip._solve_layer",
    "LayerProblem": "mip._problem",
    "MIPResult": "mip._result",
    "RELAXATIONS": "mip._relaxations",
    "Relaxation": "mip._relaxations",
    "big_m_relaxation": "mip._relaxations",
    "fit_support": "mip._support_fit",
    "keep_curve": "mip._keep_curve",
    "layer_model": "mip._layer_model",
    "perspective_lp_relaxation": "mip._relaxations",
    "perspective_relaxation": "mip._relaxations",
    "relaxation": "mip._relaxations",
    "solve_branch_and_bound": "mip._branch_and_bound",
    "solve_brute_force": "mip._brute_force",
    "solve_exact": "mip._outer_approximation",  # deprecated alias
    "solve_knapsack": "mip._knapsack",
    "solve_knapsack_lagrangian": "mip._knapsack",  # deprecated alias
    "solve_layer": "mip._solve_layer",
    "solve_outer_approximation": "mip._outer_approximation",
    "solve_scip": "mip._scip",
}

__all__ = [
    "KNAPSACK_METHODS",
    "KeepCurve",
    "KnapsackProblem",
    "KnapsackResult",
    "LAYER_SOLVERS",
    "LayerProblem",
    "MIPResult",
    "RELAXATIONS",
    "Relaxation",
    "big_m_relaxation",
    "fit_support",
    "keep_curve",
    "layer_model",
    "perspective_lp_relaxation",
    "perspective_relaxation",
    "relaxation",
    "solve_branch_and_bound",
    "solve_brute_force",
    "solve_exact",
    "solve_knapsack",
    "solve_knapsack_lagrangian",
    "solve_layer",
    "solve_outer_approximation",
    "solve_scip",
    "spr_indicator",
    "spr_penalty",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mip' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    from mip._solver import forget_unavailable_modules

    forget_unavailable_modules()  # keep torch.compile working beside Pyomo (see the function)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
