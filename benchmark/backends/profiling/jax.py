"""The JAX engine (Keras on JAX): ``jax.profiler`` with XLA's optimized HLO, and micro's kernels.

Profile: ``jax.profiler.trace(create_perfetto_trace=True)`` (an ``*.xplane.pb``, a
``*.trace.json.gz`` and a ``perfetto_trace.json.gz``) and XLA's optimized HLO
(``XLA_FLAGS=--xla_dump_to``, set by ``prepare`` before the engine starts, kept as
``xla_dump/*after_optimizations.txt``). TensorFlow may not be imported in a JAX run's
process, so the Chrome-format trace is read as JSON: the complete ("X") events that carry
an ``hlo_op`` (XLA's executed instructions, thunks and fusions, e.g.
``loop_multiply_fusion.3``, ``convolution.12``); self time is an event's ``dur`` minus the
``hlo_op`` events nested in it on the same thread. The operator is the instruction's name
without its number; the HLO dump gives each one its ``op_name`` (the JAX primitive and the
Keras layer it came from), which the category reads.

Kernels: under ``jax.jit``, NHWC (the layout Keras runs in).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from benchmark.backends.contract import Yardstick
from benchmark.backends.profiling import Call, epoch, newest_run, timed

LABEL = "JAX"
LAYOUTS = ("NHWC",)
CATEGORY_PATTERNS: dict[tuple[str, str], str] = {}  # XLA's op_name scopes are read by the neutral rules


def prepare(out: Path) -> None:
    """XLA's HLO dump into out/xla_dump: XLA reads its flags when the engine starts (before
    the backend is loaded); an earlier profile's modules are removed."""
    for stale in (out / "xla_dump").glob("module_*"):  # an earlier profile's modules
        if stale.is_file():
            stale.unlink()
    flags = os.environ.get("XLA_FLAGS", "")
    # first: XLA stops reading its flags at a word without dashes, which a thread pin in the
    # environment may hold ("--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ["XLA_FLAGS"] = f"--xla_dump_to={out / 'xla_dump'} --xla_dump_hlo_as_text {flags}".strip()


# ------------------------------------------------------------------ jax.profiler + XLA's HLO

