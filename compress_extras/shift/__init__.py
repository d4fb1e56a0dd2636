"""DenseShift: zero-free N-bit power-of-two weights ``w = alpha_c * s * 2^(p - P)`` (Li et al.,
ICCV 2023), the conventional shift baseline with a zero code, and exponent-add inference.

Public API:
    DenseShiftConv2d, DenseShiftLinear  drop-in layers: sign + nested-gate latents, sqrt(p+1) STE,
                                        N(0, 1e-3^2) init, learnable per-channel alpha;
                                        .from_float, .codes, .export, .quantized_weight
    to_denseshift                       convert a model (first conv, classifier kept float),
                                        projecting trained weights; per-layer widths from a plan
    export_denseshift, shift_layers     packed (sign, exponent) codes + scales of every layer
    ShiftQuant                          the projection as a bit-allocation QuantizerOption
    levels, max_exponent, project_codes, fit_scale, dequantize
                                        level sets, nearest-level projection, scales
    encode, decode, pack_codes, unpack_codes  N-bit codes (sigma << (N-1)) | p, packed densely
    shift_weight, nested_exponent, init_latents, latents_from_codes, gate_count,
    exponent_probabilities              the sign-scale decomposition and its STE
    exponent_add, shift_linear, shift_conv2d  multiply by ±2^p on the exponent field (guarded),
                                        reference multiplication-free linear / conv
"""

from compress_extras.shift._convert import export_denseshift, shift_layers, to_denseshift
from compress_extras.shift._exponent_add import exponent_add, shift_conv2d, shift_linear
from compress_extras.shift._latent import (
    exponent_probabilities,
    gate_count,
    init_latents,
    latents_from_codes,
    nested_exponent,
    shift_weight,
)
from compress_extras.shift._layers import DenseShiftConv2d, DenseShiftLinear
from compress_extras.shift._levels import (
    decode,
    dequantize,
    encode,
    fit_scale,
    levels,
    max_exponent,
    pack_codes,
    project_codes,
    unpack_codes,
)
from compress_extras.shift._option import ShiftQuant

__all__ = [
    "DenseShiftConv2d",
    "DenseShiftLinear",
    "ShiftQuant",
    "decode",
    "dequantize",
    "encode",
    "exponent_add",
    "exponent_probabilities",
    "export_denseshift",
    "fit_scale",
    "gate_count",
    "init_latents",
    "latents_from_codes",
    "levels",
    "max_exponent",
    "nested_exponent",
    "pack_codes",
    "project_codes",
    "shift_conv2d",
    "shift_layers",
    "shift_linear",
    "shift_weight",
    "to_denseshift",
    "unpack_codes",
]
