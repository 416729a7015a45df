"""Keras 3 on the TensorFlow engine: a custom ``tf.GradientTape`` step in ``tf.function``,
not ``model.fit`` (docs/protocol.md §5), over the tf.data pipeline (pipelines/tfdata.py).

What differs from the other engines (the rest is the one trainer, trainer.py):

- the LR reaches the optimizer as a callable, CosineDecay at this engine's own step
  counter (a variable the step increments, saved in ``last``), so no host value is fed
  per step;
- the running sums and the accumulators are variables updated inside the step: no host
  sync per step; evaluation losses are summed in float32, as TensorFlow's trainer always did;
- ``last`` is a ``tf.train.Checkpoint`` of the model, the optimizer (momentum slots,
  iterations, loss scale), the step counter and the data generator (the own stream's
  state), under checkpoints/last/.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import ModuleType

from benchmark.backends.keras import use_engine

use_engine("tensorflow")  # before keras is imported, whatever KERAS_BACKEND the shell has
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter stays out of the logs

import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import config as tf_config  # noqa: E402  (is_/disable_op_determinism)

from benchmark import BenchmarkError  # noqa: E402
from benchmark.backends import cpus  # noqa: E402

log = logging.getLogger(__name__)


def enable_memory_growth() -> None:
    """Without this TensorFlow reserves all GPU memory at start-up (docs/protocol.md §8), which
    hides the real footprint from the AMP-vs-fp32 memory comparison and blocks a second
    process on the GPU. It only works before the GPUs are initialized."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            # already initialized: fine if an earlier call did it (a second run in one
            # process), but say so, as memory figures would then be the whole GPU
            if not tf.config.experimental.get_memory_growth(gpu):
                log.warning("could not enable memory growth on %s: TensorFlow had already initialized it", gpu.name)


enable_memory_growth()  # before keras or a model can touch the GPU

# Thread pools sized from the CPUs this process may use (benchmark.backends.cpus): they
# can only be set before TensorFlow's runtime starts, which the first operation does.
try:
    tf.config.threading.set_intra_op_parallelism_threads(cpus.allowed()[0])
    tf.config.threading.set_inter_op_parallelism_threads(cpus.allowed()[0])
except RuntimeError:  # started already (a process that ran TensorFlow before): env.json records the pools
    pass

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.backends.keras.models import canonical_shapes, create_model, load_canonical  # noqa: E402
from benchmark.backends.keras.pipelines import tfdata  # noqa: E402
from benchmark.backends.keras.pipelines.tfdata import input_pipeline, synchronize  # noqa: E402
from benchmark.backends.keras.trainer import KerasTrainer, coupled_l2, cross_entropy, mean_loss  # noqa: E402
from benchmark.backends.keras.trainer import equivalence_probe as keras_probe  # noqa: E402
from benchmark.files import read_json, refuse_links_out, remove, write_json, writing  # noqa: E402

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

# tf.train.Checkpoint logs an INFO line per save through absl, which would land in run.log
logging.getLogger("absl").setLevel(logging.WARNING)


