"""End-of-sweep Hydra callback: list every run and its state, analyse, fail loudly.

Runs in the launching process after the sweep (also after a SLURM sweep), reads only
the run directories, and exits non-zero when any run of the sweep is not completed,
after printing one line per such run. A detached SLURM launch (`hydra.launcher.wait=false`)
skips it: its report job runs it on the cluster once the runs have ended.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from benchmark.analysis.report import analyze
from benchmark.analysis.runs import find_run_dirs, run_state
from benchmark.analysis.summary import answer_text
from benchmark.files import atomic_write_text, read_json
from benchmark.run.rundir import RunDir

log = logging.getLogger("benchmark.sweep")


# One job list per launch (several sweeps may share a directory: stage 1 and stage 2 do),
# written by the resumable sweeper; a sweep is judged by its own list only.
JOBS_DIR = ".sweeps"
LEGACY_JOBS_FILE = "sweep_jobs.json"  # the single list of sweeps launched before
# the job list of the sweep launched by this process (set by the resumable sweeper), and
# "detached" where its runs were submitted without waiting for them (set by slurm_a40)
THIS_LAUNCH: dict = {}


def launch_jobs_file(sweep_dir: Path) -> Path:
    """A new job list for a launch by this process: <host>-<pid>-<time>.json."""
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"
    return Path(sweep_dir) / JOBS_DIR / name


def listed_run_dirs(sweep_dir: Path, jobs_file: Path | None = None) -> list[Path] | None:
    """The run directories of one launch's job list, or of every list in the sweep
    directory (None where there is none)."""
    files = (
        [jobs_file]
        if jobs_file
        else [*sorted((Path(sweep_dir) / JOBS_DIR).glob("*.json")), Path(sweep_dir) / LEGACY_JOBS_FILE]
    )
    lists = [read_json(f) for f in files if f.is_file()]
    if not any(lists):
        return None
    return list(dict.fromkeys(Path(d) for jobs in lists if jobs for d in jobs.get("run_dirs", [])))


def _row(run_dir: Path, sweep_dir: Path) -> dict:
    rd = RunDir(run_dir)
    status, test = rd.read_status(), rd.read_test()
    state = run_state(status, test) if status or test else "not started"
    reason = (status or {}).get("reason") or ""
    return {
        "run": os.path.relpath(run_dir, sweep_dir),
        "state": state,
        "test_accuracy": (test or {}).get("test_accuracy", "") if state == "completed" else "",
        "reason": reason.splitlines()[0][:200] if reason else "",
    }


def sweep_runs(sweep_dir: Path, jobs_file: Path | None = None) -> list[dict]:
    """One row per run of the launch whose job list is `jobs_file` (default: every
    launch's list; all runs below `sweep_dir` if there is none). Only a sweep's own
    jobs decide its exit status: another sweep sharing the directory may still be
    training its runs, and a stale run of an earlier one must not fail this launch."""
    listed = listed_run_dirs(sweep_dir, jobs_file)
    run_dirs = listed if listed is not None else find_run_dirs(sweep_dir)
    return [_row(run_dir, sweep_dir) for run_dir in run_dirs]


def write_sweep_status(sweep_dir: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["run", "state", "test_accuracy", "reason"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = sweep_dir / "sweep_status.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def report(
    sweep_dir: Path, compare: list[str] | None = None, plots: bool = True, declared: dict | None = None
) -> list[dict]:
    """Write sweep_status.csv (every run of the directory, whichever sweep launched it)
    and the analysis report where available; return this launch's unfinished runs."""
    everything = sweep_runs(sweep_dir)
    mine = THIS_LAUNCH.get("jobs_file")
    rows = sweep_runs(sweep_dir, mine) if mine and Path(mine).is_file() else everything
    path = write_sweep_status(sweep_dir, everything)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    log.info(
        "sweep %s: %d runs (%s); list in %s",
        sweep_dir,
        len(rows),
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        path,
    )
    if counts.get("completed"):
        written = analyze(sweep_dir, plots=plots, compare=compare, declared=declared)
        log.info("analysis report: %s", written)
        print(answer_text(written))  # the verdicts, where a sweep's output ends
    return [row for row in rows if row["state"] != "completed"]


class SweepReport(Callback):
    def __init__(self, compare: list[str] | None = None, plots: bool = True) -> None:
        # arm pairs "A:B" for the report (hydra.callbacks.sweep_report.compare); None: every two arms
        self.compare = list(compare) if compare else None
        self.plots = bool(plots)  # hydra.callbacks.sweep_report.plots (off in debug=smoke)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if THIS_LAUNCH.get("detached"):  # the runs have not run yet: the report job on the cluster calls this
            return
        # the margins this launch declared (analysis.margins), as the report's defaults
        margins = config.get("analysis", {}).get("margins")
        declared = OmegaConf.to_container(margins, resolve=True) if margins is not None else None
        unfinished = report(
            Path(config.hydra.sweep.dir), self.compare, self.plots, declared if isinstance(declared, dict) else None
        )
        if unfinished:
            lines = [f"{len(unfinished)} run(s) of the sweep did not complete:"]
            lines += [f"  {r['state']:<9} {r['run']}  {r['reason']}" for r in unfinished[:20]]
            if len(unfinished) > 20:
                lines.append(f"  ... and {len(unfinished) - 20} more in sweep_status.csv")
            lines.append("Launch the same sweep again to resume them (completed runs are skipped).")
            print("\n".join(lines))
            raise SystemExit(1)
