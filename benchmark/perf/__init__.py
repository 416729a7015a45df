"""`python -m benchmark.perf`: what the harness costs, measured against the frameworks themselves.

Per framework option (every conf/framework/*.yaml by default: each framework on each
of its engines), in a fresh process each (a backend never shares a process with
another, and a framework may bind one engine per process),
through perf's view of the backend contract only (benchmark.backends.contract:
``PerfBackend`` for the module, ``Yardstick`` for its trainer):

- pipeline_ips_32 / _64: the augmented, normalized train pipeline alone, images/s, on
  uint8 arrays of CIFAR's (45,000 x 32 x 32) and Tiny-ImageNet's (20,000 x 64 x 64)
  shapes (random pixels: only the speed is measured here, nothing is trained on them);
- harness_ips / bare_ips / harness_bare_ratio: training images/s of the benchmark's
  own training epoch (pipeline, metrics, LR schedule and progress included) against
  the backend's bare loop (``Yardstick.bare_loop``: the same framework, model, batch,
  precision and device, only stepping the optimizer on one fixed batch), alternated
  in the same process; the ratio
  is the median of the per-round ratios (each round times both, in alternating
  order, so a slow spell of a shared machine hits both sides of a ratio alike), and
  ratio_min / ratio_max show how much the rounds disagreed (rounds of 60 steps,
  about 9 s on a CPU: shorter ones scattered by several percent on a shared machine);
- startup_seconds, first_epoch_overhead_seconds, steady_ips: from a real run
  (`python -m benchmark` on digits, 3 epochs) as recorded in its summary.json, and
  from its epochs' timing (metrics.csv) epoch_wall_over_train, the epochs' wall time
  over their training time, and outside_training_share, the part of the wall time
  spent outside the training steps (validation, checkpoints, logging).

Timings are printed and written as CSV (--out), never asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from benchmark import BenchmarkError
from benchmark.backends import load_backend
from benchmark.backends.contract import PerfBackend, Yardstick
from benchmark.data import PreparedData
from benchmark.files import atomic_write_text, read_json
from benchmark.run.loop import validate
from benchmark.spec.config import framework_options, register_configs
from benchmark.spec.protocol import SETTINGS
from benchmark.spec.schedule import make_schedule

REPO = Path(__file__).resolve().parents[2]
COLUMNS = (
    "backend",
    "protocol",
    "model",
    "batch_size",
    "precision",
    "device",
    "execution_mode",
    "pipeline_ips_32",
    "pipeline_ips_64",
    "harness_ips",
    "bare_ips",
    "harness_bare_ratio",
    "ratio_min",
    "ratio_max",
    "startup_seconds",
    "first_epoch_overhead_seconds",
    "steady_ips",
    "epoch_wall_over_train",
    "outside_training_share",
)
PIPELINE_SHAPES = ((32, 4, 45_000), (64, 8, 20_000))  # image size, crop padding, images


def _config(backend: str, model: str, batch: int, precision: str, extra: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"framework={backend}",
                f"model={model}",
                "dataset=digits",
                f"batch_size={batch}",
                f"precision={precision}",
                *extra,
            ],
        )
    validate(cfg)  # the checks every run gets: a bad option is one line here too, not a backend's traceback
    return cfg


def random_data(n: int, size: int, classes: int = 10, name: str = "perf") -> PreparedData:
    """Random uint8 pixels and labels of one shape: for timing only, nothing trained on them is kept."""
    rng = np.random.default_rng(0)
    return PreparedData(
        name=name,
        num_classes=classes,
        image_size=size,
        train_x=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        train_y=rng.integers(0, classes, n).astype(np.int64),
        test_x=np.zeros((0, size, size, 3), np.uint8),
        test_y=np.zeros(0, np.int64),
        train_idx=np.arange(n),
        val_idx=np.zeros(0, np.int64),
        mean=[0.5] * 3,
        std=[0.25] * 3,
    )


def measure_in_process(
    backend: str, model: str, batch: int, precision: str, steps: int, rounds: int, extra: list[str]
) -> dict:
    """Pipeline, harness and bare-loop rates of one backend, through perf's view of the contract only."""
    cfg = _config(backend, model, batch, precision, extra)
    module: PerfBackend = load_backend(cfg.framework.name, cfg.framework.engine)
    result: dict = {}
    for size, padding, n in PIPELINE_SHAPES:
        data = random_data(n, size)
        pipeline = module.input_pipeline(data.train_x, data.train_y, 256, padding, data.mean, data.std, seed=0)
        for _ in range(2):  # the first pass warms caches and thread pools; the second is kept
            start, images = time.perf_counter(), 0
            for _, labels in pipeline:
                images += int(labels.shape[0])
            module.synchronize()
            result[f"pipeline_ips_{size}"] = images / (time.perf_counter() - start)

    data = random_data(steps * batch, 32)
    with tempfile.TemporaryDirectory() as tmp:
        trainer: Yardstick = module.Trainer(cfg, data, make_schedule(cfg, steps * batch), Path(tmp))
        bare = trainer.bare_loop(data.train_x[:batch], data.train_y[:batch])
        trainer.train_epoch(0, lambda *a: None)  # tracing / warm-up, both sides
        bare(3)
        harness_ips, bare_ips = [], []

        def time_harness(epoch: int) -> None:
            stats = trainer.train_epoch(epoch, lambda *a: None)
            harness_ips.append(stats.images / stats.seconds)

        def time_bare() -> None:
            start = time.perf_counter()
            bare(steps)
            bare_ips.append(steps * batch / (time.perf_counter() - start))

        for r in range(rounds):  # ABBA order: neither side always runs first
            if r % 2 == 0:
                time_harness(r + 1)
                time_bare()
            else:
                time_bare()
                time_harness(r + 1)
    ratios = [h / b for h, b in zip(harness_ips, bare_ips, strict=True)]
    result.update(
        harness_ips=statistics.median(harness_ips),
        bare_ips=statistics.median(bare_ips),
        harness_bare_ratio=statistics.median(ratios),
        ratio_min=min(ratios),
        ratio_max=max(ratios),
        execution_mode=trainer.mode,
        device=str(trainer.device),
    )
    return result


