"""`python -m benchmark [overrides]`: one run, or a sweep with --multirun."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from benchmark import BenchmarkError
from benchmark.config import register_configs

log = logging.getLogger("benchmark")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

register_configs()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> dict:
    from benchmark.engine import train_and_test
    from benchmark.rundir import RunDir

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    rundir = RunDir(run_dir)
    rundir.set_status("running")
    try:
        result = train_and_test(cfg, run_dir)
    except BenchmarkError as exc:
        rundir.set_status("failed", reason=str(exc))
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except BaseException as exc:
        rundir.set_status("failed", reason=f"{exc.__class__.__name__}: {exc}", traceback=traceback.format_exc())
        raise
    rundir.set_status("completed", test=result)
    return result


if __name__ == "__main__":
    main()
