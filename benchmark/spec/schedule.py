"""The learning-rate protocol (docs/protocol.md §5), defined once for both backends.

Per optimizer step ``s`` (0-based) of ``T`` total steps with ``W`` warmup steps:

    lr(s) = base * s / W                                  for s < W
    lr(s) = base * (1 + cos(pi * (s - W) / (T - W))) / 2   for W <= s <= T

Each backend builds this from its own schedule classes and a test checks every
step against :meth:`Schedule.lr_at`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark import BenchmarkError


@dataclass(frozen=True)
class Schedule:
    base_lr: float
    warmup_steps: int
    total_steps: int
    steps_per_epoch: int

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        progress = (step - self.warmup_steps) / decay_steps if decay_steps else 1.0
        return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def epoch_lr(self, epoch: int) -> float:
        """LR logged for 0-based `epoch`: the LR of its last step."""
        return self.lr_at((epoch + 1) * self.steps_per_epoch - 1)


def make_schedule(cfg, train_size: int) -> Schedule:
    """Schedule for `train_size` training images under config `cfg` (drop-remainder batches)."""
    steps_per_epoch = train_size // cfg.batch_size
    if steps_per_epoch < 1:
        raise BenchmarkError(
            f"batch_size={cfg.batch_size} is larger than the {train_size} training images; lower batch_size"
        )
    total = steps_per_epoch * cfg.epochs
    warmup = min(cfg.optim.warmup_epochs * steps_per_epoch, total)
    base_lr = cfg.optim.lr * cfg.batch_size / cfg.optim.lr_reference_batch
    return Schedule(base_lr=base_lr, warmup_steps=warmup, total_steps=total, steps_per_epoch=steps_per_epoch)
