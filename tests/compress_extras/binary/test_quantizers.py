"""The three binarizers: forward values against the formulas, gradients against autograd of the
reference expressions and against the analytic straight-through derivatives."""

import pytest
import torch

from compress_extras.binary import approx_sign, binarize_attention, binarize_weight, sign_pm1


@pytest.mark.parametrize("center", [True, False])
def test_weight_rows_take_two_values_plus_minus_alpha(center):
    torch.manual_seed(0)
    W = torch.randn(7, 5, 3, 3) * 0.3
    Wb = binarize_weight(W, center).flatten(1)
    rows = W.flatten(1)
    for i in range(7):
        alpha = rows[i].abs().mean()
        values = sorted(set(Wb[i].tolist()))
        assert values == pytest.approx([-alpha.item(), alpha.item()], abs=0, rel=1e-7)
        assert len(values) == 2
        ref = rows[i] - rows[i].mean() if center else rows[i]
        assert torch.equal(Wb[i] > 0, ref >= 0)


def test_weight_gradient_is_the_clip_ste_of_the_reference():
    """BinaryViT: w = W_b.detach() - clip.detach() + clip with clip = clamp(W - rowmean, -1, 1);
    autograd of that expression is the oracle for our gradient (its forward differs from W_b by
    rounding only, ours is exact)."""
    torch.manual_seed(1)
    W = (torch.randn(6, 10) * 1.2).requires_grad_()
    G = torch.randn(6, 10)
    (binarize_weight(W) * G).sum().backward()
    ours = W.grad.clone()
    W.grad = None
    clip = torch.clamp(W - W.mean(1, keepdim=True), -1, 1)
    alpha = W.detach().abs().mean(1, keepdim=True)
    ref = alpha * torch.sign(clip.detach()) - clip.detach() + clip
    (ref * G).sum().backward()
    torch.testing.assert_close(ours, W.grad)
    # some entries are outside the band, so the clip matters
    assert ((W - W.mean(1, keepdim=True)).abs() > 1).any()


def test_activation_gradient_is_two_minus_two_abs_x_inside_and_zero_outside():
    x = torch.tensor([-3.0, -1.5, -1.0, -0.75, -0.5, -1e-3, 0.0, 1e-3, 0.3, 0.999, 1.0, 1.2, 7.0],
                     dtype=torch.float64, requires_grad=True)
    y = approx_sign(x)
    assert set(y.tolist()) == {-1.0, 1.0}
    y.backward(torch.ones_like(x))
    expected = [2 - 2 * abs(v) if abs(v) <= 1 else 0.0 for v in x.tolist()]
    assert x.grad.tolist() == pytest.approx(expected, abs=1e-12)
    # the ApproxSign pieces: 2 + 2x on [-1, 0], 2 - 2x on (0, 1]
    assert x.grad[3].item() == pytest.approx(2 + 2 * -0.75)
    assert x.grad[8].item() == pytest.approx(2 - 2 * 0.3)


def test_activation_gradient_by_finite_differences_of_the_smooth_surrogate():
    """Inside (-1, 1) the gradient is the derivative of the piecewise quadratic Bi-Real ApproxSign
    F(x) = 2x + x^2 (x < 0), 2x - x^2 (x >= 0)."""
    x = torch.linspace(-0.95, 0.95, 39, dtype=torch.float64, requires_grad=True)
    approx_sign(x).sum().backward()
    F = lambda t: torch.where(t < 0, 2 * t + t * t, 2 * t - t * t)  # noqa: E731
    h = 1e-6
    fd = (F(x.detach() + h) - F(x.detach() - h)) / (2 * h)
    torch.testing.assert_close(x.grad, fd, atol=1e-6, rtol=0)


def test_sign_of_zero_is_plus_one():
    assert sign_pm1(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_attention_values_and_gradients_match_the_bit_formulas():
    torch.manual_seed(2)
    A = torch.softmax(torch.randn(2, 3, 16, 16), -1).to(torch.float64).requires_grad_()
    alpha = torch.tensor(0.02, dtype=torch.float64, requires_grad=True)
    A_b = binarize_attention(A, alpha)
    assert set(A_b.unique().tolist()) <= {0.0, 0.02}
    assert set(A_b.unique().tolist()) == {0.0, 0.02}
    G = torch.randn_like(A)
    (A_b * G).sum().backward()
    q = A.detach() / 0.02
    middle = (q <= 1).double()
    torch.testing.assert_close(A.grad, G * middle)
    big = (q > 1).double()
    g_alpha = ((big + middle * (torch.round(q) - q)) * G).sum() / A.numel() ** 0.5
    torch.testing.assert_close(alpha.grad, g_alpha)


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="output dim"):
        binarize_weight(torch.ones(3))
    with pytest.raises(ValueError, match="one scalar"):
        binarize_attention(torch.ones(2, 2), torch.ones(2))
