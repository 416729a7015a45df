"""Find the runs of a sweep and reduce each to one row of results.csv.

A sweep directory holds run directories at any depth (Hydra's multirun subfolders,
stage folders, runs reused from an earlier stage through symbolic links). A run
directory is recognised by ``summary.json``, ``status.json`` or ``.hydra/config.yaml``;
the run's key (benchmark.spec.runkey) comes from ``summary.json`` and, for a run that
died before writing it, from the saved config; its variant (the overrides outside the
key) from ``summary.json`` or, for runs made before it was recorded, from where it
lies. Every run is listed, whatever its state; only the analysis (``stats``)
restricts itself to completed runs.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmark.analysis.time_to_accuracy import ordered, run_targets, time_to_accuracy
from benchmark.files import read_json, read_regular
from benchmark.run.metrics import CORE_COLUMNS, METRICS_COLUMNS
from benchmark.run.rundir import STATES
from benchmark.spec.runkey import (
    KEY,
    MODE_FIELD,
    PAIR_FIELD,
    VARIANT_FIELD,
    key_of_record,
    key_of_saved_config,
    variant_of_path,
)

REPORT_DIRNAME = "report"
RESULTS_COLUMNS = (
    *KEY,
    VARIANT_FIELD,  # overrides outside the key ("" for the protocol's runs): never paired across
    "acc_best",
    "f1_best",
    "test_accuracy",
    "test_macro_f1",
    "epoch_best",
    "time_per_epoch_avg",
    "time_per_epoch_avg_late",
    "images_per_sec_avg",
    "images_per_sec_avg_late",
    # an epoch's wall time over its training time (metrics.csv's timing; NaN for runs before it)
    "epoch_wall_over_train",
    "state",
    "epochs_done",
    "run_dir",
    "modified_at",  # the latest modification of its status, test and metrics files (UTC): "newest" of duplicates
    "data_fingerprint",  # of the prepared data the run saw (summary.json)
    # performance facts of the run (summary.json): results of different execution modes
    # (eager, compiled, graph, XLA) are compared separately, never pooled
    MODE_FIELD,
    "first_epoch_overhead_seconds",
    "startup_seconds",
    "peak_host_rss_bytes",
    "accelerator_peak_bytes",
    "note",  # what is wrong with the run's files (a damaged metrics.csv), "" when nothing
)
PERFORMANCE_COLUMNS = RESULTS_COLUMNS[RESULTS_COLUMNS.index(MODE_FIELD) : RESULTS_COLUMNS.index("note")]
# Files that make a directory a run directory (besides .hydra/config.yaml).
RUN_MARKERS = {"summary.json", "status.json"}
# The results.csv columns that come from metrics.csv (see epoch_summary).
EPOCH_COLUMNS = (
    "acc_best",
    "f1_best",
    "epoch_best",
    "time_per_epoch_avg",
    "time_per_epoch_avg_late",
    "images_per_sec_avg",
    "images_per_sec_avg_late",
    "epoch_wall_over_train",
)
# The state of a run that has no status.json and no test.json (or claims to be
# completed without a test result): it cannot enter the statistics.
INCOMPLETE = "incomplete"


@dataclass
class Sweep:
    """Everything the report is made of, read once from the run directories."""

    root: Path
    results: pd.DataFrame  # RESULTS_COLUMNS, one row per run
    curves: pd.DataFrame  # KEY + variant + state + run_dir + METRICS_COLUMNS, one row per run and epoch
    environments: dict[str, dict | None]  # run_dir -> env.json (None where missing)


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Run directories under `sweep_dir` (itself included), in sorted order.

    Run directories may nest: a run launched with extra overrides (``epochs=3``) lives
    in a sub-directory of its key's directory (conf/config.yaml), so the search goes on
    below a run directory, skipping its checkpoints. Each real directory is visited once
    (a link loop ends there). Symbolic links are followed within the sweep; a link out of
    it counts only where it points at a run directory itself (a sweep may link runs it
    reuses) and is not searched: a link to / or to someone's home brings nothing in.
    Hidden folders (.hydra, .submitit, temporary reports) and the report are skipped.
    """
    base = os.path.realpath(sweep_dir)
    found, seen = [], set()

    def is_run(here: Path, files) -> bool:
        return bool(RUN_MARKERS & set(files)) or (here / ".hydra" / "config.yaml").is_file()

    for root, dirs, files in os.walk(sweep_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        here = Path(root)
        if os.path.commonpath([base, real]) != base:  # reached through a link out of the sweep
            dirs[:] = []
            if is_run(here, files):
                found.append(here)
            continue
        if is_run(here, files):
            found.append(here)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in (REPORT_DIRNAME, "checkpoints"))
    return sorted(found)


MAX_YAML_BYTES = 16 << 20  # Hydra's records of a run or a sweep are kilobytes


