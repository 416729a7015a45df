"""The run directory contract.

A run directory (Hydra's output dir) holds ``.hydra/``, ``run.log``, ``metrics.csv``,
``checkpoints/{best,last}.<ext>``, ``test.json``, ``env.json``, ``status.json`` and
``summary.json`` (the run's key and the facts the analysis needs: images per epoch...).
Every file here is written to a temporary name and renamed, so a reader (or a run
killed mid-write) never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from benchmark import OtherRunError
from benchmark.files import open_lock, read_json, write_json

# interrupted: SIGTERM or SIGINT stopped it (benchmark.run.cli); like failed, it resumes when launched again
STATES = ("running", "completed", "failed", "interrupted")


def scheduler_job() -> dict:
    """The SLURM job this process runs in ({} outside SLURM): its own id, and the
    array id as squeue prints it (123_4) for a task of a job array."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return {"slurm_job_id": job, **({"slurm_array_task": f"{array}_{task}"} if array and task else {})}


log = logging.getLogger(__name__)
LOCK_NAME = ".run.lock"
# How long a launch waits for another live process on the same run before refusing:
# long enough for a node's NFS lock of a killed job to lapse, or a duplicate to finish.
LOCK_WAIT_SECONDS = float(os.environ.get("BENCHMARK_RUN_LOCK_WAIT", "120"))


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"
        self.metrics = self.root / "metrics.csv"
        self.test = self.root / "test.json"
        self.summary = self.root / "summary.json"
        self.env = self.root / "env.json"
        self.status = self.root / "status.json"

    def damaged_files(self) -> list[str]:
        """What is wrong with the run's JSON files (status, summary, test, env): each
        must be a JSON object where it exists."""
        problems = []
        for path in (self.status, self.summary, self.test, self.env):
            if not path.exists():
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                problems.append(f"{path.name} is not readable JSON")
                continue
            if not isinstance(data, dict):
                problems.append(f"{path.name} holds a JSON {type(data).__name__}, not an object")
        return problems

    def read_status(self) -> dict | None:
        return read_json(self.status)

    def read_summary(self) -> dict | None:
        return read_json(self.summary)

    def read_test(self) -> dict | None:
        return read_json(self.test)

    def set_status(self, state: str, **details) -> None:
        if state not in STATES:
            raise ValueError(f"run state {state!r} is not one of {STATES}")
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        previous = self.read_status() or {}
        status = {
            "state": state,
            "started_at": previous.get("started_at", now) if state != "running" else now,
            "updated_at": now,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            **scheduler_job(),
            **details,
        }
        if state != "running" and "progress" in previous:  # the last progress stays readable
            status.setdefault("progress", previous["progress"])
        write_json(self.status, status)

    def set_progress(self, **progress) -> None:
        """Where a running run is (epoch, epochs, best val accuracy, seconds per epoch),
        for `python -m benchmark.status`; written after every epoch."""
        status = self.read_status() or {}
        if status.get("state") == "running":
            status["progress"] = progress
            status["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            write_json(self.status, status)

    def fail_unreported(self, reason: str) -> dict | None:
        """Mark failed a run whose process ended without saying why (a signal, a killed
        SLURM job), unless it recorded its own failure; its status.json afterwards."""
        if (self.read_status() or {}).get("state") not in ("failed", "interrupted"):
            self.set_status("failed", reason=reason)
        return self.read_status()

    @contextlib.contextmanager
    def exclusive(self, wait_s: float | None = None):
        """Hold the run for this process. A second launch of the same run (a sweep
        launched again while its jobs still run) waits for the first, then refuses,
        instead of writing the same checkpoints and metrics. The kernel (or the NFS
        server) drops the lock when its holder dies."""
        wait_s = LOCK_WAIT_SECONDS if wait_s is None else wait_s
        self.root.mkdir(parents=True, exist_ok=True)
        with open_lock(self.root / LOCK_NAME, "the run's lock") as fh:
            deadline, told = time.monotonic() + wait_s, False
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = self.read_status() or {}
                    who = f"pid {holder.get('pid')} on {holder.get('hostname')}"
                    if time.monotonic() >= deadline:
                        raise OtherRunError(
                            f"{self.root} is being trained by another process ({who}); "
                            "wait for it to end or stop it, then launch again"
                        ) from None
                    if not told:
                        log.info("waiting up to %.0f s for the other process on %s (%s)", wait_s, self.root, who)
                        told = True
                    time.sleep(1.0)
            yield
