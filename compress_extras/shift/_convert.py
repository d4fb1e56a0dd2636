"""Convert a model's convolutions and linears to DenseShift layers, and export their codes.

``to_denseshift(model, bits=3)`` replaces every nn.Conv2d and nn.Linear except the first conv and
the classifier (the last nn.Linear) -- the DenseShift recipe keeps those in float -- with
:class:`DenseShiftConv2d` / :class:`DenseShiftLinear`, projecting the trained weights to the
nearest level in the linear domain (``project=False``: fresh low-variance latents instead).
``plan`` gives per-layer widths: an :class:`compress_extras.AllocationPlan` over
:class:`ShiftQuant` options (its layers take the planned width; a layer whose option is not a
shift option, e.g. ``"fp16"``, stays float) or a dict ``name -> bits`` (``None`` keeps it float).

>>> torch.manual_seed(0) is not None
True
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(),
...                     nn.Linear(16, 2))
>>> shifted = to_denseshift(net, bits=3)
>>> [type(m).__name__ for m in shifted]
['Conv2d', 'ReLU', 'DenseShiftConv2d', 'Flatten', 'Linear']
>>> shifted(torch.zeros(1, 1, 6, 6)).shape
torch.Size([1, 2])
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping

import torch
from torch import nn

from compress_extras._modules import replace_module
from compress_extras.shift._layers import DenseShiftConv2d, DenseShiftLinear, _ShiftWeight
from compress_extras.shift._levels import check_bits

_OPTION = re.compile(r"^shift([0-9]+)(z?)$")


def _parse_option(name: str) -> tuple[int, bool] | None:
    """``"shift3"`` -> (3, False), ``"shift3z"`` -> (3, True), anything else -> None."""
    match = _OPTION.match(name)
    return (int(match.group(1)), match.group(2) == "z") if match else None


def default_shift_layers(model: nn.Module, keep_first: bool = True, keep_last: bool = True
                         ) -> list[str]:
    """Names of the nn.Conv2d / nn.Linear layers to convert: all but the first conv and the last
    linear (the classifier) unless ``keep_first`` / ``keep_last`` is False."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    skip = set()
    if keep_first and convs:
        skip.add(convs[0])
    if keep_last and linears:
        skip.add(linears[-1])
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d | nn.Linear) and n not in skip]


def _widths(model, bits, plan, zero_code, keep_first, keep_last) -> dict[str, tuple[int, bool]]:
    if plan is None:
        check_bits(bits)
        return {n: (bits, zero_code) for n in default_shift_layers(model, keep_first, keep_last)}
    if isinstance(plan, Mapping):
        items = plan.items()
        out = {}
        for name, b in items:
            if b is None:
                continue
            out[name] = (check_bits(b), zero_code)
        return out
    if hasattr(plan, "layers") and hasattr(plan, "options"):
        out = {}
        for name, option in zip(plan.layers, plan.options, strict=True):
            parsed = _parse_option(option)
            if parsed is not None:
                out[name] = (check_bits(parsed[0]), parsed[1])
        return out
    raise TypeError("plan must be an AllocationPlan (ShiftQuant options), a dict name -> bits, "
                    f"or None; got {type(plan).__name__}")


def _fresh_like(module: nn.Module, width: int, zero_code: bool) -> nn.Module:
    """A DenseShift layer shaped like ``module`` with fresh latents (bias copied)."""
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear):
        new = DenseShiftLinear(module.in_features, module.out_features, has_bias, width, zero_code)
    else:
        new = DenseShiftConv2d(module.in_channels, module.out_channels, module.kernel_size,
                               module.stride, module.padding, module.dilation, module.groups,
                               has_bias, width, zero_code)
    if has_bias:
        new.bias.data.copy_(module.bias.detach())
    return new.to(module.weight.device)


def to_denseshift(model: nn.Module, bits: int = 3, plan=None, *, zero_code: bool = False,
                  keep_first: bool = True, keep_last: bool = True, project: bool = True,
                  scale: str = "mse", inplace: bool = False) -> nn.Module:
    """``model`` with its convs/linears replaced by DenseShift layers.

    Args:
        model: any nn.Module; its nn.Conv2d / nn.Linear children are replaced.
        bits: the uniform width (2, 3 or 4) when no ``plan`` is given.
        plan: per-layer widths (module docstring); overrides ``bits``/``keep_*``.
        zero_code: the conventional shift layer with a zero code instead (the baseline); a plan's
            ``"shiftNz"`` options set it per layer.
        keep_first, keep_last: keep the first conv / the classifier in float.
        project: start from the trained weights (nearest level, fitted per-channel scale
            ``scale``: ``"mse"`` or ``"max"``); False: fresh N(0, 1e-3^2) latents.
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        The converted model (``model`` itself if ``inplace``).
    """
    widths = _widths(model, bits, plan, zero_code, keep_first, keep_last)
    target = model if inplace else copy.deepcopy(model)
    modules = dict(target.named_modules())
    for name, (width, zc) in widths.items():
        if name not in modules:
            raise ValueError(f"no module named {name!r} in the model; layers are "
                             f"{default_shift_layers(target, False, False)}")
        module = modules[name]
        if isinstance(module, nn.Conv2d):
            cls = DenseShiftConv2d
        elif isinstance(module, nn.Linear):
            cls = DenseShiftLinear
        else:
            raise TypeError(f"{name} is a {type(module).__name__}; only nn.Conv2d and nn.Linear "
                            "can become DenseShift layers")
        if project:
            new = cls.from_float(module, width, zc, scale)
        else:
            new = _fresh_like(module, width, zc)
        replace_module(target, name, new)
    return target


def shift_layers(model: nn.Module) -> dict[str, _ShiftWeight]:
    """The DenseShift layers of ``model`` by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _ShiftWeight)}


@torch.no_grad()
def export_denseshift(model: nn.Module) -> dict[str, dict]:
    """``name -> layer.export()`` for every DenseShift layer: packed (sign, exponent) codes,
    fp16 per-channel scales, bias. Total code storage is ``sum(N * numel)`` bits rounded up to
    whole bytes per layer."""
    return {n: m.export() for n, m in shift_layers(model).items()}
