"""`python -m benchmark.status SWEEP_DIR`: where every run of a sweep is, now.

One line per run (its directory, which is its key): state, epochs done, best val
accuracy so far, images/s, elapsed time of its current (or last) launch and an ETA;
on SLURM also the job id and the scheduler's state of it (from `squeue`, or `sacct`
once the job has left the queue; absent where neither command is available). Then
the totals per state and an ETA for the sweep (runs whose job is still queued counted),
and the report job of each detached launch (`hydra.launcher.wait=false`) with its
state. `--watch` redraws it every N seconds.

It only reads: run files are never written, and the liveness of a run is probed
through the lock its process holds (benchmark.run.rundir.RunDir.exclusive), which a
shared lock taken for an instant does not disturb. A run whose status.json says
`running` is shown `stalled` when no process holds its lock (it was killed, or its
node died) or when none of its files changed for `--stalled-after` seconds (a hung
process); launching the sweep again resumes it. A run whose files are damaged (a JSON
file cut or not an object, metrics.csv with unreadable rows) is shown `damaged`, with
what is wrong in its note.
"""

from __future__ import annotations

import argparse
import fcntl
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchmark.analysis.runs import find_run_dirs, read_metrics_checked, run_state, wall_over_train
from benchmark.files import read_json
from benchmark.run.rundir import LOCK_NAME, RunDir
from benchmark.sweep.callback import JOBS_DIR, listed_run_dirs

SLURM_JOBS_FILE = "slurm_jobs.json"  # run directory -> SLURM job id, written by the slurm_a40 launcher
NOT_STARTED = "not started"
STALLED = "stalled"
DAMAGED = "damaged"
# default for --stalled-after: an epoch of the real datasets on a slow node takes minutes,
# and the log gets a progress line every few dozen steps
STALLED_AFTER_SECONDS = 900.0
ORDER = ("running", STALLED, "interrupted", NOT_STARTED, "failed", DAMAGED, "incomplete", "completed")


@dataclass
class RunStatus:
    run: str  # directory relative to the sweep: the run key
    state: str
    epoch: int = 0
    epochs: int | None = None
    best_val_accuracy: float | None = None
    images_per_sec: float | None = None
    elapsed_seconds: float | None = None
    eta_seconds: float | None = None
    seconds_per_epoch: float | None = None
    train_share: float | None = None  # of the epochs' wall time, the training steps' (metrics.csv timing)
    job_id: str = ""
    scheduler_state: str = ""
    note: str = ""
    quiet_seconds: float | None = None  # since any of its files last changed


def _timestamp(text: str | None) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp() if text else None
    except ValueError:
        return None


def _mapping(value):
    """A JSON file's object, None for anything else (a damaged file is shown, not fatal)."""
    return value if isinstance(value, dict) else None


def lock_is_held(run_dir: Path) -> bool | None:
    """Whether a live process holds the run's lock (None: cannot tell)."""
    try:
        # for reading, never through a link, never blocking on a FIFO: nothing is written or waited for
        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def _last_change(run_dir: Path) -> float | None:
    times = []
    for name in ("run.log", "metrics.csv", "status.json"):
        try:
            times.append((run_dir / name).stat().st_mtime)
        except OSError:
            pass
    return max(times) if times else None


def _damage(rd: RunDir) -> list[str]:
    """What is wrong with the run's JSON files: each, where present, a JSON object (read
    as read_json reads it: never through a link, never more than a JSON file's size)."""
    return [
        f"{path.name} is damaged (not a readable JSON object)"
        for path in (rd.status, rd.summary, rd.test, rd.env)
        if (path.exists() or path.is_symlink()) and read_json(path) is None
    ]


