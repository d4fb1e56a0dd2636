"""The KD loss against the soft cross-entropy computed by hand (T6)."""

import math

import pytest
import torch

from compress_extras.binary import DistillationLoss


def _by_hand(s, t, T):
    total = 0.0
    for srow, trow in zip(s.tolist(), t.tolist(), strict=True):
        zt = [math.exp(v / T) for v in trow]
        zs = [math.exp(v / T) for v in srow]
        p = [v / sum(zt) for v in zt]
        total += -sum(pk * math.log(qk / sum(zs)) for pk, qk in zip(p, zs, strict=True))
    return total / len(s) * T * T


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_kd_is_the_soft_cross_entropy(T):
    torch.manual_seed(0)
    s, t = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    assert DistillationLoss(T)(s, t).item() == pytest.approx(_by_hand(s, t, T), rel=1e-12)


def test_teacher_gets_no_gradient_and_ce_mixes_in():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    loss = DistillationLoss(ce_weight=0.1)(s, t, y)
    loss.backward()
    assert t.grad is None and s.grad is not None
    expected = 0.9 * DistillationLoss()(s, t) + 0.1 * torch.nn.functional.cross_entropy(s, y)
    assert loss.item() == pytest.approx(expected.item())
    # KD is minimised (to the teacher's entropy) when the student copies the teacher
    same = DistillationLoss()(t.detach(), t.detach())
    entropy = -(t.softmax(1) * t.log_softmax(1)).sum(1).mean()
    assert same.item() == pytest.approx(entropy.item(), rel=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(0.0)
    with pytest.raises(ValueError, match="targets"):
        DistillationLoss(ce_weight=0.5)(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="both be"):
        DistillationLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
