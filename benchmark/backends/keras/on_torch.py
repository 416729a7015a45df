"""Keras 3 on the PyTorch engine: the step of Keras' "training loop from scratch in
PyTorch" guide (the Keras model's forward pass, ``loss.backward()``, the gradients read
from the Keras variables' torch parameters, ``optimizer.apply``), eager; the NumPy
pipeline of host_data.py; Keras checkpoints (portable.py). Imports torch, never
torchvision, TensorFlow or JAX.
"""

from __future__ import annotations

from benchmark.backends.keras import use_engine

use_engine("torch")  # before keras is imported, whatever KERAS_BACKEND the shell has

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmark import BenchmarkError  # noqa: E402
from benchmark.backends.keras import portable, probe  # noqa: E402
from benchmark.backends.keras.base import coupled_l2, cross_entropy  # noqa: E402
from benchmark.backends.keras.models import canonical_shapes, create_model, load_canonical  # noqa: E402
from benchmark.backends.torch_device import cpu_kernels, resolve_device, seed_everything  # noqa: E402
from benchmark.backends.torch_device import synchronize as synchronize_device  # noqa: E402

__all__ = ["Trainer", "canonical_shapes", "create_model", "environment", "equivalence_probe", "input_pipeline",
           "load_canonical", "synchronize"]


def keras_device() -> torch.device:
    """Where Keras' torch engine puts its tensors (it chooses when imported)."""
    return keras.ops.convert_to_tensor(0.0).device


def _move(device: torch.device):
    return lambda x, y: (torch.from_numpy(x).to(device, non_blocking=True), torch.from_numpy(y).to(device))


def input_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int, mean, std, seed: int):
    return portable.input_pipeline(images, labels, batch_size, padding, mean, std, seed, _move(keras_device()))


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
        **cpu_kernels(),
    }


def _probe_gradients(model, x, y):
    """The probe's training-mode loss and gradients: loss.backward() through the Keras model."""
    model.zero_grad()
    loss = probe.mean_loss(y, model(x, training=True))
    loss.backward()
    return loss.detach(), [v.value.grad for v in model.trainable_variables]


def equivalence_probe(model, name, images, labels, **step):
    return probe.equivalence_probe(model, name, images, labels, gradients=_probe_gradients, no_grad=torch.no_grad,
                                   **step)


class Trainer(portable.PortableTrainer):  # implements benchmark.backends.contract.Trainer
    def __init__(self, cfg, data, schedule, checkpoint_dir):
        wanted = resolve_device(cfg.framework.device)
        self.torch_device = keras_device()
        if wanted.type != self.torch_device.type:
            raise BenchmarkError(
                f"framework.device={cfg.framework.device}: Keras' torch engine chose {self.torch_device.type} when it "
                f"was imported; set KERAS_TORCH_DEVICE={wanted.type} in the environment to choose it")
        seed_everything(cfg.seed, cfg.framework.deterministic)
        super().__init__(cfg, data, schedule, checkpoint_dir, self.torch_device.type)
        self.mode = "eager"
        self.to_device = _move(self.torch_device)
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
            self.sgd().learning_rate.assign(lr)
            scale = self.optimizer.dynamic_scale if self.loss_scaling else None
            self.optimizer.apply(coupled_l2(grads, [v.value for v in variables], self.weight_decay, scale), variables)
        self.model.zero_grad()

    def train_step(self, x, y, lr: float) -> None:
        self._backward(x, y)
        self._apply(lr)

    def accumulate(self, x, y) -> None:
        self._backward(x, y)

    def apply_accumulated(self, lr: float) -> None:
        self._apply(lr)

    def reset_sums(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=self.torch_device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.torch_device)

    def read_sums(self) -> tuple[float, int]:
        return float(self.loss_sum), int(self.correct)  # .item() waits for the device

    @torch.no_grad()
    def eval_step(self, x, y):
        logits = self.model(x, training=False)
        return torch.sum(cross_entropy(y, logits)).item(), logits.argmax(dim=1).cpu().numpy()

    def peak_memory(self) -> dict:
        if self.torch_device.type != "cuda":
            return {"accelerator_peak_bytes": None}
        return {"accelerator_peak_bytes": int(torch.cuda.max_memory_allocated(self.torch_device))}

    # ------------------------------------------------------------ perf's yardstick

    def bare_loop(self, images: np.ndarray, labels: np.ndarray):
        """The least a Keras-on-torch step can be: forward, loss.backward(), coupled L2,
        optimizer.apply, eager, on one fixed batch."""
        model, opt, x, y = self.bare_setup(create_model, images, labels)

        def run(steps: int) -> None:
            loss = None
            for _ in range(steps):
                loss = torch.mean(cross_entropy(y, model(x, training=True)))
                (opt.scale_loss(loss) if self.loss_scaling else loss).backward()
                variables = model.trainable_variables
                with torch.no_grad():
                    grads = coupled_l2([v.value.grad for v in variables], [v.value for v in variables],
                                       self.weight_decay, opt.dynamic_scale if self.loss_scaling else None)
                    opt.apply(grads, variables)
                model.zero_grad()
            float(loss)  # waits for the device

        return run