def run_status(run_dir: Path, sweep_dir: Path, stalled_after: float, now: float) -> RunStatus:
    rd = RunDir(run_dir)
    status, test, summary = (_mapping(read()) for read in (rd.read_status, rd.read_test, rd.read_summary))
    summary = summary or {}
    relative = os.path.relpath(run_dir, sweep_dir)
    # only the run's own file: a planted link (to /dev/zero, to someone's file) is read as damaged, never followed
    metrics, metrics_damage = read_metrics_checked(run_dir / "metrics.csv")
    damage = _damage(rd) + ([metrics_damage] if metrics_damage else [])
    if status is None and test is None and not damage:
        return RunStatus(relative, NOT_STARTED)
    state = run_state(status, test)
    status = status or {}
    progress = status.get("progress") or {}
    rows = metrics.to_dict("records")
    accuracies = [r["val_accuracy"] for r in rows if r["val_accuracy"] == r["val_accuracy"]]
    row = RunStatus(
        relative,
        state,
        epoch=len(rows),
        epochs=summary.get("epochs") or progress.get("epochs"),
        best_val_accuracy=max(accuracies) if accuracies else None,
        images_per_sec=progress.get("images_per_sec"),
        seconds_per_epoch=progress.get("seconds_per_epoch"),
        job_id=str(status.get("slurm_array_task") or status.get("slurm_job_id") or ""),
    )
    ratio = wall_over_train(metrics)
    row.train_share = 1 / ratio if ratio == ratio and ratio > 0 else None  # NaN: no epoch recorded its timing
    if row.images_per_sec is None and rows and summary.get("images_per_epoch") and rows[-1]["epoch_time_seconds"] > 0:
        row.images_per_sec = summary["images_per_epoch"] / rows[-1]["epoch_time_seconds"]
    started, updated = _timestamp(status.get("started_at")), _timestamp(status.get("updated_at"))
    last = _last_change(run_dir)
    row.quiet_seconds = now - last if last is not None else None
    if damage and state != "running":  # a running run rewrites its files: damage shows in its note only
        row.state, row.note = DAMAGED, "; ".join(damage)[:300]
    elif state == "running":
        row.elapsed_seconds = now - started if started else None
        held = lock_is_held(run_dir)
        if held is False:
            row.state, row.note = STALLED, "no live process holds the run (killed or node lost): launch the sweep again"
        elif row.quiet_seconds is not None and row.quiet_seconds > stalled_after:
            row.state, row.note = STALLED, f"no output for {_duration(row.quiet_seconds)}"
        elif row.epochs and row.seconds_per_epoch:
            row.eta_seconds = max(0.0, (row.epochs - row.epoch) * row.seconds_per_epoch)
        row.note = row.note or "; ".join(damage)[:300]
    else:
        row.elapsed_seconds = updated - started if started and updated else None
        if state == "completed":
            row.eta_seconds = 0.0
        elif state == "interrupted":
            row.note = f"{status.get('signal', 'a signal')}: launch the sweep again to resume"
        elif status.get("reason"):
            row.note = str(status["reason"]).splitlines()[0][:120]
    return row


def sweep_run_dirs(sweep_dir: Path) -> list[Path]:
    """The runs of the sweep's job list (those not started yet included) and every run
    directory found below it."""
    listed = listed_run_dirs(sweep_dir) or []
    listed += [Path(d) for d in (read_json(sweep_dir / SLURM_JOBS_FILE) or {})]
    # the job lists are files in a (maybe shared) sweep directory: a run they name outside it is not this sweep's
    base = os.path.realpath(sweep_dir)
    listed = [d for d in listed if os.path.commonpath([base, os.path.realpath(d)]) == base]
    found = find_run_dirs(sweep_dir) if sweep_dir.is_dir() else []
    unique = {os.path.realpath(d): d for d in [*listed, *found]}
    return sorted(unique.values())


def scheduler_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: SLURM state} from squeue (queued and running jobs), then sacct for the
    rest; {} where SLURM's commands are absent or fail."""
    states: dict[str, str] = {}
    if not job_ids:
        return states
    ids = ",".join(sorted(set(job_ids)))
    if shutil.which("squeue"):
        for line in _lines(["squeue", "-h", "-r", "-j", ids, "-o", "%i %T"]):
            job, _, state = line.partition(" ")
            states[job] = state.strip()
    missing = sorted(set(job_ids) - set(states))
    if missing and shutil.which("sacct"):
        for line in _lines(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)]):
            job, _, state = line.partition("|")
            states.setdefault(job, state.split()[0] if state else "")
    return states


