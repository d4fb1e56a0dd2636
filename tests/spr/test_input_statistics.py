"""spr._input_statistics: the rows of a layer reproduce its output (every padding form, stride,
dilation, channel groups, padding modes), and the accumulated sums are the rows' Gram matrix and
cross terms whatever the chunking, with row weights, given targets and centring; the hook
collector gives the sums of the statistics fed directly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spr._solve_mip
from spr._input_statistics import (
    InputStatistics,
    collect_input_statistics,
    conv_padding,
    grouped_rows,
    layer_rows,
)

CONVS = {
    "same": lambda: nn.Conv2d(3, 4, 3, padding="same"),
    "same-even-dilated": lambda: nn.Conv2d(3, 4, (4, 3), padding="same", dilation=2),
    "valid": lambda: nn.Conv2d(3, 4, 3, padding="valid", bias=False),
    "int": lambda: nn.Conv2d(3, 4, 3, padding=2),
    "tuple": lambda: nn.Conv2d(3, 4, (3, 2), padding=(1, 0)),
    "stride-2": lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
    "dilation-2": lambda: nn.Conv2d(3, 4, 3, dilation=2, padding=(2, 1)),
    "groups-2": lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1),
    "groups-2-stride-dilation": lambda: nn.Conv2d(4, 6, (3, 2), stride=2, dilation=2, groups=2),
    "depthwise-same": lambda: nn.Conv2d(4, 4, 3, groups=4, padding="same"),
    "reflect": lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
    "circular-same": lambda: nn.Conv2d(3, 4, 3, padding="same", padding_mode="circular"),
}


def _output_from_rows(layer, rows):
    """(B*L, out) outputs without bias from rows (g, B*L, d): group k through its weights."""
    g = rows.shape[0]
    W = layer.weight.detach().reshape(g, layer.weight.shape[0] // g, -1)
    return torch.cat([rows[k] @ W[k].T for k in range(g)], dim=1)


@pytest.mark.parametrize("name", list(CONVS))
def test_conv_rows_reproduce_the_convolution(name):
    torch.manual_seed(0)
    conv = CONVS[name]()
    X = torch.randn(2, conv.in_channels, 9, 8, dtype=torch.float64)
    conv = conv.double()
    rows = grouped_rows(conv, X)
    g, d = conv.groups, conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    out = conv(X).detach()
    if conv.bias is not None:
        out = out - conv.bias.detach().view(1, -1, 1, 1)
    assert rows.shape == (g, out.shape[0] * out.shape[2] * out.shape[3], d)
    expected = out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])  # (B*L, out), positions row-major
    torch.testing.assert_close(_output_from_rows(conv, rows), expected, rtol=1e-12, atol=1e-12)


def test_same_padding_matches_torch():
    conv = nn.Conv2d(2, 2, (4, 5), padding="same", dilation=(1, 2))
    # torch pads dilation*(k-1) in all, the odd pixel at the end: (left, right, top, bottom)
    assert conv_padding(conv) == (4, 4, 1, 2)
    assert conv_padding(nn.Conv2d(2, 2, 3, padding="valid")) == (0, 0, 0, 0)
    assert conv_padding(nn.Conv2d(2, 2, 3, padding=(1, 2))) == (2, 2, 1, 1)


def test_linear_rows_flatten_the_leading_dims():
    layer = nn.Linear(5, 3)
    X = torch.randn(2, 7, 5)
    rows = grouped_rows(layer, X)
    assert rows.shape == (1, 14, 5)
    torch.testing.assert_close(rows[0], X.reshape(14, 5))
    rows2, size = layer_rows(layer, X[0])
    assert size == 1 and torch.equal(rows2, X[0])


def test_layer_rows_is_the_one_solve_mip_uses():
    assert spr._solve_mip.layer_rows is layer_rows
    conv = nn.Conv2d(3, 4, (3, 2), padding="same")
    rows, size = layer_rows(conv, torch.randn(2, 3, 5, 5))
    assert size == 6 and rows.shape == (50, 18)
    with pytest.raises(ValueError, match="groups=2: use grouped_rows"):
        layer_rows(nn.Conv2d(4, 4, 3, groups=2), torch.randn(1, 4, 5, 5))


@pytest.mark.parametrize("name", ["int", "same-even-dilated", "groups-2-stride-dilation"])
def test_sums_are_the_gram_and_cross_terms_whatever_the_chunks(name):
    torch.manual_seed(1)
    conv = CONVS[name]()
    X = torch.randn(7, conv.in_channels, 9, 9)
    rows = grouped_rows(conv, X).double()
    N = rows.shape[1]
    T = torch.randn_like(conv.weight)  # any target weights
    Tg = T.double().reshape(conv.groups, -1, rows.shape[2])
    Y = rows @ Tg.mT
    results = []
    for chunk_size in (None, 100, 3, 1):
        stats = InputStatistics(conv, T, chunk_size=chunk_size)
        stats.update(X[:4])
        stats.update(X[4:])
        assert stats.count == N
        assert stats.gram.dtype == torch.float64
        torch.testing.assert_close(stats.gram / N, rows.mT @ rows / N, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(stats.xty, rows.mT @ Y, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(stats.yty, (Y * Y).sum(dim=1), rtol=1e-12, atol=1e-12)
        results.append(stats)
    for stats in results[1:]:
        for field in ("gram", "xty", "yty"):
            torch.testing.assert_close(getattr(stats, field), getattr(results[0], field),
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["int", "groups-2-stride-dilation"])
def test_target_inputs_give_the_cross_terms_of_two_networks(name):
    """Sequential reconstruction: rows of the pruned network's inputs X, targets from the dense
    network's inputs S (same layer), in chunks."""
    torch.manual_seed(2)
    conv = CONVS[name]()
    X, S = torch.randn(5, conv.in_channels, 9, 9), torch.randn(5, conv.in_channels, 9, 9)
    rows, source = grouped_rows(conv, X).double(), grouped_rows(conv, S).double()
    T = conv.weight.detach()
    Y = source @ T.double().reshape(conv.groups, -1, rows.shape[2]).mT
    stats = InputStatistics(conv, T, chunk_size=2)
    stats.update(X, target_inputs=S)
    torch.testing.assert_close(stats.gram, rows.mT @ rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.xty, rows.mT @ Y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.yty, (Y * Y).sum(dim=1), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="shaped like X"):
        stats.update(X, target_inputs=S[:2])
    with pytest.raises(ValueError, match="needs target weights"):
        InputStatistics(conv).update(X, target_inputs=S)


