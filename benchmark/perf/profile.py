"""`python -m benchmark.perf.profile`: where a training step's time goes, operator by operator, per arm.

Per framework option (``--backends``, default pytorch, keras, keras_jax, keras_torch), in a
child process each (``--worker``, as ``python -m benchmark.perf`` does: Keras binds one
engine per process), the trainer is built through perf's view of the backend contract
exactly as ``benchmark.perf.measure_in_process`` builds it (``Trainer(cfg, random data,
schedule, tmpdir)``), one epoch warms it up (tracing, compilation, autotuning), and the
next epoch, ``trainer.train_epoch`` of ``--steps`` steps (the harness's real step: its
pipeline, LR schedule and metric sums included), runs under the framework's own profiler:

- PyTorch and Keras on torch: ``torch.profiler`` (CPU, and CUDA when the trainer's device
  is a GPU). Each operator call's self time is ``FunctionEvent.self_cpu_time_total`` (on a
  GPU ``self_device_time_total``: its kernels' time), the figure ``key_averages()`` sums;
  the raw trace is ``trace.json.gz`` (``export_chrome_trace``: Perfetto, chrome://tracing).
- Keras on TensorFlow: ``tf.profiler.experimental.start/stop``; the ``*.xplane.pb`` it
  writes (TensorBoard's profiler reads the folder) is read with TensorFlow's own protobuf
  (``tensorflow.tsl.profiler.protobuf.xplane_pb2``). Kept: the TensorFlow op events of the
  host plane (named ``op_name:OpType`` on the executor's and tf.data's threads; on a GPU,
  the device plane's kernels, named by their ``tf_op``). Self time: an event's duration
  minus the op events nested in it on the same line (thread).
- Keras on JAX: ``jax.profiler.trace(create_perfetto_trace=True)`` (an ``*.xplane.pb``, a
  ``*.trace.json.gz`` and a ``perfetto_trace.json.gz``) and XLA's optimized HLO
  (``XLA_FLAGS=--xla_dump_to``, kept as ``xla_dump/*after_optimizations.txt``). TensorFlow
  may not be imported in a JAX run's process, so the Chrome-format trace is read as JSON:
  the complete ("X") events that carry an ``hlo_op`` (XLA's executed instructions, thunks
  and fusions, e.g. ``loop_multiply_fusion.3``, ``convolution.12``); self time is an event's
  ``dur`` minus the ``hlo_op`` events nested in it on the same thread. The operator is
  the instruction's name without its number; the HLO dump gives each one its ``op_name``
  (the JAX primitive and the Keras layer it came from), which the category reads.

Operator names stay each framework's own; ``CATEGORY_RULES`` below maps them (and the
scope they ran in) to a few neutral families so that arms can be compared side by side.
The child prints one table; the parent writes ``profile.csv`` (``--out``) and prints the top
``--top`` operators per arm side by side and each arm's time per category, as Markdown.
The raw traces stay in ``--trace-dir``/<backend>/ for TensorBoard's profiler or Perfetto.

Self times are per profiled step; an operator's ``share`` is its self time over the sum
of every operator's self time of that arm (the shares of an arm sum to 1). The profiled
step's wall time is reported beside it (profiling slows a step down: it is not a speed
figure, ``python -m benchmark.perf`` is), and so is ``op_ms_per_step``, the sum of
the self times: above the step time where operators ran on several threads at once, below
it by the time spent outside any operator (Python, the framework's dispatch).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from benchmark.backends import load_backend
from benchmark.backends.contract import PerfBackend, Yardstick
from benchmark.files import atomic_write_text
from benchmark.perf import REPO, _config, _random_data
from benchmark.spec.config import framework_options
from benchmark.spec.schedule import make_schedule

# The neutral families, first match wins. Each rule reads the operator's own name ("op")
# or the scope it ran in ("context": TensorFlow's op name path and thread, the JAX
# primitive and Keras layer of XLA's op_name metadata, torch's enclosing ranges and Python
# frames (the forward's for a backward operator), and "[depthwise]" where a convolution is
# grouped: its weight is (C, 1, k, k)). Case-insensitive.
CATEGORY_RULES: tuple[tuple[str, str, str], ...] = (
    # category, field, pattern
    # tf.data's threads; the benchmark's own pipelines (torch's Python frames)
    ("data/input", "context", r"^tf\.data|(^|/)(iterator|dataset)|keras/pipelines/\w+\.py|pytorch/data\.py"),
    # the SGD's scope: TF "sgd/Mul_3", XLA "jit(step)/sgd/sub", Python frames of torch.optim, Keras' optimizers
    (
        "optimizer update",
        "context",
        r"(^|/)(sgd|optimizer)(_\d+)?/|optimizer\.step|optim(izers)?/\w+\.py|keras/optim\.py",
    ),
    ("other", "op", r"^autograd::engine"),  # torch's autograd bookkeeping around each backward function
    # the operator itself: TF DepthwiseConv2dNative*, torch CUDA _conv_depthwise2d; a grouped
    # convolution (torch: a (C, 1, k, k) weight; XLA: feature_group_count, or the dense filter
    # gradient XLA computes for one)
    ("depthwise convolution", "op", r"depthwise"),
    ("depthwise convolution", "context", r"\[depthwise\]"),
    ("convolution", "op", r"conv"),  # Conv2D*, aten::*convolution*, XLA convolution
    ("matmul/dense", "op", r"matmul|gemm|addmm|(^|::|_)b?mm$|(^|_)dot|linear|dense"),
    ("batchnorm", "op", r"batch_?norm"),  # aten::native_batch_norm*, FusedBatchNorm*
    # data movement, wherever it runs (XLA's fusions are named by the ops they fuse: only
    # those of a copy or transpose move data)
    (
        "copy/layout",
        "op",
        r"^(?!.*fusion).*(copy|transpose|contiguous|clone|reshape|cast|concat|pad|slice|memcpy|identity|tile"
        r"|gather|permute|reverse|squeeze|as_strided|view|empty|expand|stack|pack)|(copy|transpose)\w*fusion",
    ),
    # the layer an operator runs in, for the elementwise ops and fusions a layer is made of:
    # XLA's op_name ("jvp(block_1_depthwise)/conv_general_dilated"), Keras' layer files in
    # torch's Python frames; TensorFlow and XLA run Keras' BatchNormalization as elementwise ops
    # (TF ".../block_1_expand_BN_1/batchnorm/mul_1", XLA "jvp(bn_Conv1)/jit(_var)/sub")
    ("depthwise convolution", "context", r"depthwise(_\d+)?\)*/(depthwise|conv_general_dilated)|depthwise_conv\w*\.py"),
    ("convolution", "context", r"/conv_general_dilated|\[convolution\]|conv\w*\.py\("),
    ("batchnorm", "context", r"(^|[/_(])(bn|batchnorm|batch_normalization|moments)(_[\w.]+)?[)/]|batch_?norm\w*\.py\("),
    ("optimizer update", "op", r"foreach|sgd|momentum|resourceapply|assign"),  # torch's _foreach_*, TF Assign*
    ("data/input", "op", r"iterator|dataset|prefetch|getnext|random|shuffle|_recv|_send"),
    (
        "elementwise/activation",  # elementwise arithmetic, activations and reductions (loss, metrics)
        "op",
        r"relu|add|mul|sub|div|clip|clamp|hardtanh|exp|log|tanh|sigmoid|softmax|neg|sqrt|where|select|max|min"
        r"|square|pow|fusion|sum|mean|reduce|fill|zero|threshold|difference|sign|abs|less|greater|equal|argmax"
        r"|nll|cross_entropy|scatter|compare|and|or",
    ),
    ("other", "op", r""),  # everything else (ReadVariableOp, record_function ranges, ...)
)
T = TypeVar("T")  # what a timed event carries
CATEGORIES = tuple(dict.fromkeys(c for c, _, _ in CATEGORY_RULES))
_COMPILED = tuple((c, f, re.compile(p, re.IGNORECASE)) for c, f, p in CATEGORY_RULES)
COLUMNS = (
    "backend",
    "execution_mode",
    "device",
    "clock",
    "rank",
    "operator",
    "category",
    "calls_per_step",
    "self_ms_per_step",
    "share",
    "step_ms",
    "op_ms_per_step",
    "example",
)


def categorize(operator: str, context: str = "") -> str:
    """The neutral family of an operator (CATEGORY_RULES, first match)."""
    for category, field, pattern in _COMPILED:
        if pattern.search(operator if field == "op" else context):
            return category
    return "other"


@dataclass
class Call:
    """One executed operator: its framework's name, the scope it ran in, self time in seconds."""

    operator: str
    context: str
    self_s: float
    example: str = ""


