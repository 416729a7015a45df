"""`python -m benchmark.preflight`: real processes on this CPU, the quickstart preset.

One preflight of `experiment=quickstart` (keras and pytorch, each in its own process,
2 timed steps) into a temporary sweep directory that already holds two completed runs
and a failed one is shared by the module; the other tests check the paths that stop
before any framework loads (bad input) or that need an engine to be missing.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runs import make_run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.cli


def preflight(*args: str, cwd: Path = REPO, env: dict | None = None, python_flags=()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "benchmark.preflight", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def in_process(*args: str) -> tuple[int, str, str]:
    """main() in this process (the paths that stop before a child starts)."""
    from benchmark.preflight import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def completed_digits_run(sweep: Path, framework: str, seed: int, state: str = "completed") -> Path:
    # tests/runs.py writes CIFAR-shaped records; only the directory name (the run key),
    # status.json and test.json decide whether a run is completed
    return make_run(
        sweep,
        framework,
        "cifar10",
        "mobilenetv2",
        "fp32",
        seed,
        epochs=10,
        state=state,
        name=f"{framework}_digits_mobilenetv2_fp32_seed{seed}",
    )


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("preflight") / "sweep"
    done = [completed_digits_run(sweep, "keras", 42), completed_digits_run(sweep, "pytorch", 123)]
    failed = completed_digits_run(sweep, "pytorch", 456, state="failed")
    proc = preflight("experiment=quickstart", "--steps", "2", f"hydra.sweep.dir={sweep}")
    report = json.loads((sweep / "preflight.json").read_text()) if (sweep / "preflight.json").is_file() else None
    return {"proc": proc, "report": report, "sweep": sweep, "done": done, "failed": failed}


def test_quickstart_passes_and_prints_its_table(quickstart):
    proc = quickstart["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("framework"))
    for column in ("device", "mode", "fp32", "amp16", "bf16", "float32 policy", "determinism", "img/s", "per run"):
        assert column in header
    for framework in ("keras", "pytorch"):
        row = next(line.split() for line in lines if line.startswith(framework + " "))
        assert row[1] == "cpu" and row[3:6] == ["ok", "ok", "ok"], row
    assert any(line.startswith("estimate: 6 runs in the sweep, 2 already completed") for line in lines)
    assert not any(line.startswith("problem:") for line in lines)
    assert f"written: {quickstart['sweep'] / 'preflight.json'}" in proc.stdout


def test_every_precision_ran_with_finite_losses(quickstart):
    frameworks = quickstart["report"]["frameworks"]
    assert set(frameworks) == {"keras", "pytorch"}
    for result in frameworks.values():
        assert result["device"] == "cpu" and result["mode"]
        assert set(result["checks"]) == {"fp32", "amp16", "bf16"}
        for check in result["checks"].values():
            assert check["ok"] is True and check["losses"] and all(math.isfinite(v) for v in check["losses"])
        assert result["checks"]["fp32"]["precision"] == "float32"
        # on a CPU both frameworks' AMP is bfloat16 without loss scaling, and the trainer says so
        assert "bfloat16" in result["checks"]["amp16"]["precision"]
        assert set(result["environment"]) >= {"float32_policy", "determinism", "cpu_threads"}


def test_throughput_is_measured_after_a_warmup_epoch(quickstart):
    for result in quickstart["report"]["frameworks"].values():
        (shape,) = result["shapes"]  # quickstart: one training shape (mobilenetv2, 32 px, batch 32, fp32)
        assert shape["ok"] and shape["timed_images"] == 2 * 32
        assert shape["images_per_second"] > 0 and shape["eval_images_per_second"] > 0
        assert shape["warmup_seconds"] > 0 and shape["first_epoch_overhead_seconds"] >= 0


def test_completed_runs_are_left_out_of_the_estimate(quickstart):
    estimate = quickstart["report"]["estimate"]
    assert estimate["unit"] == "CPU-hours"
    assert (estimate["runs"], estimate["completed"], estimate["estimated"], estimate["not_estimated"]) == (6, 2, 4, 0)
    by_dir = {Path(r["run_dir"]).name: r for r in estimate["runs_detail"]}
    assert {name for name, r in by_dir.items() if r["completed"]} == {p.name for p in quickstart["done"]}
    failed = by_dir[quickstart["failed"].name]  # a failed run is run again: it is estimated
    assert not failed["completed"] and failed["seconds"] > 0
    assert failed["epochs"] == 10 and failed["train_images"] == 1248 and failed["val_images"] == 180  # 39 x 32
    pending = [r["seconds"] for r in estimate["runs_detail"] if not r["completed"]]
    assert estimate["hours"] == pytest.approx(sum(pending) / 3600)


def test_bad_override_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args, says in (
        (["experiment=nope"], "experiment"),
        (["seed=-1"], "seed=-1 is out of range"),
        (["--bogus"], "--bogus"),
        (["--frameworks", "nope"], "'nope' is unknown"),
        (["experiment=quickstart", "--steps", "0"], "--steps 0"),
    ):
        code, out, err = in_process(*args)
        assert code == 2, (args, out, err)
        assert len(err.strip().splitlines()) == 1 and says in err and err.startswith("error: "), (args, err)
    assert list(tmp_path.iterdir()) == []


def test_bad_override_exits_2_from_the_real_command(tmp_path):
    proc = preflight("model=nope", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "model" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_engine_that_is_not_installed_is_a_problem(tmp_path):
    """TensorFlow really missing: an interpreter whose path is this venv's site-packages
    less tensorflow (a folder of links to every other entry, and `python -S`)."""
    site = tmp_path / "site"
    site.mkdir()
    real = next((Path(p) for p in sys.path if p.endswith("site-packages") and (Path(p) / "tensorflow").is_dir()), None)
    if real is None:
        # the test set-up installs TensorFlow (pyproject's [test] extra): its absence is a broken set-up
        pytest.fail("TensorFlow is not installed in this venv: install the test set-up (README)")
    for entry in real.iterdir():
        if entry.name != "tensorflow" and not entry.name.startswith(("tensorflow-", "tensorflow_")):
            (site / entry.name).symlink_to(entry)
    out = tmp_path / "preflight.json"
    proc = preflight("framework=keras", "--out", str(out), python_flags=("-S",), env={"PYTHONPATH": str(site)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    problems = [line for line in proc.stdout.splitlines() if line.startswith("problem:")]
    assert problems == [
        "problem: keras: framework=keras framework.engine=tensorflow needs tensorflow, which is not installed "
        "here: pip install tensorflow, or choose another engine"
    ]
    report = json.loads(out.read_text())
    assert report["frameworks"]["keras"]["installed"] is False
    assert report["estimate"]["not_estimated"] == 1 and report["problems"] == [problems[0][len("problem: ") :]]


def test_the_parent_process_loads_no_framework():
    """Frameworks load only in the children: importing the command and planning a sweep
    (composition, run directories, train sizes) imports none."""
    code = (
        "import sys\n"
        "from benchmark.preflight import Plan\n"
        "Plan(['experiment=stage1'])\n"
        "print('IMPORTED', sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'tensorflow', 'keras', 'jax')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORTED []" in out.stdout
