"""Physical removal of dead channels with Torch-Pruning's dependency graph.

A channel is *dead* when every layer that writes it produces exactly zero there: a conv or
Linear output row with zero weights and zero bias, a BatchNorm channel with zero scale and shift,
a :class:`spr.models.PadShortcut` output that copies no input. Torch-Pruning's dependency graph
groups the channels that must go together — a conv filter with its BatchNorm channel and the
next layers' input channels (the classifier's input columns included), and, through residual
additions, every branch that writes the same channel of the residual stream — and a group's
channel is removed only when it is dead in *every* layer of the group. Removing a channel that
is identically zero does not change the function, so the pruned network computes the same
outputs; :func:`remove_pruned` checks this on the example inputs before it returns.

Exact for activations that map 0 to 0 (ReLU, GELU, SiLU, tanh, ...); the output check catches
the rest (a sigmoid after a dead channel emits 0.5, which the next layer does see).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence

import torch
import torch_pruning as tp
from torch import Tensor, nn

from mip._deprecation import warn_deprecated
from spr._groups import _CONVS, _NORMS
from spr.models import PadShortcut


class PruningError(ValueError):
    """The model cannot be pruned as asked (untraceable, or the check of the outputs failed)."""


class _PadShortcutPruner(tp.pruner.BasePruningFunc):
    """Torch-Pruning handler for :class:`PadShortcut`: edits its channel map ``source``.

    Its input and output channels are independent (no intra-layer coupling): removing output
    channels drops entries of the map; removing input channel ``c`` turns the outputs that copied
    ``c`` into zero channels (exact, since a removed input was zero) and renumbers the rest.
    """

    TARGET_MODULES = (PadShortcut,)

    def prune_out_channels(self, layer: PadShortcut, idxs: Sequence[int]) -> PadShortcut:
        keep = torch.ones(layer.out_channels, dtype=torch.bool)
        keep[list(idxs)] = False
        layer.source = layer.source[keep]
        layer.out_channels = int(keep.sum())
        return layer

    def prune_in_channels(self, layer: PadShortcut, idxs: Sequence[int]) -> PadShortcut:
        keep = torch.ones(layer.in_channels, dtype=torch.bool)
        keep[list(idxs)] = False
        renumber = torch.full((layer.in_channels,), -1, dtype=torch.long)
        renumber[keep] = torch.arange(int(keep.sum()))
        source = layer.source
        layer.source = torch.where(source >= 0, renumber[source.clamp(min=0)], source)
        layer.in_channels = int(keep.sum())
        return layer

    def get_out_channels(self, layer: PadShortcut) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: PadShortcut) -> int:
        return layer.in_channels


CUSTOM_PRUNERS: dict[type, tp.pruner.BasePruningFunc] = {PadShortcut: _PadShortcutPruner()}


def _rows_zero(*tensors: Tensor | None) -> Tensor:
    """Per leading index: True where every given tensor's row is exactly zero."""
    present = [t for t in tensors if t is not None]
    zero = torch.ones(present[0].shape[0], dtype=torch.bool, device=present[0].device)
    for t in present:
        zero &= (t.detach().reshape(t.shape[0], -1) == 0).all(dim=1)
    return zero.cpu()


def _zero_output_channels(module: nn.Module) -> Tensor | None:
    """Which output channels ``module`` writes as exactly zero; None: not known (assume alive).

    Parameter-free modules (activations, Torch-Pruning's graph operators) return None too, but
    they are not *writers* of a channel and are skipped by the caller.
    """
    if isinstance(module, (*_CONVS, nn.Linear)):
        return _rows_zero(module.weight, module.bias)
    if isinstance(module, _NORMS):
        if not module.affine:  # (x - mean) / std is not zero for a zero input
            return torch.zeros(module.num_features, dtype=torch.bool)
        return _rows_zero(module.weight, module.bias)
    if isinstance(module, PadShortcut):
        return (module.source < 0).cpu()
    return None


def _writes_channels(module: object) -> bool:
    """Whether ``module`` can put a value into the channel (activations and graph ops cannot)."""
    if isinstance(module, nn.Parameter):  # a bare parameter Torch-Pruning found in the graph
        return True
    if not isinstance(module, nn.Module) or type(module).__module__.startswith("torch_pruning"):
        return False
    if isinstance(module, (*_CONVS, nn.Linear, *_NORMS, PadShortcut)):
        return True
    # Anything else with state (LayerNorm, GroupNorm, PReLU, custom layers) may write a non-zero
    # value: _zero_output_channels says None for it, so its channels count as alive.
    return any(True for _ in module.parameters(recurse=False))