def self_times(events: Iterable[tuple[float, float, T]]) -> list[tuple[T, float]]:
    """(payload, self time) of events (start, duration, payload) of one thread: the duration
    minus that of the events directly nested in it (starting inside it)."""
    ordered = sorted(events, key=lambda e: (e[0], -e[1]))
    out: list[list] = []  # [payload, self time]
    stack: list[tuple[float, int]] = []  # (end, index into out)
    for start, duration, payload in ordered:
        while stack and start >= stack[-1][0]:
            stack.pop()
        if stack:
            out[stack[-1][1]][1] -= min(duration, stack[-1][0] - start)
        out.append([payload, duration])
        stack.append((start + duration, len(out) - 1))
    return [(p, max(0.0, s)) for p, s in out]


def timed(events: Iterable[tuple[float, float, Call]]) -> list[Call]:
    """The calls of one thread's events (start, duration, call), their self times filled in."""
    calls = []
    for call, seconds in self_times(events):
        call.self_s = seconds
        calls.append(call)
    return calls


def aggregate(calls: list[Call], steps: int) -> list[dict]:
    """One row per (operator, category), most self time first, with its share of the arm."""
    total = sum(c.self_s for c in calls) or 1.0
    rows: dict[tuple[str, str], dict] = {}
    best: dict[tuple[str, str], float] = defaultdict(float)
    for c in calls:
        key = (c.operator, categorize(c.operator, c.context))
        row = rows.setdefault(key, {"operator": key[0], "category": key[1], "calls": 0, "self_s": 0.0, "example": ""})
        row["calls"] += 1
        row["self_s"] += c.self_s
        if c.self_s >= best[key]:
            best[key], row["example"] = c.self_s, c.example or c.context
    ordered = sorted(rows.values(), key=lambda r: -r["self_s"])
    return [
        {
            "rank": i + 1,
            "operator": r["operator"],
            "category": r["category"],
            "calls_per_step": r["calls"] / steps,
            "self_ms_per_step": 1000 * r["self_s"] / steps,
            "share": r["self_s"] / total,
            "example": r["example"][:160],
        }
        for i, r in enumerate(ordered)
    ]


