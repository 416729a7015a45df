"""Generated run directories, written as the training entrypoint writes them, for the
analysis tests.

This is test data for the analysis step, not a substitute for training: each run
directory follows the run-directory contract (``.hydra/config.yaml``,
``summary.json``, ``metrics.csv``, ``test.json``, ``env.json``, ``status.json``) with
plausible numbers: a loss that decays, a validation accuracy that saturates, a
per-step warm-up + cosine learning rate, a slow first epoch, accuracies that are
whole numbers of correct test images. Every value is a deterministic function of the
run's key, and any of them can be set explicitly to build degenerate cases. Nothing
here imports the code under test.
"""

from __future__ import annotations

import csv
import json
import math
import zlib
from pathlib import Path

import numpy as np
import yaml

FRAMEWORKS = ("keras", "pytorch")
SEEDS = (42, 123, 456, 789, 1024)
STAGE2 = {
    "datasets": ("cifar10", "cifar100", "tiny_imagenet"),
    "models": ("resnet50", "mobilenetv2", "convnext_tiny"),
    "precisions": ("fp32", "amp"),
    "seeds": SEEDS,
}
EPOCHS = {"cifar10": 200, "cifar100": 200, "tiny_imagenet": 100}
TRAIN_IMAGES = {"cifar10": 45_000, "cifar100": 45_000, "tiny_imagenet": 90_000}
CLASSES = {"cifar10": 10, "cifar100": 100, "tiny_imagenet": 200}
ACCURACY = {"cifar10": 0.94, "cifar100": 0.75, "tiny_imagenet": 0.58}
MODEL_ACCURACY = {"resnet50": 0.0, "mobilenetv2": -0.02, "convnext_tiny": -0.04}
SECONDS = {"resnet50": 60.0, "mobilenetv2": 25.0, "convnext_tiny": 45.0}  # per CIFAR epoch, fp32, PyTorch
TEST_IMAGES = 10_000
DATA_FINGERPRINT = {ds: f"sha256:{zlib.crc32(ds.encode()):016x}" for ds in EPOCHS}
BATCH = 256
PEAK_LR = 0.1
WARMUP_EPOCHS = 5

ENV_COMMON = {
    "python": "3.11.9",
    "platform": "Linux-5.14.0-362.el9.x86_64-x86_64-with-glibc2.34",
    "cpu_model": "AMD EPYC 7543 32-Core Processor",
    "cpu_count": 32,
    "gpu_driver": "535.161.08",
    "git_commit": "3f2c1e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e",
    "cpu_features": "sse4_2 avx avx2 fma f16c",
    "numpy_blas": "scipy-openblas 0.3.27",
    "packages_sha256": "sha256:1111111111111111",
    "packages": {"numpy": "1.26.4", "scipy": "1.13.1", "torch": "2.3.1"},
}
ENV_FRAMEWORK = {
    "pytorch": {
        "torch": "2.3.1+cu121",
        "torchvision": "0.18.1+cu121",
        "cuda": "12.1",
        "cudnn": 8902,
        "gpu_name": "NVIDIA A40",
        "torch_threads": 8,
    },
    "keras": {
        "tensorflow": "2.16.1",
        "keras": "3.3.3",
        "keras_backend": "tensorflow",
        "cuda": "12.3",
        "cudnn": "8",
        "tf_build_cuda": "12.3",
        "tf_build_cudnn": "8",
        "gpu_name": "NVIDIA A40",
        "gpu_count": 1,
        "tf_intra_op_threads": 0,
    },
}


def run_name(framework: str, dataset: str, model: str, precision: str, seed: int) -> str:
    """Hydra's sweep subdir pattern from conf/config.yaml."""
    return f"{framework}_{dataset}_{model}_{precision}_seed{seed}"


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def true_test_accuracy(framework: str, dataset: str, model: str, precision: str, seed: int) -> float:
    """The generated test accuracy: dataset/model level, PyTorch 0.4 points ahead, seed noise,
    rounded to whole test images."""
    level = ACCURACY[dataset] + MODEL_ACCURACY[model] + (0.004 if framework == "pytorch" else 0.0)
    noise = _rng("acc", framework, dataset, model, precision, seed).normal(0, 0.004)
    return round((level + noise) * TEST_IMAGES) / TEST_IMAGES


