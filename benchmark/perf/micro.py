"""`python -m benchmark.perf.micro`: one micro-benchmark per kernel suspected behind an engine gap.

Each kernel of ``KERNELS`` (benchmark.backends.profiling, with the reason it is suspected)
runs forward and backward (the gradients of the input and of the weights, for an upstream
gradient of ones) at the quickstart's shapes (MobileNetV2 on a 32x32 input, batch
``--batch``, 32 by default, float32) on every engine (``--engines``: the engines of
benchmark.spec.frameworks), each engine in a child process of its own (``--worker``), on the
engine's default device, in each layout the engine has a column for. How an engine builds
and runs a kernel is the backends' business: its module of benchmark.backends.profiling
(``kernel``, ``LAYOUTS``, ``LABEL``), reached here through ``load_engine`` only. A call's
time is the median, over ``--rounds`` rounds, of a round's time over its calls (a round
lasts about ``--round-seconds``, after a warm-up), waiting for the device at the end of
each round.

It prints ms per call and the ratio of each column to the reference column (``REFERENCE``:
the native backend's engine in the layout the benchmark runs it in) as Markdown, and writes
the same as CSV (``--out``). An engine that is not installed has "not installed" in its
column; nothing else is skipped. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import importlib.machinery
import io
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmark.backends.profiling import DEPTHWISE, ENGINES, KERNELS, REFERENCE, load_engine
from benchmark.files import atomic_write_text
from benchmark.perf import REPO
from benchmark.spec.frameworks import ENGINES as FRAMEWORK_ENGINES

__all__ = ["COLUMNS", "DEPTHWISE", "KERNELS", "LABELS", "REFERENCE", "installed", "main", "time_call"]

# engine -> the package it needs (benchmark.spec.frameworks)
PACKAGES = {engine: package for engines in FRAMEWORK_ENGINES.values() for engine, package in engines.items()}
# (engine, layout) -> its column, in the order of benchmark.backends.profiling.ENGINES; REFERENCE
# is the denominator of the ratios
COLUMNS = tuple((engine, layout) for engine in ENGINES for layout in load_engine(engine).LAYOUTS)
LABELS = {engine: load_engine(engine).LABEL for engine in ENGINES}


def installed(package: str) -> bool:
    """Whether an engine's package is importable here, without importing it."""
    return importlib.machinery.PathFinder.find_spec(package) is not None


def time_call(run: Callable[[], object], sync: Callable[[object], None], rounds: int, round_seconds: float) -> float:
    """Median seconds per call of `run` (sync waits for what it returned)."""
    for _ in range(3):  # warm-up: tracing, compilation, autotuning, caches
        sync(run())
    start = time.perf_counter()
    sync(run())
    calls = max(1, int(round_seconds / max(time.perf_counter() - start, 1e-6)))
    per_call = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            out = run()
        sync(out)
        per_call.append((time.perf_counter() - start) / calls)
    return statistics.median(per_call)


def measure_in_process(engine: str, batch: int, rounds: int, round_seconds: float) -> dict:
    """ms per call of every kernel in every layout this engine has a column for."""
    result: dict = {}
    builder = load_engine(engine)
    for layout in [lay for eng, lay in COLUMNS if eng == engine]:
        for name, (kind, layers, _) in KERNELS.items():
            run, sync = builder.kernel(kind, layers, batch, layout)
            result[f"{name}|{layout}"] = 1000 * time_call(run, sync, rounds, round_seconds)
    return result


# ------------------------------------------------------------------ the parent


def _column(engine: str, layout: str) -> str:
    return f"{LABELS[engine]} {layout}"


def markdown(table: dict[tuple[str, str], dict | str]) -> str:
    """ms per call per engine and layout, then the ratios to the reference column (REFERENCE)."""
    heads = [_column(*c) for c in COLUMNS]
    others = [c for c in COLUMNS if c != REFERENCE]
    ratio_heads = [f"{_column(*c)} / {_column(*REFERENCE)}" for c in others]
    lines = [
        "| kernel (fwd+bwd, ms per call) | " + " | ".join(heads + ratio_heads) + " |",
        "|---|" + "---|" * (len(heads) + len(ratio_heads)),
    ]
    for name in KERNELS:
        cells = [_ms(table[c], f"{name}|{c[1]}") for c in COLUMNS]
        ratios = [_ratio(table[c], table[REFERENCE], f"{name}|{c[1]}", f"{name}|{REFERENCE[1]}") for c in others]
        lines.append(f"| {name} | " + " | ".join(cells + ratios) + " |")
    lines += ["", "| kernel | why it is suspected |", "|---|---|"]
    lines += [f"| {name} | {why} |" for name, (_, _, why) in KERNELS.items()]
    return "\n".join(lines)


def _ms(column: dict | str, key: str) -> str:
    return column if isinstance(column, str) else f"{column[key]:.3f}"


def _ratio(column: dict | str, reference: dict | str, key: str, ref_key: str) -> str:
    if isinstance(column, str) or isinstance(reference, str):
        return "n/a"
    return f"{column[key] / reference[ref_key]:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf.micro", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per kernel (odd: a true median)")
    parser.add_argument("--round-seconds", type=float, default=0.2, help="about how long one round lasts")
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help="comma-separated engines to time (default: all three)"
    )
    parser.add_argument("--out", default="micro.csv")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: time one engine in this process
    args = parser.parse_args(argv)

    if args.worker:
        print("MICRO " + json.dumps(measure_in_process(args.worker, args.batch, args.rounds, args.round_seconds)))
        return 0

    engines = args.engines.split(",")
    if any(e not in ENGINES for e in engines):
        print(f"error: --engines {args.engines}: valid: {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    if args.batch < 1 or args.rounds < 1 or args.round_seconds <= 0:
        print("error: --batch and --rounds must be at least 1, --round-seconds above 0", file=sys.stderr)
        return 2

    table: dict[tuple[str, str], dict | str] = {c: "not timed" for c in COLUMNS}
    failed = False
    for engine in dict.fromkeys(e for e, _ in COLUMNS):
        if engine not in engines:
            continue
        if not installed(PACKAGES.get(engine, engine)):
            table.update({c: "not installed" for c in COLUMNS if c[0] == engine})
            continue
        cmd = [
            sys.executable,
            "-m",
            "benchmark.perf.micro",
            "--worker",
            engine,
            "--batch",
            str(args.batch),
            "--rounds",
            str(args.rounds),
            "--round-seconds",
            str(args.round_seconds),
        ]
        out = subprocess.run(  # noqa: S603  this interpreter running `-m benchmark.perf.micro`: an argument list
            cmd, cwd=REPO, capture_output=True, text=True
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("MICRO ")]
        if out.returncode != 0 or not lines:
            print(f"error: timing {engine} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            table.update({c: "failed" for c in COLUMNS if c[0] == engine})
            failed = True
            continue
        times = json.loads(lines[-1][len("MICRO ") :])
        table.update({c: times for c in COLUMNS if c[0] == engine})

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    reference = f"ratio_to_{LABELS[REFERENCE[0]].lower()}_{REFERENCE[1]}"  # the reference column's name
    writer.writerow(["kernel", "engine", "layout", "ms_per_call", reference])
    for name in KERNELS:
        for engine, layout in COLUMNS:
            column = table[(engine, layout)]
            ms = _ms(column, f"{name}|{layout}")
            ratio = _ratio(column, table[REFERENCE], f"{name}|{layout}", f"{name}|{REFERENCE[1]}")
            writer.writerow([name, engine, layout, ms, ratio])
    atomic_write_text(Path(args.out), buf.getvalue())
    print(markdown(table))
    print(f"written: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
