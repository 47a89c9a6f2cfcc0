"""The learning-rate sequence of the official trainer (spec section 4)."""

from __future__ import annotations

import math

import pytest
import torch

from harness.engine.schedule import learning_rate, learning_rates

# Spec section 4, printed to 3-4 significant digits: 10 epochs at LR 0.002.
SPEC_10_EPOCHS = [1e-5, 2e-3, 1.951e-3, 1.809e-3, 1.588e-3, 1.309e-3, 1.0e-3, 6.91e-4, 4.12e-4, 1.91e-4]


def test_ten_epochs_at_0002_match_the_spec() -> None:
    got = learning_rates(0.002, 10)
    assert len(got) == 10
    for epoch, (value, expected) in enumerate(zip(got, SPEC_10_EPOCHS)):
        assert value == pytest.approx(expected, rel=2e-3), epoch
    assert got[0] == 1e-5 and got[1] == 0.002  # warm-up, then the full rate in the second epoch
    assert got[-1] == pytest.approx(0.5 * 0.002 * (1 + math.cos(math.pi * 8 / 10)), rel=1e-12)


def test_never_reaches_zero_and_decreases_after_warmup() -> None:
    rates = learning_rates(0.002, 200)
    assert all(a > b for a, b in zip(rates[1:], rates[2:]))
    assert rates[-1] > 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        learning_rate(-1, 0.002, 10)
    with pytest.raises(ValueError):
        learning_rate(0, 0.002, 0)


class ConstantWarmup(torch.optim.lr_scheduler.LRScheduler):
    """Dassl's ConstantWarmupScheduler (``dassl/optim/lr_scheduler.py``), written out for the comparison."""

    def __init__(self, optimizer, successor, warmup_epoch: int, cons_lr: float) -> None:
        self.successor, self.warmup_epoch, self.cons_lr = successor, warmup_epoch, cons_lr
        super().__init__(optimizer)

    def step(self, epoch=None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]


@pytest.mark.parametrize("max_epoch", [10, 50])
def test_equals_torch_cosine_in_dassl_warmup_stepped_once_per_epoch(max_epoch: int) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.002, momentum=0.9)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch)  # WARMUP_RECOUNT: fresh count
    scheduler = ConstantWarmup(optimizer, cosine, 1, 1e-5)
    used = []
    for _ in range(max_epoch):
        used.append(optimizer.param_groups[0]["lr"])  # the rate every batch of this epoch runs at
        optimizer.step()
        scheduler.step()  # Dassl steps on the last batch of the epoch
    assert learning_rates(0.002, max_epoch) == pytest.approx(used, rel=1e-9, abs=1e-15)
