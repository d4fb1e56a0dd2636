"""Random bias initialization: the per-sample share of units inside the straight-through band
|z| <= 1 on a fixed random binary MLP, over 10 seeds.

The MLP: 32 Gaussian inputs -> BinaryLinear(32, 64) with float inputs -> two BinaryLinear(64, 64)
with ±1 inputs (sign forward, STE backward, i.e. hard tanh), latent weights N(0, std^2); the
statistic is, per hidden layer, the minimum over 512 samples of the share of units with |z| <= 1.

What we measured (and assert): with unit-scale latent weights (std = 1, alpha_i = mean|W_i| ~ 0.8)
the hidden pre-activations z = alpha_i * (sum of 64 ±1 terms) lie on the lattice alpha_i * 2Z with
spread ~ 6; zero bias puts only the lattice point 0 inside the band and the worst sample keeps
~1% of its units; a U(-1, 1) bias moves neighbouring lattice points into the band and the
minimum rises (~3x). With small weights (std = 0.1, z spread ~ 0.6, most units already inside
the band) a random bias can only push units out: for w.x symmetric and unimodal across units,
adding an independent symmetric unimodal bias lowers P(|z| <= 1) (Anderson's inequality), and
the minimum falls. So the claim holds in the saturated regime, not unconditionally.
"""

import torch
from torch import nn

from compress_extras.binary import BinaryLinear, band_share, preactivations

X = torch.randn(512, 32, generator=torch.Generator().manual_seed(123))


def _mlp(init_bias, seed, std):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate([(32, 64), (64, 64), (64, 64)]):
        layer = BinaryLinear(a, b, init_bias=init_bias, binary_input=i > 0)
        nn.init.normal_(layer.weight, 0.0, std)
        layers.append(layer)
    return nn.Sequential(*layers)


def _hidden_min_share(init_bias, seed, std):
    z = list(preactivations(_mlp(init_bias, seed, std), X).values())[1:]
    return sum(band_share(v).min().item() for v in z) / len(z)


def test_band_share_by_hand():
    z = torch.tensor([[[0.5, -1.0], [1.5, 0.0]], [[3.0, 2.0], [-0.2, -4.0]]])
    assert band_share(z).tolist() == [0.75, 0.25]
    assert band_share(z, width=2.0).tolist() == [1.0, 0.5]


def test_random_bias_raises_the_worst_sample_band_share_when_saturated():
    zero = [_hidden_min_share("zero", s, 1.0) for s in range(10)]
    rand = [_hidden_min_share(("uniform", 1.0), s, 1.0) for s in range(10)]
    assert sum(rand) > 2 * sum(zero)
    assert sum(r >= z for r, z in zip(rand, zero, strict=True)) >= 9
    normal = [_hidden_min_share(("normal", 0.5), s, 1.0) for s in range(10)]
    assert sum(normal) > sum(zero)


def test_random_bias_lowers_it_when_units_are_not_saturated():
    zero = [_hidden_min_share("zero", s, 0.1) for s in range(10)]
    rand = [_hidden_min_share(("uniform", 1.0), s, 0.1) for s in range(10)]
    assert sum(rand) < sum(zero)
