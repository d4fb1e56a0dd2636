"""SPRegularizer against an independent per-group loop, its groupings, M, and its bad input."""

import math

import pytest
import torch
import torchvision
from torch import nn

import spr
from spr.models import resnet20


def naive_spr(w: torch.Tensor, alpha: float, M: float) -> torch.Tensor:
    """The three cases of docs/mathematics.md §3 for one group vector, written out literally."""
    a, b = alpha, 1 - alpha
    r, m = torch.linalg.vector_norm(w), w.abs().max()
    if m == 0:
        return w.sum() * 0
    c = math.sqrt(a / b)
    if max(m / M, c * r) >= 1:
        return a * r**2 + b
    if m / M <= c * r:
        return 2 * math.sqrt(a * b) * r
    return a * M * r**2 / m + b * m / M


def norm_of(name: str) -> str:
    """The BatchNorm after a conv, by the naming conventions of torchvision and spr.models:
    ``downsample.0 -> downsample.1``, ``shortcut.0 -> shortcut.1``, ``convK -> bnK``."""
    return name[:-2] + ".1" if name.endswith(".0") else name.replace("conv", "bn")


def per_group_loop(model: nn.Module, lam: float, alpha: float, M: dict) -> torch.Tensor:
    modules = dict(model.named_modules())
    total, entries = 0.0, 0
    for name, conv in modules.items():
        if not isinstance(conv, nn.Conv2d):
            continue
        bn = modules[norm_of(name)]
        n = conv.weight[0].numel() + 2
        for j in range(conv.out_channels):
            group = torch.cat([conv.weight[j].flatten(), bn.weight[j : j + 1], bn.bias[j : j + 1]])
            total = total + n * naive_spr(group, alpha, M[name])
            entries += n
    return lam * total / entries


