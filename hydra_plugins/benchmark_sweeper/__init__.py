"""Hydra plugins of the benchmark: the resumable sweeper and its launchers."""

from pathlib import Path
from typing import Sequence


def job_run_dir(hydra_context, config, overrides: Sequence[str]) -> Path:
    """The run directory Hydra gives the job with these overrides (sweep dir / subdir)."""
    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    return Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
