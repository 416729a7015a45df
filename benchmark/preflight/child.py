"""One framework option checked in this process (`python -m benchmark.preflight --child SPEC`).

Keras binds its engine once per process, so the parent starts one child per framework
option and never loads a framework itself. The child builds real trainers through the
backend contract (``Backend.Trainer``, ``Introspection.protocol_facts``) on random pixels
of the preset's image size and classes: timing and a smoke test only, nothing trained is
kept (the trainers checkpoint into a temporary directory that is deleted).

It prints one line, ``PREFLIGHT {json}``: the device, the execution mode, each precision
check (fp32; AMP float16, with dynamic loss scaling on a GPU; AMP bfloat16 where the
device has it) with its losses and the precision the trainer reports, the backend's
environment facts (float32 policy, determinism, CPU threads) and, per training shape of
the preset (model, image size, batch, precision), the training and evaluation images/s
after one warm-up epoch.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from benchmark.backends import load_backend
from benchmark.backends.contract import BackendModule
from benchmark.perf import random_data
from benchmark.spec.config import CONF_DIR, register_configs
from benchmark.spec.schedule import make_schedule

# check name -> the precision overrides it runs under
CHECKS = {
    "fp32": ("precision=fp32",),
    "amp16": ("precision=amp", "precision.dtype=float16"),
    "bf16": ("precision=amp", "precision.dtype=bfloat16"),
}
CHECK_STEPS = 3  # optimizer steps of each precision check


def check_name(cfg) -> str:
    """The check a config's precision is (fp32, amp16 or bf16)."""
    if not cfg.precision.mixed:
        return "fp32"
    return "bf16" if cfg.precision.dtype == "bfloat16" else "amp16"