def dead_channels(group: tp.dependency.Group, graph: tp.DependencyGraph) -> list[int]:
    """Root indices of ``group`` that every writer of the group produces as exactly zero."""
    n = len(group[0].root_idxs)
    dead = torch.ones(n, dtype=torch.bool)
    position = {root: k for k, root in enumerate(group[0].root_idxs)}
    for item in group:
        dep, idxs, roots = item.dep, item.idxs, item.root_idxs
        if not graph.is_out_channel_pruning_fn(dep.handler):
            continue
        module = dep.target.module
        if not _writes_channels(module):
            continue
        zero = _zero_output_channels(module)
        for idx, root in zip(idxs, roots, strict=True):
            if zero is None or not bool(zero[idx]):
                dead[position[root]] = False
    return [int(group[0].root_idxs[k]) for k in torch.nonzero(dead).flatten()]


def _type_name(value: object) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _not_a_tensor(name: str, value: object, what: str = "a torch.Tensor") -> TypeError:
    numpy = type(value).__module__.split(".")[0] == "numpy"
    hint = "; convert it with torch.from_numpy(...)" if numpy else ""
    return TypeError(f"{name} must be {what}; got a {_type_name(value)}{hint}")


def _as_tuple(example_inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    """The example inputs as a tuple of finite tensors, or a clear error (before any work)."""
    if isinstance(example_inputs, Tensor):
        inputs: tuple = (example_inputs,)
        names = ["example_inputs"]
    elif isinstance(example_inputs, (tuple, list)):
        inputs = tuple(example_inputs)
        names = [f"example_inputs[{i}]" for i in range(len(inputs))]
        if not inputs:
            raise ValueError("example_inputs is empty: pass a batch the model's forward accepts")
    else:  # a numpy array is a sequence too, but iterating it would pass its rows as arguments
        raise _not_a_tensor("example_inputs", example_inputs, "a torch.Tensor or a tuple of them")
    for name, value in zip(names, inputs, strict=True):
        if not isinstance(value, Tensor):
            raise _not_a_tensor(name, value)
        if value.is_floating_point() or value.is_complex():
            if not bool(torch.isfinite(value).all()):
                raise ValueError(
                    f"{name} has NaN or infinite entries: the check of the outputs needs "
                    "finite example inputs"
                )
    return inputs


def _check_atol(atol: object) -> float:
    if isinstance(atol, bool) or not isinstance(atol, numbers.Real):
        raise ValueError(f"atol must be a finite float >= 0; got {atol!r}")
    if not math.isfinite(atol) or atol < 0:
        raise ValueError(f"atol must be a finite float >= 0; got {atol!r}")
    return float(atol)


def _check_finite_state(model: nn.Module) -> None:
    """Refuse NaN or infinite parameters and floating buffers, naming the first one: with them
    the outputs of the check are NaN and the fault would be blamed on the pruning."""
    for kind, named in (("parameter", model.named_parameters), ("buffer", model.named_buffers)):
        for name, tensor in named():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor.detach())).sum())
                raise PruningError(
                    f"{kind} {name!r} has NaN or infinite entries ({bad} of {tensor.numel()}); "
                    "remove_pruned needs finite weights (retrain or restore the model)"
                )


def _excluded_names(model: nn.Module, exclude: Sequence[nn.Module | str],
                    keyword: str = "exclude") -> list[str]:
    """The names in ``model`` of ``exclude`` (modules of the model or their names), or a clear
    error naming ``keyword``."""
    if not isinstance(exclude, (tuple, list, nn.ModuleList)):
        raise TypeError(
            f"{keyword} must be a list or tuple of modules of the model (or their names); got a "
            f"{_type_name(exclude)}"
        )
    names = {id(module): name for name, module in model.named_modules(remove_duplicate=False)}
    known = set(names.values())
    out = []
    for i, layer in enumerate(exclude):
        if isinstance(layer, str):
            if layer not in known:
                raise ValueError(f"{keyword}[{i}]: the model has no submodule named {layer!r}")
            out.append(layer)
            continue
        if not isinstance(layer, nn.Module):
            raise TypeError(
                f"{keyword}[{i}] must be a torch.nn.Module of the model or its name; got a "
                f"{_type_name(layer)}"
            )
        if id(layer) not in names:
            raise ValueError(
                f"{keyword}[{i}] ({type(layer).__name__}) is not a submodule of the model"
            )
        out.append(names[id(layer)])
    return out


