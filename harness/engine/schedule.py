"""The learning-rate schedule of the official CoOp/CoCoOp trainers, as a pure function of the epoch.

Dassl wraps ``CosineAnnealingLR(T_max=max_epoch, eta_min=0)`` in ``ConstantWarmupScheduler(warmup_epoch=1,
cons_lr=1e-5)`` with ``WARMUP_RECOUNT=True`` and steps it once per epoch (spec section 4). The successor
scheduler starts counting only after the warm-up, so epoch ``e >= warmup_epoch`` runs at the cosine value of
``e - warmup_epoch``: the first epoch after the warm-up uses the full learning rate, and the last epoch never
reaches zero. Writing the sequence as a function (instead of stepping scheduler objects) keeps it exact,
resumable from any epoch and testable on its own.
"""

from __future__ import annotations

import math


def learning_rate(
    epoch: int, base_lr: float, max_epoch: int, warmup_epoch: int = 1, warmup_cons_lr: float = 1e-5
) -> float:
    """The learning rate used during 0-based ``epoch``.

    Args:
        epoch: 0-based epoch index (``0 <= epoch < max_epoch``).
        base_lr: ``OPTIM.LR`` (0.002 in every CoOp/CoCoOp config).
        max_epoch: ``OPTIM.MAX_EPOCH``; the cosine period ``T_max``.
        warmup_epoch: number of constant warm-up epochs (0 disables the warm-up).
        warmup_cons_lr: the constant warm-up learning rate.

    Returns:
        ``warmup_cons_lr`` during the warm-up, then ``0.5 * base_lr * (1 + cos(pi * (epoch - warmup_epoch) /
        max_epoch))``.

    Raises:
        ValueError: for a negative epoch or a non-positive ``max_epoch``.
    """
    if max_epoch < 1:
        raise ValueError(f"max_epoch must be at least 1, got {max_epoch}")
    if epoch < 0:
        raise ValueError(f"epoch must be non-negative, got {epoch}")
    if epoch < warmup_epoch:
        return warmup_cons_lr
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * (epoch - warmup_epoch) / max_epoch))


def learning_rates(
    base_lr: float, max_epoch: int, warmup_epoch: int = 1, warmup_cons_lr: float = 1e-5
) -> list[float]:
    """The learning rate of every epoch ``0 .. max_epoch - 1``."""
    return [learning_rate(e, base_lr, max_epoch, warmup_epoch, warmup_cons_lr) for e in range(max_epoch)]
