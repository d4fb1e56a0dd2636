"""Compression methods that reuse spr's MILP layer: DenseShift, binary networks, ICQuant,
bit allocation. Each arrives with its own issue; this package is the place they land.

Public API:
    allocate_bits                   one quantizer option per layer under a bit budget (knapsack)
    AllocationPlan                  its result: per-layer option, bits, distortion; apply, to_dict
    AverageBits, TotalBits          the budget: bits per weight on average, or in total
    QuantizerOption                 the protocol options implement: name, quantize(W), bits(W)
    UniformQuant, Float16, Pruned   built-in options
"""

from compress_extras._allocation import AllocationPlan, AverageBits, TotalBits, allocate_bits
from compress_extras._options import Float16, Pruned, QuantizerOption, UniformQuant

__all__ = [
    "AllocationPlan",
    "AverageBits",
    "Float16",
    "Pruned",
    "QuantizerOption",
    "TotalBits",
    "UniformQuant",
    "allocate_bits",
]
