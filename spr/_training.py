"""The plain training loop of the pipeline: SGD with momentum, cosine learning rate, optional SPR.

``loader`` is anything that yields ``(inputs, labels)`` batches and has a ``len`` (a
``DataLoader``, :meth:`spr.data.ImageSplit.loader`); batches are moved to the model's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from spr._distributed import RankBatches, is_main, wrap

Batches = Iterable[tuple[Tensor, Tensor]]


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Batches) -> float:
    """Top-1 accuracy of ``model`` (eval mode) over ``loader``, in percent; restores the mode.

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1., 0, 0, 0], [0, 1, 0, 0]]))
    ...     _ = net[1].bias.zero_()
    >>> evaluate(net, [(torch.eye(4)[:2], torch.tensor([0, 0]))])
    50.0
    """
    device, was_training = model_device(model), model.training
    model.eval()
    correct = total = 0
    try:
        for inputs, labels in loader:
            inputs, labels = inputs.to(device), labels.to(device)
            correct += int((model(inputs).argmax(1) == labels).sum())
            total += len(labels)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return 100.0 * correct / total


def make_optimizer(
    model: nn.Module, epochs: int, steps_per_epoch: int, lr: float = 0.1,
    momentum: float = 0.9, weight_decay: float = 5e-4,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (Nesterov off, as in the SPR paper) with a per-step cosine decay to zero."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    total = max(1, epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )
    return optimizer, schedule


def train_epoch(
    model: nn.Module,
    loader: Batches,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    reg: Callable[[], Tensor] | None = None,
    progress: bool = True,
    desc: str = "train",
    sync_every: int = 25,
) -> dict[str, float]:
    """One pass over ``loader``: cross-entropy (+ ``reg()`` when given); returns mean loss,
    mean penalty and training accuracy (percent, on the augmented batches).

    Running sums stay on the device; the host reads them (for the progress bar and the check
    that the loss is finite) every ``sync_every`` steps, so a GPU is not stalled at every step.
    """
    device = model_device(model)
    model.train()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, penalty, correct
    total = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress)

    def check() -> None:
        loss_sum = float(sums[0])
        if not math.isfinite(loss_sum):
            raise FloatingPointError(
                f"{desc}: the loss became {loss_sum} — lower the learning rate (or lam)"
            )
        bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{100 * float(sums[2]) / total:.1f}")

    for step, (inputs, labels) in enumerate(bar, 1):
        inputs, labels = inputs.to(device), labels.to(device)
        logits = model(inputs)
        loss = F.cross_entropy(logits, labels)
        penalty = reg() if reg is not None else None
        if penalty is not None:
            loss = loss + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        n = len(labels)
        with torch.no_grad():
            sums[0] += loss.detach() * n
            if penalty is not None:
                sums[1] += penalty.detach() * n
            sums[2] += (logits.argmax(1) == labels).sum()
        total += n
        if step % sync_every == 0:
            check()
    if total == 0:
        raise ValueError(f"{desc}: the loader yielded no samples")
    check()
    loss_sum, penalty_sum, correct = sums.tolist()
    accuracy = 100.0 * correct / total
    return {"loss": loss_sum / total, "penalty": penalty_sum / total, "accuracy": accuracy}


def train(
    model: nn.Module,
    loader: Batches,
    epochs: int,
    *,
    reg: Callable[[], Tensor] | None = None,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    progress: bool = True,
    desc: str = "train",
) -> list[dict[str, float]]:
    """Train ``model`` in place for ``epochs`` epochs; one record per epoch.

    Add SPR by passing ``reg=spr.SPRegularizer(model, lam, alpha)``; fine-tune with ``reg=None``.
    Under ``torchrun`` the model trains in DistributedDataParallel, each process on its share of
    the batches (see :mod:`spr._distributed`).
    """
    batches = RankBatches(loader)
    optimizer, schedule = make_optimizer(model, epochs, len(batches), lr, momentum, weight_decay)
    trained = wrap(model)
    return [
        train_epoch(trained, batches, optimizer, schedule, reg, progress and is_main(),
                    f"{desc} {e + 1}/{epochs}")
        for e in range(epochs)
    ]
