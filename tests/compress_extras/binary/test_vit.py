"""BinaryViT: binary operands everywhere (forward hooks), the multi-branch switch, the tiny
pyramid's forward/backward and its parameter and OPs counts against a closed form."""

import time

import pytest
import torch
import torch.nn.functional as F

from compress_extras.binary import (
    BinaryConv2d,
    BinaryLinear,
    BinaryMatMul,
    BinaryViT,
    BinaryViTConfig,
    count_ops,
)

FLAT = dict(pyramid=False, embed_dim=32, depth=2, num_heads=2)
CONFIGS = {
    "baseline": BinaryViTConfig(gap=False, multi_branch=False, affine=False, **FLAT),
    "flat_all": BinaryViTConfig(gap=True, multi_branch=True, affine=True, **FLAT),
    "pyramid": BinaryViTConfig(),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_binary_operands_weights_and_attention(name):
    torch.manual_seed(0)
    model = BinaryViT(CONFIGS[name])
    seen = {"act": 0, "scores": 0, "context": 0}
    failures = []

    def act_hook(module, inputs, out):
        seen["act"] += 1
        if not set(out.unique().tolist()) <= {-1.0, 1.0}:
            failures.append(("act", module))

    for m in model.modules():
        if isinstance(m, BinaryLinear | BinaryConv2d):
            assert m.binary_input
            m.act.register_forward_hook(act_hook)
            Wb = m.binary_weight.detach().flatten(1)
            alpha = m.weight.detach().flatten(1).abs().mean(1)
            for row, a in zip(Wb, alpha, strict=True):
                assert set(row.tolist()) == {-a.item(), a.item()}

    def scores_hook(module, inputs, out):
        seen["scores"] += 1
        for t in inputs:
            assert set(t.unique().tolist()) <= {-1.0, 1.0}

    def context_hook(module, inputs, out, attn=None):
        seen["context"] += 1
        A_b, V_b = inputs
        assert set(A_b.unique().tolist()) <= {0.0, attn.alpha.item()}
        assert (A_b > 0).any()
        assert set(V_b.unique().tolist()) <= {-1.0, 1.0}

    for m in model.modules():
        if hasattr(m, "scores") and isinstance(m.scores, BinaryMatMul):
            m.scores.register_forward_hook(scores_hook)
            m.context.register_forward_hook(
                lambda mod, i, o, attn=m: context_hook(mod, i, o, attn))
    model(torch.randn(4, 1, 32, 32))
    assert not failures
    n_blocks = sum(CONFIGS[name].depths) if CONFIGS[name].pyramid else CONFIGS[name].depth
    n_binary = sum(isinstance(m, BinaryLinear | BinaryConv2d) for m in model.modules())
    assert seen["act"] == n_binary > 0
    assert seen["scores"] == seen["context"] == n_blocks


def test_multi_branch_is_inert_at_init_and_acts_after_one_step():
    torch.manual_seed(1)
    off = BinaryViT(BinaryViTConfig(multi_branch=False))
    on = BinaryViT(BinaryViTConfig(multi_branch=True))
    missing = on.load_state_dict(off.state_dict(), strict=False).missing_keys
    assert missing and all("branch_scales" in k for k in missing)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    for model in (off, on):
        model.eval()
    assert torch.equal(off(x), on(x))
    for model in (off, on):
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        model.eval()
    shared = off.state_dict()
    for k, v in on.state_dict().items():
        if k in shared:  # the branches had no effect on any other gradient
            torch.testing.assert_close(v, shared[k], rtol=1e-5, atol=1e-6)
    assert any(p.abs().sum() > 0 for n, p in on.named_parameters() if "branch_scales" in n)
    assert (on(x) - off(x)).abs().max() > 1e-4


def _closed_form(S=32, p=4, c_in=1, K=10, dims=(16, 32, 64, 128), sr=(4, 2, 1, 1), r=4):
    """Parameters and OPs of the all-switches-on pyramid written out by hand."""
    grid = S // p
    params = c_in * dims[0] * p * p + dims[0] + grid * grid * dims[0]      # stem + pos embed
    bops, flops = 0, c_in * dims[0] * p * p * grid * grid                   # the stem's MACs
    for s, d in enumerate(dims):
        g = grid >> s
        N, Nkv = g * g, (g // sr[s]) ** 2
        if s:
            a = dims[s - 1]
            params += (d - a) * a * 4 + a + 2 * (d - a)   # binary 2x2 conv, its move, BN
            bops += (d - a) * a * 4 * N
        bn, rprelu, ls = 2 * d, 3 * d, 2 * d
        qkv = 3 * (d * d + d + bn + rprelu)               # linear + move, BN, RPReLU
        attn = qkv + 3 * d + 1 + bn + (d * d + d + bn)    # signs' moves, alpha, BN, out proj
        ffn = (r * d * d + d + 2 * r * d + 3 * r * d) + (r * d * d + r * d + bn)
        params += bn + attn + 2 * ls + 4 * ls + bn + ffn  # norm1, attn, LS1/2, branches, norm2
        bops += N * d * d + 2 * Nkv * d * d + N * d * d   # q, k, v, out projections
        bops += 2 * N * Nkv * d                           # Q K^T and A V over all heads
        bops += 2 * N * r * d * d                         # FFN up and down
    params += 2 * dims[-1] + dims[-1] * K + K             # head BN + Linear
    flops += dims[-1] * K
    return params, bops, flops


def test_tiny_pyramid_forward_backward_and_counts():
    torch.manual_seed(2)
    model = BinaryViT(BinaryViTConfig())
    x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,))
    model(x)  # warm up
    start = time.perf_counter()
    F.cross_entropy(model(x), y).backward()
    seconds = time.perf_counter() - start
    assert seconds < 3.0  # PAPERS asks < 1 s; slack for a shared CPU
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.stem.weight.grad.abs().sum() > 0
    assert model.stages[0][0].up.weight.grad.abs().sum() > 0
    params, bops, flops = _closed_form()
    counted = count_ops(model, (1, 32, 32))
    assert counted.params == params == sum(p.numel() for p in model.parameters())
    assert (counted.bops, counted.flops) == (bops, flops)
    assert counted.ops == bops / 64 + flops


def test_flat_counts_follow_the_formula():
    cfg = BinaryViTConfig(gap=False, multi_branch=False, affine=False, pyramid=False,
                          embed_dim=32, depth=2, num_heads=4)
    c = count_ops(BinaryViT(cfg), (1, 32, 32))
    N, d, r = 64 + 1, 32, 4  # patches + class token
    assert c.bops == 2 * (4 * N * d * d + 2 * N * N * d + 2 * N * r * d * d)
    assert c.flops == 16 * d * 64 + d * 10


@pytest.mark.parametrize("kwargs, match", [
    (dict(pyramid=False, embed_dim=30, num_heads=4), "divisible by num_heads"),
    (dict(dims=(16, 33, 64, 128)), "divisible by heads"),
    (dict(dims=(16, 16, 64, 128), heads=(1, 1, 1, 1)), "increase"),
    (dict(patch_size=5), "multiple of patch_size"),
    (dict(sr_ratios=(3, 2, 1, 1)), "must divide"),
    (dict(gap=False), "gap=True"),
    (dict(depths=(1, 1)), "one entry per stage"),
])
def test_bad_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BinaryViTConfig(**kwargs)


def test_wrong_input_shape_raises():
    with pytest.raises(ValueError, match="pad or resize"):
        BinaryViT()(torch.zeros(1, 1, 28, 28))
