"""Bit allocation: one quantizer option per layer under a bit budget, as a multiple-choice knapsack.

For layers ``l`` (every Linear and Conv2d by default) and options ``k`` (quantizers implementing
:class:`compress_extras.QuantizerOption`) the allocator measures a distortion ``c[l, k]`` and a size
``s[l, k] = option_k.bits(W_l)`` (bits, overhead included) and solves::

    min  sum_l c[l, choice_l]   s.t.  sum_l s[l, choice_l] <= budget,  tied layers share an option

with :func:`mip.solve_knapsack` (Pyomo + HiGHS; exact, with bound and gap). The distortion of
``W_hat = Q_k(W)`` with ``D = W_hat - W`` is, by ``sensitivity``:

- ``"output"`` (default): the output error on calibration inputs, ``||X W^T - X W_hat^T||_F^2 =
  tr(D G D^T)`` with ``G = X^T X`` accumulated by forward hooks (X the layer's inputs, flattened to
  (N, in); for a conv the unfolded patches (N*L, in/groups*kh*kw) per channel group, padded as the
  layer pads -- the GPTQ objective; rows and sums by ``spr._input_statistics.InputStatistics``,
  shared with ``spr.solve_mip``);
- ``"fisher"``: ``sum_i F_ii D_i^2`` with the empirical Fisher diagonal ``F = mean_n (grad l_n)^2``
  from per-sample gradients of the calibration loss (elementwise, so it also suits row groups);
- ``"hessian"``: ``(Tr(H_l) / n_l) ||D||^2`` (HAWQ-V2/V3), the trace of the layer's Hessian block
  estimated by Hutchinson's method ``Tr(H_ll) = E[v_l^T (H v)_l]`` with Rademacher probes v over all
  layers at once (cross terms have mean 0), a few probes, clipped below at 1e-12 of the largest;
- ``"none"``: the plain squared weight error ``||D||^2`` (n_l times the weight MSE, so layers add).

The budget is :class:`AverageBits` (bits per weight over the allocated layers' weights; biases stay
in float and are not counted) or :class:`TotalBits`. A budget below what the cheapest options need
raises ValueError naming that minimum.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn
from tqdm.auto import tqdm

from compress_extras._options import QuantizerOption
from spr._input_statistics import InputStatistics

if TYPE_CHECKING:
    from compress_extras._compensation import Compensation

__all__ = ["AllocationPlan", "AverageBits", "TotalBits", "allocate_bits"]

SENSITIVITIES = ("output", "fisher", "hessian", "none")


@dataclass(frozen=True)
class AverageBits:
    """Budget: at most ``bits`` bits per weight on average over the allocated layers."""

    bits: float

    def total(self, n_weights: int) -> float:
        return float(self.bits) * n_weights


@dataclass(frozen=True)
class TotalBits:
    """Budget: at most ``bits`` bits for the allocated layers' weights in all."""

    bits: float

    def total(self, n_weights: int) -> float:
        return float(self.bits)


