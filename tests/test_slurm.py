"""Sweeps on a real single-node SLURM cluster through hydra-submitit-launcher.

scripts/slurm-local.sh starts munge, MariaDB, slurmdbd, slurmctld and slurmd on this
machine (installing Debian's packages when missing, which needs root). Every sweep is
wrapped in `timeout` so a lost job cannot hang the suite.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from helpers import REPO, read_json, read_metrics, without_timing
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

CAN_RUN = shutil.which("sbatch") is not None or (os.geteuid() == 0 and shutil.which("apt-get") is not None)
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not CAN_RUN and not os.environ.get("CI"), reason="needs SLURM installed, or root with apt-get to install it"
    ),
]
SCRIPT = REPO / "scripts" / "slurm-local.sh"
# the A40 preset, shrunk to this machine: no GPU, one core and 4 GB per job
LAUNCHER = (
    "hydra/launcher=slurm_a40",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=4",
    "hydra.launcher.timeout_min=10",
)
SWEEP_TIMEOUT = 600


@pytest.fixture(scope="module")
def slurm():
    # not under pytest's tmp_path: munged wants o+x on every directory above its socket
    env = {**os.environ, "SLURM_LOCAL_DIR": tempfile.mkdtemp(prefix="benchmark-slurm-", dir="/tmp")}
    up = subprocess.run(["bash", str(SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stderr[-3000:]
    conf = up.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
    os.environ["SLURM_CONF"] = conf
    yield conf
    subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, timeout=300)


def sweep_env():
    """The preset's setup lines activate $BENCHMARK_VENV in each job: this environment."""
    return {**os.environ, "BENCHMARK_VENV": sys.prefix}


def sweep_cmd(sweep_dir, data_dir, *overrides):
    return [
        "timeout",
        str(SWEEP_TIMEOUT),
        sys.executable,
        "-m",
        "benchmark",
        "--multirun",
        *LAUNCHER,
        f"hydra.sweep.dir={sweep_dir}",
        f"data_dir={data_dir}",
        *overrides,
    ]


