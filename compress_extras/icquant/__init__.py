"""ICQuant: outlier-aware low-bit weights whose outlier positions are index-coded (Li et al., 2025).

Public API:
    ICQuantizer            settings (bits, outlier_ratio, quantizer "rtn"|"asym"|"lloyd",
                           group_size, index_bits); .quantize(W) -> ICQuantized
    ICQuantized            the coded tensor: .dequantize(device), .bits_per_weight,
                           .index_bits_per_weight, .to_bytes() / ICQuantized.from_bytes()
    ICQuantOption          the same as a bit-allocation option (bits counted from the bytes)
    icquant_model          quantize a model in place with a (bits x outlier ratio) plan
    CorruptStreamError     a truncated or corrupted ICQuant byte stream (a ValueError)
  the pieces, pure functions:
    gap_codes, decode_gap_codes, decode_gap_codes_torch   the escape-coded gap index and back
    expected_index_cost    C(gamma, B) = gamma B / (1 - (1-gamma)^(2^B-1)) bits per weight
    binary_entropy         H(gamma), the floor of any position code
    pack_bits, unpack_bits, unpack_bits_torch             dense fixed-width code packing
    MinMaxRTN, SignMagnitudeRTN, Lloyd, QUANTIZERS        the scalar quantizers per group
"""

from compress_extras._bitpack import pack_bits, unpack_bits, unpack_bits_torch
from compress_extras.icquant._format import CorruptStreamError
from compress_extras.icquant._index import (
    binary_entropy,
    decode_gap_codes,
    decode_gap_codes_torch,
    expected_index_cost,
    gap_codes,
)
from compress_extras.icquant._option import ICQuantOption, icquant_model
from compress_extras.icquant._quantizer import ICQuantized, ICQuantizer
from compress_extras.icquant._scalar import QUANTIZERS, Lloyd, MinMaxRTN, SignMagnitudeRTN

__all__ = [
    "QUANTIZERS",
    "CorruptStreamError",
    "ICQuantOption",
    "ICQuantized",
    "ICQuantizer",
    "Lloyd",
    "MinMaxRTN",
    "SignMagnitudeRTN",
    "binary_entropy",
    "decode_gap_codes",
    "decode_gap_codes_torch",
    "expected_index_cost",
    "gap_codes",
    "icquant_model",
    "pack_bits",
    "unpack_bits",
    "unpack_bits_torch",
]
