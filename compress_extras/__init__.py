"""Compression methods that reuse spr's MILP layer: bit allocation, ICQuant, DenseShift and
binary networks. Each method lives in its subpackage; the names most users need are here.

Public API:
    allocate_bits                   one quantizer option per layer under a bit budget (knapsack)
    AllocationPlan                  its result: per-layer option, bits, distortion; apply,
                                    with_budget (re-solve for another budget), to_dict
    AverageBits, TotalBits          the budget: bits per weight on average, or in total
    QuantizerOption                 the protocol options implement: name, quantize(W), bits(W)
    UniformQuant, Float16, Pruned   built-in options
  ICQuant, index-coded outlier-aware low-bit weights (compress_extras.icquant):
    ICQuantizer, ICQuantized        code a weight (bits, outlier ratio, "rtn" | "lloyd"); the
                                    coded tensor: dequantize, bits counted from its bytes
    ICQuantOption, icquant_model    the option for allocate_bits; quantize a model in place
                                    with a (bits x outlier ratio) plan under an average budget
  DenseShift, zero-free power-of-two weights (compress_extras.shift):
    DenseShiftConv2d, DenseShiftLinear  drop-in layers: sign + nested-gate latents, sqrt(p+1) STE
    to_denseshift, export_denseshift    convert a model (first conv and classifier stay float);
                                    packed (sign, exponent) codes + scales
    ShiftQuant                      the power-of-two projection as an option (zero_code=True:
                                    the conventional shift network's level set)
  binary networks (compress_extras.binary):
    BinaryViT, BinaryViTConfig      the binary ViT with the four switches of its ablation
    BinaryQuant, binarize           the 1-bit option; swap a plan's binary layers in
  language-model data and metrics for the ICQuant experiments: compress_extras.llm
"""

from compress_extras._allocation import AllocationPlan, AverageBits, TotalBits, allocate_bits
from compress_extras._options import Float16, Pruned, QuantizerOption, UniformQuant
from compress_extras.binary import BinaryQuant, BinaryViT, BinaryViTConfig, binarize
from compress_extras.icquant import ICQuantized, ICQuantizer, ICQuantOption, icquant_model
from compress_extras.shift import (
    DenseShiftConv2d,
    DenseShiftLinear,
    ShiftQuant,
    export_denseshift,
    to_denseshift,
)

__all__ = [
    "AllocationPlan",
    "AverageBits",
    "BinaryQuant",
    "BinaryViT",
    "BinaryViTConfig",
    "DenseShiftConv2d",
    "DenseShiftLinear",
    "Float16",
    "ICQuantOption",
    "ICQuantized",
    "ICQuantizer",
    "Pruned",
    "QuantizerOption",
    "ShiftQuant",
    "TotalBits",
    "UniformQuant",
    "allocate_bits",
    "binarize",
    "export_denseshift",
    "icquant_model",
    "to_denseshift",
]