def compose_job(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def cuda_bf16(device: str) -> bool | None:
    """Whether the CUDA device has bfloat16 (compute capability 8.0, Ampere, or newer), as
    nvidia-smi reports it: the same answer whatever the engine; None when unknown."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(  # noqa: S603  a fixed argument list, no shell
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        index = int(device.rpartition(":")[2]) if device.rpartition(":")[2].isdigit() else 0
        caps = [float(line) for line in out.stdout.split()]
        return caps[index] >= 8.0
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def is_gpu(device: str) -> bool:
    return "cuda" in device.lower() or "gpu" in device.lower()


class Child:
    def __init__(self, spec: dict):
        self.spec = spec
        self.steps: int = spec["steps"]
        self.tmp = Path(tempfile.mkdtemp(prefix="preflight-"))
        self.backend: BackendModule | None = None
        self.result: dict = {"checks": {}, "shapes": [], "error": None}

    def trainer(self, cfg, steps: int):
        """A real trainer of `cfg` on `steps` batches of random pixels."""
        n = steps * int(cfg.batch_size)
        data = random_data(n, int(cfg.dataset.image_size), int(cfg.dataset.num_classes), name="preflight-random")
        directory = Path(tempfile.mkdtemp(dir=self.tmp))
        if self.backend is None:
            self.backend = load_backend(cfg.framework.name, cfg.framework.engine)
        backend: BackendModule = self.backend
        return backend.Trainer(cfg, data, make_schedule(cfg, n), directory), data

    def describe(self, trainer) -> None:
        """Device, mode and the settings in force, from the first trainer (the preset's config)."""
        if "device" in self.result:
            return
        self.result["device"] = str(trainer.device)
        self.result["mode"] = str(trainer.mode)
        facts = trainer.protocol_facts()
        self.result["facts"] = {k: getattr(facts, k, None) for k in ("float32_matmul", "determinism")}
        in_force = getattr(trainer, "settings_in_force", None)  # what the framework reports back (env.json)
        self.result["settings_in_force"] = in_force() if in_force is not None else {}

    def check(self, name: str, overrides: list[str]) -> dict:
        """A few steps under one precision: they must run and give a finite loss."""
        out: dict = {"ok": False, "losses": [], "precision": None, "error": None}
        try:
            cfg = compose_job([*overrides, *CHECKS[name]])
            trainer, _ = self.trainer(cfg, CHECK_STEPS)
            self.describe(trainer)
            out["precision"] = trainer.protocol_facts().precision
            stats = trainer.train_epoch(0, lambda *a: None)
            out["losses"] = [float(stats.loss)]
            out["ok"] = math.isfinite(stats.loss)
            if not out["ok"]:
                out["error"] = f"loss {stats.loss} after {stats.steps} steps"
        except Exception as exc:  # noqa: BLE001  any failure of a backend is the answer, reported in one line
            out["error"] = first_line(exc)
        return out

    def measure(self, overrides: list[str]) -> dict:
        """Training images/s after a warm-up epoch (compile/trace), and evaluation images/s."""
        out: dict = {"overrides": overrides, "ok": False, "error": None}
        try:
            cfg = compose_job(overrides)
            out["check"] = check_name(cfg)
            tic = time.perf_counter()
            trainer, data = self.trainer(cfg, self.steps)
            self.describe(trainer)
            out["build_seconds"] = time.perf_counter() - tic
            out["precision"] = trainer.protocol_facts().precision
            tic = time.perf_counter()
            first = trainer.train_epoch(0, lambda *a: None)
            out["warmup_seconds"] = time.perf_counter() - tic
            timed = trainer.train_epoch(1, lambda *a: None)
            out["losses"] = [float(first.loss), float(timed.loss)]
            if not all(math.isfinite(v) for v in out["losses"]):
                out["error"] = f"losses {out['losses']} over two epochs of {timed.steps} steps"
                return out
            out["images_per_second"] = timed.images / timed.seconds
            out["timed_images"] = int(timed.images)
            # the first epoch's cost beyond a steady one: compile / trace / autotune
            out["first_epoch_overhead_seconds"] = max(
                0.0, out["warmup_seconds"] - first.images / out["images_per_second"]
            )
            x, y = data.train_x, data.train_y
            trainer.predict(x, y)  # the evaluation step compiles on its first call
            tic = time.perf_counter()
            trainer.predict(x, y)
            out["eval_images_per_second"] = len(y) / (time.perf_counter() - tic)
            out["ok"] = True
        except Exception as exc:  # noqa: BLE001  any failure of a backend is the answer, reported in one line
            out["error"] = first_line(exc)
        return out

    def run(self) -> dict:
        shapes: list[list[str]] = self.spec["shapes"]
        base: list[str] = self.spec["base"]
        try:
            measured = [self.measure(shape) for shape in shapes]
            self.result["shapes"] = measured
            # the first shape's warm-up epoch is already the check of its own precision
            first = measured[0] if measured else None
            for name in CHECKS:
                if first is not None and first.get("check") == name and first.get("losses"):
                    loss = first["losses"][0]
                    self.result["checks"][name] = {
                        "ok": math.isfinite(loss),
                        "losses": [loss],
                        "precision": first.get("precision"),
                        "error": None if math.isfinite(loss) else f"loss {loss} after a warm-up epoch",
                    }
                    continue
                if name == "bf16" and is_gpu(self.result.get("device", "")):
                    supported = cuda_bf16(self.result["device"])
                    if supported is False:
                        self.result["checks"][name] = {"ok": None, "skipped": "no bfloat16 on this GPU (before Ampere)"}
                        continue
                self.result["checks"][name] = self.check(name, base)
            if self.backend is not None:
                env = self.backend.environment()
                self.result["environment"] = {k: env.get(k) for k in ("float32_policy", "determinism", "cpu_threads")}
                for key, value in self.result.get("settings_in_force", {}).items():  # the trainer's, where env lacks it
                    if self.result["environment"].get(key) is None:
                        self.result["environment"][key] = value
                self.result["environment"]["gpu_name"] = env.get("gpu_name")
        except Exception as exc:  # noqa: BLE001  reported to the parent as one line
            self.result["error"] = first_line(exc)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.result


def run_child(spec_json: str) -> int:
    print("PREFLIGHT " + json.dumps(Child(json.loads(spec_json)).run()), flush=True)
    return 0
