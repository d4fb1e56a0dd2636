"""BinaryViT (Le & Li, CVPRW 2023): a binary vision transformer with four CNN-like switches.

Every linear inside the blocks is a :class:`BinaryLinear` (binary weights and ±1 inputs with an
RSign ``move``) wrapped in its own shortcut, Bi-Real/ReActNet style::

    q = RPReLU(BN(BinLinear_q(x̂)) + x̂)          (k, v likewise, from pooled x̂ in a pyramid)
    A = softmax(sign(q + m_q) sign(k + m_k)^T / sqrt(d_head))     per head
    A_b = alpha * clamp(round(A / alpha), 0, 1)                    values in {0, alpha}
    c = BN(A_b sign(v + m_v)) + q + k + v        (k, v nearest-upsampled back when pooled)
    attn(x̂) = BN(BinLinear_o(c)) + c
    x = x + LS1(attn(BN1(x))) [+ sum_b LS_b(AvgPool_b(BN1(x)))]
    u = RPReLU(BN(BinLinear_up(x̂2)) + concat_r(x̂2)),   x̂2 = BN2(x)
    x = x + LS2(BN(BinLinear_down(u)) + AvgPool_r over channels(u))

with BatchNorm (:class:`BatchNormT`) in place of LayerNorm, a float patch-embedding stem and a
float head (BN + Linear). The switches of :class:`BinaryViTConfig`:

- ``gap``: the head reads the mean of the tokens instead of a class token;
- ``multi_branch``: the ``[...]`` term above, avg-pool branches 3x1, 1x3, 5x1, 1x5 (stride 1,
  same padding) with LayerScales initialised to zero (alpha = beta = 0: inert at init);
- ``affine``: ``LS1``, ``LS2`` are LayerScales ``alpha ⊙ x + beta`` (alpha = 0.1, beta = 0);
  off, they are the identity;
- ``pyramid``: stages of widths ``dims`` with K/V average-pooled by ``sr_ratios`` and, between
  stages, :class:`BinaryPatchEmbed` (binary 2x2 stride-2 conv concatenated with a 2x2 avg-pool of
  its input); off, one stage of width ``embed_dim`` and ``depth`` blocks (DeiT-style).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compress_extras.binary._layers import (
    BatchNormT,
    BinaryConv2d,
    BinaryLinear,
    LayerScale,
    RPReLU,
    RSign,
)
from compress_extras.binary._quantizers import binarize_attention

__all__ = ["BinaryMatMul", "BinaryPatchEmbed", "BinaryViT", "BinaryViTConfig"]

BRANCH_KERNELS = ((3, 1), (1, 3), (5, 1), (1, 5))


@dataclass(frozen=True)
class BinaryViTConfig:
    """Architecture of a :class:`BinaryViT` (module docstring); round-trips via ``to_dict``.

    Attributes:
        image_size, in_channels, num_classes, patch_size: input (B, in_channels, S, S), the
            float stem's patch (stride = kernel = patch_size) and the classes.
        embed_dim, depth, num_heads: the single stage when ``pyramid`` is off.
        dims, depths, heads, sr_ratios: the stages when ``pyramid`` is on (widths increasing;
            the token grid halves per stage; K/V pooled by ``sr_ratios[s]``).
        mlp_ratio: FFN hidden width = mlp_ratio * dim (an integer, for the channel shortcuts).
        gap, multi_branch, affine, pyramid: the four switches.
        attn_alpha_init, layerscale_init: alpha of the attention binarizer and of ``affine``.

    >>> cfg = BinaryViTConfig(pyramid=False, gap=False)
    >>> BinaryViTConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    image_size: int = 32
    in_channels: int = 1
    num_classes: int = 10
    patch_size: int = 4
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 2
    dims: tuple[int, ...] = (16, 32, 64, 128)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    heads: tuple[int, ...] = (1, 2, 4, 8)
    sr_ratios: tuple[int, ...] = (4, 2, 1, 1)
    mlp_ratio: int = 4
    gap: bool = True
    multi_branch: bool = True
    affine: bool = True
    pyramid: bool = True
    attn_alpha_init: float = 0.005
    layerscale_init: float = 0.1

    def __post_init__(self) -> None:
        for name in ("dims", "depths", "heads", "sr_ratios"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size "
                             f"{self.patch_size}; pad the input or change patch_size")
        if self.mlp_ratio < 1:
            raise ValueError(f"mlp_ratio must be an integer >= 1; got {self.mlp_ratio}")
        grid = self.image_size // self.patch_size
        if not self.pyramid:
            if self.depth < 1 or self.embed_dim % self.num_heads:
                raise ValueError(f"embed_dim {self.embed_dim} must be divisible by num_heads "
                                 f"{self.num_heads}, and depth >= 1 (got {self.depth})")
            return
        n = len(self.dims)
        if not n or any(len(getattr(self, k)) != n for k in ("depths", "heads", "sr_ratios")):
            raise ValueError("dims, depths, heads and sr_ratios need one entry per stage; got "
                             f"{self.dims}, {self.depths}, {self.heads}, {self.sr_ratios}")
        for s, (d, h) in enumerate(zip(self.dims, self.heads, strict=True)):
            if h < 1 or d % h:
                raise ValueError(f"stage {s}: dims[{s}] = {d} must be divisible by heads[{s}] "
                                 f"= {h}")
        if any(b <= a for a, b in zip(self.dims, self.dims[1:], strict=False)):
            raise ValueError(f"dims must increase stage to stage (the patch merge concatenates "
                             f"a pooled shortcut); got {self.dims}")
        if min(self.depths) < 1 or grid % 2 ** (n - 1):
            raise ValueError(f"the {grid}x{grid} token grid must halve {n - 1} times and every "
                             f"depth be >= 1; change image_size/patch_size or the stages")
        for s, r in enumerate(self.sr_ratios):
            if r < 1 or (grid >> s) % r:
                raise ValueError(f"stage {s}: sr_ratios[{s}] = {r} must divide its "
                                 f"{grid >> s}x{grid >> s} grid")
        if not self.gap:
            raise ValueError("pyramid=True needs gap=True (no class token in the pyramid)")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> BinaryViTConfig:
        return cls(**data)


