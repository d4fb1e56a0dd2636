"""remove_pruned: exact removal of dead channels, residual streams included.

The expected widths and parameter counts are derived here from the architectures by hand (which
layers write and read each channel space), independently of Torch-Pruning's dependency graph.
"""

import copy

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from spr import count_params, layer_widths, remove_pruned
from spr._surgery import PruningError
from spr.models import CifarResNet, PadShortcut, resnet20


def _blocks_and_ends(model):
    """(stages as lists of blocks, stem conv, stem bn, classifier) of a BasicBlock ResNet."""
    if isinstance(model, CifarResNet):
        stages = [model.layer1, model.layer2, model.layer3]
    else:
        stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    return [list(s) for s in stages], model.conv1, model.bn1, model.fc


def _shortcut(block):
    """('projection', conv, bn) | ('pad', PadShortcut) | None."""
    module = getattr(block, "shortcut", None) or getattr(block, "downsample", None)
    if isinstance(module, PadShortcut):
        return ("pad", module)
    if isinstance(module, nn.Sequential):
        return ("projection", module[0], module[1])
    return None


def _zero_rows(conv, bn, idx):
    with torch.no_grad():
        conv.weight[idx] = 0
        bn.weight[idx] = 0
        bn.bias[idx] = 0


def _randomise_norms(model, generator):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.5, 0.5, generator=generator)


def _kill_random_channels(model, generator, share=0.3):
    """Zero the writers of random internal and residual-stream channels; return the expected
    kept channel counts: {"stream": [per stage], "internal": {block id: count}}."""
    stages, stem, stem_bn, _ = _blocks_and_ends(model)

    def pick(n):
        chosen = torch.nonzero(torch.rand(n, generator=generator) < share).flatten()
        return chosen[: n - 1]  # never all of them

    internal = {}
    for stage in stages:
        for block in stage:
            dead = pick(block.conv1.out_channels)
            _zero_rows(block.conv1, block.bn1, dead)
            internal[id(block)] = block.conv1.out_channels - len(dead)
    stream, previous_dead = [], set()
    for s, stage in enumerate(stages):
        width = stage[0].conv2.out_channels
        dead = pick(width)
        for block in stage:
            _zero_rows(block.conv2, block.bn2, dead)
            shortcut = _shortcut(block)
            if shortcut and shortcut[0] == "projection":
                _zero_rows(shortcut[1], shortcut[2], dead)
        if s == 0:
            _zero_rows(stem, stem_bn, dead)
        # A stream channel is dead when every writer is zero; option A's shortcut writes the
        # previous stage's channel source[o] into channel o.
        effective = set()
        for o in dead.tolist():
            pad = _shortcut(stage[0])
            if pad and pad[0] == "pad" and int(pad[1].source[o]) >= 0:
                if int(pad[1].source[o]) not in previous_dead:
                    continue
            effective.add(o)
        stream.append(width - len(effective))
        previous_dead = effective
    return {"stream": stream, "internal": internal}


def _expected_params(model, kept, in_channels):
    """Parameters of the pruned network from the kept counts, layer by layer."""
    stages, stem, _, fc = _blocks_and_ends(model)

    def conv(c, cin, cout):
        return cin * cout * c.kernel_size[0] * c.kernel_size[1]

    total = conv(stem, in_channels, kept["stream"][0]) + 2 * kept["stream"][0]
    previous = kept["stream"][0]
    for s, stage in enumerate(stages):
        width = kept["stream"][s]
        for block in stage:
            inner = kept["internal"][id(block)]
            total += conv(block.conv1, previous, inner) + 2 * inner
            total += conv(block.conv2, inner, width) + 2 * width
            shortcut = _shortcut(block)
            if shortcut and shortcut[0] == "projection":
                total += conv(shortcut[1], previous, width) + 2 * width
            previous = width
    return total + fc.out_features * (previous + 1)


