"""spr: the Structured Perspective Regularizer and MIP-based structured pruning for PyTorch.

Public API:
    spr_penalty, spr_indicator   closed-form SPR value and minimising y* per group (torch)
    spr_prox                     proximal operator of lam*SPR for M = inf
    SPRegularizer                the training penalty as an nn.Module
    GroupLassoRegularizer        the group-lasso baseline with SPR's grouping and scaling
    spr_group_penalty,           per-group penalties (W, M, alpha) -> (G,) for
      group_lasso_penalty        SPRegularizer(..., penalty=...)
    reference_M                  the paper's M per block from a trained dense model
    train, evaluate              the plain SGD loop (optionally with SPR) and top-1 accuracy
    threshold_search             largest global magnitude threshold within an accuracy drop
    structural_decision          which groups stay after thresholding; zero_dead_groups zeroes
                                 the others
    remove_pruned                physical removal of dead channels (Torch-Pruning)
    save_pruned, load_pruned     architecture as JSON + safetensors weights
    count_params, count_macs     size of a model (MACs, not FLOPs); measure -> Size;
                                 macs_by_layer, mac_weights (MACs per entry, for block_weights)
    layer_widths                 output width of every conv and Linear
    PruneConfig, run_pipeline    every setting of the paper's protocol; the resumable run
    Stage, PROTOCOL, StageContext  the run's stages (run_pipeline(stages=...) adds one)
    solve_mip, LayerSolution     input-channel selection of one layer, certified (mip.solve_layer)
    keep_curve                   that selection for every number of kept channels (mip.keep_curve)
    prune_to_budget, BudgetPlan  one-shot pruning to a stated MAC / parameter budget: keep-k
                                 curves, a knapsack over them, sequential refit; certified
    reconstruct                  that sequential refit for supports chosen elsewhere
    channel_groups               the prunable channel groups of a network (and those kept whole)
    layer_problem                that layer's MIP as a mip.LayerProblem (for the mip solvers)
    InputStatistics,             the Gram and cross terms of a layer's inputs (any conv padding),
      collect_input_statistics   accumulated over batches; by forward hooks on named layers
    models, data                 CIFAR-style ResNets and a small CNN; offline dataset loaders
"""

from spr import data, models
from spr._budget_plan import BudgetPlan, Certificate
from spr._channel_groups import ChannelGroup, KeptWhole, channel_groups
from spr._closed_form import spr_indicator, spr_penalty
from spr._config import PruneConfig
from spr._counting import Size, count_macs, count_params, mac_weights, macs_by_layer, measure
from spr._group_lasso import GroupLassoRegularizer
from spr._input_statistics import InputStatistics, collect_input_statistics
from spr._penalties import group_lasso_penalty, spr_group_penalty
from spr._pipeline import run_pipeline
from spr._prox import spr_prox
from spr._prune_to_budget import prune_to_budget, reconstruct
from spr._regularizer import SPRegularizer, reference_M
from spr._serialize import load_pruned, save_pruned
from spr._solve_mip import LayerSolution, keep_curve, layer_problem, solve_mip
from spr._stage_context import StageContext
from spr._stages import PROTOCOL, Stage
from spr._structure import structural_decision, zero_dead_groups
from spr._surgery import PruningError, layer_widths, remove_pruned
from spr._threshold import ThresholdResult, threshold_search
from spr._training import evaluate, train
from spr._version import __version__  # noqa: F401  (spr.__version__)

__all__ = [
    "InputStatistics",
    "collect_input_statistics",
    "PROTOCOL",
    "Stage",
    "StageContext",
    "BudgetPlan",
    "Certificate",
    "ChannelGroup",
    "GroupLassoRegularizer",
    "KeptWhole",
    "LayerSolution",
    "PruneConfig",
    "PruningError",
    "SPRegularizer",
    "Size",
    "ThresholdResult",
    "count_macs",
    "count_params",
    "data",
    "evaluate",
    "group_lasso_penalty",
    "keep_curve",
    "layer_problem",
    "layer_widths",
    "channel_groups",
    "load_pruned",
    "mac_weights",
    "macs_by_layer",
    "measure",
    "models",
    "prune_to_budget",
    "reconstruct",
    "reference_M",
    "remove_pruned",
    "run_pipeline",
    "save_pruned",
    "solve_mip",
    "spr_group_penalty",
    "spr_indicator",
    "spr_penalty",
    "spr_prox",
    "structural_decision",
    "threshold_search",
    "train",
    "zero_dead_groups",
]

