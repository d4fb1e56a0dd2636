"""The sign-scale decomposition of a shift weight and its straight-through estimators.

Latents (each of the weight's shape): a sign latent ``theta_s`` and ``G = 2^(N-1) - 1`` gate
latents ``theta_1..theta_G`` (DenseShift, Li et al. 2023); with a zero code (S3-style) one gate
fewer plus a value latent ``theta_v``. Forward::

    s   = sign(theta_s) in {-1, +1}, sign(0) = +1        (identity STE gradient)
    b_i = 1[theta_i > 0] in {0, 1}                        (identity STE gradient)
    p   = b_G (1 + b_{G-1} (1 + ... (1 + b_1)))           (3 bits: p = b3 (1 + b2 (1 + b1)))
    w_fw = s 2^p,   w_bw = s sqrt(p + 1)                  (DenseShift)
    w_fw = v s 2^p, w_bw = v s sqrt(p + 1), v = 1[theta_v > 0]   (zero code)

and the value is ``w_fw`` with the gradient of ``w_bw``. The paper writes this as
``w_bw + (w_fw - w_bw).detach()``; we write ``w_fw.detach() + (w_bw - w_bw.detach())``, which has
the same gradient and is exactly ``w_fw`` in floating point (``x - x = 0``), so forward weights are
exact powers of two. Hence ``dL/dtheta_s = dL/dw sqrt(p+1)`` and ``dL/dtheta_i = dL/dw s
/ (2 sqrt(p+1)) dp/db_i`` (inner gates get gradient only when the outer ones are on).

Low-variance initialisation: every latent ~ N(0, 1e-3^2), so signs and gates are fair coins and
``P(p = k) = 2^-(k+1)`` for ``k < G``, ``P(p = G) = 2^-G`` (3 bits: 1/2, 1/4, 1/8, 1/8).

>>> gates = torch.tensor([[1.0], [1.0], [1.0]])   # (G, ...) as b_1, b_2, b_3
>>> nested_exponent(gates).tolist()
[3.0]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from compress_extras.shift._levels import check_bits, max_exponent


def gate_count(bits: int, zero_code: bool = False) -> int:
    """Gate latents per weight: ``2^(N-1) - 1`` (DenseShift) or ``2^(N-1) - 2`` (zero code).

    >>> gate_count(3), gate_count(3, zero_code=True)
    (3, 2)
    """
    return max_exponent(bits, zero_code)


def ste_sign(theta: Tensor) -> Tensor:
    """``sign(theta)`` with sign(0) = +1 in the forward pass, identity gradient."""
    hard = torch.where(theta >= 0, 1.0, -1.0).to(theta.dtype)
    return hard + (theta - theta.detach())


def ste_gate(theta: Tensor) -> Tensor:
    """``1[theta > 0]`` in the forward pass, identity gradient."""
    hard = (theta > 0).to(theta.dtype)
    return hard + (theta - theta.detach())


def nested_exponent(gates: Tensor) -> Tensor:
    """``p = b_G (1 + b_{G-1} (1 + ... (1 + b_1)))`` from gates (G, ...) ordered b_1..b_G.

    Differentiable in the gates (products). With G = 0 gates p = 0 (the shape of ``gates[0]``
    cannot be known, so pass a (0, ...) tensor: its trailing shape is used).
    """
    p = torch.zeros(gates.shape[1:], dtype=gates.dtype, device=gates.device)
    for i in range(gates.shape[0]):
        p = gates[i] * (1 + p)
    return p


def shift_weight(sign_latent: Tensor, gate_latents: Tensor, value_latent: Tensor | None = None
                 ) -> Tensor:
    """The unscaled weight ``s 2^p`` (times ``v`` with a zero code) with the sqrt(p+1) surrogate.

    Args:
        sign_latent: (...) theta_s.
        gate_latents: (G, ...) theta_1..theta_G (innermost first).
        value_latent: (...) theta_v for the zero-code variant, else None.

    Returns:
        (...) tensor equal to ``s 2^p`` (``v s 2^p``) whose gradient is that of ``s sqrt(p+1)``.

    >>> w = shift_weight(torch.tensor([-1e-3, 2e-3]), torch.tensor([[1e-3, 1e-3], [-1e-3, 1e-3]]))
    >>> w.tolist()
    [-1.0, 4.0]
    """
    if gate_latents.shape[1:] != sign_latent.shape:
        raise ValueError(f"gate latents must be (G, *{tuple(sign_latent.shape)}); "
                         f"got {tuple(gate_latents.shape)}")
    s = ste_sign(sign_latent)
    p = nested_exponent(ste_gate(gate_latents))
    w_fw = s.detach() * torch.exp2(p.detach())
    w_bw = s * torch.sqrt(p + 1)
    if value_latent is not None:
        v = ste_gate(value_latent)
        w_fw, w_bw = v.detach() * w_fw, v * w_bw
    return w_fw + (w_bw - w_bw.detach())


def init_latents(shape: tuple[int, ...], bits: int, zero_code: bool = False, std: float = 1e-3,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Low-variance latents ~ N(0, std^2): ``{"sign": shape, "gates": (G, *shape)[, "value"]}``."""
    check_bits(bits)
    G = gate_count(bits, zero_code)

    def draw(*s: int) -> Tensor:
        return torch.randn(s, generator=generator) * std

    out = {"sign": draw(*shape), "gates": draw(G, *shape)}
    if zero_code:
        out["value"] = draw(*shape)
    return out


def latents_from_codes(sign: Tensor, exponent: Tensor, bits: int, zero_code: bool = False,
                       nonzero: Tensor | None = None, magnitude: float = 1e-3
                       ) -> dict[str, Tensor]:
    """Latents of magnitude ``magnitude`` that reproduce given codes (projection of pretrained
    weights): the outer ``p`` gates on, the rest off, so flipping the first off gate moves to
    the next larger level.

    >>> lat = latents_from_codes(torch.tensor([-1.0]), torch.tensor([2]), 3)
    >>> shift_weight(lat["sign"], lat["gates"]).tolist()
    [-4.0]
    """
    G = gate_count(bits, zero_code)
    if exponent.numel() and (int(exponent.max()) > G or int(exponent.min()) < 0):
        raise ValueError(f"exponents must lie in 0..{G} for {bits} bits")
    m = float(magnitude)
    gates = torch.stack([torch.where(exponent >= G - i, m, -m) for i in range(G)]) if G else \
        torch.zeros((0, *sign.shape))
    out = {"sign": torch.where(sign < 0, -m, m), "gates": gates.float()}
    if zero_code:
        nz = torch.ones_like(sign, dtype=torch.bool) if nonzero is None else nonzero
        out["value"] = torch.where(nz, m, -m)
    return {k: v.float() for k, v in out.items()}


def exponent_probabilities(bits: int) -> list[float]:
    """``P(p = k)`` at the low-variance init (fair-coin gates): 2^-(k+1), the last 2^-G.

    >>> exponent_probabilities(3)
    [0.5, 0.25, 0.125, 0.125]
    """
    G = gate_count(bits)
    probs = [2.0 ** -(k + 1) for k in range(G)] + [2.0**-G]
    assert math.isclose(sum(probs), 1.0)
    return probs
