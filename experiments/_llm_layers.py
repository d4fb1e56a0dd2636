"""Layer pruning problems from a real language model: SmolLM2-135M's MLP ``down_proj`` layers.

``down_proj`` (1536 -> 576, no bias) of decoder layer ``i`` reads the 1536 MLP neurons
``act(gate_proj(x)) * up_proj(x)``; pruning its input channels (group size 1) removes MLP
neurons. :func:`down_proj_problem` runs calibration windows of *Emma* through the model, captures
those inputs with a forward hook and builds the :class:`mip.LayerProblem` with spr's own
:func:`spr._solve_mip.layer_problem` (gram = X^T X / N, xty = X^T Y / N with Y = X W0^T,
yty = sum(Y * Y, 0) / N, accumulated in float64)::

    problem = down_proj_problem(11, n_tokens=2048)          # d = 1536 groups, out = 576
    problems = down_proj_problems([0, 11, 29])              # one calibration forward for all

The calibration text is tokenised and windowed as ``experiments/icquant_llm.py`` does for its
calibration set: ``tokenizer(austen_novels()["emma"]).input_ids`` cut by
:func:`compress_extras.llm.fixed_windows` into evenly spread windows of ``window`` tokens
(``n_tokens=2048, window=256`` gives exactly icquant_llm's 8 default calibration windows). The
model (SmolLM2-135M-Instruct, its GGUF Q4_1 weights dequantized to float32) and the token ids are
loaded once per process and cached.

The first token of every window is left out of the statistics by default
(``skip_first_token=True``): SmolLM2, like other Llama-style models, turns the first position of a
sequence into an "attention sink" and gives it activations orders of magnitude larger than any
other token's in a few ``down_proj`` inputs of some layers. One token per window would then
carry most of trace(gram) (see :func:`first_token_share`), so the problem would be fitted to that
single position rather than to ordinary text; skipping position 0 keeps the statistics those of
typical tokens. Pass ``skip_first_token=False`` to keep them.

Needs the ``llm`` extra (transformers, gguf) and ``make data`` (data/smollm2, data/austen).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

import mip
from compress_extras.llm import austen_novels, fixed_windows, load_smollm2
from spr._solve_mip import layer_problem

__all__ = [
    "LAM_FACTOR",
    "calibration_windows",
    "capture_down_proj_inputs",
    "default_lam",
    "down_proj_layer",
    "down_proj_problem",
    "down_proj_problems",
    "first_token_share",
    "load_model",
]

LAM_FACTOR = 1e-3  # default lam = LAM_FACTOR * trace(gram) / d


def _folder(root: str | None, name: str) -> str | None:
    return None if root is None else str(Path(root) / name)


def _root_key(root: str | os.PathLike[str] | None) -> str | None:
    return None if root is None else str(Path(root).expanduser().resolve())


@functools.lru_cache(maxsize=2)
def _load(root: str | None) -> tuple[nn.Module, object]:
    return load_smollm2(_folder(root, "smollm2"), dtype=torch.float32)


@functools.lru_cache(maxsize=2)
def _emma_ids(root: str | None) -> Tensor:
    _, tokenizer = _load(root)
    return torch.tensor(tokenizer(austen_novels(_folder(root, "austen"))["emma"]).input_ids)


def load_model(root: str | os.PathLike[str] | None = None) -> tuple[nn.Module, object]:
    """(model, tokenizer) of SmolLM2-135M in float32, eval mode; loaded once per process.

    ``root``: a data folder holding ``smollm2/`` and ``austen/`` (as ``$SPR_DATA``); None looks
    where :func:`compress_extras.llm.find_data` does ($SPR_DATA, then the repository's data/).
    """
    return _load(_root_key(root))


def down_proj_layer(layer_index: int, root: str | os.PathLike[str] | None = None) -> nn.Linear:
    """``model.model.layers[layer_index].mlp.down_proj`` of the cached model."""
    model, _ = load_model(root)
    layers = model.model.layers
    if not 0 <= layer_index < len(layers):
        raise ValueError(f"layer_index must lie in 0..{len(layers) - 1}; got {layer_index}")
    return layers[layer_index].mlp.down_proj


def calibration_windows(n_tokens: int = 4096, window: int = 256,
                        root: str | os.PathLike[str] | None = None) -> Tensor:
    """(ceil(n_tokens / window), window) token ids of *Emma*, evenly spread over the novel
    (:func:`compress_extras.llm.fixed_windows`; the spread depends on the count, so the windows
    for 4096 tokens are not a superset of those for 2048)."""
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1; got {n_tokens}")
    return fixed_windows(_emma_ids(_root_key(root)), window, math.ceil(n_tokens / window))


class _Done(Exception):
    """Raised by the hook of the deepest requested layer: the rest of the forward is not needed."""


@torch.no_grad()
def capture_down_proj_inputs(layer_indices: Iterable[int], n_tokens: int = 4096,
                             window: int = 256, root: str | os.PathLike[str] | None = None,
                             batch_size: int = 4) -> dict[int, Tensor]:
    """``{layer: (windows, window, 1536) float32}``: the inputs of each requested ``down_proj``
    for :func:`calibration_windows`, all positions kept, from one forward pass over the windows
    (stopped after the deepest requested layer; the LM head is never run)."""
    indices = sorted({int(i) for i in layer_indices})
    if not indices:
        raise ValueError("layer_indices is empty")
    model, _ = load_model(root)
    modules = {i: down_proj_layer(i, root) for i in indices}
    windows = calibration_windows(n_tokens, window, root)
    captured: dict[int, list[Tensor]] = {i: [] for i in indices}

    def hook(index: int):
        def capture(module, inputs, output):
            captured[index].append(inputs[0].detach().float().clone())
            if index == indices[-1]:
                raise _Done
        return capture

    handles = [modules[i].register_forward_hook(hook(i)) for i in indices]
    try:
        for batch in windows.split(batch_size):
            try:
                model.model(input_ids=batch, use_cache=False)
            except _Done:
                pass
    finally:
        for h in handles:
            h.remove()
    return {i: torch.cat(captured[i]) for i in indices}


def first_token_share(inputs: Tensor) -> float:
    """Fraction of trace(X^T X) (the sum of squared activations) that position 0 of the windows
    carries, for inputs (windows, window, features) as :func:`capture_down_proj_inputs` gives."""
    x = inputs.double()
    return float((x[:, 0] ** 2).sum() / (x**2).sum())


def default_lam(X: Tensor, factor: float = LAM_FACTOR) -> float:
    """``factor * trace(gram) / d`` for inputs X (N, d), gram = X^T X / N (float64): a ridge
    ``factor`` times the mean eigenvalue of gram, small against the loss scale."""
    x = X.double()
    return factor * float((x**2).sum()) / (x.shape[0] * x.shape[1])


def down_proj_problems(layer_indices: Iterable[int], n_tokens: int = 4096, window: int = 256,
                       lam: float | None = None, alpha: float = 0.5,
                       root: str | os.PathLike[str] | None = None,
                       skip_first_token: bool = True) -> dict[int, mip.LayerProblem]:
    """``{layer: LayerProblem}`` for several layers from one calibration forward; arguments as in
    :func:`down_proj_problem`."""
    if skip_first_token and window < 2:
        raise ValueError("skip_first_token needs window >= 2")
    inputs = capture_down_proj_inputs(layer_indices, n_tokens, window, root)
    problems = {}
    for i, x in inputs.items():
        if skip_first_token:
            x = x[:, 1:]
        X = x.reshape(-1, x.shape[-1])
        layer_lam = default_lam(X) if lam is None else lam
        problems[i] = layer_problem(down_proj_layer(i, root), X, lam=layer_lam, alpha=alpha)
    return problems


def down_proj_problem(layer_index: int, n_tokens: int = 4096, window: int = 256,
                      lam: float | None = None, alpha: float = 0.5,
                      root: str | os.PathLike[str] | None = None,
                      skip_first_token: bool = True) -> mip.LayerProblem:
    """The :class:`mip.LayerProblem` of pruning the 1536 input neurons of SmolLM2-135M's
    ``model.model.layers[layer_index].mlp.down_proj`` (group size 1, out = 576, M = 2 max|W0|).

    Args:
        layer_index: decoder layer, 0..29.
        n_tokens: calibration tokens run through the model, rounded up to whole windows:
            ceil(n_tokens / window) windows of *Emma* (:func:`calibration_windows`).
        window: tokens per window (each window is its own sequence, as in icquant_llm.py).
        lam: the MIP's lam. None (default) takes ``1e-3 * trace(gram) / d`` (``LAM_FACTOR``),
            with trace(gram) computed from the captured inputs that enter the statistics (after
            the first-token skip) before the problem is built: the ridge ``lam * alpha`` is then
            a thousandth of gram's mean eigenvalue, small relative to the loss scale.
        alpha: the ridge / count split of the penalty.
        root: a data folder holding ``smollm2/`` and ``austen/``; None: $SPR_DATA, then data/.
        skip_first_token: leave position 0 of every window out of the statistics (default):
            the first token of a sequence gets huge activations in a few down_proj inputs of
            some layers (an attention sink), and would otherwise dominate gram and yty; the
            statistics then come from N = windows * (window - 1) tokens.
    """
    return down_proj_problems([layer_index], n_tokens, window, lam, alpha, root,
                              skip_first_token)[layer_index]