CASES = {
    "resnet20-A": (lambda: resnet20(in_channels=1), (4, 1, 32, 32), 1),
    "resnet20-B": (lambda: resnet20(in_channels=1, shortcut="B"), (4, 1, 32, 32), 1),
    "torchvision-resnet18": (lambda: resnet18(num_classes=10), (2, 3, 64, 64), 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_removal_is_exact_and_counts_match(case, seed):
    make, shape, in_channels = CASES[case]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = make().eval()
    _randomise_norms(model, g)
    kept = _kill_random_channels(model, g)
    x = torch.randn(shape, generator=g)
    before, n_before = model(x).detach(), count_params(model)
    state = copy.deepcopy(model.state_dict())

    pruned = remove_pruned(model, x)

    assert count_params(pruned) == _expected_params(model, kept, in_channels)
    assert count_params(pruned) < n_before
    torch.testing.assert_close(pruned.eval()(x), before, atol=1e-5, rtol=0)
    # the original is kept whole
    assert count_params(model) == n_before
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_stream_channel_stays_unless_every_writer_is_dead():
    model = resnet20(in_channels=1, shortcut="B").eval()
    _zero_rows(model.layer1[0].conv2, model.layer1[0].bn2, [3])  # one of four writers
    pruned = remove_pruned(model, torch.randn(2, 1, 32, 32))
    assert layer_widths(pruned) == layer_widths(model)
    for block in model.layer1:
        _zero_rows(block.conv2, block.bn2, [3])
    _zero_rows(model.conv1, model.bn1, [3])
    pruned = remove_pruned(model, torch.randn(2, 1, 32, 32))
    assert pruned.conv1.out_channels == 15 and pruned.layer2[0].shortcut[0].in_channels == 15


def test_option_a_removes_a_stream_channel_through_the_shortcut_chain():
    """Stage-1 channel c dies, so stage 2's copy of it does too when its own writers are dead."""
    model = resnet20(in_channels=1).eval()
    for block in model.layer1:
        _zero_rows(block.conv2, block.bn2, [5])
    _zero_rows(model.conv1, model.bn1, [5])
    for block in model.layer2:
        _zero_rows(block.conv2, block.bn2, [5 + 8])  # the stage-2 channel that copies 5
    x = torch.randn(2, 1, 32, 32)
    pruned = remove_pruned(model, x)
    assert pruned.conv1.out_channels == 15
    assert pruned.layer2[0].conv2.out_channels == 31
    assert pruned.layer2[0].shortcut.source.tolist().count(-1) == 16
    torch.testing.assert_close(pruned(x), model(x), atol=1e-5, rtol=0)


def test_classifier_outputs_are_kept():
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        net[3].weight[1] = 0
        net[3].bias[1] = 0
        net[1].weight[2] = 0
        net[1].bias[2] = 0
    pruned = remove_pruned(net, torch.randn(2, 8))
    assert (pruned[1].out_features, pruned[3].in_features, pruned[3].out_features) == (3, 3, 3)


def test_layer_that_does_not_map_zero_to_zero_is_refused():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Sigmoid(), nn.Conv2d(4, 2, 3),
        nn.Flatten(), nn.Linear(2 * 4 * 4, 2),
    ).eval()
    _zero_rows(net[0], net[1], [1])
    state = copy.deepcopy(net.state_dict())
    with pytest.raises(PruningError, match="does not map 0 to 0"):
        remove_pruned(net, torch.randn(2, 1, 8, 8))
    assert net[0].out_channels == 4
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_untraceable_input_is_a_clear_error():
    with pytest.raises(PruningError, match="could not trace|forward"):
        remove_pruned(resnet20(in_channels=1), torch.randn(2, 3, 32, 32))


def test_all_dead_keeps_one_channel():
    net = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(3 * 4 * 4, 2)).eval()
    _zero_rows(net[0], net[1], [0, 1, 2])
    pruned = remove_pruned(net, torch.randn(2, 1, 6, 6))
    assert pruned[0].out_channels == 1


