"""benchmark.spec.schedule.Schedule built from Keras' own CosineDecay (with its linear warmup)."""

from __future__ import annotations

import keras

from benchmark.spec.schedule import Schedule


def build_lr_schedule(schedule: Schedule) -> keras.optimizers.schedules.LearningRateSchedule:
    """LR of optimizer step s (0-based) equal to ``schedule.lr_at(s)``.

    CosineDecay warms up linearly from ``initial_learning_rate`` (0 here) to
    ``warmup_target``, then decays over ``decay_steps`` to ``alpha * warmup_target``.
    """
    warmup, total, base = schedule.warmup_steps, schedule.total_steps, schedule.base_lr
    if warmup == 0:
        # warmup_target=None is CosineDecay's "no warmup": decay from initial_learning_rate
        return keras.optimizers.schedules.CosineDecay(initial_learning_rate=base, decay_steps=total, alpha=0.0)
    # CosineDecay rejects decay_steps=0. When the warmup covers the whole run (a run
    # shorter than its warmup), the decay branch is never reached by steps 0..total-1,
    # so any positive length gives the same LR at every step the run takes.
    decay = max(1, total - warmup)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=decay, alpha=0.0, warmup_target=base, warmup_steps=warmup,
    )