def test_sweep_runs_every_job_in_its_own_directory(slurm, tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    args = ("seed=1,2,3", "debug=smoke")
    override_dir = "debug=smoke"  # non-key overrides name a sub-directory
    out = subprocess.run(sweep_cmd(sweep, data_dir, *args), cwd=REPO, capture_output=True, text=True, env=sweep_env())
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    for seed in (1, 2, 3):
        run_dir = sweep / f"pytorch_digits_mobilenetv2_fp32_seed{seed}" / override_dir
        assert read_json(run_dir / "status.json")["state"] == "completed"
        assert read_json(run_dir / "env.json")["slurm_job_id"]  # it ran inside a SLURM job
        assert len(read_metrics(run_dir)) == 1
    assert (sweep / "sweep_status.csv").read_text().count("completed") == 3
    # the live status names each run's job and asks SLURM about it (sacct, once the jobs left the queue)
    # submitit returns once each job's result is written; SLURM marks the job COMPLETED only when
    # its batch script has exited, a moment later, so the status is asked until SLURM has caught up
    deadline = time.monotonic() + 60
    while True:
        status = subprocess.run(
            [sys.executable, "-m", "benchmark.status", str(sweep)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [line.split() for line in status.stdout.splitlines() if "_seed" in line]
        settled = all(cells[-1] == "COMPLETED" for cells in lines)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert len(lines) == 3 and all(cells[1] == "completed" and cells[-1] == "COMPLETED" for cells in lines), (
        status.stdout
    )
    assert set(read_json(sweep / "slurm_jobs.json").values()) == {cells[-2] for cells in lines}

    # launched again: nothing is submitted, every run is skipped
    again = subprocess.run(sweep_cmd(sweep, data_dir, *args), cwd=REPO, capture_output=True, text=True, env=sweep_env())
    assert again.returncode == 0
    assert "3 already completed" in again.stdout + again.stderr


def test_requeued_job_resumes_and_matches_an_uninterrupted_run(slurm, tmp_path, data_dir):
    args = ("seed=11", "debug=smoke", "epochs=3", "optim.warmup_epochs=1", "limit.train=256")
    reference = subprocess.Popen(
        sweep_cmd(tmp_path / "reference", data_dir, *args),
        cwd=REPO,
        env=sweep_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    requeued = subprocess.Popen(
        sweep_cmd(tmp_path / "requeued", data_dir, *args),
        cwd=REPO,
        env=sweep_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sub = "pytorch_digits_mobilenetv2_fp32_seed11/debug=smoke,epochs=3,limit.train=256,optim.warmup_epochs=1"
    run_dir = tmp_path / "requeued" / sub
    log = run_dir / "run.log"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and "epoch 2/3  step" in log.read_text()):
        time.sleep(0.1)
    job_id = read_json(run_dir / "env.json")["slurm_job_id"]
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)

    out, _ = requeued.communicate(timeout=SWEEP_TIMEOUT)
    assert requeued.returncode == 0, out[-3000:]
    assert reference.wait(timeout=SWEEP_TIMEOUT) == 0
    text = log.read_text()
    assert "resuming after epoch" in text  # the second start picked up the checkpoint
    assert read_json(run_dir / "status.json")["state"] == "completed"
    ref_dir = tmp_path / "reference" / sub
    assert without_timing(read_metrics(run_dir)) == without_timing(read_metrics(ref_dir))
    ref_test, test = read_json(ref_dir / "test.json"), read_json(run_dir / "test.json")
    ref_test.pop("finished_at"), test.pop("finished_at")
    assert test == ref_test


def test_a_job_killed_without_reporting_fails_alone(slurm, tmp_path, data_dir):
    """SIGKILL to one job (as an out-of-memory kill or a lost node would do): that run is
    marked failed, the other run finishes, the sweep ends with its report and exit 1."""
    sweep = tmp_path / "sweep"
    args = ("seed=1,2", "debug=smoke", "epochs=3", "optim.warmup_epochs=1", "limit.train=512")
    sub = "debug=smoke,epochs=3,limit.train=512,optim.warmup_epochs=1"
    victim = sweep / "pytorch_digits_mobilenetv2_fp32_seed1" / sub
    proc = subprocess.Popen(
        sweep_cmd(sweep, data_dir, *args),
        cwd=REPO,
        env=sweep_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (
        (victim / "run.log").exists() and "epoch 1/3  step" in (victim / "run.log").read_text()
    ):
        time.sleep(0.1)
    # the run's own process, killed without a chance to report (the kernel's OOM killer does
    # this; scancel would send SIGTERM first, which a run answers by recording "interrupted")
    os.kill(read_json(victim / "status.json")["pid"], signal.SIGKILL)

    out, _ = proc.communicate(timeout=SWEEP_TIMEOUT)
    assert proc.returncode == 1, out[-3000:]
    status = read_json(victim / "status.json")
    assert status["state"] == "failed" and "ended without reporting" in status["reason"]  # submitit's array id
    other = sweep / "pytorch_digits_mobilenetv2_fp32_seed2" / sub
    assert read_json(other / "status.json")["state"] == "completed"
    assert "1 run(s) of the sweep did not complete" in out and "seed1" in out
    assert (sweep / "report" / "results.csv").is_file()  # the end-of-sweep report still ran


# ------------------------------------------------------------------ detached sweeps (hydra.launcher.wait=false)

DETACHED = ("hydra.launcher.wait=false",)
# the array is submitted held: no job can start before the test releases it, so the launching
# process has certainly exited first, and a launch again meets its jobs still pending
HELD = ("+hydra.launcher.additional_parameters={hold:true}",)
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL"}


def launches(sweep):
    """The job lists of the sweep's launches, oldest first."""
    return [read_json(path) for path in sorted((sweep / ".sweeps").glob("*.json"))]


def queue():
    """{job id: state} of every job SLURM still holds, one line per array task."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=30, check=True)
    return dict(line.split() for line in out.stdout.splitlines())


def wait_until_ended(job_id, timeout=SWEEP_TIMEOUT):
    """SLURM's final state of a job (sacct), waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "State", "-j", job_id], capture_output=True, text=True)
        state = (out.stdout.split() or [""])[0]
        if state in ENDED:
            return state
        time.sleep(1)
    raise AssertionError(f"SLURM job {job_id} did not end within {timeout} s: {queue()}")


def status_text(sweep):
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.status", str(sweep)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_a_detached_sweep_is_reported_by_its_report_job_and_never_submitted_twice(slurm, tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    args = ("seed=1,2,3", "debug=smoke", *DETACHED, *HELD)
    started = time.monotonic()
    out = subprocess.run(sweep_cmd(sweep, data_dir, *args), cwd=REPO, capture_output=True, text=True, env=sweep_env())
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert time.monotonic() - started < 60  # submitted and gone, nothing waited for
    [launch] = launches(sweep)
    array, report = launch["slurm_array"], launch["report_job"]
    assert f"job array {array}, and the report job {report}" in out.stdout
    assert f"python -m benchmark.status {sweep}" in out.stdout and f"scancel {array}" in out.stdout
    jobs = read_json(sweep / "slurm_jobs.json")
    assert sorted(jobs.values()) == [f"{array}_{i}" for i in range(3)]
    held = queue()
    assert {job: held.get(job) for job in [*jobs.values(), report]} == dict.fromkeys(
        [*jobs.values(), report], "PENDING"
    )
    assert not list(sweep.glob("*/*/status.json"))  # the launching process has exited: no run has started

    # launched again while its jobs are pending: nothing is submitted, no second report job
    again = subprocess.run(sweep_cmd(sweep, data_dir, *args), cwd=REPO, capture_output=True, text=True, env=sweep_env())
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "3 run(s) already queued or running on SLURM: not submitted again" in again.stdout
    assert "nothing submitted" in again.stdout
    assert queue() == held and read_json(sweep / "slurm_jobs.json") == jobs
    assert [launch.get("report_job") for launch in launches(sweep)] == [report, None]

    queued = status_text(sweep)
    assert queued.count(" PENDING ") == 3 and "(3 job(s) queued)" in queued, queued
    assert f"report job {report} (sweep_status.csv and report/, after job array {array} ends): PENDING" in queued

    subprocess.run(["scontrol", "release", array], check=True, timeout=30)
    assert wait_until_ended(report) == "COMPLETED"
    assert (sweep / "sweep_status.csv").read_text().count(",completed,") == 3
    assert (sweep / "report" / "results.csv").is_file()  # the analysis, written on the cluster
    done = status_text(sweep)
    assert f"after job array {array} ends): COMPLETED" in done and "3 runs: 3 completed" in done, done

    # a completed run whose status.json is cut and whose metrics.csv is broken: damaged, and why
    run_dir = sweep / "pytorch_digits_mobilenetv2_fp32_seed1" / "debug=smoke"
    (run_dir / "status.json").write_text((run_dir / "status.json").read_text()[:40])
    (run_dir / "metrics.csv").write_text("garbage\n")
    damaged = next(line for line in status_text(sweep).splitlines() if "_seed1/" in line)
    assert damaged.split()[1] == "damaged" and "status.json is damaged" in damaged and "metrics.csv" in damaged


def test_a_killed_detached_job_is_reported_and_resumes_when_launched_again(slurm, tmp_path, data_dir):
    """SIGKILL to a detached sweep's job (an out-of-memory kill, a lost node): no launching
    process watches it, so its report job marks it failed and lists it; launched again,
    only that run is submitted and resumes from its checkpoint."""
    sweep = tmp_path / "sweep"
    args = ("seed=1", "debug=smoke", "epochs=3", "optim.warmup_epochs=1", "limit.train=256", *DETACHED)
    run_dir = (
        sweep / "pytorch_digits_mobilenetv2_fp32_seed1" / "debug=smoke,epochs=3,limit.train=256,optim.warmup_epochs=1"
    )
    out = subprocess.run(sweep_cmd(sweep, data_dir, *args), cwd=REPO, capture_output=True, text=True, env=sweep_env())
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    deadline = time.time() + 300
    while time.time() < deadline and not (
        (run_dir / "run.log").exists() and "epoch 2/3  step" in (run_dir / "run.log").read_text()
    ):
        time.sleep(0.1)
    [job] = read_json(sweep / "slurm_jobs.json").values()  # one run: a job, not an array
    os.kill(read_json(run_dir / "status.json")["pid"], signal.SIGKILL)

    assert wait_until_ended(launches(sweep)[0]["report_job"]) == "COMPLETED"
    status = read_json(run_dir / "status.json")
    assert status["state"] == "failed" and f"SLURM job {job} ended (FAILED) without reporting" in status["reason"]
    assert ",failed,," in (sweep / "sweep_status.csv").read_text()
    listed = status_text(sweep)
    assert "failed" in listed and f"SLURM job {job} ended (FAILED)" in listed, listed

    again = subprocess.run(sweep_cmd(sweep, data_dir, *args), cwd=REPO, capture_output=True, text=True, env=sweep_env())
    assert again.returncode == 0 and "submitted 1 run(s)" in again.stdout, (again.stdout + again.stderr)[-3000:]
    assert wait_until_ended(launches(sweep)[-1]["report_job"]) == "COMPLETED"
    assert "resuming after epoch 1" in (run_dir / "run.log").read_text()
    assert read_json(run_dir / "status.json")["state"] == "completed"
    assert (sweep / "sweep_status.csv").read_text().count(",completed,") == 1


# ------------------------------------------------------------------ Hydra's own launcher suites

# The site's settings of this machine's cluster (partition, no GPU), as a user passes them
SITE = tuple(o for o in LAUNCHER if not o.startswith("hydra/launcher="))


@pytest.fixture
def slurm_jobs_env(slurm, monkeypatch):
    monkeypatch.setenv("BENCHMARK_VENV", sys.prefix)  # the preset's setup lines activate it in each job


@pytest.mark.suite
@pytest.mark.usefixtures("slurm_jobs_env", "hydra_fresh_version_base")
@pytest.mark.parametrize("launcher_name, overrides", [("slurm_a40", list(SITE))])
class TestSlurmA40Launcher(LauncherTestSuite):
    pass


@pytest.mark.suite
@pytest.mark.usefixtures("slurm_jobs_env")
@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [({}, ["-m", "hydra/launcher=slurm_a40", *SITE])])
class TestSlurmA40LauncherIntegration(IntegrationTestSuite):
    pass
