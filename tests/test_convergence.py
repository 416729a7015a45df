"""Both backends learn the real digits data, and land close to each other on the same seed.

One sweep trains mobilenetv2 for 10 epochs on CPU with each framework (seed 42); the
end-of-sweep callback then builds the analysis report from these real runs.
"""

import subprocess
import sys

import pytest
from helpers import REPO, read_json, read_metrics


@pytest.mark.slow
def test_mobilenetv2_learns_digits_in_10_epochs_with_both_frameworks(tmp_path, data_dir):
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [
            "timeout",
            "1200",
            sys.executable,
            "-m",
            "benchmark",
            "--multirun",
            "framework=keras,pytorch",
            "model=mobilenetv2",
            "dataset=digits",
            "seed=42",  # digits: 10 epochs
            f"hydra.sweep.dir={sweep}",
            f"data_dir={data_dir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    accuracy = {}
    for framework in ("keras", "pytorch"):
        run_dir = sweep / f"{framework}_digits_mobilenetv2_fp32_seed42"
        assert len(read_metrics(run_dir)) == 10
        test = read_json(run_dir / "test.json")
        accuracy[framework] = test["test_accuracy"]
        print(
            f"digits mobilenetv2 {framework}: test_accuracy={test['test_accuracy']:.4f} best_epoch={test['best_epoch']}"
        )
    assert accuracy["keras"] >= 0.90 and accuracy["pytorch"] >= 0.90
    assert abs(accuracy["keras"] - accuracy["pytorch"]) <= 0.05
    # the end-of-sweep callback analysed the two real runs
    assert "digits" in (sweep / "report" / "results.csv").read_text()
