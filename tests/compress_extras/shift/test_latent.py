"""The sign-scale decomposition: exact forward levels, reachability, init histogram, and the
sqrt(p+1) surrogate gradient checked against the analytic formula."""

import itertools

import pytest
import torch

from compress_extras.shift import (
    exponent_probabilities,
    gate_count,
    init_latents,
    latents_from_codes,
    nested_exponent,
    shift_weight,
)


@pytest.mark.parametrize("bits", (2, 3, 4))
def test_forward_is_exact_power_of_two_never_zero_all_codes_reachable(bits):
    lat = init_latents((20000,), bits, generator=torch.Generator().manual_seed(bits))
    w = shift_weight(lat["sign"], lat["gates"])
    P = gate_count(bits)
    allowed = {s * 2.0**k for s in (-1, 1) for k in range(P + 1)}
    assert set(w.tolist()) == allowed  # exactly the 2^N values, each reached, never 0
    assert len(allowed) == 2**bits


def test_zero_code_variant_levels():
    lat = init_latents((20000,), 3, zero_code=True, generator=torch.Generator().manual_seed(0))
    w = shift_weight(lat["sign"], lat["gates"], lat["value"])
    assert set(w.tolist()) == {0.0, 1.0, 2.0, 4.0, -1.0, -2.0, -4.0}


def test_init_exponent_histogram_3_bits():
    lat = init_latents((100_000,), 3, generator=torch.Generator().manual_seed(0))
    assert abs(lat["gates"].std().item() - 1e-3) < 2e-5 and abs(lat["sign"].std() - 1e-3) < 2e-5
    p = nested_exponent((lat["gates"] > 0).float()).long()
    hist = torch.bincount(p, minlength=4).double() / p.numel()
    expected = torch.tensor([0.5, 0.25, 0.125, 0.125], dtype=torch.float64)
    assert exponent_probabilities(3) == expected.tolist()
    assert torch.all((hist - expected).abs() < 0.01), hist


def test_nested_exponent_matches_the_formula():
    for b1, b2, b3 in itertools.product((0.0, 1.0), repeat=3):
        p = nested_exponent(torch.tensor([[b1], [b2], [b3]]))
        assert p.item() == b3 * (1 + b2 * (1 + b1))


@pytest.mark.parametrize("bits", (2, 3, 4))
def test_gradient_matches_the_surrogate_analytically(bits):
    G = gate_count(bits)
    combos = list(itertools.product((-1.0, 1.0), repeat=G + 1))  # every sign/gate pattern
    n = len(combos)
    pattern = torch.tensor(combos).T  # (G+1, n)
    sign_lat = (pattern[0] * 1e-3).requires_grad_()
    gate_lat = (pattern[1:] * 1e-3).requires_grad_()
    upstream = torch.randn(n, generator=torch.Generator().manual_seed(3))
    (shift_weight(sign_lat, gate_lat) * upstream).sum().backward()
    s, b = pattern[0], (pattern[1:] > 0).float()
    p = nested_exponent(b)
    root = torch.sqrt(p + 1)
    assert torch.allclose(sign_lat.grad, upstream * root)
    for i in range(G):  # dp/db_i = prod_{j>i} b_j * (1 + p_inner(i-1))
        inner = nested_exponent(b[:i]) if i else torch.zeros(n)
        outer = torch.prod(b[i + 1:], dim=0) if i + 1 < G else torch.ones(n)
        dp = outer * (1 + inner)
        assert torch.allclose(gate_lat.grad[i], upstream * s / (2 * root) * dp)


@pytest.mark.parametrize("bits", (2, 3, 4))
def test_gradients_reach_every_latent_at_init(bits):
    lat = init_latents((4096,), bits, generator=torch.Generator().manual_seed(4))
    params = {k: v.clone().requires_grad_() for k, v in lat.items()}
    shift_weight(params["sign"], params["gates"]).pow(2).sum().backward()
    assert (params["sign"].grad != 0).all()
    for i in range(gate_count(bits)):
        assert (params["gates"].grad[i] != 0).any()
    # the outermost gate always gets gradient
    assert (params["gates"].grad[-1] != 0).all()


def test_latents_from_codes_reproduce_every_level():
    for bits in (2, 3, 4):
        P = gate_count(bits)
        p = torch.arange(P + 1).repeat(2)
        s = torch.cat([torch.ones(P + 1), -torch.ones(P + 1)])
        lat = latents_from_codes(s, p, bits)
        assert torch.equal(shift_weight(lat["sign"], lat["gates"]), s * torch.exp2(p.float()))
        assert torch.all(lat["gates"].abs() == 1e-3)


def test_zero_code_gradient_is_the_gated_surrogate():
    combos = list(itertools.product((-1.0, 1.0), repeat=4))  # sign, value, 2 gates (3 bits)
    pattern = torch.tensor(combos).T * 1e-3
    sign_lat, value_lat = pattern[0].clone().requires_grad_(), pattern[1].clone().requires_grad_()
    gate_lat = pattern[2:].clone().requires_grad_()
    upstream = torch.randn(len(combos), generator=torch.Generator().manual_seed(5))
    w = shift_weight(sign_lat, gate_lat, value_lat)
    (w * upstream).sum().backward()
    s, v = torch.sign(pattern[0]), (pattern[1] > 0).float()
    b = (pattern[2:] > 0).float()
    p = b[1] * (1 + b[0])
    assert torch.equal(w.detach(), v * s * torch.exp2(p))
    root = torch.sqrt(p + 1)
    assert torch.allclose(value_lat.grad, upstream * s * root)
    assert torch.allclose(sign_lat.grad, upstream * v * root)
    assert torch.allclose(gate_lat.grad[1], upstream * v * s / (2 * root) * (1 + b[0]))
    assert torch.allclose(gate_lat.grad[0], upstream * v * s / (2 * root) * b[1])
