"""The Keras trainer, one class on every engine (TensorFlow, JAX, torch).

What the engines share is written once here with ``keras`` and ``keras.ops``: the model
(the registry's keras.applications networks), precision policy, LR schedule and SGD
(optim.py), PyTorch's coupled L2, the loss, the epoch loop, evaluation, the ``best``
checkpoint, the answers the audit and perf ask for, and the Keras side of the
numerical-equivalence probe. An engine (``engines/<name>.py``, the :class:`Engine`
protocol below) adds only what Keras leaves to it: the training and evaluation steps in
its own idiom, device set-up, seeding and determinism, the input pipeline it reads
(``pipelines/``), the ``last`` checkpoint, environment(), the probe's gradients and the
bare loop's step.

Parity choices with the PyTorch backend, each deliberate:

- weight decay is PyTorch's coupled L2: ``weight_decay * w`` is added to every
  trainable variable's gradient before the optimizer (so it goes through momentum).
  Keras' own ``weight_decay`` argument is decoupled and is not used.
- the LR is Keras' CosineDecay at every optimizer step of the run, counting the steps a
  loss scaler skips as PyTorch's scheduler does (the optimizer's ``iterations`` does
  not); the engine says how it reaches the optimizer (:attr:`Engine.lr_per_step`).
- mixed precision: float16 with dynamic loss scaling on a GPU; on the CPU bfloat16
  without loss scaling, as PyTorch's CPU autocast does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np
from keras import ops
from keras.src.backend.common import dtypes as keras_dtypes  # the promotion table (float64_everywhere)

from benchmark import BenchmarkError
from benchmark.backends import EpochStats, Progress, contract, report_every
from benchmark.backends.keras import models
from benchmark.backends.keras.models import (
    block_shapes,
    canonical_state,
    canonical_variables,
    entry,
    layer_table,
    parameter_counts,
    to_canonical,
)
from benchmark.backends.keras.optim import build_lr_schedule, make_sgd
from benchmark.files import new_private_dir, read_json, remove, replace_durably, write_json, writing
from benchmark.spec.models import create_for_protocol
from benchmark.spec.protocol import Knobs
from benchmark.spec.schedule import Schedule


@runtime_checkable
class Engine(Protocol):
    """What an engine contributes to the trainer. It is built from the run's config before
    any Keras object exists (device, seeding, determinism), then `build` gives it the
    trainer once the model, optimizer and input pipeline are made; its steps read the
    trainer's model, optimizer, accum_steps, loss_scaling and weight_decay."""

    mode: str  # contract.Trainer.mode: "tf.function", "jax.jit", "eager", ...
    device: str  # "cpu" or "cuda"
    pipeline: ModuleType  # pipelines.tfdata or pipelines.numpy
    # True: the trainer hands every optimizer step its LR (the SGD's learning-rate variable
    # is set before the step); False: the optimizer evaluates the schedule itself, at the
    # engine's own step counter (learning_rate)
    lr_per_step: bool
    # True: the LR schedule may be mapped over an epoch's steps in one call
    # (ops.vectorized_map), giving the per-step calls' values exactly; on JAX one call per
    # step cost 34 ms, 1.5 s of a quickstart epoch outside its steps (docs/performance.md)
    vectorized_lr: bool
    # the NumPy type the batches' evaluation losses are summed in, one after the other (the
    # last digits of val_loss and test_loss, which same-seed runs compare exactly)
    eval_sum_dtype: type[np.floating]

    def learning_rate(self, schedule: Schedule, lr_schedule) -> Any:
        """What the SGD is given as its learning rate (`lr_schedule`: Keras' schedule of `schedule`)."""

    def build(self, trainer: KerasTrainer) -> None:
        """Make the steps, sums and checkpoint state for this trainer's Keras objects."""

    def to_device(self, x: Any, y: Any) -> tuple[Any, Any]:
        """A batch of the engine's pipeline, where the steps take it."""

    def train_step(self, x, y, lr: float | None) -> None:
        """One optimizer step on one batch (loss, gradients, coupled L2, SGD), adding to the running sums."""

    def accumulate(self, x, y) -> None:
        """Add one micro-batch's gradients of (loss / k) to the accumulators and the running sums."""

    def apply_accumulated(self, lr: float | None) -> None:
        """One optimizer step with the accumulated gradients, then zero them."""

    def reset_sums(self) -> None:
        """Zero the running (loss sum, correct) of the epoch."""

    def read_sums(self) -> tuple[float, int]:
        """(loss sum, correct) of the epoch so far; waits for the device."""

    def eval_step(self, x, y) -> tuple[Any, Any]:
        """(summed loss, predicted labels) of one batch, evaluation mode."""

    def sync_to_keras(self) -> None:
        """Make the Keras variables hold the current state (before evaluation and saving)."""

    def sync_from_keras(self) -> None:
        """Take the state from the Keras variables (after a checkpoint is loaded)."""

    def save_last(self, meta: dict) -> None:
        """The `last` checkpoint: everything a resume needs, made current atomically."""

    def restore_last(self) -> dict | None:
        """Load the current `last` checkpoint; its meta, or None when there is none."""

    def peak_memory_bytes(self) -> int:
        """Peak accelerator memory (called on a GPU only)."""

    def float32_state(self) -> dict[str, bool | None]:
        """Whether the engine reports TF32 on, per kind of kernel (contract.float32_fact);
        the engine applied precision.matmul when it was built."""

    def float32_switches(self) -> dict:
        """The engine's float32 switches as it reports them (env.json: float32_policy)."""

    def determinism_switches(self) -> dict:
        """The engine's determinism switches as it reports them (env.json: determinism)."""

    def bare_loop(self, model, optimizer, x, y) -> Callable[[int], None]:
        """The least training step the engine can take, as contract.Yardstick.bare_loop runs it."""