def test_gram_only_and_chosen_dtype():
    layer = nn.Linear(4, 2)
    X = torch.randn(10, 4, dtype=torch.float64)
    stats = InputStatistics(layer, dtype=torch.float32)
    assert stats.gram is None and stats.count == 0
    stats.update(X)
    assert stats.gram.dtype == torch.float32 and stats.xty is None and stats.yty is None
    torch.testing.assert_close(stats.gram[0], (X.T @ X).float())


def test_layer_problem_uses_the_sums():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 2, 3, padding="same")
    X = torch.randn(5, 3, 6, 6)
    problem = spr._solve_mip.layer_problem(conv, X, lam=0.1, alpha=0.5, chunk_size=2)
    stats = InputStatistics(conv, conv.weight)
    stats.update(X)
    torch.testing.assert_close(torch.from_numpy(problem.gram), stats.gram[0] / stats.count)
    torch.testing.assert_close(torch.from_numpy(problem.xty), stats.xty[0] / stats.count)
    torch.testing.assert_close(torch.from_numpy(problem.yty), stats.yty[0] / stats.count)
    assert problem.group_size == 9


@pytest.mark.parametrize(
    "layer, X, match",
    [
        (nn.Linear(4, 2), torch.full((3, 4), float("nan")), "NaN"),
        (nn.Conv2d(3, 2, 3), torch.full((1, 3, 5, 5), float("inf")), "infinite"),
        (nn.Linear(4, 2), torch.randn(3, 5), r"\(N, 4\) or \(\.\.\., 4\)"),
        (nn.Linear(4, 2), torch.randn(4), r"\(N, 4\)"),
        (nn.Conv2d(3, 2, 3), torch.randn(3, 5, 5), r"\(N, 3, H, W\)"),
        (nn.Conv2d(3, 2, 3, padding="valid"), torch.randn(1, 3, 2, 5), "smaller than the kernel"),
        (nn.ConvTranspose2d(3, 2, 3), torch.randn(1, 3, 5, 5), "nn.Linear and nn.Conv2d"),
        (nn.Linear(4, 2), [[0.0] * 4], "torch.Tensor"),
    ],
)
def test_bad_input(layer, X, match):
    with pytest.raises(ValueError, match=match):
        grouped_rows(layer, X)


