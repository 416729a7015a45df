"""Framework-neutral part of env.json: interpreter, host, CPU, GPU driver, git commit."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmark.spec.frameworks import ENGINE_PACKAGES

REPO_ROOT = Path(__file__).resolve().parents[2]
IMPORTED_AT = time.time()  # fallback for the process start where /proc is missing


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(  # noqa: S603  fixed commands (nvidia-smi, git) as argument lists, no shell
            cmd, capture_output=True, text=True, timeout=10, cwd=REPO_ROOT
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_driver() -> str:
    """NVIDIA driver version, or "cpu" where there is no NVIDIA GPU."""
    if shutil.which("nvidia-smi"):
        out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        if out:
            return out.splitlines()[0]
    return "cpu"


def git_commit() -> str:
    commit = _run(["git", "rev-parse", "HEAD"])
    if not commit:
        return "unknown"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return commit + ("-dirty" if dirty else "")


def process_start_time() -> float:
    """Wall-clock time (time.time()) at which this process started, from /proc on Linux."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return IMPORTED_AT


def peak_host_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# Instruction-set extensions that decide which CPU kernels oneDNN, MKL, OpenBLAS and
# XLA dispatch to, and so the last bits of a seed's numbers (x86 and Arm names as
# /proc/cpuinfo spells them).
CPU_FEATURES = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
)


def cpu_features() -> str:
    """The CPU_FEATURES this CPU has, space-separated ("" where /proc/cpuinfo is missing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in CPU_FEATURES if f in flags)
    except OSError:
        pass
    return ""


def installed_packages() -> dict[str, str]:
    """{distribution name: version} of every package installed in this interpreter."""
    packages = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower().replace("_", "-")] = dist.version
    return dict(sorted(packages.items()))


def packages_digest(packages: dict[str, str]) -> str:
    """One hash of the whole package set: equal hashes, equal sets."""
    text = "".join(f"{name}=={version}\n" for name, version in sorted(packages.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def numpy_blas() -> str:
    """The BLAS NumPy was built with (the data pipeline's and the analysis' arithmetic)."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


def engines_loaded() -> list[str]:
    """Which engines' packages this process has imported: one per run, unless a backend
    shares its engine's process with another (a Keras run on JAX loads no TensorFlow)."""
    return [name for name in ENGINE_PACKAGES if sys.modules.get(name) is not None]


def collect() -> dict:
    packages = installed_packages()
    return {
        "engines_loaded": engines_loaded(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features(),
        "cpu_count": os.cpu_count(),
        "numpy_blas": numpy_blas(),
        "gpu_driver": gpu_driver(),
        "git_commit": git_commit(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "packages_sha256": packages_digest(packages),
        "packages": packages,
    }