# ------------------------------------------------------------------ torch.profiler


def _depthwise_weight(shapes) -> bool:
    """A (C, 1, k, k) weight among an operator's input shapes, k > 1: a depthwise convolution."""
    return any(isinstance(s, (list, tuple)) and len(s) == 4 and s[1] == 1 and s[0] > 1 and s[2] > 1 for s in shapes)


PYTHON_FRAME = re.compile(r"\.py\(\d+\): |^<built-in")  # torch.profiler's Python events (with_stack=True)


def _ancestors(evt) -> list:
    out, parent = [], evt.cpu_parent
    while parent is not None:
        out.append(parent)
        parent = parent.cpu_parent
    return out[::-1]


def torch_calls(events, on_device: bool) -> list[Call]:
    """The CPU-side operator events of torch.profiler, self time as key_averages() sums it
    (FunctionEvent.self_cpu_time_total, or self_device_time_total: the kernels it launched).
    Python frames (with_stack=True) are not operators: they are left out, and only name the
    scope of the operators they call; a backward operator gets the scope of the forward
    operator whose autograd node it runs (same sequence_nr)."""
    events = sorted(events, key=lambda e: e.time_range.start)
    forward: dict[int, str] = {}  # sequence_nr -> the forward operator's scope
    for evt in events:
        if evt.sequence_nr >= 0 and evt.name.startswith("aten::") and evt.sequence_nr not in forward:
            scopes = _ancestors(evt)
            if not any(p.name.startswith("autograd::engine") for p in scopes):
                forward[evt.sequence_nr] = "/".join(p.name for p in scopes)
    calls = []
    for evt in events:
        if str(evt.device_type).rsplit(".", 1)[-1] != "CPU" or evt.is_async or PYTHON_FRAME.search(evt.name):
            continue
        self_us = evt.self_device_time_total if on_device else evt.self_cpu_time_total
        scopes = _ancestors(evt)
        context = "/".join(p.name for p in scopes)
        node = next((p for p in scopes if p.name.startswith("autograd::engine::evaluate_function")), None)
        if node is not None:
            context = f"{forward.get(node.sequence_nr, '')} (backward)/{context}"
        if "conv" in evt.name and _depthwise_weight(evt.input_shapes or ()):
            context += " [depthwise]"
        calls.append(Call(evt.name, context, self_us / 1e6, f"{evt.name} {evt.input_shapes}"))
    return calls


