"""The prunable units of a network for :func:`spr.prune_to_budget`: coupled channel groups.

Torch-Pruning's dependency graph groups the channels that must go together. A group is
*prunable* here when it is the plain case the layer MIP models exactly:

- one conv (``groups=1``) or Linear layer writes the channels (the *producer*), with the
  BatchNorm layers that normalise them;
- one conv (``groups=1``) or Linear layer reads them (the *consumer*): the layer MIP selects the
  consumer's input channels and refits its weights; a Linear consumer after a flatten reads
  ``columns`` consecutive inputs per channel (channel-major, as ``torch.flatten``);
- nothing else with parameters, and no channel re-indexing (concatenation, slicing) in between.

Every other group is *kept whole* (never pruned), with the reason: a residual stream (several
layers write the same channels through an addition, or a :class:`spr.models.PadShortcut` copies
them), a channel read by two layers, the classifier's outputs, a grouped conv. So in a ResNet the
prunable units are the channels inside each block, and each residual stream stays at full width.

>>> from spr.models import resnet20
>>> groups, kept = channel_groups(resnet20(in_channels=1), torch.zeros(1, 1, 28, 28))
>>> len(groups), groups[0].producer, groups[0].consumer, groups[0].channels, groups[0].columns
(9, 'layer1.0.conv1', 'layer1.0.conv2', 16, 9)
>>> kept[0].reason
'a residual stream: written by 4 layers and a shortcut'
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import Tensor, nn

from spr._groups import _NORMS
from spr._surgery import CUSTOM_PRUNERS, PruningError, _output_layers
from spr.models import PadShortcut

__all__ = ["ChannelGroup", "KeptWhole", "channel_groups"]

_LAYERS = (nn.Conv2d, nn.Linear)
_PASS_THROUGH = {tp.ops.OPTYPE.ELEMENTWISE, tp.ops.OPTYPE.RESHAPE}


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable unit: ``channels`` output channels of ``producer`` (with ``norms``), read
    by ``consumer`` as ``columns`` consecutive input columns each (kh*kw for a conv); ``after``
    is the BatchNorm that directly normalises the consumer's output, if any (its scale weights
    the reconstruction error of each output channel). Names are module names of the model."""

    producer: str
    norms: tuple[str, ...]
    consumer: str
    channels: int
    columns: int
    after: str | None = None

    @property
    def name(self) -> str:
        return self.producer


@dataclass(frozen=True)
class KeptWhole:
    """A group of channels that is never pruned: the layer writing it and why."""

    name: str
    channels: int
    reason: str


def _trace(model: nn.Module, example_inputs: tuple[Tensor, ...]) -> tp.DependencyGraph:
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=example_inputs if len(example_inputs) > 1
                else example_inputs[0], customized_pruners=CUSTOM_PRUNERS)
    except Exception as err:  # Torch-Pruning raises whatever the traced forward raises
        layer = _failing_layer(model, example_inputs)
        where = f" at layer {layer!r}" if layer else ""
        raise PruningError(
            f"Torch-Pruning could not trace {type(model).__name__}{where}: "
            f"{type(err).__name__}: {err}. Pass example inputs the model's forward accepts; a "
            "forward with data-dependent control flow cannot be traced."
        ) from err


def _failing_layer(model: nn.Module, example_inputs: tuple[Tensor, ...]) -> str | None:
    """The name of the innermost module whose forward raises on ``example_inputs``, if any."""
    failing: list[str] = []

    def hook(name):
        def record(module, args) -> None:
            failing.append(name)
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules() if n]
    done: list[str] = []
    post = [m.register_forward_hook(lambda mod, a, o, n=n: done.append(n) and None)
            for n, m in model.named_modules() if n]
    try:
        with torch.enable_grad():  # as Torch-Pruning traces: parameters carry gradients
            model(*example_inputs)
    except Exception:  # noqa: BLE001 - we only want to know where it failed
        open_ = [n for n in failing if n not in done]
        return open_[-1] if open_ else None
    finally:
        for h in (*handles, *post):
            h.remove()
    return None