@dataclass(frozen=True, eq=False)
class AllocationPlan:
    """Which option each layer takes, what it costs, and the solver's certificate.

    Attributes:
        layers: (L,) module names.
        options: (L,) the chosen option's name per layer.
        quantizers: (L,) the chosen option objects (``apply`` uses them).
        layer_bits: (L,) bits of each layer at its option.
        layer_weights: (L,) weights per layer.
        layer_distortion: (L,) predicted distortion per layer at its option.
        total_bits, average_bits: ``sum(layer_bits)`` and that over ``sum(layer_weights)``.
        budget_bits: the budget in bits.
        predicted_distortion: ``sum(layer_distortion)``, the knapsack objective.
        sensitivity: how distortion was measured.
        option_names: (K,) every option offered.
        cost: (L, K) distortion of every (layer, option), ``inf`` where not allowed.
        size: (L, K) bits of every (layer, option).
        solver: ``{"objective", "bound", "gap", "status", "seconds", "method"}``.
        option_objects: (K,) every option offered; ties: tied layers, as index tuples.
        compensation: the GPTQ settings when the costs were measured after error compensation
            (``allocate_bits(..., compensate=Compensation())``), else None; hessians: (L,) the
            layers' input Gram matrices (d, d) float32 it compensates with (``apply`` again).

    ``with_budget(budget)`` re-solves the knapsack on the measured ``cost`` and ``size`` for
    another budget (no re-measurement), e.g. to trace distortion against bits.

    ``apply(model)`` writes the dequantized weights into ``model`` in place; ``to_dict()`` is
    JSON-ready (``to_json()`` writes it).
    """

    layers: tuple[str, ...]
    options: tuple[str, ...]
    quantizers: tuple[QuantizerOption, ...]
    layer_bits: tuple[float, ...]
    layer_weights: tuple[int, ...]
    layer_distortion: tuple[float, ...]
    total_bits: float
    average_bits: float
    budget_bits: float
    predicted_distortion: float
    sensitivity: str
    option_names: tuple[str, ...]
    cost: NDArray[np.float64]
    size: NDArray[np.float64]
    solver: dict = field(default_factory=dict)
    option_objects: tuple[QuantizerOption, ...] = ()
    ties: tuple[tuple[int, ...], ...] = ()
    compensation: Compensation | None = None
    hessians: tuple[Tensor, ...] = field(default=(), repr=False)

    def distortion_of(self, choice: Sequence[int] | Sequence[str]) -> float:
        """Predicted distortion of another allocation (option indices or names per layer), e.g.
        the uniform one, to compare with ``predicted_distortion``."""
        index = [self.option_names.index(k) if isinstance(k, str) else int(k) for k in choice]
        return math.fsum(float(self.cost[i, k]) for i, k in enumerate(index))

    def bits_of(self, choice: Sequence[int] | Sequence[str]) -> float:
        """Total bits of another allocation (option indices or names per layer)."""
        index = [self.option_names.index(k) if isinstance(k, str) else int(k) for k in choice]
        return math.fsum(float(self.size[i, k]) for i, k in enumerate(index))

    def with_budget(self, budget: AverageBits | TotalBits, time_limit: float = 60.0,
                    mip_gap: float = 1e-6) -> AllocationPlan:
        """The plan for ``budget`` over the same measured options (module docstring)."""
        if not isinstance(budget, AverageBits | TotalBits):
            raise TypeError(f"budget must be AverageBits or TotalBits; got {budget!r}")
        if len(self.option_objects) != len(self.option_names):
            raise ValueError("this plan does not carry its options; build it with allocate_bits")
        return _solve(self.layers, self.option_objects, np.asarray(self.cost),
                      np.asarray(self.size), list(self.layer_weights), self.ties, budget,
                      self.sensitivity, time_limit, mip_gap, self.compensation, self.hessians)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> nn.Module:
        """Replace each planned layer's weight by its option's dequantized weight, in place
        (with :attr:`compensation`, the compensated one the costs were measured on)."""
        for i, (name, quantizer) in enumerate(zip(self.layers, self.quantizers, strict=True)):
            weight = model.get_submodule(name).weight
            W_hat = self._quantized(i, quantizer, weight)
            if W_hat.shape != weight.shape:
                raise ValueError(f"{quantizer.name} returned shape {tuple(W_hat.shape)} for "
                                 f"{name}'s weight {tuple(weight.shape)}")
            weight.copy_(W_hat)
        return model

    def _quantized(self, i: int, option: QuantizerOption, W: Tensor) -> Tensor:
        if self.compensation is None:
            return option.quantize(W)
        from compress_extras._compensation import compensated_weight

        return compensated_weight(option, W, self.hessians[i], self.compensation)

    def to_dict(self) -> dict:
        return {
            "layers": [
                {"name": n, "option": o, "bits": b, "weights": w, "distortion": d,
                 "quantizer": repr(q)}
                for n, o, b, w, d, q in zip(self.layers, self.options, self.layer_bits,
                                            self.layer_weights, self.layer_distortion,
                                            self.quantizers, strict=True)
            ],
            "total_bits": self.total_bits, "average_bits": self.average_bits,
            "budget_bits": self.budget_bits, "predicted_distortion": self.predicted_distortion,
            "sensitivity": self.sensitivity, "option_names": list(self.option_names),
            "cost": [[_json_float(v) for v in row] for row in self.cost],
            "size": self.size.tolist(), "solver": dict(self.solver),
            "compensation": None if self.compensation is None else dataclasses.asdict(
                self.compensation),
        }

    def to_json(self, path=None, indent: int = 2) -> str:
        """The plan as JSON text (``inf`` written as null); also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from pathlib import Path

            Path(path).write_text(text)
        return text


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def default_layers(model: nn.Module) -> list[str]:
    """Names of every nn.Linear and nn.Conv2d in ``model`` (named_modules order)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