def epoch_lr(epoch: int, steps_per_epoch: int, epochs: int) -> float:
    """LR after the last step of 0-based `epoch`: linear warm-up per step, then cosine to 0."""
    step, warmup, total = (epoch + 1) * steps_per_epoch, WARMUP_EPOCHS * steps_per_epoch, epochs * steps_per_epoch
    if step <= warmup:
        return PEAK_LR * step / warmup
    return 0.5 * PEAK_LR * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def metrics_rows(key: tuple, epochs: int, epochs_done: int, final_accuracy: float, epoch_seconds: float) -> list[dict]:
    """Plausible per-epoch rows: decaying loss, saturating accuracy, slow first epoch."""
    dataset = key[1]
    rng = _rng("curve", *key)
    steps = TRAIN_IMAGES[dataset] // BATCH
    start_loss = math.log(CLASSES[dataset])
    rows = []
    for e in range(epochs_done):
        t = (e + 1) / epochs
        val_acc = min(1.0, max(0.0, final_accuracy * (1 - math.exp(-6 * t)) + rng.normal(0, 0.01)))
        train_loss = 0.05 + (start_loss - 0.05) * math.exp(-5 * t) + abs(rng.normal(0, 0.02))
        seconds = epoch_seconds * (1 + rng.normal(0, 0.02)) + (12.0 if e == 0 else 0.0)
        rows.append(
            {
                "epoch": e + 1,
                "train_loss": train_loss,
                "train_accuracy": min(1.0, val_acc + 0.05 * t),
                "val_loss": train_loss + 0.3 * t,
                "val_accuracy": round(val_acc, 4),
                "val_macro_f1": round(max(0.0, val_acc - 0.004 - abs(rng.normal(0, 0.002))), 4),
                "epoch_time_seconds": seconds,
                "learning_rate": epoch_lr(e, steps, epochs),
            }
        )
    return rows


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def make_run(
    root: Path,
    framework: str,
    dataset: str,
    model: str,
    precision: str,
    seed: int,
    *,
    state: str = "completed",
    epochs: int | None = None,
    epochs_done: int | None = None,
    test_accuracy: float | None = None,
    test_macro_f1: float | None = None,
    epoch_seconds: float | None = None,
    env: dict | None = None,
    name: str | None = None,
    execution_mode: str | None = None,
    data_fingerprint: str | None = None,
    protocol: str | None = None,
    engine: str | None = None,
    execution: str | None = None,
) -> Path:
    """Write one run directory `root/<name>` and return it.

    `state` "completed" writes every file; "failed" and "running" stop after
    `epochs_done` epochs (default: half) without test.json. `test_accuracy`,
    `test_macro_f1` and `epoch_seconds` override the generated values; `env`
    overrides env.json fields. `engine` (Keras: jax, torch) is recorded, and named in the
    directory, only when given (runs made before engines existed have none); so is
    `execution` (framework.execution: compile, xla, ...), after the engine.
    """
    key = (framework, dataset, model, precision, seed)
    epochs = epochs or EPOCHS[dataset]
    if epochs_done is None:
        epochs_done = epochs if state == "completed" else epochs // 2
    accuracy = true_test_accuracy(*key) if test_accuracy is None else test_accuracy
    if test_macro_f1 is None:
        test_macro_f1 = round(accuracy - 0.003 + _rng("f1", *key).normal(0, 0.001), 4)
    if epoch_seconds is None:
        epoch_seconds = (
            SECONDS[model]
            * (2 if dataset == "tiny_imagenet" else 1)
            * (0.6 if precision == "amp" else 1.0)
            * (1.1 if framework == "keras" else 1.0)
        )
    default_name = (
        run_name(*key)
        if protocol in (None, "native")
        else run_name(*key).replace(f"_seed{seed}", f"_{protocol}_seed{seed}")
    )
    if engine:
        default_name = default_name.replace(f"{framework}_", f"{framework}_{engine}_", 1)
    if execution:
        arm = f"{framework}_{engine}_" if engine else f"{framework}_"
        default_name = default_name.replace(arm, f"{arm}{execution}_", 1)
    run_dir = Path(root) / (name or default_name)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    steps = TRAIN_IMAGES[dataset] // BATCH
    (run_dir / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "framework": {
                    "name": framework,
                    "device": "auto",
                    "deterministic": True,
                    **({"engine": engine} if engine else {}),
                    **({"execution": execution} if execution else {}),
                },
                "model": {"name": model},
                "dataset": {
                    "name": dataset,
                    "num_classes": CLASSES[dataset],
                    "epochs": EPOCHS[dataset],
                    "batch_size": BATCH,
                },
                "precision": {"name": precision, "dtype": "float16"},
                "seed": seed,
                "epochs": epochs,
                "batch_size": BATCH,
                "grad_accum_steps": 1,
                "data_dir": "data",
                **({"protocol": {"name": protocol}} if protocol else {}),
            },
            sort_keys=False,
        )
    )
    _write_json(
        run_dir / "summary.json",
        {
            "framework": framework,
            "dataset": dataset,
            "model": model,
            "precision": precision,
            "seed": seed,
            "epochs": epochs,
            "batch_size": BATCH,
            "grad_accum_steps": 1,
            "train_images": TRAIN_IMAGES[dataset],
            "steps_per_epoch": steps,
            "images_per_epoch": steps * BATCH,
            "warmup_steps": WARMUP_EPOCHS * steps,
            "total_steps": epochs * steps,
            "peak_lr": PEAK_LR,
            "deterministic": True,
            "data_source": f"{dataset} official archive",
            "data_fingerprint": data_fingerprint or DATA_FINGERPRINT[dataset],
            "execution_mode": execution_mode or {"keras": "tf.function", "pytorch": "eager"}.get(framework, "jit"),
            "first_epoch_overhead_seconds": 2.5,
            "startup_seconds": 9.0,
            "peak_host_rss_bytes": 3 << 30,
            "accelerator_peak_bytes": 5 << 30,
            **({"protocol": protocol} if protocol else {}),
            **({"engine": engine} if engine else {}),
            **({"execution": execution} if execution else {}),
        },
    )
    host = f"node{int(_rng('host', *key).integers(1, 9)):02d}"
    _write_json(
        run_dir / "env.json",
        {
            **ENV_COMMON,
            "hostname": host,
            "slurm_job_id": str(1000 + seed),
            **ENV_FRAMEWORK.get(framework, {}),
            "framework": framework,
            **(env or {}),
        },
    )
    rows = metrics_rows(key, epochs, epochs_done, accuracy, epoch_seconds)
    with open(run_dir / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["epoch"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    status = {"state": state, "started_at": "2024-05-01T10:00:00+0000", "updated_at": "2024-05-02T10:00:00+0000"}
    if state == "failed":
        status["reason"] = "RuntimeError: CUDA out of memory"
    if state == "completed":
        best = max(rows, key=lambda r: r["val_accuracy"])
        test = {
            "test_accuracy": accuracy,
            "test_macro_f1": test_macro_f1,
            "test_loss": 0.3,
            "best_epoch": best["epoch"],
            "best_val_accuracy": best["val_accuracy"],
            "test_images": TEST_IMAGES,
            "finished_at": "2024-05-02T10:00:00+0000",
        }
        _write_json(run_dir / "test.json", test)
        status["test"] = test
    _write_json(run_dir / "status.json", status)
    return run_dir


def make_sweep(
    root: Path,
    datasets=("cifar10",),
    models=("resnet50",),
    precisions=("fp32",),
    seeds=SEEDS,
    frameworks=FRAMEWORKS,
    epochs: int | None = None,
) -> list[Path]:
    """Every combination as a completed run, in Hydra's multirun layout `root/<subdir>`."""
    return [
        make_run(root, fw, ds, model, prec, seed, epochs=epochs)
        for ds in datasets
        for model in models
        for prec in precisions
        for seed in seeds
        for fw in frameworks
    ]


def make_stage2(root: Path, epochs: int | None = None) -> list[Path]:
    """The 180-run stage-2 matrix of docs/protocol.md §6 (full epoch counts unless `epochs`)."""
    return make_sweep(root, STAGE2["datasets"], STAGE2["models"], STAGE2["precisions"], STAGE2["seeds"], epochs=epochs)
