"""spr: the Structured Perspective Regularizer and MIP-based structured pruning for PyTorch.

Public API:
    spr_penalty, spr_indicator   closed-form SPR value and minimising y* per group (torch)
    spr_prox                     proximal operator of lam*SPR for M = inf
    SPRegularizer                the training penalty as an nn.Module
    solve_mip, LayerSolution     exact input-channel selection of one layer (Pyomo + HiGHS)
    layer_problem                that layer's MIP as a mip.LayerProblem (for the mip solvers)
    models                       CIFAR-style ResNets (spr.models.resnet20/56/110)
"""

from spr import models
from spr._closed_form import spr_indicator, spr_penalty
from spr._prox import spr_prox
from spr._regularizer import SPRegularizer
from spr._solve_mip import LayerSolution, layer_problem, solve_mip

__all__ = [
    "LayerSolution",
    "layer_problem",
    "SPRegularizer",
    "models",
    "solve_mip",
    "spr_indicator",
    "spr_penalty",
    "spr_prox",
]
__version__ = "0.1.0"
