"""`python -m benchmark.preflight [overrides]`: is this machine ready for the sweep, and how long will it take?

For every framework option the sweep needs (those ``hydra.sweeper.params.framework``
lists, or the composed ``framework``; ``--frameworks all``: every conf/framework
option), in a process of its own (benchmark.preflight.child): the device it will use and
its execution mode; a few training steps in fp32, in AMP float16 (dynamic loss scaling
on a GPU) and in AMP bfloat16 where the device has it, each of which must run and give a
finite loss; the float32 (TF32) policy, the determinism mode and the CPU threads the
backend reports; and the training throughput of each training shape of the sweep
(model, image size, batch, precision) after a warm-up epoch, measured on random pixels
(timing only: nothing trained is kept).

From those it estimates every run of the sweep (Hydra's own expansion of
``hydra.sweeper.params`` and the command-line sweeps, each run's config composed):
epochs x (training images / images/s + validation images / evaluation images/s) plus the
first epoch's compile overhead, and the total in GPU-hours (CPU-hours on a CPU), leaving
out the runs already completed in the sweep directory. Start-up and the test pass are
not counted.

Prints a table, the estimate and one line per problem; exits 1 on any problem, 2 on bad
input (one line, nothing written), else 0. Writes ``preflight.json`` into the sweep
directory when the preset names a fixed one (else the current directory; ``--out``).
No framework is imported in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from benchmark import BenchmarkError
from benchmark.files import refuse_links_out, write_json
from benchmark.parity.configure import train_images
from benchmark.preflight.child import CHECKS, run_child
from benchmark.run.loop import validate
from benchmark.run.rundir import RunDir
from benchmark.spec.config import CONF_DIR, check_values, framework_options, hydra_error_line, register_configs
from benchmark.spec.frameworks import ENGINES, check_engine, default_engine

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STEPS = 20


class BadInput(BenchmarkError):
    """Bad input: one line, exit 2, nothing written."""


def _compose(overrides: Sequence[str], idx: int = 0):
    """The config (hydra node included) of a job with these overrides, as a sweep composes it."""
    register_configs()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):  # as the sweeper sets them, for a hydra.sweep.subdir that names them
            cfg.hydra.job.num = idx
            cfg.hydra.job.id = idx
        OmegaConf.to_container(_task(cfg), resolve=True)  # every value resolved and type-checked now
    except Exception as exc:  # hydra/omegaconf: unknown key or option, wrong type, bad syntax
        raise BadInput(f"bad override: {hydra_error_line(exc)}") from None
    return cfg


def _option_of(cfg) -> str:
    """The conf/framework option a composed config is (keras_jax for keras on jax, ...)."""
    name, engine = cfg.framework.name, cfg.framework.engine
    option = name if engine in (None, default_engine(name)) else f"{name}_{engine}"
    return option if option in framework_options() else f"{name} framework.engine={engine}"


def _missing_engine(cfg) -> str | None:
    """The one-line message when the job's engine is not installed here, else None."""
    try:
        check_engine(cfg.framework.name, cfg.framework.engine)
    except BenchmarkError as exc:
        if (
            cfg.framework.name in ENGINES
            and (cfg.framework.engine or default_engine(cfg.framework.name)) in ENGINES[cfg.framework.name]
        ):
            return str(exc)
        raise BadInput(str(exc)) from None
    return None


def _task(cfg):
    return OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])


def _shape(cfg) -> tuple:
    """What the throughput of a run depends on (the seed and the dataset's name do not)."""
    return (
        cfg.model.name,
        int(cfg.dataset.image_size),
        int(cfg.batch_size),
        int(cfg.grad_accum_steps),
        cfg.precision.name,
        cfg.precision.dtype if cfg.precision.mixed else None,
        cfg.protocol.name,
    )


def _shape_label(shape: tuple) -> str:
    model, size, batch, accum, precision, dtype, protocol = shape
    return (
        f"{model} {size}px batch {batch}"
        + (f"/{accum}" if accum > 1 else "")
        + f" {precision}"
        + (f" {dtype}" if dtype else "")
        + ("" if protocol == "native" else f" {protocol}")
    )