def read_yaml(path: Path) -> object:
    """A YAML record (a run's .hydra/config.yaml, a sweep's multirun.yaml) through
    yaml.safe_load, read as read_json reads: never through a link nor from a device,
    bounded; None where missing, unreadable or not YAML."""
    try:
        return yaml.safe_load(read_regular(path, MAX_YAML_BYTES).decode())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _config_key(run_dir: Path) -> dict:
    """The run key from `.hydra/config.yaml`, for runs that never wrote summary.json.

    Read as plain YAML: the key fields are literal values in Hydra's saved config,
    and nothing else in it is needed."""
    cfg = read_yaml(run_dir / ".hydra" / "config.yaml")
    return key_of_saved_config(cfg) if isinstance(cfg, dict) else {}


def run_key(run_dir: Path, summary: dict) -> dict:
    """The run key: summary.json first, the saved config as fallback."""
    complete = all(summary.get(name) is not None for name in KEY)
    return key_of_record(summary, None if complete else _config_key(run_dir))


def run_state(status: dict | None, test: dict | None) -> str:
    """running / completed / failed from status.json; without it, completed only if
    test.json exists. A run claiming completion without a test result is incomplete."""
    state = (status or {}).get("state")
    if state not in STATES:
        state = "completed" if test is not None else INCOMPLETE
    if state == "completed" and test is None:
        return INCOMPLETE
    return state


# one row per epoch, well under 1 KiB each: a file past this is not a run's metrics.csv
MAX_METRICS_BYTES = 64 << 20


def read_metrics_checked(path: Path) -> tuple[pd.DataFrame, str]:
    """(metrics.csv sorted by epoch, the last row of a repeated epoch winning; "" or what
    is damaged). Only rows with every field present and numeric are kept, so a file cut
    mid-row (a full disk, a copy interrupted) still gives its intact epochs; a file
    that is not in the metrics.csv format gives no rows. Absent: no rows, no damage."""
    empty = pd.DataFrame(columns=list(METRICS_COLUMNS), dtype=float)
    try:
        lines = read_regular(path, MAX_METRICS_BYTES).decode(errors="replace").splitlines()
    except FileNotFoundError:
        return empty, ""
    except OSError as exc:  # a link, a device or FIFO, too large: read as nothing (docs/security.md)
        return empty, f"metrics.csv unreadable ({exc.strerror or exc})"
    header = next(csv.reader(lines[:1]), [])
    if not set(CORE_COLUMNS) <= set(header):
        return empty, "metrics.csv is not in the metrics.csv format (no header row of its columns): no epochs read"
    rows, damaged = [], []
    for number, fields in enumerate(csv.reader(lines[1:]), start=2):
        if not fields:
            continue
        try:
            if len(fields) != len(header):
                raise ValueError
            # the timing columns are newer (absent in older runs) and blank in an epoch cut short
            rows.append(
                {
                    name: float(value) if value or name in CORE_COLUMNS else np.nan
                    for name, value in zip(header, fields, strict=True)
                    if name in METRICS_COLUMNS
                }
            )
        except ValueError:
            damaged.append(number)
    metrics = pd.DataFrame(rows, columns=list(METRICS_COLUMNS), dtype=float) if rows else empty
    metrics = metrics.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)
    note = ""
    if damaged:
        shown = ", ".join(map(str, damaged[:5])) + (", ..." if len(damaged) > 5 else "")
        note = (
            f"metrics.csv damaged: {len(damaged)} unreadable row(s) (line {shown}) left out, "
            f"{len(metrics)} intact epoch(s) read"
        )
    return metrics, note


def read_metrics(path: Path) -> pd.DataFrame:
    """The intact rows of metrics.csv (read_metrics_checked without the damage report)."""
    return read_metrics_checked(path)[0]


def late_window(n_epochs: int) -> int:
    """How many final epochs form "the last 50%": ceil(n / 2), so one epoch counts as late."""
    return math.ceil(n_epochs / 2)


def epoch_summary(metrics: pd.DataFrame, images_per_epoch: float | None) -> dict:
    """The per-run numbers derived from metrics.csv.

    - acc_best: the highest val_accuracy; epoch_best: the first epoch reaching it (the
      engine keeps the first best checkpoint, replacing it only on a strict gain);
      f1_best: val_macro_f1 of that epoch.
    - Throughput: each epoch's rate is images_per_epoch / epoch_time_seconds
      (batches x batch_size / training time, docs/protocol.md §7), and images_per_sec_avg is the
      mean of these per-epoch rates (rates are averaged, not total images divided by
      total time), so every epoch weighs the same. The ``_late`` variants average the
      last ceil(n/2) epochs only, leaving out the first epochs' compilation and
      warm-up overhead. A non-positive epoch time gives no rate.
    """
    if metrics.empty:
        return dict.fromkeys(EPOCH_COLUMNS, np.nan)
    accuracy = metrics["val_accuracy"].to_numpy(float)
    best = int(np.nanargmax(accuracy)) if np.isfinite(accuracy).any() else None
    seconds = metrics["epoch_time_seconds"].where(metrics["epoch_time_seconds"] > 0)
    rates = (images_per_epoch / seconds) if images_per_epoch else pd.Series(np.nan, index=seconds.index)
    late = late_window(len(metrics))
    return {
        "acc_best": metrics["val_accuracy"].iloc[best] if best is not None else np.nan,
        "f1_best": metrics["val_macro_f1"].iloc[best] if best is not None else np.nan,
        "epoch_best": int(metrics["epoch"].iloc[best]) if best is not None else np.nan,
        "time_per_epoch_avg": seconds.mean(),
        "time_per_epoch_avg_late": seconds.iloc[-late:].mean(),
        "images_per_sec_avg": rates.mean(),
        "images_per_sec_avg_late": rates.iloc[-late:].mean(),
        "epoch_wall_over_train": wall_over_train(metrics),
    }


