"""Dense code packing: round trips at every width, the torch twin, sizes, bad input."""

import numpy as np
import pytest
import torch

from compress_extras._bitpack import packed_size
from compress_extras.icquant import pack_bits, unpack_bits, unpack_bits_torch


@pytest.mark.parametrize("width", [1, 2, 3, 5, 7, 8, 9, 13, 16, 24, 32])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 1001])
def test_round_trip_and_torch_twin(width, count):
    rng = np.random.default_rng(width * 1000 + count)
    codes = rng.integers(0, 2**width, count, dtype=np.int64)
    buffer = pack_bits(codes, width)
    assert len(buffer) == packed_size(count, width) == -(-count * width // 8)
    np.testing.assert_array_equal(unpack_bits(buffer, width, count), codes)
    as_tensor = torch.from_numpy(np.frombuffer(buffer, dtype=np.uint8).copy())
    assert unpack_bits_torch(as_tensor, width, count).tolist() == codes.tolist()


def test_bit_order_is_msb_first_without_gaps():
    # 3-bit codes 1, 2, 3 -> 001 010 011 (+ 7 zero bits of padding) -> 0b00101001, 0b10000000
    assert pack_bits(np.array([1, 2, 3]), 3) == bytes([0b00101001, 0b10000000])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="codes must lie"):
        pack_bits(np.array([4]), 2)
    with pytest.raises(ValueError, match="codes must lie"):
        pack_bits(np.array([-1]), 2)
    with pytest.raises(ValueError, match="width"):
        pack_bits(np.array([0]), 0)
    with pytest.raises(ValueError, match="truncated"):
        unpack_bits(pack_bits(np.arange(8), 3)[:-1], 3, 8)
    with pytest.raises(ValueError, match="truncated"):
        unpack_bits_torch(torch.zeros(2, dtype=torch.uint8), 3, 8)
