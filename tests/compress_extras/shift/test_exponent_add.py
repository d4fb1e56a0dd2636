"""The exponent-add product against ordinary multiplication, bit for bit, and the reference
multiplication-free linear / conv."""

import pytest
import torch
import torch.nn.functional as F

from compress_extras.shift import (
    DenseShiftConv2d,
    DenseShiftLinear,
    exponent_add,
    shift_conv2d,
    shift_linear,
)

INT = {torch.float32: torch.int32, torch.float16: torch.int16}


def same_bits(a, b):
    return torch.equal(a.view(INT[a.dtype]), b.view(INT[b.dtype]))


def ordinary(x, p, negate):
    factor = (torch.where(negate, -1.0, 1.0) * torch.exp2(p.double())).to(x.dtype)
    return x * factor


def normal_inputs(dtype, n, seed):
    """Signed normal floats whose products with 2^p, |p| <= 7, stay normal."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = (-6, 6) if dtype == torch.float16 else (-60, 60)
    mag = torch.exp2(torch.empty(n).uniform_(lo, hi, generator=gen))
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    return (sign * mag).to(dtype), gen


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_bit_exact_on_normal_inputs(dtype):
    x, gen = normal_inputs(dtype, 50_000, 0)
    p = torch.randint(-7, 8, x.shape, generator=gen)
    negate = torch.rand(x.shape, generator=gen) < 0.5
    assert same_bits(exponent_add(x, p, negate, guard=False), ordinary(x, p, negate))
    assert same_bits(exponent_add(x, p, negate, guard=True), ordinary(x, p, negate))


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_zeros_need_the_guard(dtype):
    x, gen = normal_inputs(dtype, 20_000, 1)
    x = torch.relu(x)  # about half zeros, like ReLU outputs
    p = torch.randint(-3, 4, x.shape, generator=gen)
    negate = torch.rand(x.shape, generator=gen) < 0.5
    expected = ordinary(x, p, negate)
    assert same_bits(exponent_add(x, p, negate, guard=True), expected)
    assert not same_bits(exponent_add(x, p, negate, guard=False), expected)
    # the guard keeps signed zeros: 0 * -2 = -0
    z = exponent_add(torch.zeros(1, dtype=dtype), torch.tensor([1]), torch.tensor([True]))
    assert same_bits(z, torch.tensor([-0.0], dtype=dtype))


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_guard_on_subnormal_overflow_and_specials(dtype):
    info = torch.finfo(dtype)
    x = torch.tensor([info.tiny / 4, -info.tiny / 2, info.tiny, info.max / 2, info.max,
                      float("inf"), -float("inf"), info.tiny * 2, 1.0], dtype=dtype)
    p = torch.tensor([1, 3, -1, 1, 2, 1, -1, -3, 0])
    negate = torch.tensor([False, True, False, True, False, True, False, False, True])
    assert same_bits(exponent_add(x, p, negate), ordinary(x, p, negate))
    nan = exponent_add(torch.tensor([float("nan")], dtype=dtype), torch.tensor([2]),
                       torch.tensor([False]))
    assert torch.isnan(nan).all()


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_shift_linear_equals_ordinary_products(dtype):
    torch.manual_seed(2)
    layer = DenseShiftLinear(48, 10, bits=3)
    x = torch.relu(torch.randn(7, 48)).to(dtype)
    s, p, _ = layer.codes()
    alpha = layer.alpha.detach()
    y = shift_linear(x, s, p, alpha, 3, layer.bias.detach())
    unit = (s * torch.exp2(p.float() - 3)).to(dtype)
    ref = (((x[:, None, :] * unit[None]).float().sum(-1)) * alpha + layer.bias.detach()).to(dtype)
    assert torch.equal(y, ref)  # same products (exact), same float32 accumulation
    assert torch.allclose(y.float(), layer(x.float()).detach(), rtol=1e-2 if dtype ==
                          torch.float16 else 1e-5, atol=1e-2 if dtype == torch.float16 else 1e-5)


def test_shift_linear_zero_code_mask():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    sign, p = torch.ones(1, 3), torch.tensor([[2, 2, 2]])
    nz = torch.tensor([[True, False, True]])
    y = shift_linear(x, sign, p, torch.tensor([1.0]), 3, zero_code=True, nonzero=nz)
    assert y.tolist() == [[4.0]]  # levels alpha * 2^(p - 2): (1 + 3) * 1


@pytest.mark.parametrize("stride,padding", ((1, 1), (2, 0)))
def test_shift_conv2d_matches_conv(stride, padding):
    torch.manual_seed(3)
    layer = DenseShiftConv2d(4, 6, 3, stride=stride, padding=padding, bits=4, bias=False)
    x = torch.relu(torch.randn(2, 4, 9, 9))
    s, p, _ = layer.codes()
    y = shift_conv2d(x, s, p, layer.alpha.detach(), 4, stride=stride, padding=padding)
    ref = F.conv2d(x, layer.dequantized(), stride=stride, padding=padding)
    assert y.shape == ref.shape and torch.allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(TypeError, match="float32 or float16"):
        exponent_add(torch.ones(2, dtype=torch.float64), torch.tensor([1, 1]), torch.tensor(False))
    with pytest.raises(ValueError, match="x must be"):
        shift_linear(torch.ones(2, 5), torch.ones(3, 4), torch.zeros(3, 4, dtype=torch.long),
                     torch.ones(3), 3)
