"""Which parameters form a group, and which groups form a block.

A *group* is one structural unit whose removal is one decision (a conv output filter together
with its BatchNorm scale and shift, a Linear output neuron, ...). A *block* is the set of groups
of one layer: a (G, n) matrix whose rows are the groups. Blocks are described here as a name and a
function returning the block's *parts*, (G, k_i) views of parameters whose column-wise
concatenation is the block matrix; the regularizer concatenates parts of many blocks at once.

Groupings (the ``groups=`` argument of :class:`spr.SPRegularizer`):

* ``"conv_bn"``: each output filter of every conv, its bias entry if any, and the weight and bias
  entries of the BatchNorm that directly consumes the conv's output;
* ``"conv"``: each output filter of every conv (with its bias entry if any);
* ``"linear"``: each output row of every ``nn.Linear`` (with its bias entry), the classifier
  excluded by default;
* a callable ``groups(model)`` that yields ``(name, tensor)`` pairs, each tensor of shape
  (G, ...) whose rows (flattened) are the groups, recomputed at every evaluation.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Parts = tuple[Tensor, ...]
BlockSource = Callable[[], list[tuple[str, Parts]]]
UserGroups = Callable[[nn.Module], Iterable[tuple[str, Tensor]]]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Block:
    """A layer's groups: ``torch.cat(parts(), dim=1)`` is the (G, n) block matrix."""

    name: str
    parts: Callable[[], Parts]


def _column(t: Tensor) -> Tensor:
    return t.unsqueeze(1)


def _row_parts(layer: nn.Module, bn: nn.Module | None) -> Callable[[], Parts]:
    """Output row j of a conv or Linear (weight, bias entry), with BatchNorm entry j if given."""

    def parts() -> Parts:
        out = [layer.weight.flatten(1)]
        if layer.bias is not None:
            out.append(_column(layer.bias))
        if bn is not None:
            out.extend(_column(p) for p in (bn.weight, bn.bias) if p is not None)
        return tuple(out)

    return parts


def _following_norms(model: nn.Module) -> dict[str, str]:
    """Map conv name -> name of the BatchNorm that directly consumes its output.

    Read from the ``torch.fx`` graph; for a model that fx cannot trace, from registration order
    (a BatchNorm registered right after a conv with matching channels), with a warning.
    """
    modules = dict(model.named_modules())
    pairs: dict[str, str] = {}
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as err:  # fx raises many types on dynamic control flow
        warnings.warn(
            f"torch.fx could not trace {type(model).__name__} ({type(err).__name__}); pairing each "
            "conv with the BatchNorm registered right after it",
            stacklevel=3,
        )
        names = list(modules)
        for prev, nxt in itertools.pairwise(names):
            conv, bn = modules[prev], modules[nxt]
            if isinstance(conv, _CONVS) and isinstance(bn, _NORMS) and bn.affine:
                if bn.num_features == conv.out_channels:
                    pairs[prev] = nxt
        return pairs
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _NORMS):
            continue
        source = node.args[0] if node.args else None
        if getattr(source, "op", None) == "call_module" and isinstance(
            modules.get(source.target), _CONVS
        ):
            bn, conv = modules[node.target], modules[source.target]
            if bn.affine and bn.num_features == conv.out_channels:
                pairs.setdefault(source.target, node.target)
    return pairs


def conv_bn_blocks(model: nn.Module, exclude: set[str]) -> list[Block]:
    norms = _following_norms(model)
    modules = dict(model.named_modules())
    return [
        Block(name, _row_parts(module, modules[norms[name]] if name in norms else None))
        for name, module in model.named_modules()
        if isinstance(module, _CONVS) and name not in exclude
    ]


def conv_blocks(model: nn.Module, exclude: set[str]) -> list[Block]:
    return [
        Block(name, _row_parts(module, None))
        for name, module in model.named_modules()
        if isinstance(module, _CONVS) and name not in exclude
    ]


def linear_blocks(model: nn.Module, exclude: set[str]) -> list[Block]:
    return [
        Block(name, _row_parts(module, None))
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name not in exclude
    ]


GROUPINGS: dict[str, Callable[[nn.Module, set[str]], list[Block]]] = {
    "conv_bn": conv_bn_blocks,
    "conv": conv_blocks,
    "linear": linear_blocks,
}


def unwrap(model: nn.Module) -> nn.Module:
    """The user's network inside DistributedDataParallel, DataParallel or torch.compile."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def default_exclude(model: nn.Module, groups: str | UserGroups) -> set[str]:
    """The classifier (last ``nn.Linear``) for ``groups="linear"``; nothing otherwise."""
    if groups != "linear":
        return set()
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return set(linears[-1:])


def resolve_exclude(model: nn.Module, exclude: Iterable[str | nn.Module]) -> set[str]:
    names = {id(module): name for name, module in model.named_modules()}
    out = set()
    for item in exclude:
        if isinstance(item, nn.Module):
            if id(item) not in names:
                raise ValueError(f"exclude: module {type(item).__name__} is not part of the model")
            out.add(names[id(item)])
        elif isinstance(item, str):
            if item not in dict(model.named_modules()):
                raise ValueError(f"exclude: the model has no submodule named {item!r}")
            out.add(item)
        else:
            raise ValueError(f"exclude takes module names or modules; got {item!r}")
    return out


def block_source(model: nn.Module, groups: str | UserGroups, exclude: set[str]) -> BlockSource:
    """A function returning the current ``[(block name, parts), ...]`` of ``model``."""
    if callable(groups):

        def from_user() -> list[tuple[str, Parts]]:
            out = []
            for name, tensor in groups(model):
                if not isinstance(tensor, Tensor) or tensor.dim() == 0:
                    raise ValueError(
                        f"groups callable: block {name!r} must be a tensor of shape (G, ...); "
                        f"got {getattr(tensor, 'shape', type(tensor).__name__)}"
                    )
                out.append((str(name), (tensor.reshape(tensor.shape[0], -1),)))
            return out

        return from_user
    if groups not in GROUPINGS:
        raise ValueError(
            f"groups must be one of {sorted(GROUPINGS)} or a callable yielding (name, tensor) "
            f"blocks; got {groups!r}"
        )
    blocks = GROUPINGS[groups](model, exclude)
    return lambda: [(block.name, block.parts()) for block in blocks]


def group_parts(
    model: nn.Module, groups: str | UserGroups = "conv_bn", exclude: Iterable | None = None
) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    """``[(block name, parts)]`` of ``model`` for a grouping, parts being (G, k) views.

    Writing into a part writes the parameter; a part that is a copy (a channels-last weight, a
    callable grouping that concatenates) would silently lose the writes, so it is refused.
    """
    model = unwrap(model)
    excluded = (
        default_exclude(model, groups) if exclude is None else resolve_exclude(model, exclude)
    )
    blocks = block_source(model, groups, excluded)()
    for name, parts in blocks:
        for p in parts:
            if not (isinstance(p, nn.Parameter) or p._is_view()):
                raise ValueError(
                    f"block {name!r}: a group part is a copy, not a view of the parameter, so it "
                    "cannot be edited in place (channels-last weights: convert the model with "
                    "memory_format=torch.contiguous_format; a groups callable must return views)"
                )
    return blocks
