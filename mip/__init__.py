"""Solver side of spr: numpy in, numpy out; Pyomo models, HiGHS, cvxpy. Imports no torch.

Public API:
    spr_penalty, spr_indicator      the closed-form perspective penalty and its minimising y
    LayerProblem                    the layer-wise input-group selection MIP (sufficient statistics)
    solve_exact                     outer approximation, HiGHS MILP masters: optimum, bound, gap
    solve_brute_force               enumeration of supports (the oracle for tiny instances)
    solve_scip                      the MIQP solved by SCIP (needs pyscipopt)
    fit_support                     best weights for a fixed support (box-constrained ridge LS)
    big_m_relaxation, perspective_relaxation, perspective_lp_relaxation, Relaxation
    MIPResult                       what the solvers return
"""

from mip._brute_force import solve_brute_force
from mip._closed_form import spr_indicator, spr_penalty
from mip._outer_approximation import solve_exact
from mip._problem import LayerProblem
from mip._relaxations import (
    Relaxation,
    big_m_relaxation,
    perspective_lp_relaxation,
    perspective_relaxation,
)
from mip._result import MIPResult
from mip._scip import solve_scip
from mip._solver import forget_unavailable_modules
from mip._support_fit import fit_support

forget_unavailable_modules()  # keep torch.compile working beside Pyomo (see the function)

__all__ = [
    "LayerProblem",
    "MIPResult",
    "Relaxation",
    "big_m_relaxation",
    "fit_support",
    "perspective_lp_relaxation",
    "perspective_relaxation",
    "solve_brute_force",
    "solve_exact",
    "solve_scip",
    "spr_indicator",
    "spr_penalty",
]
