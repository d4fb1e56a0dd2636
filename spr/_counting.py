"""Model size: parameter count and multiply-accumulate operations (MACs) of one forward pass.

MACs, not FLOPs: one multiply-accumulate = 2 FLOPs; BatchNorm, activations, pooling and
additions are not counted (the usual convention of the pruning literature, where "FLOPs" in
tables such as ResNet-56's 125.49M are in fact multiply-adds).

>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
...                       nn.Linear(8 * 4 * 4, 10))
>>> size = measure(model, torch.zeros(1, 3, 4, 4))
>>> size.params, size.macs  # conv: 16 outputs x 8 ch x 3*9; linear: 10 x 128
(1514, 4736)
>>> percent_removed(size, Size(params=757, macs=1184))
(50.0, 75.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spr._groups import group_parts

__all__ = ["Size", "count_macs", "count_params", "measure", "percent_removed"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def count_params(model: nn.Module) -> int:
    """Number of parameter entries of ``model``; a parameter shared by several modules counts once.

    Buffers (BatchNorm running statistics) are not parameters and are not counted.

    >>> from torch import nn
    >>> count_params(nn.Linear(4, 3))  # 4*3 weights + 3 biases
    15
    """
    return sum(p.numel() for p in model.parameters())  # parameters() yields each tensor once


def _conv_macs(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    # Every output element is a dot product over in_channels/groups x kernel entries.
    return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


def _conv_transpose_macs(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    # Every input element is multiplied by out_channels/groups x kernel weights (scatter form);
    # products that land in the cropped ``padding`` border are counted too.
    return (
        inputs[0].numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    )


def _linear_macs(module: nn.Module, inputs: tuple, output: Tensor) -> int:
    # Any leading dimensions: each output entry is a dot product of length in_features.
    return output.numel() * module.in_features


def _rule(module: nn.Module):
    if isinstance(module, _CONV):
        return _conv_macs
    if isinstance(module, _CONV_TRANSPOSE):
        return _conv_transpose_macs
    if isinstance(module, nn.Linear):
        return _linear_macs
    return None


def count_macs(model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...]) -> int:
    """Multiply-accumulate operations of ONE forward pass ``model(*example_inputs)``.

    ``example_inputs`` is a tensor or a tuple of tensors (on the model's device), and the count
    is for the batch given: pass a batch of 1, e.g. ``torch.zeros(1, 3, 32, 32)``, for the
    per-image figure that papers report.

    Counted with forward hooks on ``nn.Conv1d/2d/3d`` (output elements x in_channels/groups x
    kernel size), ``nn.ConvTranspose1d/2d/3d`` (input elements x out_channels/groups x kernel
    size) and ``nn.Linear`` (output elements x in_features, for any leading dimensions). A
    module called twice is counted twice. Biases, BatchNorm, activations, pooling, additions and
    functional calls (``F.linear``, ``torch.matmul``, attention) are not counted. One MAC is two
    FLOPs.

    Runs under ``torch.no_grad()`` in eval mode (so BatchNorm statistics do not move) and then
    restores every submodule's training flag; the hooks are removed even if the forward raises.

    >>> from torch import nn
    >>> count_macs(nn.Conv2d(3, 16, 3, padding=1), torch.zeros(1, 3, 32, 32))  # 32*32*16 x 3*9
    442368
    """
    return sum(macs_by_layer(model, example_inputs).values())


def macs_by_layer(
    model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...]
) -> dict[str, int]:
    """:func:`count_macs` per conv / Linear module, by module name (the sum is the total).

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 16, 3))
    >>> macs_by_layer(net, torch.zeros(1, 1, 4, 4))   # 16 positions * 2 * 9; 32 * 3
    {'0': 288, '2': 96}
    """
    inputs = (
        tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    )
    totals: dict[str, int] = {}

    def hook(name, rule):
        def count(module: nn.Module, args: tuple, output: Tensor) -> None:
            totals[name] = totals.get(name, 0) + rule(module, args, output)

        return count

    flags = [(m, m.training) for m in model.modules()]
    handles = []
    try:
        for name, module in model.named_modules():
            rule = _rule(module)
            if rule is not None:
                handles.append(module.register_forward_hook(hook(name, rule)))
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in flags:
            module.training = training
    return totals


@dataclass(frozen=True)
class Size:
    """Parameter count and MACs of one forward pass (see :func:`count_macs`) of a model."""

    params: int
    macs: int

    def __str__(self) -> str:
        return f"{self.params / 1e6:.3f}M params, {self.macs / 1e6:.2f}M MACs"


def measure(model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...]) -> Size:
    """``Size(count_params(model), count_macs(model, example_inputs))``; use a batch of 1.

    >>> from torch import nn
    >>> print(measure(nn.Linear(1000, 1000), torch.zeros(1, 1000)))
    1.001M params, 1.00M MACs
    """
    return Size(params=count_params(model), macs=count_macs(model, example_inputs))


def percent_removed(dense: Size, pruned: Size) -> tuple[float, float]:
    """Percent of the dense model's parameters and MACs that pruning removed: (params %, MACs %).

    >>> percent_removed(Size(params=200, macs=1000), Size(params=150, macs=250))
    (25.0, 75.0)
    """
    if dense.params <= 0 or dense.macs <= 0:
        raise ValueError(f"the dense size must have positive params and MACs; got {dense}")
    return (
        100.0 * (1 - pruned.params / dense.params),
        100.0 * (1 - pruned.macs / dense.macs),
    )


def mac_weights(
    model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...], groups: str = "conv_bn"
) -> dict[str, float]:
    """Per block of ``groups``: MACs per weight entry, scaled to an entry-weighted mean of 1.

    For :class:`spr.SPRegularizer`'s ``block_weights``: a conv's entry is used once per output
    position, so a filter of a high-resolution layer costs more compute than one of a deep,
    low-resolution layer with the same number of entries. Weighting block ``b`` by
    ``m_b = MACs_b / weights_b`` (divided by ``sum_b N_b m_b / sum_b N_b``, ``N_b`` the block's
    regularised entries, so the overall scale of lam is kept) makes SPR prune compute, not
    parameters.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=2))
    >>> w = mac_weights(net, torch.zeros(1, 1, 9, 9), groups="conv")
    >>> round(w["0"] / w["1"], 6)    # 81 output positions against 16
    5.0625
    """
    per_layer = macs_by_layer(model, example_inputs)
    modules = dict(model.named_modules())
    per_entry, entries = {}, {}
    for name, parts in group_parts(model, groups):
        module = modules.get(name)
        if module is None or name not in per_layer:
            raise ValueError(
                f"mac_weights: block {name!r} is not a conv or Linear layer the forward ran"
            )
        per_entry[name] = per_layer[name] / module.weight.numel()
        entries[name] = sum(p.numel() for p in parts)
    mean = sum(per_entry[n] * entries[n] for n in per_entry) / sum(entries.values())
    return {n: value / mean for n, value in per_entry.items()}
