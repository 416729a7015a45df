"""SGD for the Keras backend: Keras' own, or PyTorch's update rule (protocol.optimizer=aligned).

The two rules differ only in where the learning rate enters the momentum buffer
(docs/protocol.md §8). Keras folds it in when the gradient enters the buffer,
``v = m*v - lr*g; w += m*v - lr*g``; PyTorch applies it when the buffer is used,
``b = m*b + g; w -= lr*(g + m*b)``. They agree while the LR is constant and drift apart
under warmup and cosine decay, so the aligned protocol runs PyTorch's rule in Keras.
``TorchSGD`` is Keras' ``SGD`` with only ``update_step`` replaced: same slots (so the
same checkpoints), same LR schedule handling, same loss-scale wrapping.
"""

from __future__ import annotations

import keras
from keras import ops


class TorchSGD(keras.optimizers.SGD):
    """torch.optim.SGD(momentum, nesterov, dampening=0) as a Keras optimizer; weight decay
    stays outside, as in the trainer's coupled L2."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(lr, g))
            return
        m = ops.cast(self.momentum, variable.dtype)
        buf = self.momentums[self._get_variable_index(variable)]
        # torch starts the buffer at the first gradient: m * 0 + g is the same number
        self.assign(buf, ops.add(ops.multiply(m, buf), g))
        step = ops.add(g, ops.multiply(m, buf)) if self.nesterov else buf
        self.assign_sub(variable, ops.multiply(lr, step))


def make_sgd(torch_rule: bool, learning_rate, momentum: float, nesterov: bool) -> keras.optimizers.SGD:
    cls = TorchSGD if torch_rule else keras.optimizers.SGD
    return cls(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov)

