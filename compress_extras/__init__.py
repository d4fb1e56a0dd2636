"""Compression methods that reuse spr's MILP layer: bit allocation, ICQuant, DenseShift and
binary networks. Each method lives in its subpackage; the names most users need are here.

Public API:
    allocate_bits                   one quantizer option per layer under a bit budget (knapsack)
    AllocationPlan                  its result: per-layer option, bits, distortion; apply,
                                    with_budget (re-solve for another budget), to_dict
    AverageBits, TotalBits          the budget: bits per weight on average, or in total
    QuantizerOption                 the protocol options implement: name, quantize(W),
                                    storage_bits(W); an option's code width is .bits
    SENSITIVITIES, Sensitivity,     how allocate_bits measures distortion ("output", "fisher",
      register_sensitivity          "hessian", "none"); add one by registering it
    UniformQuant, Float16, Pruned   built-in options (UniformQuant: float minimum, no exact zero)
    AsymmetricRTN                   the textbook grid: integer zero point, an exact zero level
  error compensation (GPTQ) on the layer's input statistics:
    gptq_quantize, gptq_layer       quantize column by column, later columns compensating
    hessian_from_statistics         H from spr's InputStatistics (the layer MIP's statistics)
    ColumnQuantizer                 how one column is rounded; adapters AsymmetricColumns,
                                    UniformColumns, LloydColumns, ShiftColumns, ICQuantColumns
    weighted_lloyd                  sensitivity-weighted (Fisher-diagonal) Lloyd codebooks;
                                    under GPTQ: LloydColumns(b, sensitivity=...) or
                                    LloydColumns.weighted_by(b, H)
    Compensation                    GPTQ settings; allocate_bits(..., compensate=Compensation())
                                    measures and applies every option after compensation
    register_adapter                let another option type be compensated
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
from compress_extras._asymmetric import AsymmetricRTN
from compress_extras._compensation import Compensation, register_adapter
from compress_extras._gptq import (
    AsymmetricColumns,
    ColumnQuantizer,
    ICQuantColumns,
    LloydColumns,
    ShiftColumns,
    UniformColumns,
    gptq_layer,
    gptq_quantize,
    hessian_from_statistics,
)
from compress_extras._options import Float16, Pruned, QuantizerOption, UniformQuant
from compress_extras._sensitivities import SENSITIVITIES, Sensitivity, register_sensitivity
from compress_extras._weighted_lloyd import weighted_lloyd
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
    "SENSITIVITIES",
    "Sensitivity",
    "register_sensitivity",
    "AllocationPlan",
    "AsymmetricColumns",
    "AsymmetricRTN",
    "ColumnQuantizer",
    "Compensation",
    "ICQuantColumns",
    "LloydColumns",
    "ShiftColumns",
    "UniformColumns",
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
    "gptq_layer",
    "gptq_quantize",
    "hessian_from_statistics",
    "icquant_model",
    "register_adapter",
    "to_denseshift",
    "weighted_lloyd",
]
