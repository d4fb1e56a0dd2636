"""The arguments of :func:`compress_extras.allocate_bits`, checked before any work: the options,
the layers, the ties, the allowed options and the calibration batches (TypeError or ValueError
naming the argument and what to pass).

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
>>> list(allocated_layers(net, None))
['0', '2']
>>> [tuple(x.shape) for x, _ in calibration_batches(torch.zeros(5, 4))]
[(5, 4)]
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from compress_extras._options import QuantizerOption
from spr._input_statistics import linear_or_conv

__all__ = ["allocated_layers", "calibration_batches", "check_allowed", "check_options",
           "default_layers", "model_device", "tie_indices"]

_CALIBRATION_FORMS = ("a tensor of inputs (N, ...), an (inputs, targets) pair of tensors, or an "
                      "iterable of such batches")


def default_layers(model: nn.Module) -> list[str]:
    """Names of every nn.Linear and nn.Conv2d in ``model`` (named_modules order)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def check_options(options: Iterable[QuantizerOption]) -> tuple[QuantizerOption, ...]:
    """The options as a tuple: at least one, each a QuantizerOption, distinct names."""
    options = tuple(options)
    if not options:
        raise ValueError("options must name at least one quantizer option")
    for option in options:
        old_style = callable(getattr(option, "bits", None)) and hasattr(option, "quantize") \
            and hasattr(option, "name")  # bits(W) as the size: the deprecated protocol
        if not (isinstance(option, QuantizerOption) or old_style):
            raise TypeError(f"{option!r} does not implement QuantizerOption "
                            "(name, quantize(W), storage_bits(W))")
    names = tuple(option.name for option in options)
    if len(set(names)) != len(names):
        raise ValueError(f"option names must be distinct; got {names}")
    return options


def allocated_layers(model: nn.Module, layers: Sequence[str] | None) -> dict[str, nn.Module]:
    """Name -> module of the layers to allocate (default every nn.Linear and nn.Conv2d): distinct,
    existing, nn.Linear or nn.Conv2d with finite weights."""
    if isinstance(layers, str | bytes):
        raise TypeError(f"layers must be a sequence of module names, e.g. layers=['fc1', 'fc2']; "
                        f"got the string {layers!r}")
    layer_names = list(default_layers(model) if layers is None else layers)
    if not layer_names:
        raise ValueError("no layers to allocate (the model has no nn.Linear or nn.Conv2d)")
    if len(set(layer_names)) != len(layer_names):
        raise ValueError(f"layers must be distinct; got {layer_names}")
    modules = {}
    for name in layer_names:
        module = linear_or_conv(model, name, "bit allocation")
        if not bool(torch.isfinite(module.weight).all()):
            raise ValueError(f"layer {name!r}: its weight contains NaN or inf entries; pass a "
                             "model with finite weights (or leave the layer out with layers=)")
        modules[name] = module
    return modules


def check_allowed(allowed: Mapping[str, Collection[str]] | None, option_names: Sequence[str],
                  layer_names: Sequence[str]) -> dict[str, Collection[str]]:
    """``allowed`` (option name -> the layers that may take it) as a dict, checked."""
    allowed = dict(allowed or {})
    for option_name, where in allowed.items():
        if option_name not in option_names:
            raise ValueError(f"allowed names option {option_name!r}, not one of "
                             f"{tuple(option_names)}")
        unknown = set(where) - set(layer_names)
        if unknown:
            raise ValueError(f"allowed[{option_name!r}] names unknown layers {sorted(unknown)}")
    return allowed


def tie_indices(ties, layer_names: Sequence[str]) -> list[tuple[int, ...]]:
    """``ties`` (groups of layer names) as groups of layer indices, checked."""
    index = {name: i for i, name in enumerate(layer_names)}
    example = "e.g. ties=[('q', 'k', 'v')]"
    if isinstance(ties, str | bytes) or not isinstance(ties, Iterable):
        raise TypeError(f"ties must be a sequence of groups of layer names, {example}; got "
                        f"{ties!r}")
    tie_sets = []
    for i, tie in enumerate(ties):
        if isinstance(tie, str | bytes) or not isinstance(tie, Iterable):
            raise TypeError(f"ties[{i}] must be a tuple of layer names, {example}; got {tie!r}")
        tie = tuple(tie)
        unknown = [n for n in tie if n not in index]
        if unknown:
            raise ValueError(f"tie {tie} names unknown layer {unknown[0]!r}")
        tie_sets.append(tuple(index[n] for n in tie))
    return tie_sets


def calibration_batches(calibration) -> list[tuple[Tensor, Tensor | None]]:
    """A tensor of inputs, an (inputs, targets) pair, or an iterable of either -> [(x, y)],
    checked: torch tensors, non-empty batches, finite floating-point values; [] for None."""
    if calibration is None:
        return []
    if isinstance(calibration, Tensor):
        items = [calibration]
    elif (isinstance(calibration, tuple | list) and len(calibration) == 2
            and all(isinstance(t, Tensor) for t in calibration) and calibration[0].dim() > 0
            and calibration[0].shape[:1] == calibration[1].shape[:1]):
        items = [tuple(calibration)]
    else:
        items = None
        if not isinstance(calibration, np.ndarray | str | bytes | Mapping):
            try:
                items = list(calibration)
            except TypeError:  # not iterable
                pass
        if items is None:
            hint = (": convert it with torch.from_numpy(x).float()"
                    if isinstance(calibration, np.ndarray) else "")
            raise TypeError(f"calibration must be {_CALIBRATION_FORMS}; got "
                            f"{type(calibration).__module__}.{type(calibration).__name__}{hint}")
    if not items:
        raise ValueError(f"calibration is empty; pass {_CALIBRATION_FORMS} (or calibration=None "
                         'with sensitivity="none")')
    return [_check_batch(i, item) for i, item in enumerate(items)]


def _check_batch(i: int, item) -> tuple[Tensor, Tensor | None]:
    """One calibration batch as (x, y), checked (see :func:`calibration_batches`)."""
    if isinstance(item, Tensor):
        x, y = item, None
    elif isinstance(item, tuple | list) and len(item) >= 2:  # (inputs, targets, ...)
        x, y = item[0], item[1]
    else:
        raise TypeError(f"calibration batch {i} must be a tensor of inputs or an (inputs, "
                        f"targets) pair; got {type(item).__name__}")
    for what, t in (("inputs", x), ("targets", y)):
        if t is None and what == "targets":
            continue
        if not isinstance(t, Tensor):
            hint = (": convert it with torch.from_numpy(...)" if isinstance(t, np.ndarray)
                    else "")
            raise TypeError(f"calibration batch {i}: the {what} must be a torch.Tensor; got "
                            f"{type(t).__module__}.{type(t).__name__}{hint}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"calibration batch {i}: the {what} contain NaN or inf entries; "
                             "pass finite calibration data")
    if x.dim() == 0 or x.numel() == 0:
        raise ValueError(f"calibration batch {i}: the inputs are empty (shape {tuple(x.shape)}); "
                         "pass at least one sample (N >= 1)")
    if y is not None and (y.dim() == 0 or y.shape[0] != x.shape[0]):
        raise ValueError(f"calibration batch {i}: {tuple(y.shape)} targets for "
                         f"{x.shape[0]} inputs; pass one target per input")
    return x, y


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
