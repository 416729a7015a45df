"""One Hydra job in a process of its own: `python -m hydra_plugins.benchmark_sweeper.job_process JOB RESULT`.

JOB is a cloudpickle of what Hydra's basic launcher would hand `run_job` in the
launching process (the Hydra context, the task function, the job's config with its
number and id set, and Hydra's singletons: config store, plugins); RESULT receives the
cloudpickle of the JobReturn, written to a temporary name and renamed. The task
function travels by reference when it lives in an importable module (benchmark.run.cli),
by value otherwise (a closure in a test), as in submitit and joblib launchers.
"""

import os
import sys
import tempfile

from hydra_plugins.benchmark_sweeper import refused_job


def main(job_path: str, result_path: str) -> int:
    import cloudpickle  # Hydra's own dependency, needed only when a job is handed to a process
    from hydra.core.hydra_config import HydraConfig

    # at discovery Hydra is still importing itself; used only when a job runs
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    with open(job_path, "rb") as fh:
        job = cloudpickle.load(fh)
    Singleton.set_state(job["singletons"])
    setup_globals()
    HydraConfig.instance().set_config(job["config"])
    ret = refused_job(job["config"], job["config"].hydra.overrides.task) or run_job(
        hydra_context=job["hydra_context"],
        task_function=job["task_function"],
        config=job["config"],
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    try:
        payload = cloudpickle.dumps(ret)
    except Exception as exc:  # an unpicklable return value or exception: say what it was
        ret._return_value = RuntimeError(f"the job's result cannot be sent back ({exc}): {ret._return_value!r}"[:2000])
        payload = cloudpickle.dumps(ret)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(result_path), prefix=".result.")
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