def test_bad_arguments():
    with pytest.raises(ValueError, match="chunk_size"):
        InputStatistics(nn.Linear(4, 2), chunk_size=0)
    with pytest.raises(ValueError, match=r"weight shape \(2, 4\)"):
        InputStatistics(nn.Linear(4, 2), torch.randn(4, 2))


def test_matches_f_conv2d_on_a_gpu_if_there_is_one():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    conv = nn.Conv2d(4, 6, 3, groups=2, padding="same").cuda()
    X = torch.randn(3, 4, 7, 7, device="cuda")
    stats = InputStatistics(conv, conv.weight)
    stats.update(X)
    out = F.conv2d(X, conv.weight, None, 1, "same", 1, 2).double()
    assert stats.gram.device.type == "cuda"
    torch.testing.assert_close(stats.yty.reshape(-1), (out**2).sum(dim=(0, 2, 3)),
                               rtol=1e-4, atol=1e-4)


def test_row_weights_count_each_batch_that_many_times():
    """sum_b w_b R_b^T R_b and friends, against the rows written out."""
    torch.manual_seed(3)
    layer = nn.Linear(5, 3)
    X1, X2, X3 = torch.randn(6, 5), torch.randn(2, 5), torch.randn(4, 5)
    stats = InputStatistics(layer, layer.weight)
    stats.update(X1)
    stats.update(X2, weight=2.5)
    stats.update(X3, weight=0)  # left out
    R = torch.cat([X1, X2, X2]).double()  # X2 at weight 2.5: two copies at 1.25 each
    w = torch.cat([torch.ones(6), torch.full((4,), 1.25)]).double()
    Y = R @ layer.weight.detach().double().T
    assert stats.count == 6 + 2 * 2.5
    torch.testing.assert_close(stats.gram[0], (R * w[:, None]).T @ R)
    torch.testing.assert_close(stats.xty[0], (R * w[:, None]).T @ Y)
    torch.testing.assert_close(stats.yty[0], (w[:, None] * Y * Y).sum(0))
    torch.testing.assert_close(stats.row_sum[0], (w[:, None] * R).sum(0))
    torch.testing.assert_close(stats.target_sum[0], (w[:, None] * Y).sum(0))
    with pytest.raises(ValueError, match="weight must be a number >= 0"):
        stats.update(X1, weight=-1.0)