def _profile_torch(trainer: Yardstick, out: Path) -> tuple[list[Call], str, float]:
    import torch  # the torch engine's own process (pytorch, keras_torch): never loaded elsewhere
    from torch.profiler import ProfilerActivity, profile

    on_device = str(trainer.device).startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    # shapes: a depthwise convolution is known by its weight; stacks: the layer an operator runs in
    with profile(activities=activities, record_shapes=True, with_stack=True) as prof:
        seconds = _epoch(trainer)
        if on_device:
            torch.cuda.synchronize()
    prof.export_chrome_trace(str(out / "trace.json.gz"))  # gzip: Python stacks make it large
    return torch_calls(prof.events(), on_device), "device" if on_device else "cpu", seconds


# ------------------------------------------------------------------ TensorFlow's xplane

TF_OP = re.compile(r"^([^:]+):(_?[A-Z][A-Za-z0-9_]*)$")  # "scope/name:OpType"


def xplane_calls(space) -> tuple[list[Call], str]:
    """TensorFlow op events of an XSpace (the device planes' kernels where a GPU ran)."""
    device_planes = [p for p in space.planes if p.name.startswith("/device:GPU") and any(p.lines)]
    calls: list[Call] = []
    if device_planes:
        for plane in device_planes:
            stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
            for line in plane.lines:
                events = []
                for e in line.events:
                    name = plane.event_metadata[e.metadata_id].name
                    tf_op = next(
                        (s.str_value for s in e.stats if stat_names.get(s.metadata_id) == "tf_op" and s.str_value),
                        "",
                    )
                    match = TF_OP.match(tf_op)
                    op, scope = (match.group(2), match.group(1)) if match else (name, "")
                    events.append((e.offset_ps / 1e12, e.duration_ps / 1e12, Call(op, scope, 0.0, name)))
                calls += timed(events)
        return calls, "device"
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            thread = "tf.data/" if line.name.startswith("tf_data") else ""
            events = []
            for e in line.events:
                match = TF_OP.match(plane.event_metadata[e.metadata_id].name)
                if match:
                    scope, op = match.groups()
                    events.append((e.offset_ps / 1e12, e.duration_ps / 1e12, Call(op, thread + scope, 0.0)))
            calls += timed(events)
    return calls, "cpu"


def _newest_run(logdir: Path) -> Path:
    runs = [p for p in (logdir / "plugins" / "profile").iterdir() if p.is_dir()]
    return max(runs, key=lambda p: p.stat().st_mtime)


def _profile_tensorflow(trainer: Yardstick, out: Path) -> tuple[list[Call], str, float]:
    import tensorflow as tf  # the TensorFlow engine's own process: never loaded elsewhere
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.profiler.experimental.start(str(out))
    try:
        seconds = _epoch(trainer)
    finally:
        tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    for path in sorted(_newest_run(out).glob("*.xplane.pb")):
        one = xplane_pb2.XSpace()
        one.ParseFromString(path.read_bytes())
        space.MergeFrom(one)
    calls, clock = xplane_calls(space)
    return calls, clock, seconds


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


def _profile_jax(trainer: Yardstick, out: Path) -> tuple[list[Call], str, float]:
    import jax  # the JAX engine's own process: never loaded elsewhere

    with jax.profiler.trace(str(out), create_perfetto_trace=True):
        seconds = _epoch(trainer)
    run = _newest_run(out)
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


# ------------------------------------------------------------------ the child


def _epoch(trainer: Yardstick) -> float:
    stats = trainer.train_epoch(1, lambda *a: None)
    return stats.seconds


PROFILERS = {"tensorflow": _profile_tensorflow, "jax": _profile_jax, "torch": _profile_torch}


