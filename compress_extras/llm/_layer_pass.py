"""Running a Llama-style causal LM decoder layer by decoder layer over calibration windows, and
the statistics of one layer's MLP problem (for :func:`compress_extras.llm.prune_llm`).

**Layer problem.** For decoder layer i the rows are ``down_proj``'s inputs X (one per token) and
the targets its dense outputs ``Y = X_dense W0^T`` (plus, in the sequential step, a shift: the
residual stream's error so far). :class:`TokenStatistics` sums ``X^T X``, ``X^T Y``, ``yty`` in
the shared :class:`spr._input_statistics.InputStatistics` (float32 products per batch, summed in
float64) and gives the :class:`mip.LayerProblem` of selecting k of the neurons (group size 1),
with a ridge ``lam * alpha`` of :data:`RIDGE` times the mean Gram diagonal (as
:mod:`spr._consumer_problems`) and a box ``M`` of :data:`BOX` times the largest dense weight.

**The first token.** Llama-style models make position 0 of every sequence an "attention sink":
a handful of MLP neurons fire there orders of magnitude above anything else (SmolLM2: neuron 1229
of layer 11 reaches 3000 at position 0 and 11 elsewhere; layer 28 has one at 2400) and put the
massive activation into the residual stream that every later token's attention keys on. Leaving
position 0 out of the statistics (as ``experiments/_llm_layers.py`` does to study ordinary text)
is fatal for pruning: the sink neurons then look useless, get pruned, and the model collapses
(20% of SmolLM2's MLP removed that way: perplexity in the thousands, for every method). So
position 0 stays in the rows by default (``first_token="include"``, weight 1 like any token):
dropping a sink neuron then costs its massive output, and the layer MIP and the activation-aware
scores keep it; the scales that describe ordinary text come from positions >= 1 alone: the ridge
(the mean Gram diagonal) and the energies costs are relative to. ``first_token`` may also be a
weight (``"skip"`` is 0); weighting position 0 by 16 or 255 changed nothing measurable (SmolLM2,
20% removed: 49.3 and 49.4 against 49.4).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch import Tensor, nn

import mip
from compress_extras.llm._pruned_model import decoder_layers
from spr._input_statistics import InputStatistics

__all__ = ["ALPHA", "BOX", "FIRST_TOKEN", "RIDGE", "TokenStatistics", "check_structure",
           "first_token_weight", "layer_indices", "layer_inputs", "layer_output", "split_layer",
           "token_batches"]

RIDGE = 1e-3  # the fits' ridge lam*alpha relative to the mean Gram diagonal (spr's CNN value)
ALPHA = 0.5
BOX = 4.0  # M = BOX * max|W0|
FIRST_TOKEN = {"include": 1.0, "skip": 0.0}


def token_batches(calibration: Tensor | Iterable[Tensor], batch_size: int) -> list[Tensor]:
    """The calibration token ids as a list of (B, T) integer batches (a tensor split into
    ``batch_size`` windows each); ValueError for anything else."""
    if isinstance(calibration, Tensor):
        if calibration.dim() != 2 or calibration.shape[0] == 0:
            raise ValueError(f"calibration must be token ids (windows, T); got shape "
                             f"{tuple(calibration.shape)}")
        batches = list(calibration.split(batch_size))
    else:
        batches = [torch.as_tensor(b) for b in calibration]
    if not batches:
        raise ValueError("calibration is empty")
    for b in batches:
        if b.dim() != 2 or b.is_floating_point():
            raise ValueError(f"every calibration batch must be integer token ids (B, T); got "
                             f"{b.dtype} {tuple(b.shape)}")
    return batches


def layer_indices(model: nn.Module, layers: Iterable[int] | None) -> list[int]:
    """The sorted decoder-layer indices named by ``layers`` (all when None), checked."""
    count = len(decoder_layers(model))
    if layers is None:
        return list(range(count))
    indices = sorted({int(i) for i in layers})
    if not indices or indices[0] < 0 or indices[-1] >= count:
        raise ValueError(f"layers must name decoder layers in 0..{count - 1}; got {layers!r}")
    return indices


class _Stop(Exception):
    """Raised by the hooks once what is needed of a forward pass is captured."""


def layer_inputs(model: nn.Module, batches: list[Tensor]) -> list[tuple[Tensor, dict]]:
    """Per batch, the hidden states entering decoder layer 0 and the keyword arguments the
    model passes every layer (position embeddings, mask, positions)."""
    layers = decoder_layers(model)
    base = model.model if hasattr(model, "model") and layers is getattr(
        model.model, "layers", None) else model
    captured: list[tuple[Tensor, dict]] = []

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.append((hidden.detach(), {k: v for k, v in kwargs.items()
                                           if k != "hidden_states"}))
        raise _Stop

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            try:
                base(input_ids=batch.to(layers[0].mlp.down_proj.weight.device), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured


def split_layer(layer: nn.Module, hidden: Tensor, kwargs: dict) -> tuple[Tensor, Tensor]:
    """``(h_mid, X)``: the residual stream after attention (the input of
    ``post_attention_layernorm``) and ``down_proj``'s input; ``down_proj`` is not run. The layer's
    output is ``h_mid + down_proj(X)`` (checked once per model by :func:`check_structure`)."""
    got: dict[str, Tensor] = {}

    def mid(module, args):
        got["mid"] = args[0].detach()

    def down(module, args):
        got["x"] = args[0].detach()
        raise _Stop

    handles = [layer.post_attention_layernorm.register_forward_pre_hook(mid),
               layer.mlp.down_proj.register_forward_pre_hook(down)]
    try:
        layer(hidden, **kwargs)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    if "mid" not in got or "x" not in got:
        raise ValueError("the decoder layer did not run post_attention_layernorm and then "
                         "mlp.down_proj: not a Llama-style layer")
    return got["mid"], got["x"]


def layer_output(out) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def check_structure(layer: nn.Module, hidden: Tensor, kwargs: dict) -> None:
    full = layer_output(layer(hidden, **kwargs))
    h_mid, X = split_layer(layer, hidden, kwargs)
    rebuilt = h_mid + layer.mlp.down_proj(X)
    scale = float(full.abs().max()) or 1.0
    if float((full - rebuilt).abs().max()) > 1e-4 * scale:
        raise ValueError("a decoder layer's output is not h_mid + mlp(post_attention_layernorm("
                         "h_mid)): this architecture is not the Llama-style one prune_llm handles")


def first_token_weight(value: object) -> float:
    if isinstance(value, str) and value in FIRST_TOKEN:
        return FIRST_TOKEN[value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            0 <= value < math.inf):
        raise ValueError(f"first_token must be one of {list(FIRST_TOKEN)} or a weight >= 0; got "
                         f"{value!r}")
    return float(value)


class TokenStatistics:
    """The statistics of ``down``'s layer problem over token windows (module docstring).

    :attr:`inputs` (an :class:`InputStatistics`, float32 products summed in float64 on the CPU)
    has every row weighted: position 0 of a window by ``first_weight``, the others by 1. Over
    the ordinary tokens (position >= 1) alone it keeps the column sums of squares of X, the
    output energy and the residual-stream energy (the scales that must not depend on the
    attention sink)."""

    def __init__(self, down: nn.Linear, first_weight: float) -> None:
        self.W0 = down.weight.detach().float()
        self.first_weight = first_weight
        self.inputs = InputStatistics(down, dtype=torch.float64, chunk_size=None,
                                      compute_dtype=torch.float32, device="cpu")
        self.ordinary_sq = torch.zeros(down.in_features, dtype=torch.float64)
        self.ordinary_output = 0.0
        self.residual = 0.0
        self.ordinary = 0

    def update(self, X: Tensor, X_target: Tensor, residual: Tensor,
               shift: Tensor | None = None) -> None:
        """One batch: ``X`` (B, T, d) the layer's inputs, ``X_target`` those its targets are
        computed from, ``residual`` (B, T, hidden) the dense residual stream after the layer;
        ``shift`` (B, T, out) is added to the targets."""
        X, X_target = X.float().cpu(), X_target.float().cpu()
        Y = X_target @ self.W0.T
        if shift is not None:
            Y = Y + shift.float().cpu()
        ordinary = X[:, 1:].reshape(-1, X.shape[-1])
        ordinary_y = Y[:, 1:].reshape(-1, Y.shape[-1])
        self.inputs.update(ordinary, targets=ordinary_y)
        self.inputs.update(X[:, 0], targets=Y[:, 0], weight=self.first_weight)
        self.ordinary_sq += (ordinary * ordinary).sum(0).double()
        self.ordinary_output += float((ordinary_y.double() ** 2).sum())
        self.residual += float((residual[:, 1:].double() ** 2).sum())
        self.ordinary += ordinary.shape[0]

    def problem(self, center: bool = False) -> mip.LayerProblem:
        """The layer problem; ``center``: of the centred statistics, i.e. with an intercept
        (a bias ``mean(Y) - W mean(X)``) fitted jointly with every W."""
        gram, xty, yty = (t[0].numpy() for t in self.inputs.means(center))
        diag = float(self.ordinary_sq.sum()) / (self.ordinary * gram.shape[0])
        M = BOX * float(self.W0.abs().max()) or 1.0
        return mip.LayerProblem(gram, xty, yty, 1, lam=RIDGE * max(diag, 1e-30) / ALPHA,
                                alpha=ALPHA, M=M)

    def energy(self, kind: str) -> float:
        value = self.ordinary_output if kind == "output" else self.residual
        return max(value / max(self.ordinary, 1), 1e-300)