def wall_over_train(metrics: pd.DataFrame) -> float:
    """Σ epoch wall time / Σ training time over the epochs that recorded both (NaN where
    none did): 1.0 means nothing but training; 1.25, a fifth of the wall time outside the steps."""
    if "epoch_wall_seconds" not in metrics:
        return np.nan
    timed = metrics.dropna(subset=["epoch_wall_seconds"])
    train = timed["epoch_time_seconds"].sum()
    return float(timed["epoch_wall_seconds"].sum() / train) if len(timed) and train > 0 else np.nan


def modified_at(run_dir: Path) -> str:
    """ISO time (UTC) of the last change to the run's status, test result or metrics ("" if none)."""
    times = []
    for name in ("status.json", "test.json", "metrics.csv", "summary.json"):
        try:
            times.append((run_dir / name).stat().st_mtime)
        except OSError:
            pass
    if not times:
        return ""
    return pd.Timestamp(max(times), unit="s", tz="UTC").isoformat(timespec="microseconds")


def read_run(run_dir: Path, sweep_dir: Path) -> tuple[dict, pd.DataFrame, dict | None]:
    """(results row, per-epoch metrics tagged with the run's key, env.json) of one run."""
    summary = read_json(run_dir / "summary.json") or {}
    test = read_json(run_dir / "test.json")
    metrics, damage = read_metrics_checked(run_dir / "metrics.csv")
    key = run_key(run_dir, summary)
    relative = run_dir.relative_to(sweep_dir).as_posix() if run_dir != sweep_dir else "."
    variant = summary.get(VARIANT_FIELD)
    state = run_state(read_json(run_dir / "status.json"), test)
    row = {
        **key,
        VARIANT_FIELD: variant if variant is not None else variant_of_path(relative, key),
        **epoch_summary(metrics, summary.get("images_per_epoch")),
        **time_to_accuracy(metrics, run_targets(summary, key.get("dataset")), completed=state == "completed"),
        "test_accuracy": (test or {}).get("test_accuracy", np.nan),
        "test_macro_f1": (test or {}).get("test_macro_f1", np.nan),
        "state": state,
        "epochs_done": len(metrics),
        "run_dir": relative,
        "modified_at": modified_at(run_dir),
        "data_fingerprint": summary.get("data_fingerprint") or "",
        **{name: summary.get(name, np.nan) for name in PERFORMANCE_COLUMNS},
    }
    row[MODE_FIELD] = summary.get(MODE_FIELD) or "unknown"
    row["note"] = damage
    tags = {name: row[name] for name in (*KEY, VARIANT_FIELD, "state", "run_dir")}
    return row, metrics.assign(**tags), read_json(run_dir / "env.json")


def results_columns(rows: list[dict]) -> list[str]:
    """RESULTS_COLUMNS with the time-to-accuracy columns of the runs' targets after the throughput."""
    at = RESULTS_COLUMNS.index("images_per_sec_avg_late") + 1
    return [*RESULTS_COLUMNS[:at], *ordered({c for row in rows for c in row}), *RESULTS_COLUMNS[at:]]


def collect(sweep_dir: str | Path) -> Sweep:
    """Read every run of the sweep; results sorted by key so the CSV diffs cleanly."""
    root = Path(sweep_dir)
    rows, curves, environments = [], [], {}
    for run_dir in find_run_dirs(root):
        row, metrics, env = read_run(run_dir, root)
        rows.append(row)
        if not metrics.empty:
            curves.append(metrics)
        environments[row["run_dir"]] = env
    results = pd.DataFrame(rows, columns=results_columns(rows))
    results = results.sort_values([*KEY, "run_dir"], na_position="last", ignore_index=True)
    results[PAIR_FIELD] = results[PAIR_FIELD].astype("Int64")
    results["epoch_best"] = results["epoch_best"].astype("Int64")
    curve_columns = [*KEY, VARIANT_FIELD, "state", "run_dir", *METRICS_COLUMNS]
    all_curves = pd.concat(curves, ignore_index=True)[curve_columns] if curves else pd.DataFrame(columns=curve_columns)
    return Sweep(root, results, all_curves, environments)
