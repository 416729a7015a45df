"""Keras on the TensorFlow engine: a custom ``tf.GradientTape`` step in ``tf.function``,
not ``model.fit`` (docs/protocol.md §5), over the tf.data pipeline of data.py.

Parity choices with the PyTorch backend, each deliberate (base.py holds the Keras
objects every engine shares):

- weight decay is PyTorch's coupled L2: ``weight_decay * w`` is added to every
  trainable variable's gradient before the optimizer (so it goes through momentum).
  Keras' own ``weight_decay`` argument is decoupled and is not used.
- the LR comes from ``CosineDecay`` evaluated at this trainer's own step counter, which
  counts every optimizer step like PyTorch's scheduler does, including steps the loss
  scaler skips (the optimizer's ``iterations`` does not count those).
- mixed precision: float16 with dynamic loss scaling on a GPU; on the CPU bfloat16
  without loss scaling, as PyTorch's CPU autocast does.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import keras

from benchmark import BenchmarkError
from benchmark.backends import EpochStats, Progress, contract, report_every
from benchmark.backends.keras.data import Normalizer, TrainBatches, eval_batches
from benchmark.backends.keras.base import KerasTrainer, coupled_l2, cross_entropy
from benchmark.backends.keras.env import select_device
from benchmark.backends.keras.models import create_model
from benchmark.backends.keras import probe
from benchmark.backends.keras.optim import make_sgd
from benchmark.spec.protocol import Knobs
from benchmark.files import read_json, replace_durably, write_json, writing
from benchmark.spec.schedule import Schedule

# tf.train.Checkpoint logs an INFO line per save through absl, which would land in run.log
logging.getLogger("absl").setLevel(logging.WARNING)

OWN_STREAM_FACT = ("own: stateless TensorFlow draws keyed per epoch by a tf.random.Generator seeded with the run's "
                   "seed (order, then per batch crops and flips)")


def seed_everything(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)  # Python, NumPy, TensorFlow and Keras' own seed generator
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def tape_gradients(model, x, y):
    """The probe's training-mode loss and gradients, by tf.GradientTape."""
    with tf.GradientTape() as tape:
        loss = probe.mean_loss(y, model(x, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)


def equivalence_probe(model, name, images, labels, **step) -> contract.Probe:
    return probe.equivalence_probe(model, name, images, labels, gradients=tape_gradients, **step)


class Trainer(KerasTrainer):  # implements benchmark.backends.contract.Trainer
    def __init__(self, cfg, data, schedule: Schedule, checkpoint_dir: Path):
        device = select_device(cfg.framework.device)
        seed_everything(cfg.seed, cfg.framework.deterministic)
        self.data_stream = contract.SHARED_STREAM_FACT if Knobs.of(cfg.get("protocol")).data else OWN_STREAM_FACT
        super().__init__(cfg, data, schedule, checkpoint_dir, device)
        self.normalize = Normalizer(data.mean, data.std)
        train_x, train_y = data.split("train", cfg.limit.train)
        self.train_batches = TrainBatches(
            train_x, train_y, self.micro_batch, schedule.steps_per_epoch * self.accum_steps,
            cfg.dataset.crop_padding, self.normalize, seed=cfg.seed, shared_stream=self.knobs.data,
        )

        # running sums stay in variables updated inside the step: no host sync per step
        self.loss_sum = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.correct = tf.Variable(0, dtype=tf.int64, trainable=False)
        if self.accum_steps > 1:
            self.accumulators = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in self.variables]

        jit = bool(cfg.framework.jit_compile)
        self.mode = "tf.function+xla" if jit else "tf.function"
        self._train_step = tf.function(self._train_step_fn, jit_compile=jit)
        self._accumulate = tf.function(self._accumulate_fn, jit_compile=jit)
        self._apply_accumulated = tf.function(self._apply_accumulated_fn, jit_compile=jit)
        image = (None, data.image_size, data.image_size, 3)
        # one trace for every eval batch size, the last partial batch included
        self._eval_step = tf.function(
            self._eval_step_fn, jit_compile=jit,
            input_signature=[tf.TensorSpec(image, tf.float32), tf.TensorSpec((None,), tf.int32)],
        )

    def learning_rate(self):
        # optimizer steps taken so far; drives the LR (see the module docstring)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="benchmark_step")
        return lambda: self.lr_schedule(self.step)

    # ---------------------------------------------------------------- steps

    def _gradients(self, x, y):
        """Gradients of (loss / k), loss-scaled where float16 needs it; updates the running sums."""
        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(x, training=True), tf.float32)
            loss = tf.reduce_mean(cross_entropy(y, logits))
            objective = loss / self.accum_steps
            if self.loss_scaling:
                objective = self.optimizer.scale_loss(objective)
        grads = tape.gradient(objective, self.variables)
        n = tf.shape(y)[0]
        self.loss_sum.assign_add(loss * tf.cast(n, tf.float32))
        hits = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), tf.cast(y, tf.int32))
        self.correct.assign_add(tf.reduce_sum(tf.cast(hits, tf.int64)))
        return grads

    def _apply(self, grads):
        grads = coupled_l2(grads, self.variables, self.weight_decay, self._loss_scale())
        self.optimizer.apply(grads, self.variables)
        self.step.assign_add(1)

    def _train_step_fn(self, x, y):
        self._apply(self._gradients(x, y))

    def _accumulate_fn(self, x, y):
        for acc, g in zip(self.accumulators, self._gradients(x, y)):
            acc.assign_add(g)

    def _apply_accumulated_fn(self):
        self._apply([acc.read_value() for acc in self.accumulators])
        for acc in self.accumulators:
            acc.assign(tf.zeros_like(acc))

    def _eval_step_fn(self, x, y):
        logits = tf.cast(self.model(x, training=False), tf.float32)
        loss = tf.reduce_sum(cross_entropy(y, logits))
        return loss, tf.argmax(logits, axis=1, output_type=tf.int32)

    # ---------------------------------------------------------------- epochs

    def train_epoch(self, epoch: int, progress: Progress) -> EpochStats:
        k = self.accum_steps
        steps = self.schedule.steps_per_epoch
        every = report_every(steps, self.cfg.progress_updates)
        self.loss_sum.assign(0.0)
        self.correct.assign(0)
        images = 0
        batches = iter(self.train_batches.epoch(epoch))
        start = time.perf_counter()
        for step in range(steps):
            if k == 1:
                x, y = next(batches)
                self._train_step(x, y)
                images += int(y.shape[0])
            else:
                for _ in range(k):
                    x, y = next(batches)
                    self._accumulate(x, y)
                    images += int(y.shape[0])
                self._apply_accumulated()
            if (step + 1) % every == 0 or step + 1 == steps:
                progress(step + 1, steps, float(self.loss_sum.numpy()) / images)
        # reading the sums waits for the accelerator: the time includes all its work
        loss_sum, correct = float(self.loss_sum.numpy()), int(self.correct.numpy())
        seconds = time.perf_counter() - start
        return EpochStats(loss=loss_sum / images, accuracy=correct / images, seconds=seconds, images=images,
                          steps=steps)

    def predict(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        loss_sum = tf.zeros((), tf.float32)
        predictions = []
        for x, y in eval_batches(images, labels, self.micro_batch, self.normalize):
            loss, pred = self._eval_step(x, y)
            loss_sum += loss
            predictions.append(pred)
        preds = tf.concat(predictions, axis=0).numpy().astype(np.int64)
        return float(loss_sum.numpy()) / max(1, len(labels)), preds

    def peak_memory(self) -> dict:
        """Peak accelerator memory TensorFlow reports for GPU:0 (None on the CPU)."""
        if self.device != "cuda":
            return {"accelerator_peak_bytes": None}
        return {"accelerator_peak_bytes": int(tf.config.experimental.get_memory_info("GPU:0")["peak"])}

    def _loss_scale(self):
        return self.optimizer.dynamic_scale if self.loss_scaling else None

    # ------------------------------------------------------------ perf's yardstick

    def bare_loop(self, images: np.ndarray, labels: np.ndarray):
        """The least a Keras training step can be: tape, loss, gradients, SGD apply, in tf.function."""
        model = create_model(self.cfg.model.name, self.num_classes, self.image_size, **self.model_options)
        sgd = self.sgd()
        opt = make_sgd(self.knobs.optimizer, 0.01, sgd.momentum, sgd.nesterov)
        if self.loss_scaling:
            opt = keras.optimizers.LossScaleOptimizer(opt)
        x, y = self.normalize(tf.constant(images)), tf.constant(np.asarray(labels, np.int32))

        @tf.function(jit_compile=bool(self.cfg.framework.jit_compile))
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(cross_entropy(y, model(x, training=True)))
                scaled = opt.scale_loss(loss) if self.loss_scaling else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            # the coupled L2 the harness adds too (torch's bare loop has it in its SGD)
            grads = coupled_l2(grads, model.trainable_variables, self.weight_decay,
                               opt.dynamic_scale if self.loss_scaling else None)
            opt.apply(grads, model.trainable_variables)
            return loss

        def run(steps: int) -> None:
            loss = None
            for _ in range(steps):
                loss = step()
            float(loss.numpy())  # waits for the device

        return run

    # ------------------------------------------------------------ checkpoints
    #
    # best: checkpoints/best.weights.h5 (Keras weights file) + best.json (meta)
    # last: checkpoints/last/<name>.{index,data-*} (tf.train.Checkpoint of model,
    #       optimizer with momentum slots, iteration count and loss scale, step
    #       counter and data generator) + last.json naming the current one and its meta.
    # A new `last` is written under a fresh name and becomes current only when
    # last.json is atomically replaced, so a run killed mid-save resumes from the
    # previous one.

    def _state(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step,
                                   data_generator=self.train_batches.generator)

    def save(self, kind: str, meta: dict) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if kind == "best":
            path = self.checkpoint_dir / "best.weights.h5"
            tmp = self.checkpoint_dir / ".best.tmp.weights.h5"  # Keras insists on the suffix
            with writing(path, tmp):
                self.model.save_weights(tmp)
                replace_durably(tmp, path)
            write_json(self.checkpoint_dir / "best.json", {"meta": meta})
            return
        if kind != "last":
            raise ValueError(f"checkpoint kind {kind!r}; valid: best, last")
        folder = self.checkpoint_dir / "last"
        name = f"epoch{meta.get('epoch', 0):04d}-{time.time_ns()}"
        try:
            with writing(folder / name):
                prefix = self._state().write(str(folder / name))
        except BaseException:  # the partial files of this save (TensorFlow names them after the prefix)
            for partial in folder.glob(name + "*"):
                shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)
            raise
        write_json(self.checkpoint_dir / "last.json", {"checkpoint": f"last/{Path(prefix).name}", "meta": meta})
        for old in folder.iterdir():  # earlier saves, and leftovers of an interrupted one
            if old.name.startswith(name + "."):
                continue
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def restore(self, kind: str) -> dict | None:
        if kind == "best":
            path, info = self.checkpoint_dir / "best.weights.h5", read_json(self.checkpoint_dir / "best.json")
            if not path.is_file() or info is None:
                return None
            try:
                self.model.load_weights(path)
            except Exception as exc:  # truncated or foreign file: one line, not a traceback
                raise BenchmarkError(f"{path} cannot be read ({exc.__class__.__name__}); delete it to redo "
                                     "the run from its start") from exc
            return info["meta"]
        info = read_json(self.checkpoint_dir / "last.json")
        if info is None:
            return None
        prefix = self.checkpoint_dir / info["checkpoint"]
        try:
            self._state().read(str(prefix)).assert_consumed()
        except Exception as exc:
            raise BenchmarkError(f"{prefix} cannot be restored ({exc.__class__.__name__}); delete "
                                 f"{self.checkpoint_dir} to redo the run from its start") from exc
        return info["meta"]
