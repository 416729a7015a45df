"""`python -m benchmark.perf.micro`: one micro-benchmark per kernel suspected behind an engine gap.

Each kernel of ``KERNELS`` (below, with the reason it is suspected) runs forward and
backward (the gradients of the input and of the weights, for an upstream gradient of
ones) at the quickstart's shapes (MobileNetV2 on a 32x32 input, batch ``--batch``, 32 by
default, float32) in TensorFlow, JAX and PyTorch, each engine in a child process of its
own (``--worker``), on the engine's default device: TensorFlow in a ``tf.function`` and
JAX under ``jax.jit``, both NHWC (the layout Keras runs in), and PyTorch eagerly in the
layout the benchmark runs it in (channels_last) and in NCHW. A call's time is the median,
over ``--rounds`` rounds, of a round's time over its calls (a round lasts about
``--round-seconds``, after a warm-up), waiting for the device at the end of each round.

It prints ms per call and the ratio of each engine to PyTorch (channels_last) as Markdown,
and writes the same as CSV (``--out``). An engine that is not installed has "not installed"
in its column; nothing else is skipped. Timings are printed, never asserted.
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

from benchmark.files import atomic_write_text
from benchmark.perf import REPO

# MobileNetV2's 17 depthwise 3x3 layers at a 32x32 input (the 32-px stem keeps stride 1:
# benchmark.spec.models, Stem(stride=1)): (feature-map side, channels, stride), in order,
# read from torchvision's mobilenet_v2 with that stem (tests/test_profile.py checks them).
DEPTHWISE = (
    (32, 32, 1),
    (32, 96, 2),
    (16, 144, 1),
    (16, 144, 2),
    (8, 192, 1),
    (8, 192, 1),
    (8, 192, 2),
    (4, 384, 1),
    (4, 384, 1),
    (4, 384, 1),
    (4, 384, 1),
    (4, 576, 1),
    (4, 576, 1),
    (4, 576, 2),
    (2, 960, 1),
    (2, 960, 1),
    (2, 960, 1),
)
# name -> (kind, layers: (side, channels in, channels out or stride), why it is suspected)
KERNELS: dict[str, tuple[str, tuple[tuple[int, int, int], ...], str]] = {
    "depthwise3x3 x17 (all layers)": (
        "depthwise",
        DEPTHWISE,
        "the engine sentences: Keras on JAX trains MobileNetV2 far slower than on TensorFlow on a CPU, "
        "said to be XLA's depthwise convolutions (its filter gradient is a dense convolution plus a select)",
    ),
    "depthwise3x3 16x16x144": (
        "depthwise",
        ((16, 144, 1),),
        "one typical depthwise layer (block 2): the per-layer cost without the small late maps",
    ),
    "conv1x1 16x16 144->24": (
        "pointwise",
        ((16, 144, 24),),
        "the 1x1 convolutions carry most of MobileNetV2's FLOPs (block 2's projection)",
    ),
    "batchnorm 16x16x144": (
        "batchnorm",
        ((16, 144, 0),),
        "Keras' BatchNormalization runs as moments and elementwise ops on TensorFlow and JAX, "
        "PyTorch's as one native kernel (training mode: batch statistics, forward and backward)",
    ),
}
# (engine package, layout) -> its column; PyTorch channels_last is the reference of the ratios
COLUMNS = (("tensorflow", "NHWC"), ("jax", "NHWC"), ("torch", "channels_last"), ("torch", "NCHW"))
REFERENCE = ("torch", "channels_last")
LABELS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


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


# ------------------------------------------------------------------ one engine per child


def _tensorflow(kind: str, layers, batch: int, layout: str) -> tuple[Callable[[], object], Callable]:
    import tensorflow as tf  # the TensorFlow child's own engine: never loaded in the parent

    rng = tf.random.Generator.from_seed(0)
    tensors = []
    for side, channels, third in layers:
        x = rng.normal((batch, side, side, channels))
        if kind == "depthwise":
            w = tf.Variable(rng.normal((3, 3, channels, 1)))
            out_side = -(-side // third)
            dy = tf.ones((batch, out_side, out_side, channels))
        elif kind == "pointwise":
            w = tf.Variable(rng.normal((1, 1, channels, third)))
            dy = tf.ones((batch, side, side, third))
        else:
            w = tf.Variable(tf.ones((channels,)))  # gamma (beta: the same cost)
            dy = tf.ones_like(x)
        tensors.append((x, w, dy, third))

    def forward(x, w, third):
        if kind == "depthwise":
            return tf.nn.depthwise_conv2d(x, w, strides=(1, third, third, 1), padding="SAME")
        if kind == "pointwise":
            return tf.nn.conv2d(x, w, strides=1, padding="SAME")
        mean, var = tf.nn.moments(x, axes=(0, 1, 2))  # as Keras' BatchNormalization on TensorFlow
        return tf.nn.batch_normalization(x, mean, var, None, w, 1e-3)

    @tf.function
    def step():
        grads = []
        for x, w, dy, third in tensors:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = forward(x, w, third)
            grads.append(tape.gradient(y, [x, w], output_gradients=dy))
        return grads

    return step, lambda out: out[-1][1].numpy()


def _jax(kind: str, layers, batch: int, layout: str) -> tuple[Callable[[], object], Callable]:
    import jax  # the JAX child's own engine: never loaded in the parent
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    tensors = []
    for side, channels, third in layers:
        x = jax.random.normal(key, (batch, side, side, channels))
        if kind == "depthwise":
            w = jax.random.normal(key, (3, 3, 1, channels))
            out_side = -(-side // third)
            dy = jnp.ones((batch, out_side, out_side, channels))
        elif kind == "pointwise":
            w = jax.random.normal(key, (1, 1, channels, third))
            dy = jnp.ones((batch, side, side, third))
        else:
            w = jnp.ones((channels,))
            dy = jnp.ones_like(x)
        tensors.append((x, w, dy))
    strides = [third for _, _, third in layers]

    def forward(x, w, third):
        if kind in ("depthwise", "pointwise"):  # as Keras' conv ops on JAX
            stride = third if kind == "depthwise" else 1
            return jax.lax.conv_general_dilated(
                x,
                w,
                (stride, stride),
                "SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=x.shape[-1] if kind == "depthwise" else 1,
            )
        mean = jnp.mean(x, axis=(0, 1, 2))  # as Keras' BatchNormalization on JAX
        var = jnp.var(x, axis=(0, 1, 2))
        return (x - mean) * jax.lax.rsqrt(var + 1e-3) * w

    @jax.jit
    def step(tensors):
        grads = []
        for (x, w, dy), third in zip(tensors, strides, strict=True):
            _, vjp = jax.vjp(lambda x, w, third=third: forward(x, w, third), x, w)
            grads.append(vjp(dy))
        return grads

    return (lambda: step(tensors)), lambda out: jax.block_until_ready(out)


def _torch(kind: str, layers, batch: int, layout: str) -> tuple[Callable[[], object], Callable]:
    import torch  # the PyTorch child's own engine: never loaded in the parent
    import torch.nn.functional as F

    device = "cuda" if torch.cuda.is_available() else "cpu"
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    tensors = []
    for side, channels, third in layers:
        x = torch.randn(batch, channels, side, side, generator=gen).to(device, memory_format=fmt)
        if kind == "depthwise":
            w = torch.randn(channels, 1, 3, 3, generator=gen).to(device, memory_format=fmt)
            out_side = -(-side // third)
            dy = torch.ones(batch, channels, out_side, out_side, device=device).to(memory_format=fmt)
        elif kind == "pointwise":
            w = torch.randn(third, channels, 1, 1, generator=gen).to(device, memory_format=fmt)
            dy = torch.ones(batch, third, side, side, device=device).to(memory_format=fmt)
        else:
            w = torch.ones(channels, device=device)
            dy = torch.ones_like(x)
        tensors.append((x.requires_grad_(), w.requires_grad_(), dy, third))

    def forward(x, w, third):
        if kind == "depthwise":
            return F.conv2d(x, w, stride=third, padding=1, groups=x.shape[1])
        if kind == "pointwise":
            return F.conv2d(x, w)
        return F.batch_norm(x, None, None, w, None, training=True, eps=1e-5)

    def step():
        return [torch.autograd.grad(forward(x, w, third), (x, w), dy) for x, w, dy, third in tensors]

    def sync(out):
        if device == "cuda":
            torch.cuda.synchronize()

    return step, sync


BUILDERS = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}


def measure_in_process(engine: str, batch: int, rounds: int, round_seconds: float) -> dict:
    """ms per call of every kernel in every layout this engine has a column for."""
    result: dict = {}
    for layout in [lay for eng, lay in COLUMNS if eng == engine]:
        for name, (kind, layers, _) in KERNELS.items():
            run, sync = BUILDERS[engine](kind, layers, batch, layout)
            result[f"{name}|{layout}"] = 1000 * time_call(run, sync, rounds, round_seconds)
    return result


# ------------------------------------------------------------------ the parent


def _column(engine: str, layout: str) -> str:
    return f"{LABELS[engine]} {layout}"


def markdown(table: dict[tuple[str, str], dict | str]) -> str:
    """ms per call per engine and layout, then the ratios to PyTorch channels_last."""
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
        "--engines", default="tensorflow,jax,torch", help="comma-separated engines to time (default: all three)"
    )
    parser.add_argument("--out", default="micro.csv")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: time one engine in this process
    args = parser.parse_args(argv)

    if args.worker:
        print("MICRO " + json.dumps(measure_in_process(args.worker, args.batch, args.rounds, args.round_seconds)))
        return 0

    engines = args.engines.split(",")
    if any(e not in BUILDERS for e in engines):
        print(f"error: --engines {args.engines}: valid: {', '.join(BUILDERS)}", file=sys.stderr)
        return 2
    if args.batch < 1 or args.rounds < 1 or args.round_seconds <= 0:
        print("error: --batch and --rounds must be at least 1, --round-seconds above 0", file=sys.stderr)
        return 2

    table: dict[tuple[str, str], dict | str] = {c: "not timed" for c in COLUMNS}
    failed = False
    for engine in dict.fromkeys(e for e, _ in COLUMNS):
        if engine not in engines:
            continue
        if not installed(engine):
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
    writer.writerow(["kernel", "engine", "layout", "ms_per_call", "ratio_to_pytorch_channels_last"])
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
