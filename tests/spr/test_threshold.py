"""threshold_search on a real (digits) model: the answer respects max_drop, is what it says it
is (re-applied independently), is maximal up to the next entry, and leaves the model as it was."""

import copy

import pytest
import torch

import spr
from spr._groups import group_parts
from spr.data import digits
from spr.models import small_cnn


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    train = digits("train")
    model = small_cnn(in_channels=1, width=8)
    loader = train.loader(64, generator=torch.Generator().manual_seed(0))
    reg = spr.SPRegularizer(model, lam=1.0, alpha=0.5)
    spr.train(model, loader, epochs=6, reg=reg, lr=0.05, progress=False)
    return model, train.loader(512, shuffle=False)


def _accuracy_zeroed(model, loader, threshold):
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for _, parts in group_parts(clone):
            for p in parts:
                p[p.abs() <= threshold] = 0
    return spr.evaluate(clone, loader)


@pytest.mark.parametrize("max_drop", [0.5, 2.0, 10.0])
def test_respects_max_drop_and_is_maximal(trained, max_drop):
    model, loader = trained
    state = copy.deepcopy(model.state_dict())
    result = spr.threshold_search(model, loader, max_drop=max_drop, progress=False)

    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert result.accuracy_dense == pytest.approx(spr.evaluate(model, loader))
    assert result.drop < max_drop
    assert _accuracy_zeroed(model, loader, result.threshold) == pytest.approx(result.accuracy)
    magnitudes = torch.cat([p.detach().abs().flatten() for _, ps in group_parts(model)
                            for p in ps])
    assert result.entries == magnitudes.numel()
    assert result.zeroed == int((magnitudes <= result.threshold).sum())
    larger = magnitudes[magnitudes > result.threshold]
    if larger.numel():  # one entry more and the drop is too large
        next_threshold = float(larger.min())
        assert result.accuracy_dense - _accuracy_zeroed(model, loader, next_threshold) >= max_drop


def test_zero_drop_allows_only_gains(trained):
    """max_drop=0: a threshold is accepted only where zeroing *raises* the accuracy."""
    model, loader = trained
    result = spr.threshold_search(model, loader, max_drop=0.0, progress=False)
    assert (result.zeroed == 0 and result.threshold == 0.0) or result.drop < 0
    for threshold, accuracy in result.history:
        if threshold > result.threshold:
            assert accuracy <= result.accuracy_dense


def test_tolerance_trades_evaluations_for_precision(trained):
    model, loader = trained
    exact = spr.threshold_search(model, loader, max_drop=2.0, progress=False)
    rough = spr.threshold_search(model, loader, max_drop=2.0, tol=0.05, progress=False)
    assert len(rough.history) < len(exact.history)
    assert rough.drop < 2.0 and rough.threshold <= exact.threshold


@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_negative_max_drop_is_refused(trained, bad):
    model, loader = trained
    with pytest.raises(ValueError, match="max_drop"):
        spr.threshold_search(model, loader, max_drop=bad, progress=False)


def test_channels_last_weights_are_refused():
    model = small_cnn(width=4).to(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="channels-last"):
        spr.threshold_search(model, [(torch.zeros(1, 1, 8, 8), torch.zeros(1).long())],
                             progress=False)


# --- bad weights and labels are refused before any work (issue 18) -------------------------------

def _tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))


class _CountingLoader:
    def __init__(self, batches):
        self.batches, self.passes = batches, 0

    def __iter__(self):
        self.passes += 1
        return iter(self.batches)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["0.weight", "4.weight", "1.running_var"])
def test_non_finite_weights_are_refused_before_any_pass(bad, where):
    net = _tiny_net()
    with torch.no_grad():
        dict([*net.named_parameters(), *net.named_buffers()])[where].view(-1)[1] = bad
    loader = _CountingLoader([(torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))])
    with pytest.raises(ValueError, match=rf"'{where}'.*non-finite") as error:
        spr.threshold_search(net, loader, progress=False)
    assert "finite" in str(error.value) and loader.passes == 0


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 2, 3]), torch.tensor([0, -1, 2, 1]),
                                    torch.tensor([0.0, 1.5, 2.0, 1.0])])
def test_labels_outside_the_model_classes_are_refused(labels):
    net = _tiny_net()
    state = copy.deepcopy(net.state_dict())
    loader = _CountingLoader([(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])),
                              (torch.randn(4, 1, 8, 8), labels)])
    with pytest.raises(ValueError, match=r"labels.*0\.\.2.*3 classes") as error:
        spr.threshold_search(net, loader, max_drop=100.0, progress=False)
    assert "batch 1" in str(error.value) and loader.passes == 1  # only the dense pass ran
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