_CALIBRATION_FORMS = ("a tensor of inputs (N, ...), an (inputs, targets) pair of tensors, or an "
                      "iterable of such batches")


def _batches(calibration) -> list[tuple[Tensor, Tensor | None]]:
    """A tensor of inputs, an (inputs, targets) pair, or an iterable of either -> [(x, y)],
    checked: torch tensors, non-empty batches, finite floating-point values (TypeError or
    ValueError naming ``calibration`` and what to pass)."""
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
    """One calibration batch as (x, y), checked (see :func:`_batches`)."""
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


def _check_ties(ties, index: Mapping[str, int]) -> list[tuple[int, ...]]:
    """``ties`` (groups of layer names) as groups of layer indices, checked."""
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


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class _GramHook:
    """Accumulates ``G = X^T X`` (groups, d, d) in float64 of a layer's input rows: a Linear's
    inputs, or a conv's unfolded patches per channel group (:mod:`spr._input_statistics`)."""

    def __init__(self, name: str, module: nn.Linear | nn.Conv2d) -> None:
        self.name, self.module = name, module
        self.statistics = InputStatistics(module, chunk_size=None)

    @property
    def gram(self) -> Tensor | None:
        return self.statistics.gram

    def __call__(self, module: nn.Module, inputs: tuple) -> None:
        try:
            self.statistics.update(inputs[0])
        except ValueError as err:
            raise ValueError(f"layer {self.name!r}: its calibration inputs: {err}") from None


