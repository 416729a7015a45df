"""Keras 3 on the JAX engine: the step of Keras' "training loop from scratch in JAX"
guide (``model.stateless_call`` + ``jax.value_and_grad`` + ``optimizer.stateless_apply``
under ``jax.jit``), the NumPy pipeline (pipelines/numpy.py), Keras weights files for
``last`` (trainer.WeightsFileLast). Never imports TensorFlow.

JAX is functional: the engine holds the model's and the optimizer's variables as arrays
(``self.state``) that each jitted step takes and returns, and writes them back into the
Keras variables before evaluation and saving (``sync_to_keras``), as Keras' own JAX
trainer does. The LR is a value each step takes, written into the SGD's learning-rate
slot inside the step.
"""

from __future__ import annotations

import os
import re
from types import ModuleType

from benchmark.backends.keras import use_engine

use_engine("jax")  # before keras is imported, whatever KERAS_BACKEND the shell has
# Like TensorFlow's memory growth (engines/tensorflow.py): JAX would otherwise reserve 75%
# of the GPU when it first uses it, which hides the real footprint from the memory comparison.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmark import BenchmarkError  # noqa: E402
from benchmark.backends import cpus  # noqa: E402
from benchmark.backends.keras import models  # noqa: E402
from benchmark.backends.keras.models import canonical_shapes, load_canonical  # noqa: E402
from benchmark.backends.keras.pipelines import numpy as numpy_pipeline  # noqa: E402
from benchmark.backends.keras.trainer import (  # noqa: E402
    KerasTrainer,
    WeightsFileLast,
    coupled_l2,
    cross_entropy,
    mean_loss,
    step_lr,
)
from benchmark.backends.keras.trainer import equivalence_probe as keras_probe  # noqa: E402

__all__ = [
    "Trainer",
    "canonical_shapes",
    "create_model",
    "environment",
    "equivalence_probe",
    "input_pipeline",
    "load_canonical",
    "synchronize",
]


def matmul_precision() -> str | None:
    """jax_default_matmul_precision as JAX holds it (a config attribute jax's stubs do not declare)."""
    return getattr(jax.config, "jax_default_matmul_precision")  # noqa: B009


# precision.matmul -> jax_default_matmul_precision
JAX_PRECISION = {"ieee": "highest", "tf32": "tensorfloat32"}


def _gpus() -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU backend in this jaxlib (the CPU build)
        return []


def xla_deterministic_ops() -> bool | None:
    """--xla_gpu_deterministic_ops as XLA_FLAGS sets it (the last one wins), None where unset."""
    found = re.findall(r"--xla_gpu_deterministic_ops(?:=(\w+))?", os.environ.get("XLA_FLAGS", ""))
    return None if not found else found[-1].lower() in ("", "true", "1")


def select_device(name: str, deterministic: bool):
    """(framework.device resolved to 'cpu' or 'cuda', the jax device)."""
    if deterministic:
        # XLA's GPU kernels are deterministic only on request (read when the GPU backend starts)
        flags = os.environ.get("XLA_FLAGS", "")
        if xla_deterministic_ops() is False:
            raise BenchmarkError(
                "framework.deterministic=true, but XLA_FLAGS in the environment turns "
                "--xla_gpu_deterministic_ops off: drop it from XLA_FLAGS or run with framework.deterministic=false"
            )
        if xla_deterministic_ops() is None:
            # first: XLA stops reading its flags at a word without dashes, which the environment's may hold
            os.environ["XLA_FLAGS"] = ("--xla_gpu_deterministic_ops=true " + flags).strip()
    gpus = _gpus()
    if name == "cuda" and not gpus:
        raise BenchmarkError(
            "framework.device=cuda but JAX sees no GPU (the CPU build of jax is installed, or no "
            "driver); use framework.device=auto or cpu, or install jax[cuda12]"
        )
    device = gpus[0] if gpus and name != "cpu" else jax.devices("cpu")[0]
    jax.config.update("jax_default_device", device)  # where Keras creates its variables
    return ("cuda" if device.platform == "gpu" else "cpu"), device


def _move(device):
    return lambda x, y: (jax.device_put(x, device), jax.device_put(y, device))


def input_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int, mean, std, seed: int):
    device = _gpus()[0] if _gpus() else jax.devices("cpu")[0]
    move = _move(device)
    return numpy_pipeline.input_pipeline(
        images, labels, batch_size, padding, mean, std, seed, lambda x, y: jax.block_until_ready(move(x, y))
    )


def synchronize() -> None:
    """Nothing to wait for: input_pipeline hands out batches already on the device."""


def environment() -> dict:
    gpus = _gpus()
    return {
        "framework": "keras",
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "cuda": None if not gpus else str(getattr(gpus[0].client, "platform_version", "unknown")),
        "gpu_name": gpus[0].device_kind if gpus else "cpu",
        "gpu_count": len(gpus),
        # XLA sizes its CPU pool from the affinity mask (SLURM's binding) and has no switch for a
        # smaller count: SLURM_CPUS_PER_TASK or OMP_NUM_THREADS alone does not reach it
        "cpu_threads": cpus.record(jax_cpu_pool=f"XLA: the affinity mask, {cpus.affinity()} CPUs"),
    }


