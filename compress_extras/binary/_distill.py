"""Knowledge distillation from a float teacher (BinaryViT's ``DistributionLoss``)::

    KD = -(1/B) sum_b sum_k softmax(t_b / T)_k log softmax(s_b / T)_k * T^2
    loss = (1 - ce_weight) * KD + ce_weight * CE(s, y)

with student logits s (B, K), teacher logits t (B, K) (detached: the teacher is not trained)
and labels y (B,). BinaryViT trains with pure KD (T = 1, ce_weight = 0).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DistillationLoss"]


class DistillationLoss(nn.Module):
    """Soft cross-entropy against teacher logits (module docstring); returns a scalar.

    >>> import torch
    >>> s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    >>> round(DistillationLoss()(s, t).item(), 4)   # -(0.5 log p0 + 0.5 log p1)
    1.1269
    """

    def __init__(self, temperature: float = 1.0, ce_weight: float = 0.0) -> None:
        super().__init__()
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be > 0; got {temperature}")
        if not 0.0 <= ce_weight <= 1.0:
            raise ValueError(f"ce_weight must lie in [0, 1]; got {ce_weight}")
        self.temperature, self.ce_weight = float(temperature), float(ce_weight)

    def forward(self, student: Tensor, teacher: Tensor, targets: Tensor | None = None) -> Tensor:
        if student.shape != teacher.shape or student.dim() != 2:
            raise ValueError(f"student and teacher logits must both be (B, K); got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        T = self.temperature
        soft = F.softmax(teacher.detach() / T, dim=1)
        kd = -(soft * F.log_softmax(student / T, dim=1)).sum(1).mean() * T * T
        if self.ce_weight == 0.0:
            return kd
        if targets is None:
            raise ValueError("ce_weight > 0 needs targets (the labels)")
        return (1 - self.ce_weight) * kd + self.ce_weight * F.cross_entropy(student, targets)