# ---- issue 18: bad inputs are refused before anything changes ----------------------------------


def _small_net():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        net[0].weight[1] = 0
        net[0].bias[1] = 0
    return net


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize(
    "where, value",
    [("2.weight", float("nan")), ("0.bias", float("inf")), ("1.running_var", float("nan"))],
)
def test_non_finite_weights_are_named(where, value, inplace):
    net = _small_net()
    if where == "1.running_var":  # a buffer: a BatchNorm between the layers
        net = nn.Sequential(net[0], nn.BatchNorm1d(3), nn.ReLU(), net[2]).eval()
        where, x_layer = "1.running_var", net[1].running_var
    else:
        x_layer = net.get_parameter(where)
    with torch.no_grad():
        x_layer.view(-1)[0] = value
    state = copy.deepcopy(net.state_dict())
    with pytest.raises(PruningError, match=rf"'{where}' has NaN or infinite entries") as err:
        remove_pruned(net, torch.randn(2, 4), inplace=inplace)
    assert "does not map 0 to 0" not in str(err.value)
    assert net[0].out_features == 3
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items() if k != where)


@pytest.mark.parametrize("atol", [-1e-5, float("nan"), float("inf"), "1e-5", True, None])
def test_bad_atol_is_refused(atol):
    net = _small_net()
    with pytest.raises(ValueError, match="atol"):
        remove_pruned(net, torch.randn(2, 4), atol=atol, inplace=True)
    assert net[0].out_features == 3
    assert remove_pruned(net, torch.randn(2, 4), atol=0)[0].out_features == 2


def test_numpy_and_other_wrong_types_are_refused():
    np = pytest.importorskip("numpy")
    net = _small_net()
    x = torch.randn(2, 4)
    with pytest.raises(TypeError, match=r"example_inputs.*numpy.*torch.from_numpy"):
        remove_pruned(net, x.numpy())
    with pytest.raises(TypeError, match=r"example_inputs\[1\].*numpy"):
        remove_pruned(net, (x, x.numpy()))
    with pytest.raises(ValueError, match="example_inputs.*empty"):
        remove_pruned(net, ())
    with pytest.raises(ValueError, match="example_inputs.*NaN"):
        remove_pruned(net, torch.full((2, 4), float("nan")))
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module.*ndarray"):
        remove_pruned(np.zeros((3, 4)), x)
    with pytest.raises(TypeError, match=r"exclude\[0\].*ndarray"):
        remove_pruned(net, x, exclude=[np.zeros(3)])
    with pytest.raises(ValueError, match=r"exclude\[0\].*not a submodule"):
        remove_pruned(net, x, exclude=[nn.Linear(4, 3)])
    with pytest.raises(ValueError, match=r"exclude\[0\].*no submodule named 'fc'"):
        remove_pruned(net, x, exclude=["fc"])
    assert net[0].out_features == 3


@pytest.mark.parametrize("inplace", [False, True])
def test_excluded_layers_are_kept_on_the_copy_too(inplace):
    net = _small_net()
    pruned = remove_pruned(net, torch.randn(2, 4), exclude=[net[0]], inplace=inplace)
    assert pruned[0].out_features == 3
    by_name = remove_pruned(net, torch.randn(2, 4), exclude=["0"], inplace=inplace)
    assert by_name[0].out_features == 3


def test_ignored_layers_is_a_deprecated_spelling_of_exclude():
    net, x = _small_net(), torch.randn(2, 4)
    with pytest.warns(DeprecationWarning, match="use exclude"):
        pruned = remove_pruned(net, x, ignored_layers=[net[0]])
    assert pruned[0].out_features == remove_pruned(net, x, exclude=[net[0]])[0].out_features
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=r"ignored_layers\[0\]"):
        remove_pruned(net, x, ignored_layers=[nn.Linear(4, 3)])