def measure_real_run(backend: str, model: str, batch: int, precision: str, extra: list[str]) -> dict:
    """startup, first-epoch overhead and steady images/s of a real 3-epoch digits run."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "benchmark",
            f"framework={backend}",
            f"model={model}",
            "dataset=digits",
            f"batch_size={batch}",
            f"precision={precision}",
            "epochs=3",
            f"hydra.run.dir={tmp}/run",
            *extra,
        ]
        out = subprocess.run(  # noqa: S603  this interpreter running `-m benchmark`: an argument list, no shell
            cmd, cwd=REPO, capture_output=True, text=True
        )
        if out.returncode != 0:
            raise BenchmarkError(f"the {backend} run failed: {out.stderr.strip().splitlines()[-1:]}")
        summary = read_json(Path(tmp) / "run" / "summary.json")
        if summary is None:
            raise BenchmarkError(f"the {backend} run wrote no readable summary.json")
        with open(Path(tmp) / "run" / "metrics.csv", newline="") as fh:
            late = [float(r["epoch_time_seconds"]) for r in csv.DictReader(fh)][1:]
    wall, train = summary.get("epoch_wall_seconds_total"), summary.get("train_seconds_total")
    return {
        "startup_seconds": summary["startup_seconds"],
        "first_epoch_overhead_seconds": summary["first_epoch_overhead_seconds"],
        "steady_ips": summary["images_per_epoch"] / statistics.median(late),
        # what a user waits for per second of training (validation, checkpoints, logging included)
        "epoch_wall_over_train": wall / train if wall and train else None,
        "outside_training_share": 1 - train / wall if wall and train else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backends",
        default=",".join(framework_options()),
        help="comma-separated framework= options (default: every one, each engine included)",
    )
    parser.add_argument("--model", default="mobilenetv2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--steps", type=int, default=60, help="training steps per timed round (60: about 9 s on a CPU)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds of each side (odd: a true median)")
    parser.add_argument("--out", default="perf.csv")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="extra config override, e.g. framework.execution=compile (a mode every backend measured has)",
    )
    parser.add_argument(
        "--protocols",
        default="native",
        help="comma-separated protocols to measure (native,aligned: also prints aligned/native ratios)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one backend in this process
    args = parser.parse_args(argv)

    if args.worker:
        print(
            "PERF "
            + json.dumps(
                measure_in_process(
                    args.worker, args.model, args.batch, args.precision, args.steps, args.rounds, args.override
                )
            )
        )
        return 0

    rows: list[dict] = []  # COLUMNS -> value (None where a worker did not report it)
    protocols = args.protocols.split(",")
    if any(p not in SETTINGS for p in protocols):
        print(f"error: --protocols {args.protocols}: valid: {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    for backend, protocol in [(b, p) for b in args.backends.split(",") for p in protocols]:
        if backend not in framework_options():
            print(
                f"error: --backends: {backend!r} is unknown; valid: {', '.join(framework_options())}", file=sys.stderr
            )
            return 2
        overrides = [f"protocol={protocol}", *args.override]
        cmd = [
            sys.executable,
            "-m",
            "benchmark.perf",
            "--worker",
            backend,
            "--model",
            args.model,
            "--batch",
            str(args.batch),
            "--precision",
            args.precision,
            "--steps",
            str(args.steps),
            "--rounds",
            str(args.rounds),
        ] + [f"--override={o}" for o in overrides]
        out = subprocess.run(  # noqa: S603  this interpreter running `-m benchmark.perf`: an argument list, no shell
            cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ}
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("PERF ")]
        if out.returncode != 0 or not lines:
            print(f"error: measuring {backend} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        row = {
            "backend": backend,
            "protocol": protocol,
            "model": args.model,
            "batch_size": args.batch,
            "precision": args.precision,
            **json.loads(lines[-1][5:]),
            **measure_real_run(backend, args.model, args.batch, args.precision, overrides),
        }
        rows.append({k: row.get(k) for k in COLUMNS})

    text = _table(rows)
    print(text)
    for backend in dict.fromkeys(r["backend"] for r in rows):  # docs/protocol.md §11: aligned may cost <= 5%
        by = {r["protocol"]: r for r in rows if r["backend"] == backend}
        if "native" in by and "aligned" in by:
            harness = by["aligned"]["harness_ips"] / by["native"]["harness_ips"]
            steady = by["aligned"]["steady_ips"] / by["native"]["steady_ips"]
            print(f"{backend}: aligned/native harness images/s {harness:.3f}, real run steady images/s {steady:.3f}")
    buf_rows = [",".join(COLUMNS)] + [",".join(_fmt(r[k]) for k in COLUMNS) for r in rows]
    atomic_write_text(Path(args.out), "\n".join(buf_rows) + "\n")
    print(f"written: {args.out}")
    return 0


def _fmt(value) -> str:
    if not isinstance(value, float):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3f}"


def _table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)