def output_distortion(module: nn.Module, gram: Tensor, W_hat: Tensor) -> float:
    """``||X W^T - X W_hat^T||^2`` from the Gram matrix of the inputs (module docstring).

    Args:
        module: the nn.Linear or nn.Conv2d (its weight is W).
        gram: (groups, d, d) from the forward hooks; groups = 1 for a Linear.
        W_hat: the quantized weight, shaped like W.
    """
    D = (W_hat.detach().double() - module.weight.detach().double())
    groups = gram.shape[0]
    D = D.reshape(groups, D.shape[0] // groups, -1)  # (groups, out/groups, d)
    return float(torch.einsum("god,gde,goe->", D, gram.to(D.device), D))


def _with_grad(params: list[Tensor]):
    """Context: the parameters require grad (restored afterwards)."""

    class _Ctx:
        def __enter__(self):
            self.saved = [p.requires_grad for p in params]
            for p in params:
                p.requires_grad_(True)

        def __exit__(self, *exc):
            for p, flag in zip(params, self.saved, strict=True):
                p.requires_grad_(flag)

    return _Ctx()


def hutchinson_trace(
    model: nn.Module, params: list[Tensor], batches: list[tuple[Tensor, Tensor]],
    loss: Callable[[Tensor, Tensor], Tensor], probes: int = 8, seed: int = 0,
    progress: bool = False,
) -> NDArray[np.float64]:
    """(len(params),) Hutchinson estimates of ``Tr(H_pp)``, the Hessian block of each parameter,
    of the calibration loss (the batches' losses weighted by their sizes, i.e. the mean loss).

    ``v`` is Rademacher over all parameters at once; ``(H v)_p`` by double backward;
    ``v_p^T (Hv)_p`` has mean ``Tr(H_pp)`` since ``E[v_p v_q^T] = 0`` for p != q."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    total = sum(len(x) for x, _ in batches)
    traces = np.zeros(len(params))
    with _with_grad(params), torch.enable_grad():
        for _ in tqdm(range(probes), desc="Hutchinson probes", disable=not progress,
                      leave=False):
            vs = [(torch.randint(0, 2, p.shape, generator=generator) * 2.0 - 1.0)
                  .to(p.device, p.dtype) for p in params]
            hv = [torch.zeros_like(p) for p in params]
            for x, y in batches:
                value = loss(model(x), y) * (len(x) / total)
                grads = torch.autograd.grad(value, params, create_graph=True)
                dot = sum((g * v).sum() for g, v in zip(grads, vs, strict=True))
                for acc, h in zip(hv, torch.autograd.grad(dot, params), strict=True):
                    acc += h
            traces += [float((v * h).sum()) for v, h in zip(vs, hv, strict=True)]
    return traces / probes


def fisher_diagonal(
    model: nn.Module, params: list[Tensor], batches: list[tuple[Tensor, Tensor]],
    loss: Callable[[Tensor, Tensor], Tensor], max_samples: int = 256, progress: bool = False,
) -> list[Tensor]:
    """Empirical Fisher diagonal ``mean_n (d l(x_n, y_n) / d p)^2`` per parameter, from per-sample
    gradients of the first ``max_samples`` calibration samples."""
    fisher = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    samples = list(itertools.islice(
        ((x[i:i + 1], y[i:i + 1]) for x, y in batches for i in range(len(x))), max_samples))
    with _with_grad(params), torch.enable_grad():
        for x, y in tqdm(samples, desc="Fisher samples", disable=not progress, leave=False):
            grads = torch.autograd.grad(loss(model(x), y), params)
            for acc, g in zip(fisher, grads, strict=True):
                acc += g.double() ** 2
    return [f / len(samples) for f in fisher]


def allocate_bits(
    model: nn.Module,
    options: Sequence[QuantizerOption],
    budget: AverageBits | TotalBits,
    sensitivity: str = "output",
    calibration=None,
    ties: Iterable[Sequence[str]] = (),
    layers: Sequence[str] | None = None,
    *,
    allowed: Mapping[str, Collection[str]] | None = None,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    probes: int = 8,
    fisher_samples: int = 256,
    seed: int = 0,
    time_limit: float = 60.0,
    mip_gap: float = 1e-6,
    compensate: Compensation | None = None,
    progress: bool = True,
) -> AllocationPlan:
    """Choose one option per layer minimising the predicted distortion within ``budget``.

    Args:
        model: the trained network (left unchanged; ``plan.apply(model)`` quantizes it).
        options: K quantizer options with distinct names (:class:`UniformQuant`, :class:`Float16`,
            :class:`Pruned`, or any :class:`QuantizerOption`).
        budget: :class:`AverageBits` (per weight of the allocated layers) or :class:`TotalBits`.
        sensitivity: ``"output"``, ``"fisher"``, ``"hessian"`` or ``"none"`` (module docstring).
        calibration: model inputs (N, ...) for ``"output"``; ``(inputs, targets)`` for
            ``"fisher"`` and ``"hessian"``; or an iterable of such batches.
        ties: tuples of layer names that must take the same option (e.g. Q/K/V).
        layers: module names to allocate; default every nn.Linear and nn.Conv2d.
        allowed: option name -> the layers that may take it (an option not named here is allowed
            everywhere), e.g. ``{"pruned": ["fc2"]}`` where SPR may remove the layer.
        loss: ``loss(outputs, targets)`` for fisher/hessian; default cross-entropy.
        probes: Hutchinson probes (``"hessian"``).
        fisher_samples: calibration samples whose gradients form the Fisher diagonal.
        seed: seed of the Hutchinson probes.
        time_limit, mip_gap: passed to :func:`mip.solve_knapsack`.
        compensate: measure (and ``plan.apply``) every option after GPTQ error compensation
            with these settings (:mod:`compress_extras._compensation`: the option's grid and
            storage, its weights rounded column by column on the layer's input Gram matrix);
            needs ``sensitivity="output"``. None: every option rounds on its own.
        progress: show tqdm bars over calibration and the (layer, option) distortions.

    Returns:
        An :class:`AllocationPlan`; ``plan.total_bits <= plan.budget_bits``.

    Raises:
        ValueError: bad arguments, or a budget below the least the options allow (the message
            names that minimum in bits and in bits per weight).

    >>> torch.manual_seed(0) is not None
    True
    >>> net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    >>> from compress_extras import UniformQuant, Float16
    >>> plan = allocate_bits(net, [UniformQuant(2), UniformQuant(4), Float16()],
    ...                      AverageBits(4.0), calibration=torch.randn(64, 16), progress=False)
    >>> plan.layers, plan.total_bits <= plan.budget_bits, plan.solver["status"]
    (('0', '2'), True, 'optimal')
    """
    if sensitivity not in SENSITIVITIES:
        raise ValueError(f"sensitivity must be one of {SENSITIVITIES}; got {sensitivity!r}")
    if compensate is not None:
        from compress_extras._compensation import Compensation, as_hessian, compensated_weight

        if not isinstance(compensate, Compensation):
            raise TypeError(f"compensate must be a Compensation(...) or None; got {compensate!r}")
        if sensitivity != "output":
            raise ValueError(f'compensate needs sensitivity="output" (the layers\' input Gram '
                             f"matrices); got sensitivity={sensitivity!r}")
    if not isinstance(budget, AverageBits | TotalBits):
        raise TypeError(f"budget must be AverageBits(bits per weight) or TotalBits(bits); got "
                        f"{budget!r}")
    options = tuple(options)
    if not options:
        raise ValueError("options must name at least one quantizer option")
    for option in options:
        if not isinstance(option, QuantizerOption):
            raise TypeError(f"{option!r} does not implement QuantizerOption "
                            "(name, quantize(W), bits(W))")
    names = tuple(option.name for option in options)
    if len(set(names)) != len(names):
        raise ValueError(f"option names must be distinct; got {names}")
    if isinstance(layers, str | bytes):
        raise TypeError(f"layers must be a sequence of module names, e.g. layers=['fc1', 'fc2']; "
                        f"got the string {layers!r}")
    layer_names = list(default_layers(model) if layers is None else layers)
    if not layer_names:
        raise ValueError("no layers to allocate (the model has no nn.Linear or nn.Conv2d)")
    if len(set(layer_names)) != len(layer_names):
        raise ValueError(f"layers must be distinct; got {layer_names}")
    modules = []
    for name in layer_names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"model has no layer named {name!r}") from None
        if not isinstance(module, nn.Linear | nn.Conv2d):
            raise ValueError(f"layer {name!r} is a {type(module).__name__}; bit allocation "
                             "handles nn.Linear and nn.Conv2d")
        if not bool(torch.isfinite(module.weight).all()):
            raise ValueError(f"layer {name!r}: its weight contains NaN or inf entries; pass a "
                             "model with finite weights (or leave the layer out with layers=)")
        modules.append(module)
    allowed = dict(allowed or {})
    for option_name, where in allowed.items():
        if option_name not in names:
            raise ValueError(f"allowed names option {option_name!r}, not one of {names}")
        unknown = set(where) - set(layer_names)
        if unknown:
            raise ValueError(f"allowed[{option_name!r}] names unknown layers {sorted(unknown)}")
    tie_sets = _check_ties(ties, {name: i for i, name in enumerate(layer_names)})
    batches = _batches(calibration)
    if sensitivity != "none" and not batches:
        raise ValueError(f'sensitivity="{sensitivity}" needs calibration data: pass '
                         "calibration=inputs (N, ...) of the model, or sensitivity=\"none\"")
    if sensitivity in ("fisher", "hessian") and any(y is None for _, y in batches):
        raise ValueError(f'sensitivity="{sensitivity}" needs calibration (inputs, targets) to '
                         "differentiate a loss")
    loss = F.cross_entropy if loss is None else loss
    device = _device(model)
    batches = [(x.to(device), None if y is None else y.to(device)) for x, y in batches]

    modes = [(m, m.training) for m in model.modules()]  # restored afterwards, module by module
    model.eval()
    try:
        weights = [m.weight.detach() for m in modules]
        scale = _sensitivity(model, layer_names, modules, batches, sensitivity, loss, probes,
                             fisher_samples, seed, progress)
        hessians = () if compensate is None else tuple(
            as_hessian(gram, name) for gram, name in zip(scale, layer_names, strict=True))
        L, K = len(modules), len(options)
        cost = np.empty((L, K))
        size = np.empty((L, K))
        bar = tqdm(total=L * K, desc="distortion per (layer, option)", disable=not progress,
                   leave=False)
        with torch.no_grad():
            for i, (module, W) in enumerate(zip(modules, weights, strict=True)):
                for k, option in enumerate(options):
                    W_hat = option.quantize(W) if compensate is None else compensated_weight(
                        option, W, hessians[i], compensate)
                    size[i, k] = float(option.bits(W))
                    if sensitivity == "output":
                        cost[i, k] = output_distortion(module, scale[i], W_hat)
                    else:
                        D2 = (W_hat.double() - W.double()) ** 2
                        cost[i, k] = float((scale[i] * D2).sum())
                    bar.update(1)
        bar.close()
    finally:
        for m, mode in modes:
            m.training = mode

    available = np.ones((L, K), bool)
    for option_name, where in allowed.items():
        k = names.index(option_name)
        available[:, k] = [name in set(where) for name in layer_names]
    n_weights = [int(W.numel()) for W in weights]
    masked = np.where(available, cost, np.inf)
    return _solve(layer_names, options, masked, size, n_weights, tuple(tie_sets), budget,
                  sensitivity, time_limit, mip_gap, compensate, hessians)


def _solve(layer_names, options, cost, size, n_weights, ties, budget, sensitivity, time_limit,
           mip_gap, compensation=None, hessians=()) -> AllocationPlan:
    """The knapsack over measured ``cost`` (inf: not allowed) and ``size``, as a plan."""
    import mip

    names = tuple(option.name for option in options)
    budget_bits = budget.total(sum(n_weights))
    problem = mip.KnapsackProblem(np.where(np.isfinite(cost), cost, 0.0), size, budget_bits,
                                  available=np.isfinite(cost), ties=list(ties))
    try:
        problem.check_budgets()
    except ValueError:
        minimum = problem.min_budget
        raise ValueError(
            f"budget {budget} = {budget_bits!r} bits is below the minimum feasible budget "
            f"{minimum!r} bits ({minimum / sum(n_weights):.6g} bits per weight: every layer at "
            "its smallest allowed option)") from None
    result = mip.solve_knapsack(problem, time_limit=time_limit, mip_gap=mip_gap)
    choice = result.choice.tolist()
    layer_bits = tuple(float(size[i, k]) for i, k in enumerate(choice))
    layer_distortion = tuple(float(cost[i, k]) for i, k in enumerate(choice))
    cost, size = cost.copy(), size.copy()
    cost.setflags(write=False)
    size.setflags(write=False)
    return AllocationPlan(
        layers=tuple(layer_names), options=tuple(names[k] for k in choice),
        quantizers=tuple(options[k] for k in choice), layer_bits=layer_bits,
        layer_weights=tuple(n_weights), layer_distortion=layer_distortion,
        total_bits=result.size_used, average_bits=result.size_used / sum(n_weights),
        budget_bits=budget_bits, predicted_distortion=result.objective, sensitivity=sensitivity,
        option_names=names, cost=cost, size=size,
        solver={"objective": result.objective, "bound": result.bound, "gap": result.gap,
                "status": result.status, "seconds": result.seconds, "method": result.method},
        option_objects=tuple(options), ties=ties, compensation=compensation,
        hessians=hessians,
    )


def _sensitivity(model, names, modules, batches, sensitivity, loss, probes, fisher_samples,
                 seed, progress) -> list:
    """Per layer: the input Gram (``"output"``), the Fisher diagonal (``"fisher"``), the scalar
    ``Tr(H)/n`` (``"hessian"``) or 1 (``"none"``)."""
    if sensitivity == "none":
        return [1.0] * len(modules)
    if sensitivity == "output":
        hooks = [_GramHook(n, m) for n, m in zip(names, modules, strict=True)]
        handles = [m.register_forward_pre_hook(h) for m, h in zip(modules, hooks, strict=True)]
        try:
            with torch.no_grad():
                for x, _ in tqdm(batches, desc="calibration inputs", disable=not progress,
                                 leave=False):
                    model(x)
        finally:
            for handle in handles:
                handle.remove()
        missing = [i for i, h in enumerate(hooks) if h.gram is None]
        if missing:
            raise ValueError(f"layer {names[missing[0]]!r} never ran on the calibration inputs")
        return [h.gram for h in hooks]
    params = [m.weight for m in modules]
    if sensitivity == "fisher":
        return fisher_diagonal(model, params, batches, loss, fisher_samples, progress)
    traces = hutchinson_trace(model, params, batches, loss, probes, seed, progress)
    floor = 1e-12 * max(float(traces.max()), 1e-300)
    return [max(float(t), floor) / p.numel() for t, p in zip(traces, params, strict=True)]
