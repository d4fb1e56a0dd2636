"""Binary networks: BinaryViT (Le & Li, CVPRW 2023) and random bias initialization (Li & Partovi
Nia 2019), with the binary option for bit allocation.

Public API:
    binarize_weight        alpha_i * sign(W_i - rowmean) per row, clip straight-through estimator
    approx_sign            sign(x) in {-1, +1}, ApproxSign gradient max(0, 2 - 2|x|)
    binarize_attention     BiT elastic binarization alpha * clamp(round(A / alpha), 0, 1)
    sign_pm1               sign with sign(0) = +1
    BinaryLinear, BinaryConv2d   binary weights and (optionally) ±1 inputs; init_bias="zero" |
                           ("uniform", a) | ("normal", s); .binary_weight, .act (RSign)
    RSign, Move, RPReLU    learnable thresholds: sign(x + move), x + move, PReLU(x - mu1) + mu2
    LayerScale, BatchNormT alpha ⊙ x + beta; BatchNorm over the channels of (B, N, C) tokens
    init_bias_, parse_init_bias   random bias initialization, and its spec's validation
    BinaryViT, BinaryViTConfig    the model and its frozen config with the four switches
                           (gap, multi_branch, affine, pyramid)
    BinaryMatMul, BinaryPatchEmbed   the attention's binary matmuls; the pyramid's stage merge
    BinaryResNet, binary_resnet   ReActNet-style binary CIFAR ResNet (float stem and head)
    DistillationLoss       soft cross-entropy against float-teacher logits (KD)
    count_ops, OpsCount    params, BOPs, FLOPs and OPs = BOPs / 64 + FLOPs
    BinaryQuant            QuantizerOption for allocate_bits: 1 bit per weight + a scale per row
    binarize               swap chosen nn.Linear / nn.Conv2d (or an allocation plan's binary
                           layers) for binary ones, first and last kept float by default
    band_share, preactivations   share of |z| <= 1 (the straight-through band) per sample;
                           the binary layers' pre-activations by forward hooks
"""

from compress_extras.binary._distill import DistillationLoss
from compress_extras.binary._layers import (
    BatchNormT,
    BinaryConv2d,
    BinaryLinear,
    LayerScale,
    Move,
    RPReLU,
    RSign,
    init_bias_,
    parse_init_bias,
)
from compress_extras.binary._ops import OpsCount, count_ops
from compress_extras.binary._option import BinaryQuant, binarize
from compress_extras.binary._quantizers import (
    approx_sign,
    binarize_attention,
    binarize_weight,
    sign_pm1,
)
from compress_extras.binary._random_bias import band_share, preactivations
from compress_extras.binary._resnet import BinaryResNet, binary_resnet
from compress_extras.binary._vit import (
    BinaryMatMul,
    BinaryPatchEmbed,
    BinaryViT,
    BinaryViTConfig,
)

__all__ = [
    "BatchNormT",
    "BinaryConv2d",
    "BinaryLinear",
    "BinaryMatMul",
    "BinaryPatchEmbed",
    "BinaryQuant",
    "BinaryResNet",
    "BinaryViT",
    "BinaryViTConfig",
    "DistillationLoss",
    "LayerScale",
    "Move",
    "OpsCount",
    "RPReLU",
    "RSign",
    "approx_sign",
    "band_share",
    "binarize",
    "binarize_attention",
    "binarize_weight",
    "binary_resnet",
    "count_ops",
    "init_bias_",
    "parse_init_bias",
    "preactivations",
    "sign_pm1",
]
