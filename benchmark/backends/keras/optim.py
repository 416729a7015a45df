"""SGD and its LR schedule for the Keras backend, on every engine.

SGD: Keras' own, or PyTorch's update rule (protocol.optimizer=aligned).

The two rules differ only in where the learning rate enters the momentum buffer
(docs/protocol.md §8). Keras folds it in when the gradient enters the buffer,
``v = m*v - lr*g; w += m*v - lr*g``; PyTorch applies it when the buffer is used,
``b = m*b + g; w -= lr*(g + m*b)``. They agree while the LR is constant and drift apart
under warmup and cosine decay, so the aligned protocol runs PyTorch's rule in Keras.
``TorchSGD`` is Keras' ``SGD`` with only ``update_step`` replaced: same slots (so the
same checkpoints), same LR schedule handling, same loss-scale wrapping.

LR schedule: benchmark.spec.schedule.Schedule built from Keras' own CosineDecay (with
its linear warmup).
"""

from __future__ import annotations

import keras
from keras import ops

from benchmark.spec.schedule import Schedule


class TorchSGD(keras.optimizers.SGD):
    """torch.optim.SGD(momentum, nesterov, dampening=0) as a Keras optimizer; weight decay
    stays outside, as in the trainer's coupled L2."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(lr, g))
            return
        # convert, not cast: TensorFlow's cast makes a float32 tensor of the Python float first,
        # so a float64 variable would step with float32(0.9) (the same number for float32 ones)
        m = ops.convert_to_tensor(self.momentum, variable.dtype)
        buf = self.momentums[self._get_variable_index(variable)]
        # torch starts the buffer at the first gradient: m * 0 + g is the same number
        self.assign(buf, ops.add(ops.multiply(m, buf), g))
        step = ops.add(g, ops.multiply(m, buf)) if self.nesterov else buf
        self.assign_sub(variable, ops.multiply(lr, step))


def make_sgd(torch_rule: bool, learning_rate, momentum: float, nesterov: bool) -> keras.optimizers.SGD:
    cls = TorchSGD if torch_rule else keras.optimizers.SGD
    return cls(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov)


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
        initial_learning_rate=0.0,
        decay_steps=decay,
        alpha=0.0,
        warmup_target=base,
        warmup_steps=warmup,
    )