def perturb_norms(model: nn.Module) -> nn.Module:
    """Spread the filters over five orders of magnitude and shrink the BatchNorm scales, so that
    groups fall in all three cases of the formula."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                scale = 10 ** torch.empty(module.out_channels).uniform_(-5, 0)
                module.weight.mul_(scale.view(-1, 1, 1, 1))
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand_like(module.weight) * 0.01)
                module.bias.copy_(torch.randn_like(module.bias) * 0.001)
    return model


def case_counts(reg: spr.SPRegularizer) -> tuple[int, int, int]:
    c = math.sqrt(reg.alpha / (1 - reg.alpha))
    counts = [0, 0, 0]
    for _, _, W, M in reg._bucket_matrices():
        W = W.detach()
        box, cr = W.abs().amax(1) / M, c * torch.linalg.vector_norm(W, dim=1)
        counts[0] += int((torch.maximum(box, cr) >= 1).sum())
        counts[1] += int(((box <= cr) & (cr < 1)).sum())
        counts[2] += int(((cr < box) & (box < 1)).sum())
    return tuple(counts)


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: torchvision.models.resnet18(num_classes=10),
        lambda: resnet20(in_channels=1),
        lambda: resnet20(shortcut="B"),
    ],
    ids=["torchvision-resnet18", "cifar-resnet20-A", "cifar-resnet20-B"],
)
def test_equals_independent_per_group_loop(make_model):
    model = perturb_norms(make_model()).double()
    reg = spr.SPRegularizer(model, lam=0.7, alpha=0.5, M="auto", M_scale=2.0)
    value = reg()
    grads = torch.autograd.grad(value, list(model.parameters()), allow_unused=True)
    reference = per_group_loop(model, 0.7, 0.5, reg.M_)
    want = torch.autograd.grad(reference, list(model.parameters()), allow_unused=True)
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    for g, w in zip(grads, want, strict=True):
        if w is None:
            assert g is None or (g == 0).all()
        else:
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-12)
    assert min(case_counts(reg)) > 0, case_counts(reg)  # the comparison covers every branch


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 2, bias=True)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.bn(self.conv(x)).mean((2, 3))
        return self.head(torch.relu(self.fc(x)))


class Evaluate(nn.Module):
    """Holds the model as a submodule so functional_call can swap its parameters for reg()."""

    def __init__(self, model, reg):
        super().__init__()
        self.model, self.reg = model, reg

    def forward(self):
        return self.reg()


@pytest.mark.parametrize("groups", ["conv_bn", "linear"])
def test_gradcheck_through_the_model_parameters(groups):
    torch.manual_seed(1)
    model = perturb_norms(ConvBN()).double()
    reg = spr.SPRegularizer(model, lam=1.3, alpha=0.4, M=0.3, groups=groups)
    names = [n for n, _ in model.named_parameters()]
    evaluate = Evaluate(model, reg)

    def f(*params):
        mapping = {"model." + n: p for n, p in zip(names, params, strict=True)}
        return torch.func.functional_call(evaluate, mapping, ())

    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    assert torch.autograd.gradcheck(f, params, eps=1e-7, atol=1e-7)


def test_groups_conv_linear_and_callable():
    model = ConvBN()
    conv_bn = spr.SPRegularizer(model, 1.0, 0.5, groups="conv_bn")
    assert conv_bn.block_shapes_ == {"conv": (3, 2 * 2 * 2 + 1 + 2)}
    conv = spr.SPRegularizer(model, 1.0, 0.5, groups="conv")
    assert conv.block_shapes_ == {"conv": (3, 9)}
    linear = spr.SPRegularizer(model, 1.0, 0.5, groups="linear")
    assert linear.block_shapes_ == {"fc": (4, 4)}  # classifier "head" excluded by default
    both = spr.SPRegularizer(model, 1.0, 0.5, groups="linear", exclude=[])
    assert set(both.block_shapes_) == {"fc", "head"}
    by_module = spr.SPRegularizer(model, 1.0, 0.5, groups="linear", exclude=[model.fc])
    assert set(by_module.block_shapes_) == {"head"}

    def columns(m):
        yield "fc-columns", m.fc.weight.t()

    custom = spr.SPRegularizer(model, 1.0, 0.5, groups=columns, M=2.0)
    assert custom.block_shapes_ == {"fc-columns": (3, 4)}
    expected = spr.spr_penalty(model.fc.weight.t(), 0.5, 2.0).sum() * 4 / 12
    torch.testing.assert_close(custom(), expected)


def test_registration_order_fallback_when_fx_cannot_trace():
    class Dynamic(ConvBN):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
                x = -x
            return super().forward(x)

    with pytest.warns(UserWarning, match="registered right after"):
        reg = spr.SPRegularizer(Dynamic(), 1.0, 0.5)
    assert reg.block_shapes_ == {"conv": (3, 11)}


def test_bn_not_directly_after_conv_is_not_grouped():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
    assert spr.SPRegularizer(model, 1.0, 0.5).block_shapes_ == {"0": (4, 9 + 1)}  # + conv bias


def test_M_auto_float_dict_and_reference():
    torch.manual_seed(0)
    model, reference = ConvBN(), ConvBN()
    reg = spr.SPRegularizer(model, 1.0, 0.5, groups="linear", M_scale=2.0)
    assert reg.M_ == {"fc": pytest.approx(2.0 * float(torch.cat(
        [model.fc.weight, model.fc.bias[:, None]], 1).detach().abs().max()))}
    ref = spr.SPRegularizer(model, 1.0, 0.5, groups="linear", reference=reference)
    ref_fc = torch.cat([reference.fc.weight, reference.fc.bias[:, None]], 1).detach()
    ref_peak = float(ref_fc.abs().max())
    assert ref.M_ == {"fc": pytest.approx(ref_peak)}
    assert spr.SPRegularizer(model, 1.0, 0.5, M=math.inf).M_ == {"conv": math.inf}
    M = {"fc": 1, "head": 2}
    as_dict = spr.SPRegularizer(model, 1.0, 0.5, groups="linear", exclude=[], M=M)
    assert as_dict.M_ == {"fc": 1.0, "head": 2.0}
    assert "M_bucket0" in as_dict.state_dict()


def test_indicators_match_the_closed_form():
    model = perturb_norms(resnet20())
    reg = spr.SPRegularizer(model, 1.0, 0.3)
    y = reg.indicators()
    assert list(y) == reg.block_names_
    conv, bn = model.layer2[0].conv1, model.layer2[0].bn1
    block = torch.cat([conv.weight.flatten(1), bn.weight[:, None], bn.bias[:, None]], 1)
    expected = spr.spr_indicator(block.detach(), 0.3, reg.M_["layer2.0.conv1"])
    torch.testing.assert_close(y["layer2.0.conv1"], expected)


def test_never_touches_grad_and_lam_is_live():
    model = ConvBN()
    reg = spr.SPRegularizer(model, 1.0, 0.5)
    value = reg()
    assert all(p.grad is None for p in model.parameters())
    reg.lam = 2.0
    torch.testing.assert_close(reg(), 2 * value)
    with pytest.raises(ValueError, match="lam"):
        reg.lam = -1.0


def test_dtypes_and_autocast():
    model = perturb_norms(resnet20())
    reg = spr.SPRegularizer(model, 1.0, 0.3)
    v32 = reg()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vbf = reg()
    assert vbf.dtype == torch.float32
    torch.testing.assert_close(vbf, v32)
    model.double()
    v64 = reg()
    assert v64.dtype == torch.float64
    assert v64.item() == pytest.approx(v32.item(), rel=1e-5)
    model.bfloat16()
    vb = reg()
    assert vb.dtype == torch.float32 and vb.item() == pytest.approx(v32.item(), rel=2e-2)
    vb.backward()
    grads = [p.grad.float() for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu():
    model = perturb_norms(resnet20())
    cpu = spr.SPRegularizer(model, 1.0, 0.3)
    value = cpu()
    grads = torch.autograd.grad(value, list(model.parameters()), allow_unused=True)
    model.cuda()
    gpu = spr.SPRegularizer(model, 1.0, 0.3)
    value_gpu = gpu()
    grads_gpu = torch.autograd.grad(value_gpu, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(value_gpu.cpu(), value)
    for g, h in zip(grads, grads_gpu, strict=True):
        if g is not None:
            torch.testing.assert_close(h.cpu(), g)


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"lam": -1.0}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"M": 0.0}, "M must be"),
        ({"M": -2.0}, "M must be"),
        ({"M": float("nan")}, "M must be"),
        ({"M": "large"}, "M must be"),
        ({"M": {"conv": 1.0, "other": 1.0}}, "unknown"),
        ({"M": {}}, "missing"),
        ({"M": {"conv": 0.0}}, r"M\['conv'\]"),
        ({"M_scale": 0.0}, "M_scale"),
        ({"groups": "filters"}, "groups must be one of"),
        ({"groups": "conv", "exclude": ["conv"]}, "no blocks"),
        ({"exclude": ["nope"]}, "no submodule named 'nope'"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"model": ConvBN(), "lam": 1.0, "alpha": 0.5} | kwargs
    with pytest.raises(ValueError, match=match):
        spr.SPRegularizer(**args)


def test_model_without_groups():
    with pytest.raises(ValueError, match="found no blocks in Sequential"):
        spr.SPRegularizer(nn.Sequential(nn.ReLU()), 1.0, 0.5)


def test_non_finite_weights_name_the_block():
    model = ConvBN()
    with torch.no_grad():
        model.bn.bias[1] = float("nan")
    with pytest.raises(ValueError, match="block 'conv' has NaN"):
        spr.SPRegularizer(model, 1.0, 0.5)
    model = ConvBN()
    reg = spr.SPRegularizer(model, 1.0, 0.5)
    with torch.no_grad():
        model.conv.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="block 'conv' has NaN"):
        reg()
    reg.check_finite = False
    assert not torch.isfinite(reg())


def test_all_zero_block_with_auto_M():
    model = ConvBN()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
    with pytest.raises(ValueError, match="block 'fc' is all zero"):
        spr.SPRegularizer(model, 1.0, 0.5, groups="linear")
    assert spr.SPRegularizer(model, 1.0, 0.5, groups="linear", M=1.0)().item() == 0.0


def test_group_lasso_baseline_matches_a_per_group_loop():
    """GroupLassoRegularizer: alpha*||G||^2 + (1-alpha)*||G||, weighted as SPR weights SPR."""
    torch.manual_seed(0)
    model = spr.models.resnet20(in_channels=1)
    reg = spr.GroupLassoRegularizer(model, lam=0.7, alpha=0.3)
    ref = spr.SPRegularizer(model, lam=0.7, alpha=0.3)
    total, entries = 0.0, 0
    from spr._groups import group_parts

    for _, parts in group_parts(model):
        W = torch.cat([p.detach().double() for p in parts], dim=1)
        total += W.shape[1] * float((0.3 * (W**2).sum(1) + 0.7 * W.norm(dim=1)).sum())
        entries += W.numel()
    assert float(reg()) == pytest.approx(0.7 * total / entries, rel=1e-5)
    assert reg.n_entries_ == ref.n_entries_ and reg.block_names_ == ref.block_names_
    with torch.no_grad():
        model.conv1.weight[0] = 0
        model.bn1.weight[0] = 0
        model.bn1.bias[0] = 0
    reg().backward()
    assert torch.isfinite(model.conv1.weight.grad).all()


def test_the_penalty_is_a_function_of_W_M_alpha():
    """penalty=f: lam/N * sum_b n_b * sum_j f(W, M, alpha)_j, f given each layout's (G, n)
    matrix, its (G,) bounds and alpha."""
    torch.manual_seed(0)
    model = resnet20(in_channels=1)
    seen = []

    def scaled_l1(W, M, alpha):
        seen.append((W.shape[0], M.shape, alpha))
        return M * W.abs().sum(dim=1)

    reg = spr.SPRegularizer(model, lam=0.7, alpha=0.3, M=2.0, penalty=scaled_l1)
    from spr._groups import group_parts

    total, entries = 0.0, 0
    for _, parts in group_parts(model):
        W = torch.cat([p.detach().double() for p in parts], dim=1)
        total += W.shape[1] * 2.0 * float(W.abs().sum())
        entries += W.numel()
    assert float(reg()) == pytest.approx(0.7 * total / entries, rel=1e-5)
    assert all(M == (G,) and alpha == 0.3 for G, M, alpha in seen)
    assert "penalty=scaled_l1" in repr(reg)
    default = spr.SPRegularizer(model, lam=0.7, alpha=0.3)
    assert default.penalty is spr.spr_group_penalty and "penalty" not in repr(default)
    with pytest.raises(ValueError, match="penalty must be a function"):
        spr.SPRegularizer(model, lam=0.7, alpha=0.3, penalty="group_lasso")


def test_group_lasso_regularizer_is_the_module_with_the_group_lasso_penalty():
    torch.manual_seed(0)
    model = resnet20(in_channels=1)
    reg = spr.GroupLassoRegularizer(model, lam=0.7, alpha=0.3, groups="conv")
    assert isinstance(reg, spr.SPRegularizer) and reg.penalty is spr.group_lasso_penalty
    same = spr.SPRegularizer(model, lam=0.7, alpha=0.3, M=math.inf, groups="conv",
                             penalty=spr.group_lasso_penalty)
    assert torch.equal(reg(), same())
    assert set(reg.M_.values()) == {math.inf}  # the group lasso has no bound


@pytest.mark.parametrize("unused", [{"M": "auto"}, {"M": 3.0, "M_scale": 2.0},
                                    {"reference": resnet20(in_channels=1)}])
def test_group_lasso_bound_settings_are_deprecated_and_unused(unused):
    torch.manual_seed(0)
    model = resnet20(in_channels=1)
    with pytest.warns(DeprecationWarning, match="is deprecated; use GroupLassoRegularizer "
                                                "without it"):
        old = spr.GroupLassoRegularizer(model, lam=0.7, alpha=0.3, **unused)
    assert torch.equal(old(), spr.GroupLassoRegularizer(model, lam=0.7, alpha=0.3)())
    with pytest.raises(TypeError, match="unexpected keyword argument.*'lamda'"):
        spr.GroupLassoRegularizer(model, lam=0.7, alpha=0.3, lamda=1.0)


def test_reference_M_is_the_blocks_max_magnitude():
    model = spr.models.small_cnn(width=4)
    M = spr.reference_M(model, M_scale=2.0)
    with torch.no_grad():
        expected = 2.0 * max(model[0].weight.abs().max(), model[1].weight.abs().max(),
                             model[1].bias.abs().max())
    assert M["0"] == pytest.approx(float(expected))
    assert M == spr.SPRegularizer(model, lam=1.0, alpha=0.5, M_scale=2.0).M_


def test_block_weights_scale_each_block_as_a_per_group_loop_says():
    torch.manual_seed(0)
    model = spr.models.resnet20(in_channels=1)
    weights = {name: 0.5 + i for i, name in enumerate(spr.SPRegularizer(
        model, lam=1.0, alpha=0.5).block_names_)}
    reg = spr.SPRegularizer(model, lam=0.7, alpha=0.4, block_weights=weights)
    from spr._groups import group_parts

    total, entries = 0.0, 0
    for name, parts in group_parts(model):
        W = torch.cat([p.detach().double() for p in parts], dim=1)
        value = spr.spr_penalty(W, 0.4, torch.tensor(reg.M_[name], dtype=torch.float64)).sum()
        total += weights[name] * W.shape[1] * float(value)
        entries += W.numel()
    assert float(reg()) == pytest.approx(0.7 * total / entries, rel=1e-5)
    assert reg.block_weights_ == weights


@pytest.mark.parametrize(
    "change, message",
    [({"drop": "conv1"}, "missing"), ({"add": "nope"}, "unknown"), ({"set": -1.0}, "> 0")],
)
def test_bad_block_weights(change, message):
    model = spr.models.resnet20(in_channels=1)
    weights = dict.fromkeys(spr.SPRegularizer(model, lam=1.0, alpha=0.5).block_names_, 1.0)
    if "drop" in change:
        del weights[change["drop"]]
    if "add" in change:
        weights[change["add"]] = 1.0
    if "set" in change:
        weights["conv1"] = change["set"]
    with pytest.raises(ValueError, match=message):
        spr.SPRegularizer(model, lam=1.0, alpha=0.5, block_weights=weights)


def test_model_shrunk_after_construction_is_a_clear_error():
    """Issue 18: remove_pruned(inplace=True) after the regulariser was built."""
    torch.manual_seed(0)
    model = ConvBN().eval()
    reg = spr.SPRegularizer(model, 1.0, 0.5)
    reg()
    with torch.no_grad():
        model.conv.weight[1] = 0
        model.conv.bias[1] = 0
        model.bn.weight[1] = 0
        model.bn.bias[1] = 0
    spr.remove_pruned(model, torch.randn(2, 2, 5, 5), inplace=True)
    assert model.conv.out_channels == 2
    message = r"changed shape since .*SPRegularizer was built.*block 'conv'.*\(3, 11\).*\(2, 11\)"
    with pytest.raises(ValueError, match=message) as err:
        reg()
    assert "build a new SPRegularizer for the pruned model" in str(err.value)
    with pytest.raises(ValueError, match="changed shape"):
        reg.indicators()
    assert spr.SPRegularizer(model, 1.0, 0.5)().isfinite()
