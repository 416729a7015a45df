"""benchmark.spec.schedule.Schedule built from torch's own scheduler classes, stepped per optimizer step."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, SequentialLR

from benchmark.spec.schedule import Schedule


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> LRScheduler:
    """Linear warmup from exactly 0 (LinearLR cannot start at 0), then CosineAnnealingLR to 0.

    The optimizer's lr must be ``schedule.base_lr``.
    """
    warmup, total = schedule.warmup_steps, schedule.total_steps
    if warmup == 0:
        return CosineAnnealingLR(optimizer, T_max=total, eta_min=0.0)
    warmup_sched = LambdaLR(optimizer, lambda step: step / warmup)
    if warmup >= total:
        return warmup_sched
    cosine = CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=0.0)
    return SequentialLR(optimizer, [warmup_sched, cosine], milestones=[warmup])
