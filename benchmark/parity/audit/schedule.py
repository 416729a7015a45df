"""LR schedule: each backend's schedule evaluated at every optimizer step of the run."""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from benchmark.parity.frameworks import tf  # torch first, then TensorFlow

from benchmark.backends.keras import train as ktrain
from benchmark.backends.pytorch import train as ttrain
from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import _fmt


def torch_lrs(a: Arms) -> np.ndarray:
    """The LR of each optimizer step from the PyTorch trainer's own scheduler (stepped once per step)."""
    opt, sched = a.torch.optimizer, a.torch.scheduler
    lrs = np.empty(a.schedule.total_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler.step() without optimizer.step()
        for s in range(a.schedule.total_steps):
            lrs[s] = opt.param_groups[0]["lr"]
            sched.step()
    return lrs


def keras_lrs(a: Arms) -> np.ndarray:
    steps = tf.range(a.schedule.total_steps, dtype=tf.int64)
    return np.asarray(tf.vectorized_map(a.keras.lr_schedule, steps), dtype=np.float64)


def check_schedule(a: Arms, t_lrs: np.ndarray, k_lrs: np.ndarray) -> list[Finding]:
    s = a.schedule
    ref = np.array([s.lr_at(i) for i in range(s.total_steps)])
    d_tk = float(np.abs(t_lrs - k_lrs).max())
    d_t, d_k = float(np.abs(t_lrs - ref).max()), float(np.abs(k_lrs - ref).max())
    shape = (f"{s.total_steps:,} steps = {a.cfg.epochs} epochs x {s.steps_per_epoch} "
             f"({a.train_images:,} train images [{a.train_source}] // batch {a.cfg.batch_size}), "
             f"warmup {s.warmup_steps:,} steps, peak {_fmt(s.base_lr)}")
    rows = [
        Finding("LR schedule", "schedule evaluated", f"{type(a.torch.scheduler).__name__}: {shape}",
                f"{type(a.keras.lr_schedule).__name__}: {shape}", True,
                "both built from benchmark.schedule.Schedule", kind="info"),
        Finding("LR schedule", "max |LR difference| over every step", f"{d_tk:.3g}", f"{d_tk:.3g}", d_tk < 1e-6,
                "the two backends use the same LR at every step (docs/protocol.md §5: < 1e-6)" if d_tk < 1e-6
                else "the LR differs between the backends"),
        Finding("LR schedule", "max |LR - closed form| (Schedule.lr_at)", f"{d_t:.3g}", f"{d_k:.3g}",
                d_t < 1e-6 and d_k < 1e-6, "both follow the protocol" if d_t < 1e-6 and d_k < 1e-6
                else "a backend deviates from the protocol"),
    ]
    per_step_t = s.steps_per_epoch > 1 and t_lrs[1] != t_lrs[0]
    per_step_k = s.steps_per_epoch > 1 and k_lrs[1] != k_lrs[0]
    t_src = "scheduler.step()" in inspect.getsource(ttrain.Trainer.train_epoch)
    k_src = "self.step.assign_add(1)" in inspect.getsource(ktrain.Trainer._apply)
    rows.append(Finding(
        "LR schedule", "LR updated per optimizer step (not per epoch)",
        f"{'yes' if per_step_t else 'no'} (LR changes within epoch 1; train_epoch steps the scheduler "
        f"after every optimizer step: {'found' if t_src else 'NOT found'} in source)",
        f"{'yes' if per_step_k else 'no'} (CosineDecay of the trainer's step counter, incremented in _apply: "
        f"{'found' if k_src else 'NOT found'} in source)",
        per_step_t == per_step_k and t_src and k_src,
        "same granularity (docs/protocol.md §8 pitfall avoided)" if per_step_t == per_step_k else "different granularity",
    ))
    return rows