def _next_norm(graph: tp.DependencyGraph, module: nn.Module, names: dict) -> str | None:
    outputs = [node.module for node in graph.module2node[module].outputs]
    if len(outputs) == 1 and isinstance(outputs[0], _NORMS):
        return names[outputs[0]]
    return None


def _classify(group, graph, names: dict, classifier: set) -> ChannelGroup | KeptWhole:
    n = len(group[0].root_idxs)
    root = names.get(group[0].dep.target.module, type(group[0].dep.target.module).__name__)
    producers, consumers, norms, obstacles, shortcut = [], [], [], [], False
    for item in group:
        dep = item.dep
        module = dep.target.module
        out = graph.is_out_channel_pruning_fn(dep.handler)
        if isinstance(module, _LAYERS):
            (producers if out else consumers).append((module, item))
        elif isinstance(module, _NORMS):
            norms.append(names[module])
        elif isinstance(module, PadShortcut):
            shortcut = True
        elif type(module).__module__.startswith("torch_pruning"):
            if dep.target.type not in _PASS_THROUGH:
                obstacles.append(f"channels re-indexed by a {dep.target.type.name} op")
        else:
            obstacles.append(f"passes through {type(module).__name__} {names.get(module)!r}")
    if len(producers) != 1 or shortcut:
        return KeptWhole(root, n, f"a residual stream: written by {len(producers)} layers"
                         + (" and a shortcut" if shortcut else ""))
    if obstacles:
        return KeptWhole(root, n, obstacles[0])
    if len({id(m) for m, _ in consumers}) != 1:
        return KeptWhole(root, n, f"read by {len(consumers)} layers")
    (producer, _), (consumer, item) = producers[0], consumers[0]
    if any(m in classifier for m, _ in producers):
        return KeptWhole(root, n, "the classifier's outputs")
    for layer in (producer, consumer):
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            return KeptWhole(root, n, f"grouped conv {names[layer]!r} (groups={layer.groups})")
    if isinstance(consumer, nn.Conv2d):
        columns = consumer.kernel_size[0] * consumer.kernel_size[1]
    else:
        columns = consumer.in_features // n
        expected = [r * columns + c for r in range(n) for c in range(columns)]
        order = sorted(zip(item.root_idxs, item.idxs, strict=True))
        if consumer.in_features != n * columns or [i for _, i in order] != expected:
            return KeptWhole(root, n, f"{names[consumer]!r} does not read the channels as "
                                      "consecutive blocks of inputs")
    return ChannelGroup(names[producer], tuple(norms), names[consumer], n, columns,
                        _next_norm(graph, consumer, names))


def channel_groups(
    model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...]
) -> tuple[list[ChannelGroup], list[KeptWhole]]:
    """The prunable channel groups of ``model`` in forward order (of their consumers), and the
    groups kept whole with the reason (module docstring). ``model`` is not modified (a copy is
    traced). Raises :class:`spr.PruningError` naming the layer where tracing fails."""
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    traced = copy.deepcopy(model).eval()
    graph = _trace(traced, inputs)
    names = {module: name for name, module in traced.named_modules()}
    classifier = set(_output_layers(traced))
    prunable, kept = [], []
    for group in graph.get_all_groups(ignored_layers=list(classifier), root_module_types=_LAYERS):
        found = _classify(group, graph, names, classifier)
        (prunable if isinstance(found, ChannelGroup) else kept).append(found)
    order = _forward_order(traced, inputs)
    prunable.sort(key=lambda g: order.get(g.consumer, len(order)))
    return prunable, kept


def _forward_order(model: nn.Module, inputs: tuple[Tensor, ...]) -> dict[str, int]:
    order: dict[str, int] = {}

    def hook(name):
        def record(module, args) -> None:  # a pre-hook that returns a value replaces the input
            order.setdefault(name, len(order))
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, _LAYERS)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return order