def select_device(name: str) -> str:
    """Resolve framework.device (auto, cpu or cuda: benchmark.spec.config.CHOICES checked the
    name) to 'cpu' or 'cuda', hiding the GPUs for 'cpu'."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "cuda" and not gpus:
        raise BenchmarkError("framework.device=cuda but TensorFlow sees no GPU; use framework.device=auto or cpu")
    if name == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError as exc:
            raise BenchmarkError(
                "framework.device=cpu: TensorFlow had already initialized the GPU in this process"
            ) from exc
        return "cpu"
    return "cuda" if gpus else "cpu"


def environment() -> dict:
    build = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    gpu_name = "cpu"
    if gpus:
        gpu_name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    return {
        "framework": "keras",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        # as in the PyTorch backend: the CUDA/cuDNN a run uses, None on a CPU run ...
        "cuda": build.get("cuda_version") if gpus else None,
        "cudnn": build.get("cudnn_version") if gpus else None,
        # ... and what this TensorFlow wheel was built against, always
        "tf_build_cuda": build.get("cuda_version"),
        "tf_build_cudnn": build.get("cudnn_version"),
        "gpu_name": gpu_name,
        "gpu_count": len(gpus),
        # TensorFlow's x86 builds use oneDNN kernels unless this is "0" (different rounding)
        "tf_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        # 0: TensorFlow's own default, every CPU of the machine
        "cpu_threads": cpus.record(
            tf_intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
            tf_inter_op=tf.config.threading.get_inter_op_parallelism_threads(),
        ),
    }


def probe_gradients(model, x, y):
    """The probe's training-mode loss and gradients, by tf.GradientTape."""
    with tf.GradientTape() as tape:
        loss = mean_loss(y, model(x, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)


def equivalence_probe(model, name, images, labels, **step):
    return keras_probe(model, name, images, labels, gradients=probe_gradients, **step)


class TensorFlowEngine:  # implements trainer.Engine
    pipeline: ModuleType = tfdata
    lr_per_step = False
    eval_sum_dtype: type[np.floating] = np.float32
    vectorized_lr = False  # the schedule runs inside the step (lr_per_step is False)

    def __init__(self, cfg):
        self.device = select_device(cfg.framework.device)
        keras.utils.set_random_seed(cfg.seed)  # Python, NumPy, TensorFlow and Keras' own seed generator
        # an op without a deterministic kernel raises (benchmark.backends.determinism_errors words it)
        if cfg.framework.deterministic:
            tf.config.experimental.enable_op_determinism()
        else:
            tf_config.disable_op_determinism()  # a process-wide switch: an earlier run may have set it
        # precision.matmul, before the first kernel: TensorFlow's one TF32 switch covers
        # float32 matmuls and convolutions (it is on by default)
        tf.config.experimental.enable_tensor_float_32_execution(cfg.precision.matmul == "tf32")
        self.jit = cfg.framework.execution == "xla"  # else graph (benchmark.spec.frameworks.EXECUTIONS)
        self.mode = "tf.function+xla" if self.jit else "tf.function"

    def float32_state(self) -> dict[str, bool | None]:
        on = tf.config.experimental.tensor_float_32_execution_enabled()
        return {"matmul": on, "conv": on}

    def float32_switches(self) -> dict:
        return {
            "tf.config.experimental.tensor_float_32_execution_enabled": (
                tf.config.experimental.tensor_float_32_execution_enabled()
            ),
            # oneDNN's CPU kernels may compute float32 in bfloat16 when this asks for it
            "ONEDNN_DEFAULT_FPMATH_MODE": os.environ.get("ONEDNN_DEFAULT_FPMATH_MODE"),
        }

    def determinism_switches(self) -> dict:
        return {"tf.config.experimental.enable_op_determinism": tf_config.is_op_determinism_enabled()}

    def learning_rate(self, schedule, lr_schedule):
        # optimizer steps taken so far (skipped ones included); drives the LR
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="benchmark_step")
        return lambda: lr_schedule(self.step)

    def build(self, trainer: KerasTrainer) -> None:
        self.model, self.optimizer, self.variables = trainer.model, trainer.optimizer, trainer.variables
        self.accum_steps, self.loss_scaling, self.weight_decay = (
            trainer.accum_steps,
            trainer.loss_scaling,
            trainer.weight_decay,
        )
        self.checkpoint_dir, self.generator = trainer.checkpoint_dir, trainer.train_batches.generator
        self.loss_sum = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.correct = tf.Variable(0, dtype=tf.int64, trainable=False)
        if self.accum_steps > 1:
            self.accumulators = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in self.variables]
        self._train_step = tf.function(self._train_step_fn, jit_compile=self.jit)
        self._accumulate = tf.function(self._accumulate_fn, jit_compile=self.jit)
        self._apply_accumulated = tf.function(self._apply_accumulated_fn, jit_compile=self.jit)
        image = (None, trainer.image_size, trainer.image_size, 3)
        # one trace for every eval batch size, the last partial batch included
        self._eval_step = tf.function(
            self._eval_step_fn,
            jit_compile=self.jit,
            input_signature=[tf.TensorSpec(image, tf.float32), tf.TensorSpec((None,), tf.int32)],
        )

    # ---------------------------------------------------------------- steps

    def _loss_scale(self):
        return self.optimizer.dynamic_scale if self.loss_scaling else None

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
        for acc, g in zip(self.accumulators, self._gradients(x, y), strict=True):
            acc.assign_add(g)

    def _apply_accumulated_fn(self):
        self._apply([acc.read_value() for acc in self.accumulators])
        for acc in self.accumulators:
            acc.assign(tf.zeros_like(acc))

    def _eval_step_fn(self, x, y):
        logits = tf.cast(self.model(x, training=False), tf.float32)
        loss = tf.reduce_sum(cross_entropy(y, logits))
        return loss, tf.argmax(logits, axis=1, output_type=tf.int32)

    def to_device(self, x, y):
        return x, y  # tf.data hands out tensors; the step places them

    def train_step(self, x, y, lr) -> None:
        self._train_step(x, y)

    def accumulate(self, x, y) -> None:
        self._accumulate(x, y)

    def apply_accumulated(self, lr) -> None:
        self._apply_accumulated()

    def reset_sums(self) -> None:
        self.loss_sum.assign(0.0)
        self.correct.assign(0)

    def read_sums(self) -> tuple[float, int]:
        return float(self.loss_sum.numpy()), int(self.correct.numpy())

    def eval_step(self, x, y):
        return self._eval_step(x, y)

    def sync_to_keras(self) -> None:
        """Nothing to write back: the steps update the Keras variables themselves."""

    def sync_from_keras(self) -> None:
        """Nothing to take: the steps read the Keras variables themselves."""

    def peak_memory_bytes(self) -> int:
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def bare_loop(self, model, optimizer, x, y):
        """The least a Keras training step can be: tape, loss, gradients, SGD apply, in tf.function."""
        x, y = tf.constant(x), tf.constant(y)
        scale = optimizer.dynamic_scale if self.loss_scaling else None

        @tf.function(jit_compile=self.jit)
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(cross_entropy(y, model(x, training=True)))
                scaled = optimizer.scale_loss(loss) if self.loss_scaling else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            # the coupled L2 the harness adds too (torch's bare loop has it in its SGD)
            optimizer.apply(
                coupled_l2(grads, model.trainable_variables, self.weight_decay, scale), model.trainable_variables
            )
            return loss

        def run(steps: int) -> None:
            loss = None
            for _ in range(steps):
                loss = step()
            if loss is not None:
                float(loss.numpy())  # waits for the device

        return run

    # ------------------------------------------------------------ the last checkpoint
    #
    # checkpoints/last/<name>.{index,data-*}, written under a fresh name, becomes current
    # only when last.json is atomically replaced, so a run killed mid-save resumes from
    # the previous one.

    def _state(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step, data_generator=self.generator
        )

    def save_last(self, meta: dict) -> None:
        folder = self.checkpoint_dir / "last"
        folder.mkdir(parents=True, exist_ok=True)
        # TensorFlow writes by name, and the clean-up below empties the folder: never
        # through a `last` that is a link, nor into a folder holding links out of it
        refuse_links_out(folder, "the checkpoint folder")
        name = f"epoch{meta.get('epoch', 0):04d}-{time.time_ns()}"
        try:
            with writing(folder / name):
                prefix = self._state().write(str(folder / name))
        except BaseException:  # the partial files of this save (TensorFlow names them after the prefix)
            for partial in folder.glob(name + "*"):
                remove(partial)
            raise
        write_json(self.checkpoint_dir / "last.json", {"checkpoint": f"last/{Path(prefix).name}", "meta": meta})
        for old in folder.iterdir():  # earlier saves, and leftovers of an interrupted one
            if not old.name.startswith(name + "."):
                remove(old)

    def restore_last(self) -> dict | None:
        info = read_json(self.checkpoint_dir / "last.json")
        if info is None:
            return None
        prefix = self.checkpoint_dir / info["checkpoint"]
        try:
            self._state().read(str(prefix)).assert_consumed()
        except Exception as exc:
            raise BenchmarkError(
                f"{prefix} cannot be restored ({exc.__class__.__name__}); delete "
                f"{self.checkpoint_dir} to redo the run from its start"
            ) from exc
        return info["meta"]


def Trainer(cfg, data, schedule, checkpoint_dir) -> KerasTrainer:  # noqa: N802 (contract.Backend names it)
    return KerasTrainer(TensorFlowEngine(cfg), cfg, data, schedule, checkpoint_dir)
