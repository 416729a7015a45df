"""End-of-sweep Hydra callback: list every run and its state, analyse, fail loudly.

Runs in the launching process after the sweep (also after a SLURM sweep), reads only
the run directories, and exits non-zero when any run of the sweep is not completed,
after printing one line per such run.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from benchmark.rundir import RunDir, atomic_write_text, read_json

log = logging.getLogger("benchmark.sweep")


JOBS_FILE = "sweep_jobs.json"  # the run directories of the last sweep launched here


def sweep_runs(sweep_dir: Path) -> list[dict]:
    """One row per run of the sweep just launched (all runs below `sweep_dir` if unknown).

    Only this sweep's jobs decide its exit status: a stale run of another sweep in a
    shared directory (stage 1 and 2 share one) must not fail the next launch.
    """
    from benchmark.analysis.runs import find_run_dirs, run_state

    jobs = read_json(sweep_dir / JOBS_FILE)
    run_dirs = [Path(d) for d in jobs["run_dirs"]] if jobs else find_run_dirs(sweep_dir)
    rows = []
    for run_dir in run_dirs:
        rd = RunDir(run_dir)
        status, test = rd.read_status(), rd.read_test()
        state = run_state(status, test) if status or test else "not started"
        reason = (status or {}).get("reason") or ""
        rows.append({
            "run": os.path.relpath(run_dir, sweep_dir),
            "state": state,
            "test_accuracy": test.get("test_accuracy", "") if state == "completed" else "",
            "reason": reason.splitlines()[0][:200] if reason else "",
        })
    return rows


def write_sweep_status(sweep_dir: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["run", "state", "test_accuracy", "reason"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = sweep_dir / "sweep_status.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def report(sweep_dir: Path, compare: list[str] | None = None) -> list[dict]:
    """Write sweep_status.csv (and the analysis report where available); return the unfinished runs."""
    rows = sweep_runs(sweep_dir)
    path = write_sweep_status(sweep_dir, rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    log.info("sweep %s: %d runs (%s); list in %s", sweep_dir, len(rows),
             ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), path)
    try:
        from benchmark.analyze import analyze
    except ImportError:
        analyze = None
    if analyze is not None and counts.get("completed"):
        log.info("analysis report: %s", analyze(sweep_dir, compare=compare))
    return [row for row in rows if row["state"] != "completed"]


class SweepReport(Callback):
    def __init__(self, compare: list[str] | None = None) -> None:
        # arm pairs "A:B" for the report (hydra.callbacks.sweep_report.compare); None: every two arms
        self.compare = list(compare) if compare else None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        unfinished = report(Path(config.hydra.sweep.dir), self.compare)
        if unfinished:
            lines = [f"{len(unfinished)} run(s) of the sweep did not complete:"]
            lines += [f"  {r['state']:<9} {r['run']}  {r['reason']}" for r in unfinished[:20]]
            if len(unfinished) > 20:
                lines.append(f"  ... and {len(unfinished) - 20} more in sweep_status.csv")
            lines.append("Launch the same sweep again to resume them (completed runs are skipped).")
            print("\n".join(lines))
            raise SystemExit(1)