class Plan:
    """The sweep as Hydra would run it: every job's overrides, config and run directory."""

    def __init__(self, overrides: list[str]):
        parser = OverridesParser.create()
        try:
            parsed = parser.parse_overrides(overrides)
        except Exception as exc:  # hydra's OverrideParseException and friends
            raise BadInput(f"bad override: {hydra_error_line(exc)}") from None
        is_hydra = [o.get_key_element().startswith(("hydra.", "hydra/")) for o in parsed]
        hydra_overrides = [str(o.input_line) for o, h in zip(parsed, is_hydra, strict=True) if h]
        task = [o for o, h in zip(parsed, is_hydra, strict=True) if not h]
        first_values = [  # the base config: each command-line sweep at its first value
            f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
            if o.is_sweep_override()
            else str(o.input_line)
            for o in task
        ]
        self.hydra_overrides = hydra_overrides
        self.base = _compose([*hydra_overrides, *first_values])
        params = {str(k): str(v) for k, v in (self.base.hydra.sweeper.params or {}).items()}
        try:  # what the resumable sweeper does: the preset's params, then the command line's overrides
            everything = parser.parse_overrides(
                [f"{k}={v}" for k, v in params.items()] + [str(o.input_line) for o in task]
            )
            self.jobs: list[list[str]] = BasicSweeper.split_arguments(everything, None)[0]
        except Exception as exc:  # hydra's OverrideParseException and friends
            raise BadInput(f"bad sweep: {hydra_error_line(exc)}") from None
        sweep_dir = OmegaConf.select(self.base, "hydra.sweep.dir", throw_on_resolution_failure=False)
        sweep = OmegaConf.to_container(self.base.hydra.sweep, resolve=False)
        unresolved = str(sweep.get("dir") if isinstance(sweep, dict) else sweep_dir)  # "multirun/${now:...}"
        self.fixed_sweep_dir = Path(str(sweep_dir)) if "${now:" not in unresolved else None
        self.runs: list[dict] = []
        for idx, job in enumerate(self.jobs):
            cfg = _compose([*hydra_overrides, *job], idx)
            missing = _missing_engine(cfg)
            task_cfg = _task(cfg)
            try:
                if missing:
                    check_values(task_cfg)
                else:
                    validate(task_cfg)
            except BenchmarkError as exc:
                raise BadInput(f"{exc} (in the job {' '.join(job) or 'with no overrides'})") from None
            run_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
            rd = RunDir(run_dir)
            status = rd.read_status() or {}
            completed = status.get("state") == "completed" and rd.test.is_file() and rd.read_test() is not None
            self.runs.append(
                {
                    "overrides": job,
                    "option": _option_of(cfg),
                    "missing": missing,
                    "run_dir": str(run_dir),
                    "completed": completed,
                    "cfg": task_cfg,
                }
            )

    def options(self) -> list[str]:
        return list(dict.fromkeys(r["option"] for r in self.runs))


