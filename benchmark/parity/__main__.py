"""`python -m benchmark.parity [--out DIR | out=DIR] [--arms A,B,...] [overrides...]`: audit one configuration.

    python -m benchmark.parity model=resnet50 dataset=cifar10
    python -m benchmark.parity model=convnext_tiny dataset=tiny_imagenet --out reports/parity
    python -m benchmark.parity --arms pytorch,keras_torch      # the API effect's two arms only

Overrides are the benchmark's own Hydra overrides (model=, dataset=, precision=,
optim.*, batch_size=, ...), composed with the real conf/; ``framework=`` is irrelevant:
the arms are the framework options of --arms (default: every conf/framework option,
each Keras engine included; Keras on JAX and on torch are built in a process each).
Writes ``parity_<model>_<dataset>.md`` and ``.csv`` into DIR
(default: ``parity/`` under the current directory). A bad override or option is a
one-line error and exit status 2. No dataset files are needed.
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmark import BenchmarkError
from benchmark.parity.audit import CATEGORIES, INTRO, audit
from benchmark.parity.configure import audit_schedule, compose_config
from benchmark.parity.report import summary_counts, write_reports
from benchmark.spec.config import framework_options
from benchmark.spec.runkey import arm_name, key_of_config

USAGE = __doc__.split("\n\n")[0] + "\n" + __doc__.split("\n\n", 1)[1]
DEFAULT_OUT = Path("parity")


def parse_args(argv: list[str]) -> tuple[list[str], Path, list[str]]:
    out = DEFAULT_OUT
    arms = framework_options()
    overrides: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        if arg == "--out":
            if not args:
                raise BenchmarkError("--out needs a directory")
            out = Path(args.pop(0))
        elif arg.startswith("--out="):
            out = Path(arg.split("=", 1)[1])
        elif arg.startswith("out="):
            out = Path(arg.split("=", 1)[1])
        elif arg == "--arms" or arg.startswith("--arms="):
            text = arg.split("=", 1)[1] if "=" in arg else (args.pop(0) if args else "")
            arms = [a for a in text.split(",") if a]
            unknown = [a for a in arms if a not in framework_options()]
            if len(arms) < 2 or unknown or len(set(arms)) != len(arms):
                raise BenchmarkError(
                    f"--arms {text}: give two or more different framework options, comma-separated; "
                    f"valid: {', '.join(framework_options())}"
                )
        elif arg.startswith("-"):
            raise BenchmarkError(f"unknown option {arg}; usage: python -m benchmark.parity [--out DIR] [overrides...]")
        else:
            overrides.append(arg)
    return overrides, out, arms


def run(argv: list[str]) -> tuple[list, Path, Path]:
    overrides, out, options = parse_args(argv)
    cfg = compose_config(overrides)
    schedule, n_train, source = audit_schedule(cfg)
    # one config per arm, composed as a run of that framework option would be
    composed = [compose_config([*overrides, f"framework={option}"]) for option in options]
    configs = {arm_name(key_of_config(c)): c for c in composed}

    start = time.perf_counter()
    arms, findings = audit(configs, schedule)
    seconds = time.perf_counter() - start
    ds = cfg.dataset
    environments = _versions()
    header = {
        "model": cfg.model.name,
        "dataset": f"{ds.name} ({ds.image_size}x{ds.image_size}, {ds.num_classes} classes)",
        "precision": cfg.precision.name,
        "arms": ", ".join(arms),
        "protocol": f"batch {cfg.batch_size} (x{cfg.grad_accum_steps} accumulation), {cfg.epochs} epochs, "
        f"SGD lr {cfg.optim.lr} x batch/{cfg.optim.lr_reference_batch}, momentum {cfg.optim.momentum}, "
        f"nesterov {cfg.optim.nesterov}, weight decay {cfg.optim.weight_decay}",
        "training images": f"{n_train:,} ({source})",
        "overrides": " ".join(overrides) or "none",
        "versions": ", ".join(f"{k} {v}" for k, v in environments.items()),
        "command": "python -m benchmark.parity " + " ".join(argv),
        "audit time": f"{seconds:.1f} s",
    }
    md, csv_path = write_reports(arms, findings, out, cfg.model.name, ds.name, header, INTRO, CATEGORIES)
    counts = summary_counts(findings)
    print(
        f"{cfg.model.name} on {ds.name}: {counts['checked']} items checked, {counts['differ']} differ "
        f"(+{counts['info']} informational)"
    )
    for f in findings:
        if f.kind == "check" and not f.same:
            print(f"  differs  {f.category}: {f.item}")
    print(f"-> {md}\n-> {csv_path}")
    return findings, md, csv_path


def _versions() -> dict:
    """Versions of the frameworks the arms use (read from the installed packages: an
    engine built in its own process is not imported here)."""
    found = {}
    for package in ("torch", "torchvision", "tensorflow", "keras", "jax"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def main(argv: list[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
