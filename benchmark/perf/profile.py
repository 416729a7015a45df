"""`python -m benchmark.perf.profile`: where a training step's time goes, operator by operator, per arm.

Per framework option (``--backends``, default every framework option of conf/framework,
each engine included), in a child process each (``--worker``, as ``python -m benchmark.perf``
does: a framework may bind one engine per process), the trainer is built through perf's
view of the backend contract exactly as ``benchmark.perf.measure_in_process`` builds it
(``Trainer(cfg, random data, schedule, tmpdir)``), one epoch warms it up (tracing,
compilation, autotuning), and the next epoch, ``trainer.train_epoch`` of ``--steps`` steps
(the harness's real step: its pipeline, LR schedule and metric sums included), runs under
the engine's own profiler. Each engine's profiler, the reduction of its trace to operator
calls (name, scope, self time) and the raw traces it leaves are the backends' business:
one module per engine of benchmark.spec.frameworks (benchmark.backends.profiling, which
this module reaches through ``load_engine`` only, in the engine's own process). Self time
is an event's duration minus the operator events nested in it on the same thread.

Operator names stay each engine's own; ``CATEGORY_RULES`` below (with the patterns each
engine adds to them: its module's ``CATEGORY_PATTERNS``) maps them, and the scope they ran
in, to a few neutral families so that arms can be compared side by side.
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
import functools
import io
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmark.backends import load_backend
from benchmark.backends.contract import PerfBackend, Yardstick
from benchmark.backends.profiling import ENGINES, Call, load_engine, self_times
from benchmark.files import atomic_write_text
from benchmark.perf import REPO, _config, random_data
from benchmark.spec.config import framework_options
from benchmark.spec.schedule import make_schedule

__all__ = ["CATEGORIES", "CATEGORY_RULES", "COLUMNS", "Call", "aggregate", "categorize", "main", "self_times"]

# The neutral families, first match wins. Each rule reads the operator's own name ("op")
# or the scope it ran in ("context": an op name path and its thread, the primitive and
# layer of XLA's op_name metadata, the enclosing ranges and Python frames of a profiler
# that records them (the forward's for a backward operator), and "[depthwise]" where a
# convolution is grouped: its weight is (C, 1, k, k)). Case-insensitive. An engine adds
# patterns of its own to the first rule of a (category, field): its CATEGORY_PATTERNS.
CATEGORY_RULES: tuple[tuple[str, str, str], ...] = (
    # category, field, pattern
    # input pipelines' threads and scopes (each engine adds its own)
    ("data/input", "context", r"(^|/)(iterator|dataset)"),
    # the SGD's scope: "sgd/Mul_3", XLA "jit(step)/sgd/sub", Python frames of an optimizer package
    (
        "optimizer update",
        "context",
        r"(^|/)(sgd|optimizer)(_\d+)?/|optimizer\.step|optim(izers)?/\w+\.py",
    ),
    ("other", "op", r"^autograd::engine"),  # the autograd bookkeeping around each backward function
    # the operator itself: DepthwiseConv2dNative*, CUDA _conv_depthwise2d; a grouped
    # convolution (a (C, 1, k, k) weight; XLA: feature_group_count, or the dense filter
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
    # XLA's op_name ("jvp(block_1_depthwise)/conv_general_dilated"), the layer files in
    # Python frames; graph engines run a BatchNormalization layer as elementwise ops
    # (".../block_1_expand_BN_1/batchnorm/mul_1", XLA "jvp(bn_Conv1)/jit(_var)/sub")
    ("depthwise convolution", "context", r"depthwise(_\d+)?\)*/(depthwise|conv_general_dilated)|depthwise_conv\w*\.py"),
    ("convolution", "context", r"/conv_general_dilated|\[convolution\]|conv\w*\.py\("),
    ("batchnorm", "context", r"(^|[/_(])(bn|batchnorm|batch_normalization|moments)(_[\w.]+)?[)/]|batch_?norm\w*\.py\("),
    ("optimizer update", "op", r"foreach|sgd|momentum|resourceapply|assign"),  # _foreach_*, Assign*
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
CATEGORIES = tuple(dict.fromkeys(c for c, _, _ in CATEGORY_RULES))
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


@functools.cache
def rules(engines: tuple[str, ...]) -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    """CATEGORY_RULES compiled, each engine's CATEGORY_PATTERNS added to the first rule of
    their (category, field)."""
    extra: dict[tuple[str, str], list[str]] = defaultdict(list)
    for engine in engines:
        for key, pattern in load_engine(engine).CATEGORY_PATTERNS.items():
            extra[key].append(pattern)
    compiled, used = [], set()
    for category, field, pattern in CATEGORY_RULES:
        key = (category, field)
        if key in extra and key not in used:
            pattern = "|".join([pattern, *extra[key]])
            used.add(key)
        compiled.append((category, field, re.compile(pattern, re.IGNORECASE)))
    unknown = set(extra) - used
    if unknown:
        raise ValueError(f"engine category patterns without a rule of their category and field: {sorted(unknown)}")
    return tuple(compiled)


def categorize(operator: str, context: str = "", engine: str | None = None) -> str:
    """The neutral family of an operator (CATEGORY_RULES, first match) with the patterns of
    `engine` (default: of every engine)."""
    for category, field, pattern in rules((engine,) if engine else tuple(ENGINES)):
        if pattern.search(operator if field == "op" else context):
            return category
    return "other"


def aggregate(calls: list[Call], steps: int, engine: str | None = None) -> list[dict]:
    """One row per (operator, category), most self time first, with its share of the arm
    (the categories with `engine`'s patterns: categorize)."""
    total = sum(c.self_s for c in calls) or 1.0
    rows: dict[tuple[str, str], dict] = {}
    best: dict[tuple[str, str], float] = defaultdict(float)
    for c in calls:
        key = (c.operator, categorize(c.operator, c.context, engine))
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


# ------------------------------------------------------------------ the child


def profile_in_process(
    backend: str, model: str, batch: int, precision: str, steps: int, extra: list[str], out: Path
) -> dict:
    """The operator table of `steps` profiled training steps of one framework option."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = _config(backend, model, batch, precision, extra)
    engine = cfg.framework.engine
    profiler = load_engine(engine)
    profiler.prepare(out)  # before load_backend below: an engine may read its settings when it starts
    module: PerfBackend = load_backend(cfg.framework.name, engine)
    data = random_data(steps * batch, 32)
    with tempfile.TemporaryDirectory() as tmp:
        trainer: Yardstick = module.Trainer(cfg, data, make_schedule(cfg, steps * batch), Path(tmp))
        trainer.train_epoch(0, lambda *a: None)  # tracing, compilation, autotuning
        calls, clock, seconds = profiler.profile(trainer, out)
    rows = aggregate(calls, steps, engine)
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