def _lines(cmd: list[str]) -> list[str]:
    try:
        out = subprocess.run(  # noqa: S603  squeue/sacct with job ids as arguments, no shell
            cmd, capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


@dataclass
class ReportJob:
    """The report job of one detached launch: it runs once the launch's job array has ended."""

    job_id: str
    array: str
    state: str = ""


def report_jobs(sweep_dir: Path) -> list[ReportJob]:
    """The report job of every detached launch into the sweep directory, oldest first, with
    SLURM's state of it."""
    jobs = []
    for path in sorted((sweep_dir / JOBS_DIR).glob("*.json")):
        launch = read_json(path) or {}
        if launch.get("report_job"):
            jobs.append(ReportJob(str(launch["report_job"]), str(launch.get("slurm_array", ""))))
    states = scheduler_states([j.job_id for j in jobs])
    for job in jobs:
        job.state = states.get(job.job_id, "")
    return jobs


def collect(sweep_dir: Path, stalled_after: float = STALLED_AFTER_SECONDS) -> list[RunStatus]:
    now = time.time()
    rows = [run_status(d, sweep_dir, stalled_after, now) for d in sweep_run_dirs(sweep_dir)]
    submitted = read_json(sweep_dir / SLURM_JOBS_FILE) or {}
    by_dir = {os.path.realpath(d): str(job) for d, job in submitted.items()}
    for row in rows:
        # the job submitted last for the run (a failed run's new job, still queued) before the one it last ran in
        row.job_id = by_dir.get(os.path.realpath(sweep_dir / row.run)) or row.job_id
    states = scheduler_states([r.job_id for r in rows if r.job_id])
    for row in rows:
        row.scheduler_state = states.get(row.job_id, "")
    return rows


def sweep_eta(rows: list[RunStatus]) -> float | None:
    """Seconds until the sweep ends, roughly: the work left (running runs' remaining
    epochs, and for each run waiting to start the median run length seen so far) shared
    by as many runs as run at once now (at least one); None before any epoch has a time.
    A run waits when it has not started or its job is queued (a failed run submitted
    again); other stalled and failed runs are left out: they end only when launched again."""
    per_epoch = [r.seconds_per_epoch for r in rows if r.seconds_per_epoch]
    running = [r for r in rows if r.state == "running"]
    waiting = [r for r in rows if r.state != "running" and (r.state == NOT_STARTED or r.scheduler_state in WAITING)]
    if not running and not waiting:
        return 0.0
    if not per_epoch or not in_progress(rows):
        return None
    typical_epochs = statistics.median([r.epochs for r in rows if r.epochs] or [1])
    left = [
        r.eta_seconds if r.eta_seconds is not None else typical_epochs * statistics.median(per_epoch) for r in running
    ]
    work = sum(left) + len(waiting) * typical_epochs * statistics.median(per_epoch)
    return max(max(left, default=0.0), work / max(1, len(running)))


# SLURM states of a job that will still run (squeue's long names)
QUEUED = {"PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED"}
WAITING = QUEUED - {"RUNNING"}  # queued, not started yet


def in_progress(rows: list[RunStatus]) -> bool:
    """Whether anything still moves: a run training, or a job queued or running on SLURM."""
    return any(r.state == "running" or r.scheduler_state in QUEUED for r in rows)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def render(sweep_dir: Path, rows: list[RunStatus], reports: list[ReportJob] | None = None) -> str:
    """The table, the report jobs, the totals and the sweep's ETA."""
    reports = reports or []
    slurm = any(r.job_id for r in rows)
    header = (
        ["run", "state", "epoch", "best_val", "img/s", "train%", "elapsed", "eta"]
        + (["job", "slurm"] if slurm else [])
        + ["note"]
    )
    table = []
    for r in sorted(rows, key=lambda r: (ORDER.index(r.state) if r.state in ORDER else len(ORDER), r.run)):
        cells = [
            r.run,
            r.state,
            f"{r.epoch}/{r.epochs}" if r.epochs else (str(r.epoch) if r.epoch else "-"),
            f"{r.best_val_accuracy:.4f}" if r.best_val_accuracy is not None else "-",
            f"{r.images_per_sec:.0f}" if r.images_per_sec else "-",
            f"{100 * r.train_share:.0f}%" if r.train_share is not None else "-",
            _duration(r.elapsed_seconds),
            _duration(r.eta_seconds),
        ]
        if slurm:
            cells += [r.job_id or "-", r.scheduler_state or "-"]
        table.append(cells + [r.note])
    widths = [max(len(str(c)) for c in column) for column in zip(header, *table, strict=True)]
    lines = [f"sweep {sweep_dir}  ({time.strftime('%Y-%m-%d %H:%M:%S')})"]
    for cells in [header, *table]:
        lines.append(
            "  ".join(str(c).ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)) + "  " + str(cells[-1])
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    total = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: ORDER.index(s) if s in ORDER else 99))
    for job in reports:
        lines.append(
            f"report job {job.job_id} (sweep_status.csv and report/, after job array {job.array or '?'} ends): "
            f"{job.state or 'state unknown'}"
        )
    unfinished = any(r.state != "completed" for r in rows)
    queued = sum(r.scheduler_state in WAITING for r in rows)
    eta = (
        f"sweep ETA {_duration(sweep_eta(rows))}" + (f" ({queued} job(s) queued)" if queued else "")
        if in_progress(rows) or not unfinished
        else "nothing in progress: launch the sweep again to continue it"
    )
    if not in_progress(rows) and any(job.state in QUEUED for job in reports):
        eta += "; the report job has yet to run"
    lines.append(f"{len(rows)} runs: {total or 'none found'}; {eta}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.status", description=__doc__.split("\n\n")[1])
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (or one run directory)")
    parser.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=10.0,
        metavar="SECONDS",
        help="redraw every SECONDS (default 10) until interrupted",
    )
    parser.add_argument(
        "--stalled-after",
        type=float,
        default=STALLED_AFTER_SECONDS,
        metavar="SECONDS",
        help=f"flag a running run whose files have not changed for this long (default {STALLED_AFTER_SECONDS:.0f})",
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"error: {args.sweep_dir} is not a directory: give a sweep directory such as multirun/quickstart",
            file=sys.stderr,
        )
        return 2
    if args.stalled_after <= 0 or (args.watch is not None and args.watch <= 0):
        print("error: --stalled-after and --watch take a positive number of seconds", file=sys.stderr)
        return 2
    try:
        while True:
            text = render(args.sweep_dir, collect(args.sweep_dir, args.stalled_after), report_jobs(args.sweep_dir))
            if args.watch is None:
                print(text)
                return 0
            print(("\033[H\033[2J" if sys.stdout.isatty() else "") + text, flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
