"""Keras 3 on the PyTorch engine: the step of Keras' "training loop from scratch in
PyTorch" guide (the Keras model's forward pass, ``loss.backward()``, the gradients read
from the Keras variables' torch parameters, ``optimizer.apply``), eager; the NumPy
pipeline (pipelines/numpy.py); Keras weights files for ``last`` (trainer.WeightsFileLast).
Imports torch, never torchvision, TensorFlow or JAX.

Gradients accumulate in the torch parameters themselves (``.grad``), so gradient
accumulation needs no buffers of its own; the LR is written into the SGD's
learning-rate variable before every step.
"""

from __future__ import annotations

from types import ModuleType

from benchmark.backends.keras import use_engine

use_engine("torch")  # before keras is imported, whatever KERAS_BACKEND the shell has

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmark import BenchmarkError  # noqa: E402
from benchmark.backends.keras.models import canonical_shapes, create_model, load_canonical  # noqa: E402
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
from benchmark.backends.torch_device import (  # noqa: E402
    apply_float32_policy,
    cpu_kernels,
    cpu_threads,
    determinism_switches,
    float32_state,
    float32_switches,
    resolve_device,
    seed_everything,
)
from benchmark.backends.torch_device import synchronize as synchronize_device  # noqa: E402

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


def keras_device() -> torch.device:
    """Where Keras' torch engine puts its tensors (it chooses when imported)."""
    return keras.ops.convert_to_tensor(0.0).device


def _move(device: torch.device):
    return lambda x, y: (torch.from_numpy(x).to(device, non_blocking=True), torch.from_numpy(y).to(device))


def input_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int, mean, std, seed: int):
    return numpy_pipeline.input_pipeline(images, labels, batch_size, padding, mean, std, seed, _move(keras_device()))


def synchronize() -> None:
    synchronize_device(keras_device())


def environment() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "framework": "keras",
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu_name": torch.cuda.get_device_name(0) if cuda else "cpu",
        "gpu_count": torch.cuda.device_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_threads": cpu_threads(),
        **cpu_kernels(),
    }


def probe_gradients(model, x, y):
    """The probe's training-mode loss and gradients: loss.backward() through the Keras model."""
    model.zero_grad()
    loss = mean_loss(y, model(x, training=True))
    loss.backward()
    return loss.detach(), [v.value.grad for v in model.trainable_variables]


def equivalence_probe(model, name, images, labels, **step):
    return keras_probe(model, name, images, labels, gradients=probe_gradients, no_grad=torch.no_grad, **step)


class TorchEngine:  # implements trainer.Engine
    mode = "eager"
    pipeline: ModuleType = numpy_pipeline
    lr_per_step = True
    eval_sum_dtype: type[np.floating] = np.float64
    vectorized_lr = False  # torch.vmap cannot map the schedule's cond

    def __init__(self, cfg):
        wanted = resolve_device(cfg.framework.device)
        self.torch_device = keras_device()
        if wanted.type != self.torch_device.type:
            raise BenchmarkError(
                f"framework.device={cfg.framework.device}: Keras' torch engine chose {self.torch_device.type} when it "
                f"was imported; set KERAS_TORCH_DEVICE={wanted.type} in the environment to choose it"
            )
        apply_float32_policy(cfg.precision.matmul)  # before the first kernel
        seed_everything(cfg.seed, cfg.framework.deterministic)
        self.device = self.torch_device.type
        self.to_device = _move(self.torch_device)

    # torch's own switches, as for native PyTorch (benchmark.backends.torch_device)
    float32_state = staticmethod(float32_state)
    float32_switches = staticmethod(float32_switches)
    determinism_switches = staticmethod(determinism_switches)

    def learning_rate(self, schedule, lr_schedule):
        return float(schedule.base_lr)  # a variable of the optimizer, set before every step

    def build(self, trainer: KerasTrainer) -> None:
        self.last = WeightsFileLast(trainer)
        self.model, self.optimizer, self.sgd, self.variables = (
            trainer.model,
            trainer.optimizer,
            trainer.sgd(),
            trainer.variables,
        )
        self.accum_steps, self.loss_scaling, self.weight_decay = (
            trainer.accum_steps,
            trainer.loss_scaling,
            trainer.weight_decay,
        )
        self.reset_sums()

    # ---------------------------------------------------------------- the step

    def _backward(self, x, y) -> None:
        """loss.backward() of (loss / k), loss-scaled where float16 needs it: the
        gradients add up in the Keras variables' torch parameters; the running sums too."""
        logits = self.model(x, training=True)
        loss = torch.mean(cross_entropy(y, logits))
        objective = loss / self.accum_steps
        if self.loss_scaling:
            objective = self.optimizer.scale_loss(objective)
        objective.backward()
        with torch.no_grad():
            self.loss_sum += loss.detach() * y.shape[0]
            self.correct += (logits.argmax(dim=1) == y).sum()

    def _apply(self, lr: float) -> None:
        variables = self.variables
        grads = [v.value.grad for v in variables]
        with torch.no_grad():
            self.sgd.learning_rate.assign(lr)
            scale = self.optimizer.dynamic_scale if self.loss_scaling else None
            self.optimizer.apply(coupled_l2(grads, [v.value for v in variables], self.weight_decay, scale), variables)
        self.model.zero_grad()

    def train_step(self, x, y, lr: float | None) -> None:
        self._backward(x, y)
        self._apply(step_lr(lr))

    def accumulate(self, x, y) -> None:
        self._backward(x, y)

    def apply_accumulated(self, lr: float | None) -> None:
        self._apply(step_lr(lr))

    def reset_sums(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=self.torch_device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.torch_device)

    def read_sums(self) -> tuple[float, int]:
        return float(self.loss_sum), int(self.correct)  # .item() waits for the device

    @torch.no_grad()
    def eval_step(self, x, y):
        logits = self.model(x, training=False)
        return torch.sum(cross_entropy(y, logits)).item(), logits.argmax(dim=1).cpu().numpy()

    def sync_to_keras(self) -> None:
        """Nothing to write back: the steps update the Keras variables' tensors in place."""

    def sync_from_keras(self) -> None:
        """Nothing to take: the steps read the Keras variables' tensors."""

    def save_last(self, meta: dict) -> None:
        self.last.save(meta)

    def restore_last(self) -> dict | None:
        return self.last.restore()

    def peak_memory_bytes(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.torch_device))

    # ------------------------------------------------------------ perf's yardstick

    def bare_loop(self, model, optimizer, x, y):
        """The least a Keras-on-torch step can be: forward, loss.backward(), coupled L2,
        optimizer.apply, eager, on one fixed batch."""

        def run(steps: int) -> None:
            loss = None
            for _ in range(steps):
                loss = torch.mean(cross_entropy(y, model(x, training=True)))
                (optimizer.scale_loss(loss) if self.loss_scaling else loss).backward()
                variables = model.trainable_variables
                with torch.no_grad():
                    grads = coupled_l2(
                        [v.value.grad for v in variables],
                        [v.value for v in variables],
                        self.weight_decay,
                        optimizer.dynamic_scale if self.loss_scaling else None,
                    )
                    optimizer.apply(grads, variables)
                model.zero_grad()
            if loss is not None:
                float(loss)  # waits for the device

        return run


def Trainer(cfg, data, schedule, checkpoint_dir) -> KerasTrainer:  # noqa: N802 (contract.Backend names it)
    return KerasTrainer(TorchEngine(cfg), cfg, data, schedule, checkpoint_dir)