def create_model(name: str, num_classes: int, image_size: int, **options):
    """The registry's model; a float64 one (the equivalence probe's rounding-free pass)
    needs JAX's 64-bit mode, off by default (JAX computes float64 as float32 otherwise)."""
    if options.get("dtype") == "float64":
        jax.config.update("jax_enable_x64", True)
    return models.create_model(name, num_classes, image_size, **options)


def probe_gradients(model, x, y):
    """The probe's training-mode loss and gradients: value_and_grad of stateless_call."""
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_of(trainable):
        logits, updated = model.stateless_call(trainable, non_trainable, x, training=True)
        return mean_loss(y, logits), updated

    (loss, updated), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
    for variable, value in zip(model.non_trainable_variables, updated, strict=True):
        variable.assign(value)
    return loss, grads


def equivalence_probe(model, name, images, labels, **step):
    return keras_probe(model, name, images, labels, gradients=probe_gradients, **step)


class JaxEngine:  # implements trainer.Engine
    mode = "jax.jit"
    pipeline: ModuleType = numpy_pipeline
    lr_per_step = True
    eval_sum_dtype: type[np.floating] = np.float64
    vectorized_lr = True  # vmap of the schedule: bit for bit the per-step values

    def __init__(self, cfg):
        # precision.matmul, before anything is traced: JAX's default precision of float32 dots
        # and convolutions ("highest": full float32; "tensorfloat32": TF32 on a GPU that has it)
        jax.config.update("jax_default_matmul_precision", JAX_PRECISION[cfg.precision.matmul])
        self.device, self.jax_device = select_device(cfg.framework.device, bool(cfg.framework.deterministic))
        self.to_device = _move(self.jax_device)

    def float32_state(self) -> dict[str, bool | None]:
        # anything short of full float32 lets the GPU use TF32 (or less) for float32 operands
        on = matmul_precision() not in ("highest", "float32")
        return {"matmul": on, "conv": on}

    def float32_switches(self) -> dict:
        return {"jax_default_matmul_precision": matmul_precision()}

    def determinism_switches(self) -> dict:
        return {"XLA_FLAGS --xla_gpu_deterministic_ops": xla_deterministic_ops()}

    def learning_rate(self, schedule, lr_schedule):
        return float(schedule.base_lr)  # a slot of the optimizer's state, set by every step

    def build(self, trainer: KerasTrainer) -> None:
        self.last = WeightsFileLast(trainer)
        self.model, self.optimizer = trainer.model, trainer.optimizer
        self.accum_steps, self.loss_scaling, self.weight_decay = (
            trainer.accum_steps,
            trainer.loss_scaling,
            trainer.weight_decay,
        )
        variables = self.optimizer.variables
        self.lr_index = next(i for i, v in enumerate(variables) if v is trainer.sgd()._learning_rate)
        self.scale_index = (
            next(i for i, v in enumerate(variables) if v is self.optimizer.dynamic_scale) if self.loss_scaling else None
        )
        self.sync_from_keras()
        donate = (0,) if self.device == "cuda" else ()  # XLA's CPU backend cannot reuse donated buffers
        self._train_step = jax.jit(self._train_step_fn, donate_argnums=donate)
        self._accumulate = jax.jit(self._accumulate_fn, donate_argnums=donate)
        self._apply = jax.jit(self._apply_fn, donate_argnums=donate)
        self._eval = jax.jit(self._eval_fn)
        self.reset_sums()

    # ---------------------------------------------------------------- state

    def sync_from_keras(self) -> None:
        # committed to the device, as the step's outputs are: otherwise the second call compiles again
        self.state = jax.device_put(
            (
                [v.value for v in self.model.trainable_variables],
                [v.value for v in self.model.non_trainable_variables],
                [v.value for v in self.optimizer.variables],
            ),
            self.jax_device,
        )
        if self.accum_steps > 1:
            self.accumulated = [jnp.zeros(v.shape, v.dtype) for v in self.model.trainable_variables]

    def sync_to_keras(self) -> None:
        trainable, non_trainable, optimizer = self.state
        for variables, values in (
            (self.model.trainable_variables, trainable),
            (self.model.non_trainable_variables, non_trainable),
            (self.optimizer.variables, optimizer),
        ):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    def reset_sums(self) -> None:
        self.sums = jax.device_put((jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)), self.jax_device)

    def read_sums(self) -> tuple[float, int]:
        loss_sum, correct = jax.device_get(self.sums)
        return float(loss_sum), int(correct)

    def save_last(self, meta: dict) -> None:
        self.last.save(meta)

    def restore_last(self) -> dict | None:
        return self.last.restore()

    def peak_memory_bytes(self) -> int:
        return int((self.jax_device.memory_stats() or {}).get("peak_bytes_in_use", 0))

    # ---------------------------------------------------------------- the step

    def _gradients(self, trainable, non_trainable, optimizer, x, y):
        """Gradients of (loss / k), loss-scaled where float16 needs it; the new
        non-trainable state (BatchNorm statistics, seed generators), the loss and the hits."""
        scale = optimizer[self.scale_index] if self.loss_scaling else None

        def objective(trainable, non_trainable):
            logits, non_trainable = self.model.stateless_call(trainable, non_trainable, x, training=True)
            loss = jnp.mean(cross_entropy(y, logits))
            scaled = loss / self.accum_steps
            return (scaled * scale if scale is not None else scaled), (loss, logits, non_trainable)

        (_, (loss, logits, non_trainable)), grads = jax.value_and_grad(objective, has_aux=True)(
            trainable, non_trainable
        )
        hits = jnp.sum(jnp.argmax(logits, axis=1) == y).astype(jnp.int32)
        return grads, non_trainable, loss, hits

    def _step(self, trainable, optimizer, grads, lr):
        optimizer = list(optimizer)
        optimizer[self.lr_index] = lr.astype(optimizer[self.lr_index].dtype)
        scale = optimizer[self.scale_index] if self.loss_scaling else None
        grads = coupled_l2(grads, trainable, self.weight_decay, scale)
        return self.optimizer.stateless_apply(optimizer, grads, trainable)

    def _train_step_fn(self, state, sums, x, y, lr):
        trainable, non_trainable, optimizer = state
        grads, non_trainable, loss, hits = self._gradients(trainable, non_trainable, optimizer, x, y)
        trainable, optimizer = self._step(trainable, optimizer, grads, lr)
        return (trainable, non_trainable, optimizer), (sums[0] + loss * y.shape[0], sums[1] + hits)

    def _accumulate_fn(self, state, sums, accumulated, x, y):
        trainable, non_trainable, optimizer = state
        grads, non_trainable, loss, hits = self._gradients(trainable, non_trainable, optimizer, x, y)
        accumulated = [a + g for a, g in zip(accumulated, grads, strict=True)]
        return (trainable, non_trainable, optimizer), (sums[0] + loss * y.shape[0], sums[1] + hits), accumulated

    def _apply_fn(self, state, accumulated, lr):
        trainable, non_trainable, optimizer = state
        trainable, optimizer = self._step(trainable, optimizer, accumulated, lr)
        return (trainable, non_trainable, optimizer), [jnp.zeros_like(a) for a in accumulated]

    def _eval_fn(self, trainable, non_trainable, x, y):
        logits, _ = self.model.stateless_call(trainable, non_trainable, x, training=False)
        return jnp.sum(cross_entropy(y, logits)), jnp.argmax(logits, axis=1)

    def train_step(self, x, y, lr: float | None) -> None:
        self.state, self.sums = self._train_step(self.state, self.sums, x, y, np.float32(step_lr(lr)))

    def accumulate(self, x, y) -> None:
        self.state, self.sums, self.accumulated = self._accumulate(self.state, self.sums, self.accumulated, x, y)

    def apply_accumulated(self, lr: float | None) -> None:
        self.state, self.accumulated = self._apply(self.state, self.accumulated, np.float32(step_lr(lr)))

    def eval_step(self, x, y):
        return self._eval(self.state[0], self.state[1], x, y)

    # ------------------------------------------------------------ perf's yardstick

    def bare_loop(self, model, optimizer, x, y):
        """The least a Keras-on-JAX step can be: stateless_call, value_and_grad, coupled
        L2, stateless_apply, in one jax.jit, on one fixed batch."""
        scale_at = (
            next(i for i, v in enumerate(optimizer.variables) if v is optimizer.dynamic_scale)
            if self.loss_scaling
            else None
        )

        @jax.jit
        def step(trainable, non_trainable, state):
            def objective(trainable):
                logits, new_state = model.stateless_call(trainable, non_trainable, x, training=True)
                loss = jnp.mean(cross_entropy(y, logits))
                return loss * (state[scale_at] if scale_at is not None else 1.0), (loss, new_state)

            (_, (loss, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
            grads = coupled_l2(grads, trainable, self.weight_decay, None if scale_at is None else state[scale_at])
            trainable, state = optimizer.stateless_apply(state, grads, trainable)
            return trainable, new_state, state, loss

        state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables],
        )

        def run(steps: int) -> None:
            nonlocal state
            loss = None
            for _ in range(steps):
                *state, loss = step(*state)
            if loss is not None:
                float(loss)  # waits for the device

        return run


def Trainer(cfg, data, schedule, checkpoint_dir) -> KerasTrainer:  # noqa: N802 (contract.Backend names it)
    return KerasTrainer(JaxEngine(cfg), cfg, data, schedule, checkpoint_dir)
