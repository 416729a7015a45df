"""Hydra plugins of the benchmark: the resumable sweeper and its launchers."""

import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf, open_dict


def job_config(hydra_context, config, overrides: Sequence[str], idx: int, job_id=None):
    """The job's config as Hydra's basic launcher builds it: the sweep config with the
    job's overrides, its number and its id (the number, unless the launcher has one),
    so that a `hydra.sweep.subdir` naming `${hydra.job.num}` or `${hydra.job.id}` resolves."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx if job_id is None else job_id
        sweep_config.hydra.job.num = idx
    return sweep_config


def job_dir(sweep_config) -> Path:
    """Where Hydra's run_job puts the job: hydra.sweep.dir / hydra.sweep.subdir."""
    # at discovery Hydra is still importing itself; used only when a job runs
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(sweep_config)  # for ${hydra:...} in the directory names
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def refused_job(sweep_config, overrides: Sequence[str]):
    """A FAILED JobReturn when the job's directory is a link or holds links pointing out
    of it (planted in a shared sweep directory since the sweep's checks), else None:
    checked right before Hydra's run_job writes its config and log there by name."""
    # at discovery Hydra is still importing itself, and the benchmark loads only when a job runs
    from hydra.core.utils import JobStatus

    # the benchmark loads only when a job runs
    from benchmark import BenchmarkError
    from benchmark.files import refuse_links_out

    working_dir = job_dir(sweep_config)
    try:
        refuse_links_out(working_dir, "the run directory")
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return job_return(sweep_config, overrides, working_dir, JobStatus.FAILED, exc)
    return None


def job_return(sweep_config, overrides: Sequence[str], working_dir, status, value):
    """Hydra's JobReturn of a job the launcher answers itself (skipped, refused, lost)."""
    from hydra.core.utils import JobReturn  # at discovery Hydra is still importing itself

    return JobReturn(
        overrides=list(overrides),
        cfg=task_config(sweep_config),
        hydra_cfg=sweep_config,
        working_dir=str(working_dir),
        task_name=sweep_config.hydra.job.name,
        status=status,
        _return_value=value,
    )


def task_config(sweep_config):
    """The job's config as its task function sees it (without the hydra node)."""
    return OmegaConf.masked_copy(sweep_config, [k for k in sweep_config.keys() if k != "hydra"])
