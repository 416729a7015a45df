"""The Keras trainer of the engines without TensorFlow (JAX, torch): epochs, evaluation
and checkpoints written once with Keras, the step left to the engine module.

- Input: host_data.py (NumPy, the shared stream); the engine moves batches to its device.
- LR: Keras' CosineDecay (base.py) evaluated at every optimizer step of the run,
  counted as ``epoch * steps_per_epoch + step`` (every epoch takes the same number of
  optimizer steps), and handed to the SGD's learning-rate variable before the step:
  like the TensorFlow engine's own counter, it counts steps a loss scaler skips, which
  the optimizer's ``iterations`` does not.
- Checkpoints: Keras' own weights format. ``best.weights.h5`` holds the model;
  ``last-<epoch>.weights.h5`` the model, its seed-generator states (dropout, drop path)
  and, the model being compiled with the optimizer, the optimizer's variables (momentum
  buffers, iterations, loss scale); ``last.json`` names the current one. The data
  stream needs no state (host_data.py). A new ``last`` becomes current only when
  last.json is atomically replaced, so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from keras.optimizers import LossScaleOptimizer

from benchmark import BenchmarkError
from benchmark.backends import EpochStats, Progress, contract, report_every
from benchmark.backends.keras.base import KerasTrainer
from benchmark.backends.keras.host_data import Normalizer, TrainBatches, eval_batches
from benchmark.backends.keras.optim import make_sgd
from benchmark.files import read_json, replace_durably, write_json, writing
from benchmark.spec.schedule import Schedule


class PortableTrainer(KerasTrainer):
    """contract.Trainer for Keras on an engine without TensorFlow; an engine module
    subclasses it with the step (train_step, accumulate, apply_accumulated, eval_step),
    the device moves and the running sums."""

    data_stream = contract.SHARED_STREAM_FACT

    def __init__(self, cfg, data, schedule: Schedule, checkpoint_dir: Path, device: str):
        super().__init__(cfg, data, schedule, checkpoint_dir, device)
        # compiled only so that Keras' weights files carry the optimizer with the model
        self.model.compile(optimizer=self.optimizer)
        self.normalize = Normalizer(data.mean, data.std)
        train_x, train_y = data.split("train", cfg.limit.train)
        self.train_batches = TrainBatches(train_x, train_y, self.micro_batch,
                                          schedule.steps_per_epoch * self.accum_steps, cfg.dataset.crop_padding,
                                          self.normalize, seed=cfg.seed)

    def learning_rate(self):
        return float(self.schedule.base_lr)  # a variable in the optimizer, set before every step

    # ---------------------------------------------------------------- what an engine implements

    def to_device(self, x: np.ndarray, y: np.ndarray):
        raise NotImplementedError

    def train_step(self, x, y, lr: float) -> None:
        """One optimizer step on one batch (loss, gradients, coupled L2, SGD at `lr`),
        adding to the running sums."""
        raise NotImplementedError

    def accumulate(self, x, y) -> None:
        """Add one micro-batch's gradients of (loss / k) to the accumulators and the running sums."""
        raise NotImplementedError

    def apply_accumulated(self, lr: float) -> None:
        """One optimizer step with the accumulated gradients, then zero them."""
        raise NotImplementedError

    def reset_sums(self) -> None:
        raise NotImplementedError

    def read_sums(self) -> tuple[float, int]:
        """(loss sum, correct) of the epoch so far; waits for the device."""
        raise NotImplementedError

    def eval_step(self, x, y):
        """(summed loss, predicted labels) of one batch, evaluation mode."""
        raise NotImplementedError

    def sync_to_keras(self) -> None:
        """Make the Keras variables hold the current state (an engine that trains on
        copies writes them back; before evaluation and saving)."""

    def sync_from_keras(self) -> None:
        """Take the state from the Keras variables (after a checkpoint is loaded)."""

    def bare_setup(self, create_model, images: np.ndarray, labels: np.ndarray):
        """(a fresh model, its SGD, x, y on the device) for an engine's bare loop (perf's yardstick)."""
        model = create_model(self.cfg.model.name, self.num_classes, self.image_size, **self.model_options)
        sgd = self.sgd()
        opt = make_sgd(self.knobs.optimizer, 0.01, sgd.momentum, sgd.nesterov)
        if self.loss_scaling:
            opt = LossScaleOptimizer(opt)
        opt.build(model.trainable_variables)
        x, y = self.to_device(self.normalize(images), np.asarray(labels, np.int32))
        return model, opt, x, y

    # ---------------------------------------------------------------- epochs

    def train_epoch(self, epoch: int, progress: Progress) -> EpochStats:
        k, steps = self.accum_steps, self.schedule.steps_per_epoch
        every = report_every(steps, self.cfg.progress_updates)
        first = epoch * steps
        lrs = [float(lr) for lr in self.lr_trajectory_between(first, first + steps)]
        self.reset_sums()
        images = 0
        batches = self.train_batches.epoch(epoch)
        start = time.perf_counter()
        for step in range(steps):
            if k == 1:
                x, y = next(batches)
                self.train_step(*self.to_device(x, y), lrs[step])
                images += len(y)
            else:
                for _ in range(k):
                    x, y = next(batches)
                    self.accumulate(*self.to_device(x, y))
                    images += len(y)
                self.apply_accumulated(lrs[step])
            if (step + 1) % every == 0 or step + 1 == steps:
                progress(step + 1, steps, self.read_sums()[0] / images)
        # reading the sums waits for the device: the time includes all its work
        loss_sum, correct = self.read_sums()
        seconds = time.perf_counter() - start
        self.sync_to_keras()
        return EpochStats(loss=loss_sum / images, accuracy=correct / images, seconds=seconds, images=images,
                          steps=steps)

    def predict(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        loss_sum, predictions = 0.0, []
        for x, y in eval_batches(images, labels, self.micro_batch, self.normalize):
            loss, pred = self.eval_step(*self.to_device(x, y))
            loss_sum += float(loss)
            predictions.append(np.asarray(pred))
        preds = np.concatenate(predictions).astype(np.int64) if predictions else np.zeros(0, np.int64)
        return loss_sum / max(1, len(labels)), preds

    # ------------------------------------------------------------ checkpoints

    def save(self, kind: str, meta: dict) -> None:
        if kind not in ("best", "last"):
            raise ValueError(f"checkpoint kind {kind!r}; valid: best, last")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.sync_to_keras()
        name = "best.weights.h5" if kind == "best" else f"last-epoch{meta.get('epoch', 0):04d}.weights.h5"
        path = self.checkpoint_dir / name
        tmp = self.checkpoint_dir / f".{kind}.tmp.weights.h5"  # Keras insists on the suffix
        with writing(path, tmp):
            self.model.save_weights(tmp)  # compiled: model, seed generators and optimizer
            replace_durably(tmp, path)
        write_json(self.checkpoint_dir / f"{kind}.json", {"checkpoint": name, "meta": meta})
        if kind == "last":
            for old in self.checkpoint_dir.glob("last-epoch*.weights.h5"):
                if old.name != name:
                    old.unlink(missing_ok=True)

    def restore(self, kind: str) -> dict | None:
        info = read_json(self.checkpoint_dir / f"{kind}.json")
        if info is None or not (self.checkpoint_dir / str(info.get("checkpoint"))).is_file():
            return None
        path = self.checkpoint_dir / info["checkpoint"]
        try:
            self.model.load_weights(path)
        except Exception as exc:  # truncated or foreign file: one line, not a traceback
            raise BenchmarkError(f"{path} cannot be read ({exc.__class__.__name__}); delete "
                                 f"{self.checkpoint_dir} to redo the run from its start") from exc
        self.sync_from_keras()
        return info["meta"]


class DevicePipeline:
    """Training batches of host_data.TrainBatches moved to an engine's device, each
    finished before the next is cut (benchmark.perf times the pipeline alone)."""

    def __init__(self, batches: TrainBatches, move):
        self.batches, self.move = batches, move

    def __iter__(self):
        for x, y in self.batches:
            yield self.move(x, y)

    def __len__(self) -> int:
        return len(self.batches)


def input_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int, mean, std, seed: int,
                   move) -> DevicePipeline:
    """One epoch's training batches on the device `move` puts them on (contract.Backend; benchmark.perf)."""
    batches = TrainBatches(images, labels, batch_size, len(labels) // batch_size, padding, Normalizer(mean, std), seed)
    return DevicePipeline(batches, move)
