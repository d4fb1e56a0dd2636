"""``SPRegularizer``: the Structured Perspective Regularizer as a loss term for a PyTorch model,
and :func:`reference_M`, the paper's big-M bounds from a trained dense model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from spr._checks import check_alpha, check_nonnegative, check_positive
from spr._closed_form import _spr_indicator
from spr._groups import (
    BlockSource,
    Parts,
    UserGroups,
    block_source,
    default_exclude,
    resolve_exclude,
    unwrap,
)
from spr._penalties import Penalty, spr_group_penalty

__all__ = ["SPRegularizer", "reference_M"]


def _block_matrix(parts: Parts) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _stack_blocks(blocks: list[Parts]) -> Tensor:
    """Rows of many blocks with the same part widths, as one (sum G, n) matrix."""
    if len(blocks) == 1:
        return _block_matrix(blocks[0])
    columns = [torch.cat([parts[i] for parts in blocks], dim=0) for i in range(len(blocks[0]))]
    return columns[0] if len(columns) == 1 else torch.cat(columns, dim=1)


def _check_finite_block(name: str, parts: Parts) -> None:
    if not all(bool(torch.isfinite(p).all()) for p in parts):
        raise ValueError(f"block {name!r} has NaN or infinite weights; SPR needs finite ones")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class SPRegularizer(nn.Module):
    """The SPR training penalty ``lam * (1/N) * sum_blocks w_b * n_b * sum_j SPR(G_j)``.

    ``G_j`` runs over the groups of block ``b`` (see :mod:`spr._groups` for the groupings),
    ``n_b`` is the block's group length and ``N = sum_b G_b * n_b`` the number of regularised
    entries; ``SPR`` is the closed form of :func:`spr.spr_penalty` with the block's big-M bound
    ``M_b`` (or another per-group ``penalty``, e.g. :func:`spr.group_lasso_penalty`). Calling
    the module returns a scalar to add to the training loss; it never touches ``.grad``. All
    blocks whose groups have the same layout are evaluated together, so one call costs a few
    kernels per distinct layer shape, with no Python loop over groups.

    Args:
        model: the network to regularise (read at every call, not registered as a submodule;
            a DistributedDataParallel, DataParallel or torch.compile wrapper is looked through).
        lam: overall strength, >= 0 (may be changed later through ``reg.lam``).
        alpha: in (0, 1); ridge weight ``a = alpha``, group-count weight ``b = 1 - alpha``.
        M: ``"auto"`` for ``M_b = M_scale * max |entry|`` of block b in ``reference`` (default:
            ``model`` as it is now); a float (inf allowed) for every block; or a dict
            ``{block name: float}`` covering every block.
        M_scale: factor of the ``"auto"`` bound, > 0.
        groups: ``"conv_bn"`` (default), ``"conv"``, ``"linear"``, or a callable
            ``groups(model)`` yielding ``(name, tensor)`` blocks of shape (G, ...).
        exclude: module names or modules to leave out; default: the last ``nn.Linear`` for
            ``groups="linear"`` (the classifier), nothing otherwise.
        reference: a model with the same block names to read ``M="auto"`` from.
        check_finite: after each evaluation check that the value is finite and, if not, raise
            ``ValueError`` naming the block (costs one device synchronisation on a GPU; skipped
            inside ``torch.compile``).
        block_weights: ``{block name: w_b > 0}`` multiplying each block's groups in the sum
            (default 1): e.g. MACs per entry from :func:`spr.mac_weights`, so that groups that
            cost more compute are pushed harder.
        penalty: the per-group function ``penalty(W, M, alpha) -> (G,)`` of the (G, n) matrix
            of a block's groups and their (G,) bounds (see :mod:`spr._penalties`); default
            :func:`spr.spr_group_penalty`. :func:`spr.GroupLassoRegularizer` passes
            :func:`spr.group_lasso_penalty`.

    Attributes:
        block_names_: the regularised blocks, in evaluation order.
        block_shapes_: ``{name: (G_b, n_b)}``.
        n_entries_: ``N``.
        M_: ``{name: M_b}``.
        block_weights_: ``{name: w_b}``.

    Example:
        >>> import torchvision
        >>> model = torchvision.models.resnet18(num_classes=10)
        >>> reg = SPRegularizer(model, lam=0.5, alpha=0.3)
        >>> loss = reg()                      # add to the task loss, then loss.backward()
        >>> loss.shape, len(reg.block_names_)
        (torch.Size([]), 20)
    """

    def __init__(
        self,
        model: nn.Module,
        lam: float,
        alpha: float,
        M: str | float | Mapping[str, float] = "auto",
        M_scale: float = 1.0,
        groups: str | UserGroups = "conv_bn",
        exclude: Iterable[str | nn.Module] | None = None,
        reference: nn.Module | None = None,
        check_finite: bool = True,
        block_weights: Mapping[str, float] | None = None,
        penalty: Penalty = spr_group_penalty,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module; got {type(model).__name__}")
        model = unwrap(model)
        self.lam = lam
        self.alpha = check_alpha(alpha)
        self.M_scale = check_positive("M_scale", M_scale)
        self.groups = groups
        self.check_finite = bool(check_finite)
        if not callable(penalty):
            raise ValueError(f"penalty must be a function (W, M, alpha) -> (G,); got {penalty!r}")
        self.penalty = penalty

        excluded = (
            default_exclude(model, groups) if exclude is None else resolve_exclude(model, exclude)
        )
        self._source: BlockSource = block_source(model, groups, excluded)
        blocks = self._source()
        if not blocks:
            raise ValueError(
                f"groups={groups!r} found no blocks in {type(model).__name__}: it has no "
                "layers of that kind outside `exclude`; choose another `groups` or pass a "
                "callable yielding (name, tensor) blocks"
            )
        names = [name for name, _ in blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"groups: block names must be unique; got {names}")
        for name, parts in blocks:
            _check_finite_block(name, parts)
        matrices = {name: _block_matrix(parts).detach() for name, parts in blocks}
        self.block_names_ = names
        self.block_shapes_ = {name: tuple(W.shape) for name, W in matrices.items()}
        self._part_shapes = {name: [tuple(p.shape) for p in parts] for name, parts in blocks}
        self.n_entries_ = sum(G * n for G, n in self.block_shapes_.values())

        if reference is not None:
            ref_blocks = dict(block_source(unwrap(reference), groups, excluded)())
            missing = [name for name in names if name not in ref_blocks]
            if missing:
                raise ValueError(f"reference: the reference model has no blocks named {missing}")
            ref_matrices = {name: _block_matrix(ref_blocks[name]).detach() for name in names}
        else:
            ref_matrices = matrices
        self.M_ = self._resolve_M(M, ref_matrices)
        self.block_weights_ = self._resolve_weights(block_weights)

        # Blocks with the same part layout are evaluated as one matrix.
        layout: dict[tuple, list[int]] = {}
        for i, (_, parts) in enumerate(blocks):
            key = (tuple(p.shape[1] for p in parts), parts[0].dtype, parts[0].device)
            layout.setdefault(key, []).append(i)
        self._buckets: list[tuple[list[str], int]] = []
        for index, ((widths, dtype, device), members) in enumerate(layout.items()):
            bucket_names = [names[i] for i in members]
            bound = torch.cat(
                [torch.full((self.block_shapes_[n][0],), self.M_[n]) for n in bucket_names]
            )
            self.register_buffer(f"M_bucket{index}", bound.to(device, _compute_dtype(dtype)))
            weight = torch.cat([
                torch.full((self.block_shapes_[n][0],), self.block_weights_[n])
                for n in bucket_names
            ])
            self.register_buffer(
                f"weight_bucket{index}", weight.to(device, _compute_dtype(dtype))
            )
            self._buckets.append((bucket_names, sum(widths)))

    @property
    def lam(self) -> float:
        return self._lam

    @lam.setter
    def lam(self, value: float) -> None:
        self._lam = check_nonnegative("lam", value)

    def _resolve_M(self, M, matrices: dict[str, Tensor]) -> dict[str, float]:
        if isinstance(M, str):
            if M != "auto":
                raise ValueError(f'M must be "auto", a float > 0 or a dict per block; got {M!r}')
            out = {}
            for name, W in matrices.items():
                peak = float(W.abs().max())
                if peak == 0:
                    raise ValueError(
                        f'M="auto": block {name!r} is all zero, so max |entry| gives no bound; '
                        "pass M as a float or a dict per block"
                    )
                out[name] = self.M_scale * peak
            return out
        if isinstance(M, Mapping):
            unknown = sorted(set(M) - set(matrices))
            missing = [name for name in matrices if name not in M]
            if unknown or missing:
                raise ValueError(
                    f"M: the dict must have one entry per block; unknown {unknown}, missing "
                    f"{missing}; blocks are {list(matrices)}"
                )
            return {
                name: check_positive(f"M[{name!r}]", M[name], allow_inf=True) for name in matrices
            }
        bound = check_positive("M", M, allow_inf=True)
        return dict.fromkeys(matrices, bound)

    def _resolve_weights(self, weights: Mapping[str, float] | None) -> dict[str, float]:
        if weights is None:
            return dict.fromkeys(self.block_names_, 1.0)
        unknown = sorted(set(weights) - set(self.block_names_))
        missing = [name for name in self.block_names_ if name not in weights]
        if unknown or missing:
            raise ValueError(
                f"block_weights: one entry per block; unknown {unknown}, missing {missing}"
            )
        return {n: check_positive(f"block_weights[{n!r}]", weights[n]) for n in self.block_names_}

    def _current_blocks(self) -> dict[str, Parts]:
        blocks = dict(self._source())
        if len(blocks) != len(self.block_names_) or any(n not in blocks for n in self.block_names_):
            raise ValueError(
                f"groups: the blocks changed since construction; expected {self.block_names_}, "
                f"got {list(blocks)}"
            )
        for name in self.block_names_:
            if [tuple(p.shape) for p in blocks[name]] != self._part_shapes[name]:
                self._raise_changed_shape(name, blocks[name])
        return blocks

    def _raise_changed_shape(self, name: str, parts: Parts) -> None:
        now = (int(parts[0].shape[0]), sum(int(p.shape[1]) for p in parts))
        raise ValueError(
            "the model changed shape since this SPRegularizer was built (pruned by "
            f"remove_pruned(inplace=True)?): block {name!r} was {self.block_shapes_[name]} "
            f"(groups, group length) and is now {now}; build a new SPRegularizer for the "
            "pruned model"
        )

    def _bucket_matrices(self):
        blocks = self._current_blocks()
        for index, (names, n) in enumerate(self._buckets):
            W = _stack_blocks([blocks[name] for name in names])
            yield names, n, W, getattr(self, f"M_bucket{index}")

    def forward(self) -> Tensor:
        """The scalar penalty; differentiable with respect to the model's parameters."""
        total = None
        for index, (_, n, W, bound) in enumerate(self._bucket_matrices()):
            weight = getattr(self, f"weight_bucket{index}")
            term = (self.penalty(W, bound, self.alpha) * weight).sum() * n
            total = term if total is None else total + term
        value = total * (self._lam / self.n_entries_)
        if self.check_finite and not torch.compiler.is_compiling():
            if not bool(torch.isfinite(value)):
                self._raise_non_finite()
        return value

    def _raise_non_finite(self) -> None:
        for name, parts in self._current_blocks().items():
            _check_finite_block(name, parts)
        raise ValueError(
            "the SPR value overflowed although every weight is finite: some block's weights are "
            "too large for their dtype (evaluate in float64 or rescale the model)"
        )

    @torch.no_grad()
    def indicators(self) -> dict[str, Tensor]:
        """``{block name: y*}``, each a detached (G_b,) tensor of the minimising indicators."""
        out: dict[str, Tensor] = {}
        for names, _, W, bound in self._bucket_matrices():
            y = _spr_indicator(W, self.alpha, bound)
            sizes = [self.block_shapes_[name][0] for name in names]
            out.update(zip(names, torch.split(y, sizes), strict=True))
        return {name: out[name] for name in self.block_names_}

    def extra_repr(self) -> str:
        M = set(self.M_.values())
        M_text = f"{M.pop():g}" if len(M) == 1 else "per block"
        penalty = ("" if self.penalty is spr_group_penalty
                   else f", penalty={getattr(self.penalty, '__name__', self.penalty)}")
        return (
            f"lam={self._lam:g}, alpha={self.alpha:g}, M={M_text}, groups={self.groups!r}, "
            f"blocks={len(self.block_names_)}, entries={self.n_entries_}{penalty}"
        )


def reference_M(
    model: nn.Module, groups: str | UserGroups = "conv_bn", M_scale: float = 1.0
) -> dict[str, float]:
    """``{block: M_scale * max |entry|}`` of a trained, unregularised model (the paper's M).

    The bounds :class:`SPRegularizer` takes as ``M`` for training another model with the same
    blocks from scratch (``M="auto"`` would read them from that model's initialisation).

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([3.0, -4.0]).view(2, 1, 1, 1))
    >>> reference_M(net, groups="conv", M_scale=2.0)
    {'0': 8.0}
    """
    return SPRegularizer(model, lam=0.0, alpha=0.5, M="auto", M_scale=M_scale, groups=groups).M_