HLO_LINE = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S+.*?\s([\w\-]+)\(")  # %name = shape opcode(
HLO_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")  # a computation: "%fused_computation.3 (...) -> ... {"
HLO_OP_NAME = re.compile(r'op_name="([^"]*)"')
HLO_CALLS = re.compile(r"calls=%?([\w.\-]+)")
HLO_GROUPS = re.compile(r"feature_group_count=(\d+)")
HLO_SHAPE = re.compile(r"=\s*\w+\[([\d,]*)\]")


def _dense_expansion(dims: str) -> bool:
    """A (C, k, k, C) output, 1 < k <= 7, of a convolution without op_name metadata (XLA's own
    rewrite): the dense filter gradient XLA computes for a grouped (depthwise) convolution
    before it selects the diagonal."""
    d = [int(x) for x in dims.split(",") if x]
    return len(d) == 4 and d[0] == d[3] > 1 and 1 < d[1] == d[2] <= 7


NUMBER = re.compile(r"\.\d+$")


def hlo_facts(dump: Path) -> dict[tuple[str, str], str]:
    """(HLO module, instruction name) -> context, from XLA's optimized HLO text dumps: the instruction's
    op_name metadata (the JAX primitive under the Keras layer's scope), or for a fusion
    without one that of the computation it calls (a convolution's first); " [depthwise]"
    where the instruction or its computation is a grouped convolution, or the
    dense filter gradient XLA computes for one (_dense_expansion)."""
    facts: dict[tuple[str, str], str] = {}
    for path in sorted(dump.glob("*after_optimizations.txt")):
        facts.update(_module_facts(path.read_text(errors="replace").splitlines()))
    return facts


def _module_facts(lines: list[str]) -> dict[tuple[str, str], str]:
    """hlo_facts of one module's text."""
    module, computation = "", ""
    own: dict[str, tuple[str, str]] = {}  # instruction -> (op_name, called computation)
    inside: dict[str, list[str]] = defaultdict(list)  # computation -> its instructions' op_names
    grouped: set[str] = set()  # instructions and computations with feature_group_count > 1
    roots: dict[str, str] = {}  # computation -> the opcode of its ROOT
    for line in lines:
        if line.startswith("HloModule "):
            module = line.split()[1].rstrip(",")
            continue
        header = HLO_HEADER.match(line)
        if header and " = " not in line.split("{")[0]:
            computation = header.group(1)
            continue
        match = HLO_LINE.match(line)
        if not match:
            continue
        op_match = HLO_OP_NAME.search(line)
        calls_match = HLO_CALLS.search(line)
        if line.lstrip().startswith("ROOT "):
            roots[computation] = match.group(2)
            shape = HLO_SHAPE.search(line)
            if match.group(2) == "convolution" and not op_match and shape and _dense_expansion(shape.group(1)):
                grouped.add(computation)
        own.setdefault(
            match.group(1), (op_match.group(1) if op_match else "", calls_match.group(1) if calls_match else "")
        )
        if op_match:
            inside[computation].append(op_match.group(1))
        groups = HLO_GROUPS.search(line)
        if groups and int(groups.group(1)) > 1:
            grouped.update((match.group(1), computation))
    facts: dict[tuple[str, str], str] = {}
    for name, (op_name, calls) in own.items():
        if not op_name and calls:
            names = inside.get(calls, [])
            op_name = next((n for n in names if n.endswith("conv_general_dilated")), names[0] if names else "")
            op_name = op_name or f"[{roots.get(calls, '')}]"
        facts[(module, name)] = op_name + (" [depthwise]" if name in grouped or calls in grouped else "")
    return facts


def trace_json_calls(trace: dict, facts: dict[tuple[str, str], str]) -> tuple[list[Call], str]:
    """XLA's executed instructions (events with an hlo_op) of a Chrome-format trace: on a GPU
    the device's, else the host's."""
    names = {e.get("pid"): e.get("args", {}).get("name", "") for e in trace["traceEvents"] if e.get("ph") == "M"}
    kept = [e for e in trace["traceEvents"] if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]
    on_device = [e for e in kept if "/device:" in names.get(e.get("pid"), "")]
    if on_device:
        kept = on_device
    by_thread: dict[tuple, list] = defaultdict(list)
    for e in kept:
        raw = e["args"]["hlo_op"]
        context = facts.get((e["args"].get("hlo_module", ""), raw), "")
        call = Call(NUMBER.sub("", raw), context, 0.0, f"{raw} {context}".strip())
        by_thread[(e.get("pid"), e.get("tid"))].append((float(e["ts"]) / 1e6, float(e.get("dur", 0)) / 1e6, call))
    calls = [call for events in by_thread.values() for call in timed(events)]
    return calls, "device" if on_device else "cpu"


def profile(trainer: Yardstick, out: Path) -> tuple[list[Call], str, float]:
    """One epoch under jax.profiler: (calls, clock, the epoch's training seconds)."""
    import jax  # the JAX engine's own process: never loaded elsewhere

    with jax.profiler.trace(str(out), create_perfetto_trace=True):
        seconds = epoch(trainer)
    run = newest_run(out)
    with gzip.open(next(run.glob("*.trace.json.gz")), "rb") as fh:
        trace = json.load(fh)
    dump = out / "xla_dump"
    for path in dump.iterdir() if dump.is_dir() else ():  # keep the optimized HLO text only
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        elif path.is_file() and not path.name.endswith("after_optimizations.txt"):
            path.unlink()
    calls, clock = trace_json_calls(trace, hlo_facts(dump))
    return calls, clock, seconds


# ------------------------------------------------------------------ micro's kernels


def kernel(kind: str, layers, batch: int, layout: str) -> tuple[Callable[[], object], Callable[[object], None]]:
    """Micro's kernel `kind` over `layers`, forward and backward, under jax.jit (NHWC)."""
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
