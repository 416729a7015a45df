"""The PyTorch training loop: explicit, in the manner of torchvision's classification reference."""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark import BenchmarkError
from benchmark.backends import EpochStats, Progress, report_every
from benchmark.backends.pytorch.data import Normalizer, TrainBatches, eval_batches
from benchmark.backends.pytorch.models import build_model
from benchmark.backends.pytorch.schedule import build_scheduler
from benchmark.rundir import replace_durably
from benchmark.schedule import Schedule

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("framework.device=cuda but PyTorch sees no CUDA device; use framework.device=auto or cpu")
    if name not in ("cpu", "cuda"):
        raise BenchmarkError(f"framework.device={name} is unknown; valid: auto, cpu, cuda")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        # cuBLAS needs this before its first call to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: a few backward kernels (e.g. adaptive pooling on CUDA) have no
        # deterministic version; they warn instead of stopping the run
        torch.use_deterministic_algorithms(True, warn_only=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    def __init__(self, cfg, data, schedule: Schedule, checkpoint_dir: Path):
        self.cfg, self.schedule, self.checkpoint_dir = cfg, schedule, Path(checkpoint_dir)
        self.device = resolve_device(cfg.framework.device)
        seed_everything(cfg.seed, cfg.framework.deterministic)

        self.num_classes = data.num_classes
        channels_last = bool(cfg.framework.channels_last)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # `module` holds the weights (checkpoints); `model` is what runs, compiled or not
        self.module = build_model(cfg.model.name, data.num_classes, data.image_size).to(
            self.device, memory_format=memory_format)
        self.model = torch.compile(self.module) if cfg.framework.compile else self.module
        self.mode = ("torch.compile" if cfg.framework.compile else "eager") + ("+channels_last" if channels_last else "")
        self.criterion = nn.CrossEntropyLoss()
        # weight_decay here is PyTorch's coupled L2 (added to the gradient, through momentum)
        self.optimizer = torch.optim.SGD(
            self.module.parameters(), lr=schedule.base_lr, momentum=cfg.optim.momentum,
            nesterov=cfg.optim.nesterov, weight_decay=cfg.optim.weight_decay,
        )
        self.scheduler = build_scheduler(self.optimizer, schedule)

        self.amp = bool(cfg.precision.mixed)
        # CPU autocast is built around bfloat16, which needs no loss scaling
        self.amp_dtype = getattr(torch, cfg.precision.dtype) if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.amp_dtype == torch.float16)

        self.accum_steps = cfg.grad_accum_steps
        self.micro_batch = cfg.batch_size // cfg.grad_accum_steps
        self.normalize = Normalizer(data.mean, data.std, self.device, channels_last)
        train_x, train_y = data.split("train", cfg.limit.train)
        self.train_batches = TrainBatches(train_x, train_y, self.micro_batch, cfg.dataset.crop_padding,
                                          self.normalize, seed=cfg.seed)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def train_epoch(self, epoch: int, progress: Progress) -> EpochStats:
        model, optimizer, scaler, k = self.model, self.optimizer, self.scaler, self.accum_steps
        steps = self.schedule.steps_per_epoch
        every = report_every(steps, self.cfg.progress_updates)
        model.train()
        # running sums stay on the device: no host sync per step
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        images = 0
        batches = iter(self.train_batches)
        start = time.perf_counter()
        for step in range(steps):
            for _ in range(k):
                x, y = next(batches)
                with self.autocast():
                    logits = model(x)
                    loss = self.criterion(logits, y)
                scaler.scale(loss / k).backward()
                loss_sum += loss.detach().float() * y.numel()
                correct += (logits.argmax(1) == y).sum()
                images += y.numel()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            if (step + 1) % every == 0 or step + 1 == steps:
                progress(step + 1, steps, loss_sum.item() / images)
        synchronize(self.device)
        seconds = time.perf_counter() - start
        return EpochStats(loss=loss_sum.item() / images, accuracy=correct.item() / images,
                          seconds=seconds, images=images, steps=steps)

    @torch.inference_mode()
    def predict(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        predictions = []
        for x, y in eval_batches(images, labels, self.micro_batch, self.normalize):
            with self.autocast():
                logits = self.model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            predictions.append(logits.argmax(1))
        return loss_sum.item() / max(1, len(labels)), torch.cat(predictions).cpu().numpy()

    def peak_memory(self) -> dict:
        """Peak accelerator memory of this process (None on the CPU)."""
        if self.device.type != "cuda":
            return {"accelerator_peak_bytes": None}
        return {"accelerator_peak_bytes": int(torch.cuda.max_memory_allocated(self.device))}

    # ------------------------------------------------------------ checkpoints

    def _path(self, kind: str) -> Path:
        return self.checkpoint_dir / f"{kind}.pt"

    def save(self, kind: str, meta: dict) -> None:
        state = {"meta": meta, "model": self.module.state_dict()}
        if kind == "last":
            state.update(
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                torch_rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                data_rng=self.train_batches.generator.get_state(),
            )
        path = self._path(kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        replace_durably(tmp, path)

    def restore(self, kind: str) -> dict | None:
        path = self._path(kind)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # truncated or foreign file: one line, not a traceback
            raise BenchmarkError(f"{path} cannot be read ({exc.__class__.__name__}); delete it to redo "
                                 "the run from its start") from exc
        self.module.load_state_dict(state["model"])
        if kind == "last":
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"].cpu())
            if state["cuda_rng"]:
                torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
            self.train_batches.generator.set_state(state["data_rng"].cpu())
        return state["meta"]