@pytest.mark.parametrize("name", ["int", "groups-2-stride-dilation"])
def test_given_targets_are_the_layers_outputs(name):
    """Targets passed as outputs (B, O, H', W') give the sums of the target weights' path; a
    shifted target shifts the cross terms accordingly."""
    torch.manual_seed(4)
    conv = CONVS[name]().double()
    X = torch.randn(3, conv.in_channels, 9, 9, dtype=torch.float64)
    out = F.conv2d(X, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    by_weight = InputStatistics(conv, conv.weight, chunk_size=2)
    by_weight.update(X)
    given = InputStatistics(conv, chunk_size=2)
    given.update(X, targets=out)
    for field in ("gram", "xty", "yty", "row_sum", "target_sum"):
        torch.testing.assert_close(getattr(given, field), getattr(by_weight, field))
    shift = torch.randn_like(out)
    shifted = InputStatistics(conv)
    shifted.update(X, targets=out + shift)
    rows = grouped_rows(conv, X)
    g = conv.groups
    S = shift.reshape(3, g, -1, out.shape[2] * out.shape[3]).permute(1, 0, 3, 2).reshape(
        g, rows.shape[1], -1)
    torch.testing.assert_close(shifted.xty, by_weight.xty + rows.mT @ S)
    with pytest.raises(ValueError, match="target_inputs or targets"):
        by_weight.update(X, X, targets=out)
    with pytest.raises(ValueError, match=r"shape \(N, 6, H', W'\)|shape \(N, 4, H', W'\)"):
        given.update(X, targets=out[:, :2])
    with pytest.raises(ValueError, match="output rows"):
        given.update(X, targets=out[:, :, :2])


def test_means_and_centred_means():
    """means(center=True) is the covariance of the rows and targets (numpy, independently)."""
    torch.manual_seed(5)
    layer = nn.Linear(4, 2)
    X = torch.randn(50, 4, dtype=torch.float64) + 3.0
    stats = InputStatistics(layer, layer.weight.double())
    stats.update(X[:20])
    stats.update(X[20:])
    x = X.numpy()
    y = x @ layer.weight.detach().double().numpy().T
    gram, xty, yty = stats.means()
    np.testing.assert_allclose(gram[0].numpy(), x.T @ x / 50, rtol=1e-12)
    np.testing.assert_allclose(xty[0].numpy(), x.T @ y / 50, rtol=1e-12)
    np.testing.assert_allclose(yty[0].numpy(), (y * y).mean(0), rtol=1e-12)
    gram, xty, yty = stats.means(center=True)
    xc, yc = x - x.mean(0), y - y.mean(0)
    np.testing.assert_allclose(gram[0].numpy(), xc.T @ xc / 50, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(xty[0].numpy(), xc.T @ yc / 50, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(yty[0].numpy(), (yc * yc).mean(0), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="seen no inputs"):
        InputStatistics(layer).means()


def test_float32_products_summed_in_float64_on_a_chosen_device():
    layer = nn.Linear(3, 2)
    X = torch.randn(8, 3)
    stats = InputStatistics(layer, layer.weight, compute_dtype=torch.float32, device="cpu")
    stats.update(X)
    assert stats.gram.dtype == stats.xty.dtype == torch.float64
    assert stats.target.dtype == torch.float32 and stats.gram.device.type == "cpu"
    torch.testing.assert_close(stats.gram[0], (X.T @ X).double())


def test_collected_statistics_are_those_fed_directly():
    """The hook collector gives each layer the sums of InputStatistics fed its inputs by hand,
    names a layer in its errors, and removes its hooks."""
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, groups=1), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, stride=2, groups=2), nn.Flatten(), nn.Linear(36, 5))
    batches = [torch.randn(2, 3, 8, 8), torch.randn(3, 3, 8, 8)]
    with collect_input_statistics(net, ["0", "2", "4"], cross_terms=True, chunk_size=1) as stats:
        with torch.no_grad():
            for x in batches:
                net(x)
    assert list(stats) == ["0", "2", "4"]
    for name, start in (("0", 0), ("2", 2), ("4", 4)):
        layer = net.get_submodule(name)
        direct = InputStatistics(layer, layer.weight)
        for x in batches:
            with torch.no_grad():
                direct.update(net[:start](x))
        assert stats[name].count == direct.count
        for field in ("gram", "xty", "yty", "row_sum", "target_sum"):
            torch.testing.assert_close(getattr(stats[name], field), getattr(direct, field),
                                       rtol=1e-12, atol=1e-12)
    assert all(not m._forward_pre_hooks for m in net.modules())
    with pytest.raises(ValueError, match="layer '0': its calibration inputs: .*NaN"):
        with collect_input_statistics(net, ["0"]):
            net(torch.full((1, 3, 8, 8), float("nan")))
    assert all(not m._forward_pre_hooks for m in net.modules())
    with pytest.raises(ValueError, match="no layer named 'fc'"):
        with collect_input_statistics(net, ["fc"]):
            pass
    with pytest.raises(ValueError, match="layer '1' is a ReLU"):
        with collect_input_statistics(net, ["1"]):
            pass