def _child(option: str, base: list[str], shapes: list[list[str]], steps: int) -> dict:
    """Run one framework option's checks in a process of its own."""
    spec = {"base": base, "shapes": shapes, "steps": steps}
    cmd = [sys.executable, "-m", "benchmark.preflight", "--child", json.dumps(spec)]
    tic = time.perf_counter()
    out = subprocess.run(  # noqa: S603  this interpreter running `-m benchmark.preflight`: an argument list, no shell
        cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ}
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("PREFLIGHT ")]
    if not lines:
        tail = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        return {"error": f"its process ended without a result (exit {out.returncode}): {tail}", "checks": {}}
    result = json.loads(lines[-1][len("PREFLIGHT ") :])
    result["seconds"] = time.perf_counter() - tic
    return result


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _run_seconds(cfg, measured: dict) -> tuple[float, dict]:
    """Estimated seconds of one run from its shape's measurement, and how."""
    n_train, source = train_images(cfg)
    images = (n_train // int(cfg.batch_size)) * int(cfg.batch_size)  # drop-remainder batches
    n_val = int(cfg.dataset.val_size) if cfg.limit.val is None else min(int(cfg.dataset.val_size), int(cfg.limit.val))
    epochs = int(cfg.epochs)
    seconds = epochs * (images / measured["images_per_second"] + n_val / measured["eval_images_per_second"])
    seconds += measured["first_epoch_overhead_seconds"]
    return seconds, {"epochs": epochs, "train_images": images, "train_images_source": source, "val_images": n_val}


def _float32_cell(record) -> str:
    """The float32 policy in a table cell: what is in effect ("ieee", "tf32"), or n/a on a CPU."""
    if not isinstance(record, dict):
        return str(record) if record else "-"
    effect = str(record.get("in_effect", "?"))
    return f"{record.get('requested')} (n/a)" if effect.startswith("not applicable") else effect


def _determinism_cell(record) -> str:
    if not isinstance(record, dict):
        return str(record) if record else "-"
    replaced = record.get("replaced") or []
    return ("on" if record.get("requested") else "off") + (f", {len(replaced)} op(s) replaced" if replaced else "")


def _check_cell(check: dict | None) -> str:
    if not check:
        return "-"
    if check.get("ok") is None:
        return "skipped"
    return "ok" if check.get("ok") else "FAIL"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, not argparse's usage block: what is wrong, and where to look."""
        print(f"error: {message} (see python -m benchmark.preflight --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m benchmark.preflight",
        description=(__doc__ or "").split("\n")[0],
        epilog="example: python -m benchmark.preflight experiment=stage1",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m benchmark (experiment=stage1)")
    parser.add_argument(
        "--frameworks",
        default=None,
        help="framework options to check: 'all' (every conf/framework option; one not installed is skipped) "
        "or a comma list (default: those the sweep runs)",
    )
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"timed training steps (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--measure",
        choices=("all", "first"),
        default="all",
        help="throughput of every training shape of the sweep (model, image size, batch, precision), "
        "or of its first only (runs of other shapes are then not estimated)",
    )
    parser.add_argument("--out", default=None, help="where preflight.json goes (default: the sweep directory)")
    parser.add_argument(
        "-m", "--multirun", action="store_true", help="accepted, as in python -m benchmark: a sweep is always planned"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one framework option in this process
    try:
        args = parser.parse_intermixed_args(argv)
    except SystemExit as exc:  # argparse printed its one line (usage and error) already
        return int(exc.code or 0)
    if args.child:
        return run_child(args.child)
    try:
        return _preflight(args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _preflight(args) -> int:
    if args.steps < 1:
        raise BadInput(f"--steps {args.steps}: at least 1")
    tic = time.perf_counter()
    plan = Plan(list(args.overrides))
    needed = plan.options()
    if args.frameworks is None:
        options = needed
    elif args.frameworks == "all":
        options = framework_options()
    else:
        options = args.frameworks.split(",")
        unknown = [o for o in options if o not in framework_options()]
        if unknown:
            raise BadInput(f"--frameworks: {unknown[0]!r} is unknown; valid: all, {', '.join(framework_options())}")
        needed = [*needed, *options]  # named one by one: each must be there
    out_path = Path(args.out) if args.out else None
    if out_path is None and plan.fixed_sweep_dir is not None:
        try:
            refuse_links_out(plan.fixed_sweep_dir, "the sweep directory")
            out_path = plan.fixed_sweep_dir / "preflight.json"
        except BenchmarkError as exc:
            print(f"note: {exc}; preflight.json goes to the current directory")
    out_path = out_path or Path("preflight.json")

    problems: list[str] = []
    results: dict[str, dict] = {}
    measured: dict[str, dict[tuple, dict]] = {}  # option -> training shape -> its measurement
    for option in options:
        runs = [r for r in plan.runs if r["option"] == option]
        if runs:
            base = [*runs[0]["overrides"]]
            missing = runs[0]["missing"]
        else:  # not in the sweep (--frameworks all): the sweep's first job on this option
            first = plan.runs[0]["overrides"] if plan.runs else []
            base = [o for o in first if o.lstrip("+~").split("=")[0].split(".")[0] != "framework"]
            base.append(f"framework={option}")
            cfg = _compose([*plan.hydra_overrides, *base])
            missing = _missing_engine(cfg)
        if missing:
            results[option] = {"installed": False, "message": missing}
            if option in needed:
                problems.append(f"{option}: {missing}")
            continue
        shapes: dict[tuple, list[str]] = {}
        for run in runs or [{"overrides": base, "cfg": _task(_compose([*plan.hydra_overrides, *base]))}]:
            shapes.setdefault(_shape(run["cfg"]), run["overrides"])
        keys = list(shapes)[: 1 if args.measure == "first" else None]
        shape_list = [shapes[k] for k in keys]
        print(f"checking {option} ({len(shape_list)} training shape(s)) ...", flush=True)
        result = _child(option, base, shape_list, args.steps)
        result["installed"] = True
        results[option] = result
        for key, shape in zip(keys, result.get("shapes", []), strict=False):
            shape["shape"] = _shape_label(key)
        measured[option] = {k: m for k, m in zip(keys, result.get("shapes", []), strict=False) if m.get("ok")}
        if result.get("error"):
            problems.append(f"{option}: {result['error']}")
        for name, check in result.get("checks", {}).items():
            if check.get("ok") is False:
                problems.append(f"{option}: {name} training steps failed: {check.get('error')}")
        for shape in result.get("shapes", []):
            if not shape.get("ok") and not any(
                c.get("ok") is False for c in result.get("checks", {}).values()
            ):  # a failed shape whose precision check passed: its own problem
                problems.append(f"{option}: measuring {' '.join(shape['overrides'])} failed: {shape.get('error')}")

    estimate = _estimate(plan, results, measured, args.measure)
    report = _report(plan, options, results, estimate)
    report_lines = [*report, *(f"problem: {p}" for p in problems)]
    print("\n".join(report_lines))
    payload = {
        "overrides": list(args.overrides),
        "sweep_dir": str(plan.fixed_sweep_dir) if plan.fixed_sweep_dir else None,
        "steps": args.steps,
        "frameworks": results,
        "estimate": estimate,
        "problems": problems,
        "seconds": time.perf_counter() - tic,
    }
    write_json(out_path, payload)
    print(f"written: {out_path}")
    return 1 if problems else 0


def _estimate(plan: Plan, results: dict, measured: dict, measure: str) -> dict:
    gpu = any("cuda" in str(r.get("device", "")).lower() for r in results.values())
    unit = "GPU-hours" if gpu else "CPU-hours"
    runs, total, counts = [], 0.0, {"runs": len(plan.runs), "completed": 0, "estimated": 0, "not_estimated": 0}
    for run in plan.runs:
        row: dict = {"run_dir": run["run_dir"], "option": run["option"], "completed": run["completed"]}
        counts["completed"] += run["completed"]
        cfg = run["cfg"]
        shape = measured.get(run["option"], {}).get(_shape(cfg))
        if shape is None:
            row["seconds"] = None
            row["why"] = (
                "engine not installed"
                if run["missing"]
                else "not measured" + (" (--measure first)" if measure == "first" else "")
            )
        else:  # a completed run's time is shown too, but left out of the total
            seconds, how = _run_seconds(cfg, shape)
            row.update(seconds=seconds, **how)
        if not run["completed"]:
            counts["estimated" if shape is not None else "not_estimated"] += 1
            total += row["seconds"] or 0.0
        runs.append(row)
    return {"unit": unit, "hours": total / 3600, **counts, "runs_detail": runs}


def _report(plan: Plan, options: list[str], results: dict, estimate: dict) -> list[str]:
    header = (
        "framework",
        "device",
        "mode",
        "fp32",
        "amp16",
        "bf16",
        "float32 policy",
        "determinism",
        "img/s",
        "per run",
    )
    rows = []
    per_option: dict[str, list[float]] = {}
    for r in estimate["runs_detail"]:
        if r.get("seconds") is not None:
            per_option.setdefault(r["option"], []).append(r["seconds"])
    for option in options:
        res = results.get(option, {})
        if not res.get("installed", True):
            rows.append((option, "not installed", *["-"] * (len(header) - 2)))
            continue
        env = res.get("environment") or {}
        ips = [s["images_per_second"] for s in res.get("shapes", []) if s.get("ok")]
        times = per_option.get(option, [])
        rows.append(
            (
                option,
                str(res.get("device", "?")),
                str(res.get("mode", "?")),
                *(_check_cell(res.get("checks", {}).get(name)) for name in CHECKS),
                _float32_cell(env.get("float32_policy")),
                _determinism_cell(env.get("determinism")),
                "/".join(f"{v:.0f}" for v in ips) or "-",
                (_hours(min(times)) + ("" if max(times) == min(times) else f"-{_hours(max(times))}")) if times else "-",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    for option in options:
        res = results.get(option, {})
        for name, check in (res.get("checks") or {}).items():
            if check.get("precision"):
                losses = ", ".join(f"{v:.3f}" for v in check.get("losses") or [])
                lines.append(f"  {option} {name}: {check['precision']}" + (f" (loss {losses})" if losses else ""))
        for fact, text in (res.get("facts") or {}).items():
            if text:
                lines.append(f"  {option} {fact}: {text}")
        threads = (res.get("environment") or {}).get("cpu_threads")
        if isinstance(threads, dict) and threads.get("allowed") is not None:
            lines.append(f"  {option} cpu threads: {threads['allowed']} ({threads.get('source', '?')})")
        for shape in res.get("shapes", []):
            if shape.get("ok"):
                lines.append(
                    f"  {option} {shape['shape']}: {shape['images_per_second']:.0f} "
                    f"train / {shape['eval_images_per_second']:.0f} eval images/s over {shape['timed_images']} images, "
                    f"warm-up epoch {shape['warmup_seconds']:.1f} s"
                )
    e = estimate
    pending = e["runs"] - e["completed"]
    lines.append(
        f"estimate: {e['runs']} runs in the sweep, {e['completed']} already completed (left out), "
        f"{pending} to run: {e['hours']:.2f} {e['unit']} for the {e['estimated']} estimated"
        + (f"; {e['not_estimated']} not estimated" if e["not_estimated"] else "")
    )
    return lines
