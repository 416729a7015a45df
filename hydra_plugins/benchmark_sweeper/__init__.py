"""Hydra plugins of the benchmark: the resumable sweeper and its launchers."""

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


def task_config(sweep_config):
    """The job's config as its task function sees it (without the hydra node)."""
    return OmegaConf.masked_copy(sweep_config, [k for k in sweep_config.keys() if k != "hydra"])
