"""What a Keras trainer is on every engine: the same Keras objects built the same way.

Model (the registry's keras.applications networks), precision policy, LR schedule
(Keras' CosineDecay), SGD (Keras' or PyTorch's rule), PyTorch's coupled L2, the loss,
and the audit's and perf's views of them are written once here with ``keras`` and
``keras.ops``, so they are one code on TensorFlow, JAX and torch. An engine's trainer
(train.py for TensorFlow, portable.py for the others) adds the training step, the
input pipeline and the checkpoints, where the engines differ.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

from benchmark.backends import contract
from benchmark.backends.keras import models
from benchmark.backends.keras.models import block_shapes, entry, layer_table, parameter_counts
from benchmark.backends.keras.optim import make_sgd
from benchmark.backends.keras.schedule import build_lr_schedule
from benchmark.spec.models import create_for_protocol
from benchmark.spec.protocol import Knobs
from benchmark.spec.schedule import Schedule


def set_precision(mixed: bool, dtype: str, device: str) -> str | None:
    """Set Keras' (process-global) dtype policy; the reduced dtype, or None for fp32."""
    if not mixed:
        # global state: a previous mixed run in this process must not leak into this one
        keras.mixed_precision.set_global_policy("float32")
        return None
    reduced = dtype if device == "cuda" else "bfloat16"  # CPU: bfloat16, no loss scaling (PyTorch's CPU autocast)
    keras.mixed_precision.set_global_policy(f"mixed_{reduced}")
    return reduced


def coupled_l2(grads, variables, weight_decay: float, scale=None):
    """grads + weight_decay * w: torch.optim.SGD(weight_decay=...)'s coupled L2. Under
    loss scaling (`scale`: the LossScaleOptimizer's current scale) the gradients are
    still multiplied by the scale here (the optimizer divides it out), so the decay term
    is scaled too: exact, as the scale is a power of two."""
    decay = ops.convert_to_tensor(weight_decay, "float32")
    if scale is not None:
        decay = decay * ops.cast(scale, "float32")
    return [g + ops.cast(decay, g.dtype) * ops.cast(v, g.dtype) for g, v in zip(grads, variables)]


def cross_entropy(labels, logits):
    """Per-image softmax cross-entropy of float32 logits (contract.LOSS_FACT)."""
    return keras.losses.sparse_categorical_crossentropy(labels, ops.cast(logits, "float32"), from_logits=True)


class KerasTrainer:
    """The engine-neutral part of contract.Trainer for Keras; subclasses set `mode`,
    `device`, `data_stream` and implement the steps, pipeline and checkpoints."""

    mode: str
    device: str
    data_stream: str  # contract.ProtocolFacts.data_stream of the engine's pipeline

    def __init__(self, cfg, data, schedule: Schedule, checkpoint_dir: Path, device: str):
        self.cfg, self.schedule, self.checkpoint_dir = cfg, schedule, Path(checkpoint_dir)
        # sweeps give every run its own process, but tests, notebooks and benchmark.perf
        # build several trainers in one: start each from a fresh Keras state (layer
        # names, cached graphs) rather than the previous one's
        keras.backend.clear_session()
        self.device = device
        keras.utils.set_random_seed(cfg.seed)  # Python, NumPy, the engine's and Keras' own seed generator
        self.reduced_dtype = set_precision(bool(cfg.precision.mixed), cfg.precision.dtype, self.device)

        self.num_classes = data.num_classes
        self.image_size = data.image_size
        self.mean, self.std = np.asarray(data.mean, np.float32), np.asarray(data.std, np.float32)
        self.knobs = Knobs.of(cfg.get("protocol"))
        self.model_options = self.knobs.model_options(cfg.model.name)
        self.model = create_for_protocol(models, cfg.model.name, data.num_classes, data.image_size, self.knobs,
                                         cfg.seed)
        self.variables = self.model.trainable_variables

        self.lr_schedule = build_lr_schedule(schedule)
        sgd = make_sgd(self.knobs.optimizer, self.learning_rate(), cfg.optim.momentum, cfg.optim.nesterov)
        self.loss_scaling = self.reduced_dtype == "float16"
        self.optimizer = keras.optimizers.LossScaleOptimizer(sgd) if self.loss_scaling else sgd
        # slots exist before a restore, so the checkpoint fills them instead of deferring
        self.optimizer.build(self.variables)
        self.weight_decay = float(cfg.optim.weight_decay)
        self.accum_steps = cfg.grad_accum_steps
        self.micro_batch = cfg.batch_size // cfg.grad_accum_steps

    def learning_rate(self):
        """What the SGD is given as its learning rate (the engine decides how the schedule reaches it)."""
        raise NotImplementedError

    def sgd(self) -> keras.optimizers.SGD:
        return getattr(self.optimizer, "inner_optimizer", self.optimizer)

    # ------------------------------------------------------------ the audit's and perf's view

    def protocol_facts(self) -> contract.ProtocolFacts:
        sgd = self.sgd()
        # the step: sparse categorical cross-entropy from logits, mean over the batch (cross_entropy,
        # contract.LOSS_FACT); coupled_l2 on every trainable variable; the LR per optimizer step
        return contract.protocol_facts(
            momentum=float(sgd.momentum), nesterov=bool(sgd.nesterov),
            momentum_buffer=contract.momentum_buffer_fact(lr_in_buffer=not self.knobs.optimizer,
                                                          nesterov=bool(sgd.nesterov)),
            weight_decay=self.weight_decay, reduced_dtype=self.reduced_dtype, loss_scaling=self.loss_scaling,
            mean=self.mean, std=self.std, layers=self.layers(),
            model=entry(self.cfg.model.name), drop_rate=self.model_options["drop_rate"],
            drop_path_rate=self.model_options["drop_path_rate"], shared_init=self.knobs.init,
            data_stream=self.data_stream, micro_batch=self.micro_batch, accum_steps=self.accum_steps)

    def layers(self) -> list[contract.LayerInfo]:
        return layer_table(self.model)

    def block_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return block_shapes(self.model, self.cfg.model.name, self.image_size)

    def parameter_counts(self) -> dict[str, int]:
        return parameter_counts(self.model)

    def lr_trajectory(self, steps: int) -> np.ndarray:
        return self.lr_trajectory_between(0, steps)

    def lr_trajectory_between(self, first: int, stop: int) -> np.ndarray:
        """The LR of optimizer steps first..stop-1, from the Keras schedule object."""
        return np.array([float(ops.convert_to_numpy(self.lr_schedule(s))) for s in range(first, stop)], np.float64)

    def update_trajectory(self, grads: np.ndarray) -> np.ndarray:
        sgd = self.sgd()
        lrs = self.lr_trajectory(len(grads))
        probe_sgd = make_sgd(self.knobs.optimizer, float(lrs[0]), sgd.momentum, sgd.nesterov)
        probe = keras.Variable(np.zeros(grads.shape[1], np.float32))
        probe_sgd.build([probe])
        out = np.empty_like(grads)
        for t, g in enumerate(grads.astype(np.float32)):
            probe_sgd.learning_rate.assign(lrs[t])  # the schedule's LR of step t, as the trainer steps it
            probe_sgd.apply([ops.convert_to_tensor(g)], [probe])
            out[t] = ops.convert_to_numpy(probe.value)
        return out