def step_lr(lr: float | None) -> float:
    """The LR an `lr_per_step` engine is handed for a step: never None there (a None
    would become a NaN learning rate in np.float32, silently)."""
    if lr is None:
        raise TypeError("an lr_per_step engine was handed no learning rate")
    return lr


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
    return [g + ops.cast(decay, g.dtype) * ops.cast(v, g.dtype) for g, v in zip(grads, variables, strict=True)]


def cross_entropy(labels, logits):
    """Per-image softmax cross-entropy of float32 logits (contract.LOSS_FACT)."""
    return keras.losses.sparse_categorical_crossentropy(labels, ops.cast(logits, "float32"), from_logits=True)


class KerasTrainer:  # implements benchmark.backends.contract.BackendTrainer
    """contract.Trainer for Keras on `engine` (an Engine built from cfg)."""

    def __init__(self, engine: Engine, cfg, data, schedule: Schedule, checkpoint_dir: Path):
        self.engine = engine
        self.cfg, self.schedule, self.checkpoint_dir = cfg, schedule, Path(checkpoint_dir)
        self.mode, self.device = engine.mode, engine.device
        # sweeps give every run its own process, but tests, notebooks and benchmark.perf
        # build several trainers in one: start each from a fresh Keras state (layer
        # names, cached graphs) rather than the previous one's
        keras.backend.clear_session()
        keras.utils.set_random_seed(cfg.seed)  # Python, NumPy, the engine's and Keras' own seed generator
        self.reduced_dtype = set_precision(bool(cfg.precision.mixed), cfg.precision.dtype, self.device)

        self.num_classes = data.num_classes
        self.image_size = data.image_size
        self.mean, self.std = np.asarray(data.mean, np.float32), np.asarray(data.std, np.float32)
        self.knobs = Knobs.of(cfg.get("protocol"))
        self.model_options = self.knobs.model_options(cfg.model.name)
        self.model = create_for_protocol(
            models, cfg.model.name, data.num_classes, data.image_size, self.knobs, cfg.seed
        )
        self.variables = self.model.trainable_variables

        self.lr_schedule = build_lr_schedule(schedule)
        sgd = make_sgd(
            self.knobs.optimizer,
            engine.learning_rate(schedule, self.lr_schedule),
            cfg.optim.momentum,
            cfg.optim.nesterov,
        )
        self.loss_scaling = self.reduced_dtype == "float16"
        self.optimizer = keras.optimizers.LossScaleOptimizer(sgd) if self.loss_scaling else sgd
        # slots exist before a restore, so the checkpoint fills them instead of deferring
        self.optimizer.build(self.variables)
        self.weight_decay = float(cfg.optim.weight_decay)
        self.accum_steps = cfg.grad_accum_steps
        self.micro_batch = cfg.batch_size // cfg.grad_accum_steps

        pipeline = engine.pipeline
        self.normalize = pipeline.Normalizer(data.mean, data.std)
        train_x, train_y = data.split("train", cfg.limit.train)
        self.train_batches = pipeline.TrainBatches(
            train_x,
            train_y,
            self.micro_batch,
            schedule.steps_per_epoch * self.accum_steps,
            cfg.dataset.crop_padding,
            self.normalize,
            seed=cfg.seed,
            shared_stream=self.knobs.data,
        )
        engine.build(self)

    def sgd(self) -> keras.optimizers.SGD:
        return getattr(self.optimizer, "inner_optimizer", self.optimizer)

    # ---------------------------------------------------------------- epochs

    def train_epoch(self, epoch: int, progress: Progress) -> EpochStats:
        engine, k, steps = self.engine, self.accum_steps, self.schedule.steps_per_epoch
        every = report_every(steps, self.cfg.progress_updates)
        first = epoch * steps
        lrs = (
            [float(lr) for lr in self.lr_trajectory_between(first, first + steps)]
            if engine.lr_per_step
            else [None] * steps
        )
        engine.reset_sums()
        images = 0
        batches = iter(self.train_batches.epoch(epoch))
        start = time.perf_counter()
        for step in range(steps):
            if k == 1:
                x, y = next(batches)
                engine.train_step(*engine.to_device(x, y), lrs[step])
                images += int(y.shape[0])
            else:
                for _ in range(k):
                    x, y = next(batches)
                    engine.accumulate(*engine.to_device(x, y))
                    images += int(y.shape[0])
                engine.apply_accumulated(lrs[step])
            if (step + 1) % every == 0 or step + 1 == steps:
                progress(step + 1, steps, engine.read_sums()[0] / images)
        # reading the sums waits for the device: the time includes all its work
        loss_sum, correct = engine.read_sums()
        seconds = time.perf_counter() - start
        engine.sync_to_keras()
        return EpochStats(
            loss=loss_sum / images, accuracy=correct / images, seconds=seconds, images=images, steps=steps
        )

    def predict(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        engine = self.engine
        as_sum = engine.eval_sum_dtype
        loss_sum, predictions = as_sum(0), []
        for x, y in engine.pipeline.eval_batches(images, labels, self.micro_batch, self.normalize):
            loss, pred = engine.eval_step(*engine.to_device(x, y))
            loss_sum += as_sum(loss)
            predictions.append(np.asarray(pred))
        preds = np.concatenate(predictions).astype(np.int64) if predictions else np.zeros(0, np.int64)
        return float(loss_sum) / max(1, len(labels)), preds

    def peak_memory(self) -> dict:
        return {"accelerator_peak_bytes": self.engine.peak_memory_bytes() if self.device == "cuda" else None}

    # ------------------------------------------------------------ checkpoints
    #
    # best: checkpoints/best.weights.h5 (the model, Keras' weights file) + best.json
    # last: the engine's (engines/*.py), + last.json naming the current one and its meta

    def save(self, kind: str, meta: dict) -> None:
        if kind not in ("best", "last"):
            raise ValueError(f"checkpoint kind {kind!r}; valid: best, last")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.engine.sync_to_keras()
        if kind == "best":
            save_weights(self.model, self.checkpoint_dir, "best", "best.weights.h5", meta)
        else:
            self.engine.save_last(meta)

    def restore(self, kind: str) -> dict | None:
        meta = load_weights(self.model, self.checkpoint_dir, "best") if kind == "best" else self.engine.restore_last()
        if meta is not None:
            self.engine.sync_from_keras()
        return meta

    # ------------------------------------------------------------ the audit's and perf's view

    def protocol_facts(self) -> contract.ProtocolFacts:
        sgd = self.sgd()
        # the step: sparse categorical cross-entropy from logits, mean over the batch (cross_entropy,
        # contract.LOSS_FACT); coupled_l2 on every trainable variable; the LR per optimizer step
        return contract.protocol_facts(
            momentum=float(sgd.momentum),
            nesterov=bool(sgd.nesterov),
            momentum_buffer=contract.momentum_buffer_fact(
                lr_in_buffer=not self.knobs.optimizer, nesterov=bool(sgd.nesterov)
            ),
            weight_decay=self.weight_decay,
            reduced_dtype=self.reduced_dtype,
            loss_scaling=self.loss_scaling,
            mean=self.mean,
            std=self.std,
            layers=self.layers(),
            model=entry(self.cfg.model.name),
            drop_rate=self.model_options["drop_rate"],
            drop_path_rate=self.model_options["drop_path_rate"],
            shared_init=self.knobs.init,
            data_stream=self.train_batches.data_stream,
            micro_batch=self.micro_batch,
            accum_steps=self.accum_steps,
            float32_matmul=contract.float32_fact(self.cfg.precision.matmul, self.device, self.engine.float32_state()),
            deterministic=bool(self.cfg.framework.deterministic),
        )

    def settings_in_force(self) -> dict:
        return {
            "float32_policy": contract.float32_record(
                self.cfg.precision.matmul, self.device, self.engine.float32_switches()
            ),
            # Keras' GlobalAveragePooling2D is a mean already: nothing to replace
            "determinism": contract.determinism_record(
                self.cfg.framework.deterministic, self.engine.determinism_switches(), []
            ),
        }

    def layers(self) -> list[contract.LayerInfo]:
        return layer_table(self.model)

    def block_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return block_shapes(self.model, self.cfg.model.name, self.image_size)

    def parameter_counts(self) -> dict[str, int]:
        return parameter_counts(self.model)

    def lr_trajectory_between(self, first: int, stop: int) -> np.ndarray:
        """The LR of optimizer steps first..stop-1, from the Keras schedule object: one
        vectorized call where the engine maps it exactly (Engine.vectorized_lr), else one
        call per step."""
        if self.engine.vectorized_lr and stop > first:
            steps = ops.convert_to_tensor(np.arange(first, stop), "float32")
            return np.asarray(ops.convert_to_numpy(ops.vectorized_map(self.lr_schedule, steps)), np.float64)
        return np.array([float(ops.convert_to_numpy(self.lr_schedule(s))) for s in range(first, stop)], np.float64)

    def update_trajectory(self, grads: np.ndarray) -> np.ndarray:
        sgd = self.sgd()
        lrs = self.lr_trajectory_between(0, len(grads))
        probe_sgd = make_sgd(self.knobs.optimizer, float(lrs[0]), sgd.momentum, sgd.nesterov)
        probe = keras.Variable(np.zeros(grads.shape[1], np.float32))
        probe_sgd.build([probe])
        out = np.empty_like(grads)
        for t, g in enumerate(grads.astype(np.float32)):
            probe_sgd.learning_rate.assign(lrs[t])  # the schedule's LR of step t, as the trainer steps it
            probe_sgd.apply([ops.convert_to_tensor(g)], [probe])
            out[t] = ops.convert_to_numpy(probe.value)
        return out

    def bare_loop(self, images: np.ndarray, labels: np.ndarray) -> Callable[[int], None]:
        """perf's yardstick: the engine's least step on a fresh model of the same build, its
        own SGD (loss-scaled as the trainer's), and this one batch on the device."""
        model = models.create_model(self.cfg.model.name, self.num_classes, self.image_size, **self.model_options)
        sgd = self.sgd()
        optimizer = make_sgd(self.knobs.optimizer, 0.01, sgd.momentum, sgd.nesterov)
        if self.loss_scaling:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        x, y = self.engine.to_device(self.normalize(images), np.asarray(labels, np.int32))
        return self.engine.bare_loop(model, optimizer, x, y)


# ---------------------------------------------------------------- Keras weights files


# Keras' saving_lib.get_attr_skipset caches each object type's skip set under
# "saving_attr_skipset_<type>" but looks it up under "saving_attr_skiplist_<type>" (Keras
# 3.15), so every weights file rebuilds a throwaway Layer and its dir() for every layer
# saved: 40% of a MobileNetV2 weights file's time (0.23 -> 0.15 s here; docs/performance.md).
# Filling the key it reads with what it would compute makes the cache work; the sets are
# Keras' own, so what is saved does not change. A fixed Keras never reads the key.
_SKIPSET_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def _cache_keras_skipsets() -> None:
    # Keras' private modules, named only here: the work-around's whole reach
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    for obj_type in _SKIPSET_TYPES:
        key = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(key) is None:  # per thread, and cleared by clear_session
            global_state.set_global_attribute(key, saving_lib.get_attr_skipset(obj_type))


def save_weights(model: keras.Model, checkpoint_dir: Path, kind: str, name: str, meta: dict) -> None:
    """`model` into checkpoint_dir/name, then <kind>.json naming it: the file is complete
    before the json points at it, so a run killed mid-save keeps the previous one."""
    _cache_keras_skipsets()
    path = checkpoint_dir / name
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    # Keras opens the file by name (and insists on the suffix): a fresh private folder
    # holds it, so no planted name or link is ever opened
    scratch = new_private_dir(path)
    tmp = scratch / f"{kind}.weights.h5"
    with writing(path, scratch):
        model.save_weights(tmp)
        replace_durably(tmp, path)
    remove(scratch)
    write_json(checkpoint_dir / f"{kind}.json", {"checkpoint": name, "meta": meta})


def load_weights(model: keras.Model, checkpoint_dir: Path, kind: str) -> dict | None:
    """The weights file <kind>.json names (best.json written without a name: best.weights.h5)
    into `model`; its meta, or None when there is none."""
    info = read_json(checkpoint_dir / f"{kind}.json")
    if info is None:
        return None
    path = checkpoint_dir / str(info.get("checkpoint", f"{kind}.weights.h5"))
    if not path.is_file():
        return None
    try:
        model.load_weights(path)
    except Exception as exc:  # truncated or foreign file: one line, not a traceback
        raise BenchmarkError(
            f"{path} cannot be read ({exc.__class__.__name__}); delete {checkpoint_dir} to redo the run from its start"
        ) from exc
    return info["meta"]


class WeightsFileLast:
    """The `last` checkpoint of the engines without TensorFlow (JAX, torch): Keras' own
    weights file ``last-epoch<NNNN>.weights.h5`` holds the model, its seed-generator
    states (dropout, drop path) and, the model being compiled with the optimizer, the
    optimizer's variables (momentum buffers, iterations, loss scale); the NumPy stream
    needs no state. last.json names the current one."""

    def __init__(self, trainer: KerasTrainer):
        # compiled only so that Keras' weights files carry the optimizer with the model
        trainer.model.compile(optimizer=trainer.optimizer)
        self.model, self.checkpoint_dir = trainer.model, trainer.checkpoint_dir

    def save(self, meta: dict) -> None:
        name = f"last-epoch{meta.get('epoch', 0):04d}.weights.h5"
        save_weights(self.model, self.checkpoint_dir, "last", name, meta)
        for old in self.checkpoint_dir.glob("last-epoch*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def restore(self) -> dict | None:
        return load_weights(self.model, self.checkpoint_dir, "last")


# ---------------------------------------------------------------- the equivalence probe

# (model, x, y) -> (training-mode mean loss, d loss / d model.trainable_variables), the
# model's normalization statistics updated by that training-mode pass: the engine's part
Gradients = Callable[[keras.Model, Any, Any], tuple[Any, list]]


@contextlib.contextmanager
def float64_everywhere(dtype: str):
    """Keras' defaults kept at float64 while a float64 model is probed (the equivalence
    check's rounding-free pass); nothing changes for a float32 one.

    Two process-global Keras defaults would round a float64 model's numbers to float32:
    keras.backend.result_type turns float64 into float32 on every engine but TensorFlow
    (keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE, to match JAX's default 32-bit
    mode), and BatchNormalization computes in result_type(inputs, "float32"), so on JAX
    and torch every BatchNorm would; and floatx (float32) is the dtype of the
    optimizer's learning-rate variable, so 0.1 would step as float32(0.1) on every
    engine. Both are put back afterwards."""
    if dtype != "float64":
        yield
        return
    table, floatx = keras_dtypes.BIT64_TO_BIT32_DTYPE, keras.config.floatx()
    saved = table["float64"]
    table["float64"] = "float64"
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        table["float64"] = saved
        keras.config.set_floatx(floatx)


def mean_loss(labels, logits):
    """The probe's loss in the model's own dtype (float64 models stay in float64)."""
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def equivalence_probe(
    model: keras.Model,
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    gradients: Gradients,
    no_grad=contextlib.nullcontext,
) -> contract.Probe:
    """The Keras side of benchmark.parity.equivalence on every engine: the forward passes,
    the SGD step and the canonical tensors are Keras code; only `gradients` is the engine's."""
    dtype = model.trainable_variables[0].dtype  # float32, or float64 for the rounding-free comparison
    with float64_everywhere(dtype):
        x, y = ops.convert_to_tensor(images, dtype), ops.convert_to_tensor(np.asarray(labels, np.int32))
        logits_eval = np.asarray(ops.convert_to_numpy(model(x, training=False)), np.float64)
        variables = model.trainable_variables
        loss, grads = gradients(model, x, y)
        by_variable = {id(v): g for v, g in zip(variables, grads, strict=True)}
        canonical_grads = {}
        for key, (variable, layout) in canonical_variables(model, name).items():
            if id(variable) in by_variable:
                grad = np.asarray(ops.convert_to_numpy(by_variable[id(variable)]), np.float64)
                canonical_grads[key] = to_canonical(grad, layout)
        # the trainer's step: coupled L2 added to the gradients, then the aligned (PyTorch) SGD rule
        optimizer = make_sgd(True, lr, momentum, nesterov)
        optimizer.build(variables)
        with no_grad():
            optimizer.apply(coupled_l2(grads, [v.value for v in variables], weight_decay), variables)
    return contract.Probe(
        logits_eval, float(ops.convert_to_numpy(loss)), canonical_grads, canonical_state(model, name, np.float64)
    )
