"""How many CPU threads a run's frameworks may use: the CPUs this process is allowed on.

A SLURM job given 8 CPUs of a 64-core node sees 64 cores in ``os.cpu_count()``; a
framework that sizes its thread pools from that runs 64 threads on 8 CPUs, and spinning
threads then cost more than they compute (on this project's 2-core machine an
oversubscribed PyTorch epoch went from 10 s to 95 s). The count comes from the affinity
mask (what ``taskset``, cgroups' cpusets and SLURM's task binding set), lowered by
``SLURM_CPUS_PER_TASK`` (a job whose CPUs are not bound) and by an ``OMP_NUM_THREADS`` the
user set. Framework-neutral: each engine applies it with its own switch
(benchmark.backends.torch_device, the Keras engines) and env.json records it
(``cpu_threads``).
"""

from __future__ import annotations

import os


def _positive(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def affinity() -> int:
    """CPUs in this process's affinity mask (os.cpu_count() where the OS has no mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, some containers
        return os.cpu_count() or 1


def allowed() -> tuple[int, str]:
    """(threads, what set the number): the smallest of the affinity mask,
    SLURM_CPUS_PER_TASK and OMP_NUM_THREADS."""
    count, source = affinity(), "affinity mask"
    for name in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        value = _positive(name)
        if value is not None and value < count:
            count, source = value, name
    return count, source


def record(**pools: int | str | None) -> dict:
    """env.json's ``cpu_threads``: the allowance and each thread pool as the framework reports it."""
    count, source = allowed()
    return {"allowed": count, "source": source, "affinity": affinity(), "cpu_count": os.cpu_count(), **pools}