def profile_in_process(
    backend: str, model: str, batch: int, precision: str, steps: int, extra: list[str], out: Path
) -> dict:
    """The operator table of `steps` profiled training steps of one framework option."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = _config(backend, model, batch, precision, extra)
    engine = cfg.framework.engine
    if engine == "jax":  # XLA reads its flags when the engine starts, in load_backend below
        for stale in (out / "xla_dump").glob("module_*"):  # an earlier profile's modules
            if stale.is_file():
                stale.unlink()
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_dump_to={out / 'xla_dump'} --xla_dump_hlo_as_text".strip()
    module: PerfBackend = load_backend(cfg.framework.name, engine)
    data = _random_data(steps * batch, 32)
    with tempfile.TemporaryDirectory() as tmp:
        trainer: Yardstick = module.Trainer(cfg, data, make_schedule(cfg, steps * batch), Path(tmp))
        trainer.train_epoch(0, lambda *a: None)  # tracing, compilation, autotuning
        calls, clock, seconds = PROFILERS[engine](trainer, out)
    rows = aggregate(calls, steps)
    return {
        "execution_mode": trainer.mode,
        "device": str(trainer.device),
        "clock": clock,
        "step_ms": 1000 * seconds / steps,  # the profiled epoch's training time (EpochStats.seconds)
        "op_ms_per_step": sum(r["self_ms_per_step"] for r in rows),
        "rows": rows,
    }


# ------------------------------------------------------------------ the parent


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(arms: list[dict], top: int) -> str:
    """The top operators per arm side by side, then each arm's share per category."""
    head = [f"{a['backend']} ({a['execution_mode']})" for a in arms]
    lines = ["| rank | " + " | ".join(head) + " |", "|---|" + "---|" * len(arms)]
    for i in range(top):
        cells = []
        for a in arms:
            rows = a["rows"]
            if i < len(rows):
                r = rows[i]
                cells.append(
                    f"{r['operator']} ({r['category']}) {100 * r['share']:.1f}%, {r['self_ms_per_step']:.2f} ms"
                )
            else:
                cells.append("")
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines.append("| profiled step (ms) | " + " | ".join(f"{a['step_ms']:.1f}" for a in arms) + " |")
    lines.append("| operators' self time (ms/step) | " + " | ".join(f"{a['op_ms_per_step']:.1f}" for a in arms) + " |")
    lines += ["", "| category | " + " | ".join(head) + " |", "|---|" + "---|" * len(arms)]
    for category in CATEGORIES:
        shares = [sum(r["share"] for r in a["rows"] if r["category"] == category) for a in arms]
        if any(shares):
            lines.append(f"| {category} | " + " | ".join(f"{100 * s:.1f}%" for s in shares) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf.profile", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backends",
        default=",".join(framework_options()),
        help="comma-separated framework= options (default: every one, each engine included)",
    )
    parser.add_argument("--model", default="mobilenetv2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--steps", type=int, default=10, help="profiled training steps (after a warm-up epoch)")
    parser.add_argument("--top", type=int, default=5, help="operators per arm in the printed table")
    parser.add_argument("--out", default="profile.csv")
    parser.add_argument("--trace-dir", default="profile", help="raw traces: <trace-dir>/<backend>/")
    parser.add_argument("--override", action="append", default=[], help="extra config override, as benchmark.perf")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: profile one backend in this process
    args = parser.parse_args(argv)

    if args.worker:
        result = profile_in_process(
            args.worker, args.model, args.batch, args.precision, args.steps, args.override, Path(args.trace_dir)
        )
        print("PROFILE " + json.dumps(result))
        return 0

    backends = args.backends.split(",")
    for backend in backends:
        if backend not in framework_options():
            print(
                f"error: --backends: {backend!r} is unknown; valid: {', '.join(framework_options())}", file=sys.stderr
            )
            return 2
    if args.steps < 1 or args.batch < 1 or args.top < 1:
        print("error: --steps, --batch and --top must be at least 1", file=sys.stderr)
        return 2

    arms = []
    for backend in backends:
        trace_dir = Path(args.trace_dir).resolve() / backend
        cmd = [
            sys.executable,
            "-m",
            "benchmark.perf.profile",
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
            "--trace-dir",
            str(trace_dir),
        ] + [f"--override={o}" for o in args.override]
        out = subprocess.run(  # noqa: S603  this interpreter running `-m benchmark.perf.profile`: an argument list
            cmd, cwd=REPO, capture_output=True, text=True
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("PROFILE ")]
        if out.returncode != 0 or not lines:
            print(f"error: profiling {backend} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        arms.append({"backend": backend, "trace_dir": str(trace_dir), **json.loads(lines[-1][len("PROFILE ") :])})

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for arm in arms:
        for row in arm["rows"]:
            writer.writerow({k: _fmt(v) for k, v in {**arm, **row}.items() if k in COLUMNS})
    atomic_write_text(Path(args.out), buf.getvalue())
    print(markdown(arms, args.top))
    print(f"written: {args.out}; raw traces: " + ", ".join(a["trace_dir"] for a in arms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
