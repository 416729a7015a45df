"""The PyTorch training loop: explicit, in the manner of torchvision's classification reference."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark import BenchmarkError
from benchmark.backends import EpochStats, Progress, contract, report_every
from benchmark.backends.pytorch import models
from benchmark.backends.pytorch.data import Normalizer, TrainBatches, eval_batches
from benchmark.backends.pytorch.models import block_shapes, create_model, entry, layer_table, parameter_counts
from benchmark.backends.pytorch.schedule import build_scheduler
from benchmark.backends.torch_device import (  # noqa: F401  (synchronize re-exported)
    apply_float32_policy,
    determinism_switches,
    float32_state,
    float32_switches,
    resolve_device,
    seed_everything,
    synchronize,
)
from benchmark.files import atomic_write_bytes
from benchmark.spec.frameworks import check_execution, check_execution_device
from benchmark.spec.models import create_for_protocol
from benchmark.spec.protocol import Knobs
from benchmark.spec.schedule import Schedule

log = logging.getLogger(__name__)

OWN_STREAM_FACT = "own: torch.Generator seeded with the run's seed (order, then per batch crops and flips)"


# framework.execution (benchmark.spec.frameworks.EXECUTIONS) -> torch.compile's mode (None:
# eager, no compile; "default": torch.compile's default) and the name the run records
COMPILE_MODES: dict[str, tuple[str | None, str]] = {
    "eager": (None, "eager"),
    "compile": ("default", "torch.compile"),
    "compile-max-autotune": ("max-autotune", "torch.compile(max-autotune)"),
    "compile-reduce-overhead": ("reduce-overhead", "torch.compile(reduce-overhead)"),
}


def _compiled(module: nn.Module, execution: str) -> nn.Module:
    """`module` as `execution` runs it: itself (eager), or torch.compile of it in the
    mode the execution names, an OptimizedModule, itself an nn.Module (which
    torch.compile's annotation, a Callable, does not say). torch.compile compiles at the
    first call, so the first training step (inside the epoch's timer) pays for it."""
    mode = COMPILE_MODES[execution][0]
    if mode is None:
        return module
    return cast(nn.Module, torch.compile(module, mode=mode))


class Trainer:  # implements benchmark.backends.contract.BackendTrainer
    def __init__(self, cfg, data, schedule: Schedule, checkpoint_dir: Path):
        self.cfg, self.schedule, self.checkpoint_dir = cfg, schedule, Path(checkpoint_dir)
        self.device = resolve_device(cfg.framework.device)
        self.execution = check_execution(cfg.framework.name, "torch", cfg.framework.execution)
        check_execution_device(self.execution, self.device.type)  # CUDA graphs need CUDA
        apply_float32_policy(cfg.precision.matmul)  # before the first kernel
        seed_everything(cfg.seed, cfg.framework.deterministic)

        self.num_classes = data.num_classes
        channels_last = bool(cfg.framework.channels_last)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # `module` holds the weights (checkpoints); `model` is what runs, compiled or not
        self.image_size = data.image_size
        self.knobs = Knobs.of(cfg.get("protocol"))
        self.model_options = self.knobs.model_options(cfg.model.name)
        module = create_for_protocol(models, cfg.model.name, data.num_classes, data.image_size, self.knobs, cfg.seed)
        self.module = module.to(self.device, memory_format=memory_format)
        self.model = _compiled(self.module, self.execution)
        self.mode = COMPILE_MODES[self.execution][1] + ("+channels_last" if channels_last else "")
        self.criterion = nn.CrossEntropyLoss()
        # weight_decay here is PyTorch's coupled L2 (added to the gradient, through momentum)
        self.optimizer = torch.optim.SGD(
            self.module.parameters(),
            lr=schedule.base_lr,
            momentum=cfg.optim.momentum,
            nesterov=cfg.optim.nesterov,
            weight_decay=cfg.optim.weight_decay,
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
        self.train_batches = TrainBatches(
            train_x,
            train_y,
            self.micro_batch,
            cfg.dataset.crop_padding,
            self.normalize,
            seed=cfg.seed,
            shared_stream=self.knobs.data,
        )

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
        batches = self.train_batches.epoch(epoch)
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
        return EpochStats(
            loss=loss_sum.item() / images, accuracy=correct.item() / images, seconds=seconds, images=images, steps=steps
        )

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

    # ------------------------------------------------------------ the audit's and perf's view

    def protocol_facts(self) -> contract.ProtocolFacts:
        group, crit = self.optimizer.param_groups[0], self.criterion
        # what contract.LOSS_FACT states, and an SGD without dampening
        if crit.reduction != "mean" or crit.label_smoothing != 0.0 or group["dampening"] != 0.0:
            raise RuntimeError(
                "the PyTorch trainer no longer matches contract.LOSS_FACT and an undampened SGD: "
                f"reduction={crit.reduction!r}, label_smoothing={crit.label_smoothing}, dampening={group['dampening']}"
            )
        nesterov = bool(group["nesterov"])
        return contract.protocol_facts(
            momentum=group["momentum"],
            nesterov=nesterov,
            momentum_buffer=contract.momentum_buffer_fact(lr_in_buffer=False, nesterov=nesterov),
            weight_decay=group["weight_decay"],
            reduced_dtype=str(self.amp_dtype).replace("torch.", "") if self.amp else None,
            loss_scaling=self.scaler.is_enabled(),
            mean=self.normalize.mean.cpu().numpy(),
            std=self.normalize.std.cpu().numpy(),
            layers=self.layers(),
            model=entry(self.cfg.model.name),
            drop_rate=self.model_options["drop_rate"],
            drop_path_rate=self.model_options["drop_path_rate"],
            shared_init=self.knobs.init,
            data_stream=contract.SHARED_STREAM_FACT if self.knobs.data else OWN_STREAM_FACT,
            micro_batch=self.micro_batch,
            accum_steps=self.accum_steps,
            float32_matmul=contract.float32_fact(self.cfg.precision.matmul, self.device.type, float32_state()),
            deterministic=bool(self.cfg.framework.deterministic),
        )

    def settings_in_force(self) -> dict:
        return {
            "float32_policy": contract.float32_record(self.cfg.precision.matmul, self.device.type, float32_switches()),
            "determinism": contract.determinism_record(
                self.cfg.framework.deterministic, determinism_switches(), models.REPLACED
            ),
        }

    def layers(self) -> list[contract.LayerInfo]:
        return layer_table(self.module)

    def block_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return block_shapes(self.module, self.cfg.model.name, self.image_size)

    def parameter_counts(self) -> dict[str, int]:
        return parameter_counts(self.module)

    def _probe_optimizer(self, dim: int):
        group = self.optimizer.param_groups[0]
        probe = torch.zeros(dim, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD(
            [probe],
            lr=self.schedule.base_lr,
            momentum=group["momentum"],
            nesterov=group["nesterov"],
            dampening=group["dampening"],
        )
        return probe, opt, build_scheduler(opt, self.schedule)

    def update_trajectory(self, grads: np.ndarray) -> np.ndarray:
        probe, opt, scheduler = self._probe_optimizer(grads.shape[1])
        out = np.empty_like(grads)
        for t, g in enumerate(grads):
            probe.grad = torch.from_numpy(g.copy())
            opt.step()
            scheduler.step()
            out[t] = probe.detach().numpy()
        return out

    def bare_loop(self, images: np.ndarray, labels: np.ndarray):
        """The least a PyTorch training step can be: forward, loss, backward, SGD step."""
        model = create_model(self.cfg.model.name, self.num_classes, self.image_size, **self.model_options)
        model = model.to(self.device).to(memory_format=self.normalize.memory_format)
        model = _compiled(model, self.execution)
        group = self.optimizer.param_groups[0]
        opt = torch.optim.SGD(
            model.parameters(),
            lr=0.01,
            momentum=group["momentum"],
            nesterov=group["nesterov"],
            weight_decay=group["weight_decay"],
        )
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.scaler.is_enabled())
        x, y = self.normalize(torch.from_numpy(images)), torch.from_numpy(np.asarray(labels, np.int64)).to(self.device)
        model.train()

        def run(steps: int) -> None:
            for _ in range(steps):
                with self.autocast():
                    loss = F.cross_entropy(model(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
            synchronize(self.device)

        return run

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
        # Serialized in memory, then written by Python: torch.save's own file writer
        # reports a full disk as a bare RuntimeError, a file write as OSError(ENOSPC).
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(path, buffer.getbuffer())

    def restore(self, kind: str) -> dict | None:
        path = self._path(kind)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # truncated or foreign file: one line, not a traceback
            raise BenchmarkError(
                f"{path} cannot be read ({exc.__class__.__name__}); delete it to redo the run from its start"
            ) from exc
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
