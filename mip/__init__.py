"""Solver side of spr: numpy in, numpy out; Pyomo models, HiGHS, cvxpy. Imports no torch.

Public API:
    spr_penalty, spr_indicator   the closed-form perspective penalty and its minimising y (numpy)
"""

from mip._closed_form import spr_indicator, spr_penalty

__all__ = ["spr_penalty", "spr_indicator"]