class BinaryMatMul(nn.Module):
    """``a @ b`` for binarized operands (a module so hooks can see and count it as BOPs)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


class _Shortcut(nn.Module):
    """``act(BN(BinaryLinear(x)) + x)`` with act = RPReLU or identity."""

    def __init__(self, dim: int, rprelu: bool) -> None:
        super().__init__()
        self.linear = BinaryLinear(dim, dim, bias=False, move=True)
        self.bn = BatchNormT(dim)
        self.act = RPReLU(dim) if rprelu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.linear(x)) + x)


def _grid(tokens: Tensor, hw: tuple[int, int]) -> Tensor:
    B, _, C = tokens.shape
    return tokens.transpose(1, 2).reshape(B, C, *hw)


def _tokens(grid: Tensor) -> Tensor:
    return grid.flatten(2).transpose(1, 2)


class BinaryAttention(nn.Module):
    """Binary multi-head self-attention with per-op shortcuts; (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, alpha_init: float) -> None:
        super().__init__()
        self.heads, self.sr_ratio = heads, sr_ratio
        self.q, self.k, self.v = (_Shortcut(dim, True) for _ in range(3))
        self.sign_q, self.sign_k, self.sign_v = (RSign(dim) for _ in range(3))
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.scores, self.context = BinaryMatMul(), BinaryMatMul()
        self.bn_context = BatchNormT(dim)
        self.out = _Shortcut(dim, False)

    def _split(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        return x.reshape(B, N, self.heads, C // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        B, N, C = x.shape
        kv = x if self.sr_ratio == 1 else _tokens(F.avg_pool2d(_grid(x, hw), self.sr_ratio))
        q, k, v = self.q(x), self.k(kv), self.v(kv)
        scores = self.scores(self._split(self.sign_q(q)), self._split(self.sign_k(k)).mT)
        A = torch.softmax(scores / math.sqrt(C // self.heads), dim=-1)
        A_b = binarize_attention(A, self.alpha)
        context = self.context(A_b, self._split(self.sign_v(v))).transpose(1, 2).reshape(B, N, C)
        if self.sr_ratio > 1:
            small = (hw[0] // self.sr_ratio, hw[1] // self.sr_ratio)
            k, v = (_tokens(F.interpolate(_grid(t, small), size=hw, mode="nearest"))
                    for t in (k, v))
        context = self.bn_context(context) + q + k + v
        return self.out(context)


class BinaryViTBlock(nn.Module):
    """One block (module docstring); x (B, N, C) with ``n_extra`` leading class tokens."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, config: BinaryViTConfig) -> None:
        super().__init__()
        r = config.mlp_ratio
        self.ratio = r
        self.norm1 = BatchNormT(dim)
        self.attn = BinaryAttention(dim, heads, sr_ratio, config.attn_alpha_init)
        self.ls1 = LayerScale(dim, config.layerscale_init) if config.affine else nn.Identity()
        self.ls2 = LayerScale(dim, config.layerscale_init) if config.affine else nn.Identity()
        self.branch_scales = (nn.ModuleList(LayerScale(dim, 0.0) for _ in BRANCH_KERNELS)
                              if config.multi_branch else None)
        self.norm2 = BatchNormT(dim)
        self.up = BinaryLinear(dim, r * dim, bias=False, move=True)
        self.bn_up = BatchNormT(r * dim)
        self.act_up = RPReLU(r * dim)
        self.down = BinaryLinear(r * dim, dim, bias=False, move=True)
        self.bn_down = BatchNormT(dim)

    def forward(self, x: Tensor, hw: tuple[int, int], n_extra: int = 0) -> Tensor:
        h = self.norm1(x)
        out = x + self.ls1(self.attn(h, hw))
        if self.branch_scales is not None:
            grid = _grid(h[:, n_extra:], hw)
            branches = sum(
                scale(_tokens(F.avg_pool2d(grid, k, 1, (k[0] // 2, k[1] // 2))))
                for k, scale in zip(BRANCH_KERNELS, self.branch_scales, strict=True))
            out = out + F.pad(branches, (0, 0, n_extra, 0))
        h = self.norm2(out)
        u = self.act_up(self.bn_up(self.up(h)) + h.repeat(1, 1, self.ratio))
        B, N, _ = u.shape
        d = self.bn_down(self.down(u)) + u.reshape(B, N, -1, self.ratio).mean(-1)
        return out + self.ls2(d)


class BinaryPatchEmbed(nn.Module):
    """Stage transition: ``concat(BN(BinConv2x2/2(x)), AvgPool2x2(x))``; (B, C, H, W) ->
    (B, C_out, H/2, W/2) with C_out > C."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = BinaryConv2d(c_in, c_out - c_in, 2, 2, bias=False, move=True)
        self.bn = nn.BatchNorm2d(c_out - c_in)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.bn(self.conv(x)), F.avg_pool2d(x, 2)], dim=1)


class BinaryViT(nn.Module):
    """BinaryViT: (B, in_channels, S, S) -> logits (B, num_classes). See the module docstring.

    >>> model = BinaryViT(BinaryViTConfig())          # the tiny pyramid, 32x32, 1 channel
    >>> model(torch.randn(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, config: BinaryViTConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or BinaryViTConfig()
        self.grid = c.image_size // c.patch_size
        if c.pyramid:
            dims, depths, heads, srs = c.dims, c.depths, c.heads, c.sr_ratios
        else:
            dims, depths, heads, srs = (c.embed_dim,), (c.depth,), (c.num_heads,), (1,)
        self.n_extra = 0 if c.gap else 1
        self.stem = nn.Conv2d(c.in_channels, dims[0], c.patch_size, c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims[0])) if not c.gap else None
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.grid**2 + self.n_extra, dims[0]))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.merges = nn.ModuleList(
            BinaryPatchEmbed(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.stages = nn.ModuleList(
            nn.ModuleList(BinaryViTBlock(d, h, r, c) for _ in range(n))
            for d, n, h, r in zip(dims, depths, heads, srs, strict=True))
        self.norm = BatchNormT(dims[-1])
        self.head = nn.Linear(dims[-1], c.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        c = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"BinaryViT expects (B, {c.in_channels}, {c.image_size}, "
                             f"{c.image_size}); got {tuple(x.shape)} (pad or resize the input)")
        x = _tokens(self.stem(x))
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = x + self.pos_embed
        hw = (self.grid, self.grid)
        for s, blocks in enumerate(self.stages):
            if s > 0:
                x = _tokens(self.merges[s - 1](_grid(x, hw)))
                hw = (hw[0] // 2, hw[1] // 2)
            for block in blocks:
                x = block(x, hw, self.n_extra)
        feature = x.mean(1) if c.gap else x[:, 0]
        return self.head(self.norm(feature))