@torch.no_grad()
def _outputs(model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
    was_training = model.training
    model.eval()
    try:
        return model(*inputs)
    finally:
        model.train(was_training)


def _output_layers(model: nn.Module) -> list[nn.Module]:
    """The classifier keeps its outputs: the last Linear, if any."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1:]


def remove_pruned(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    *,
    inplace: bool = False,
    exclude: Sequence[nn.Module | str] = (),
    atol: float = 1e-5,
    ignored_layers: Sequence[nn.Module] | None = None,
) -> nn.Module:
    """Physically remove every dead channel of ``model``; return the smaller network.

    Args:
        model: the network with dead groups zeroed (e.g. after the structural decision).
        example_inputs: a batch the model's ``forward`` accepts (a tensor or a tuple of them);
            used to trace the graph and to check the result.
        inplace: edit ``model`` itself; by default a deep copy is pruned and ``model`` is kept.
        exclude: layers (modules or their names) whose output channels must stay (the last
            ``nn.Linear``, the classifier, is always kept); ``exclude`` as everywhere in spr.
        ignored_layers: the deprecated spelling of ``exclude`` (a DeprecationWarning).
        atol: the largest tolerated deviation of the pruned model's outputs (eval mode) from the
            original's, relative to the largest output magnitude.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``example_inputs`` not a tensor or a
            tuple of tensors (a numpy array, say), ``exclude`` not modules or names.
        ValueError: ``atol`` is not a finite float >= 0, ``example_inputs`` is empty or not
            finite, an ignored layer is not a submodule of ``model``.
        PruningError: a parameter or buffer has NaN or infinite entries (named), Torch-Pruning
            cannot trace the model, or the outputs changed by more than ``atol`` (a
            non-zero-preserving layer after a dead channel); the input model is untouched
            either way unless ``inplace``, and all the checks above run before any change.

    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
    ...                     nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    >>> with torch.no_grad():
    ...     for p in (net[0].weight[1], net[0].bias[1:2], net[1].weight[1:2], net[1].bias[1:2]):
    ...         _ = p.zero_()
    >>> small = remove_pruned(net, torch.randn(2, 1, 8, 8))
    >>> small[0].out_channels, small[4].in_features, net[0].out_channels
    (3, 108, 4)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got a {_type_name(model)}")
    inputs = _as_tuple(example_inputs)
    atol = _check_atol(atol)
    keyword = "exclude"
    if ignored_layers is not None:
        warn_deprecated("remove_pruned(ignored_layers=...)", "exclude=...")
        if exclude:
            raise ValueError("pass exclude or its deprecated spelling ignored_layers, not both")
        exclude, keyword = ignored_layers, "ignored_layers"
    ignored_names = _excluded_names(model, exclude, keyword)
    _check_finite_state(model)
    target = model if inplace else copy.deepcopy(model)
    # by name: on the deep copy, the caller's modules are not the ones being pruned
    ignored = [target.get_submodule(name) for name in ignored_names]
    try:
        before = _outputs(target, inputs)
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(
                target, example_inputs=inputs if len(inputs) > 1 else inputs[0],
                customized_pruners=CUSTOM_PRUNERS,
            )
    except Exception as err:  # Torch-Pruning raises whatever the traced forward raises
        raise PruningError(
            f"Torch-Pruning could not trace {type(model).__name__}: {type(err).__name__}: {err}. "
            "Pass example_inputs that the model's forward accepts; a forward with data-dependent "
            "control flow cannot be traced (prune such a model's blocks separately)."
        ) from err
    keep = [*_output_layers(target), *ignored]
    roots = (*_CONVS, nn.Linear, PadShortcut)
    while True:  # removing a channel can kill another (a shortcut that copied it): repeat
        plans = []
        for group in graph.get_all_groups(ignored_layers=keep, root_module_types=roots):
            dead = dead_channels(group, graph)
            if len(dead) == len(group[0].root_idxs):
                dead = dead[1:]  # a layer needs a channel; the one kept stays zero
            if dead:
                root = group[0].dep
                plans.append((root.target.module, root.handler, dead))
        if not plans:
            break
        # Groups partition the channels, so each plan's indices stay valid while the others
        # are carried out (they change other layers' input channels only).
        for module, handler, dead in plans:
            graph.get_pruning_group(module, handler, dead).prune()
    after = _outputs(target, inputs)
    scale = before.abs().max().clamp(min=1.0)
    deviation = float((after - before).abs().max() / scale) if after.shape == before.shape else 1.0
    if not deviation <= atol:
        raise PruningError(
            f"the pruned model's outputs differ from the original's by {deviation:.3g} (relative; "
            f"atol={atol:g}): a layer after a zeroed channel does not map 0 to 0. "
            + ("inplace=True: the model was edited" if inplace else "The model is unchanged.")
        )
    return target


def layer_widths(model: nn.Module) -> dict[str, int]:
    """Output width of every conv and Linear, by module name (the per-layer table of a run)."""
    widths = {}
    for name, module in model.named_modules():
        if isinstance(module, _CONVS):
            widths[name] = module.out_channels
        elif isinstance(module, nn.Linear):
            widths[name] = module.out_features
    return widths
