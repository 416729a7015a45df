"""`python -m benchmark.perf` runs for every framework option (each Keras engine too) and writes every field
(timings are not asserted)."""

import csv
import math
import subprocess
import sys

import pytest
from helpers import REPO

from benchmark.perf import COLUMNS


@pytest.mark.slow
@pytest.mark.cli
@pytest.mark.engines
def test_perf_command_writes_all_fields_for_every_backend_and_engine(tmp_path):
    out_csv = tmp_path / "perf.csv"
    out = subprocess.run(
        # the real 3-epoch run on a slice of digits: the fields, not the figures, are tested
        # (batch 16: JAX's CPU steps are slow, and only the fields matter here)
        [
            sys.executable,
            "-m",
            "benchmark.perf",
            "--steps",
            "2",
            "--rounds",
            "2",
            "--batch",
            "16",
            "--out",
            str(out_csv),
            "--override=limit.train=256",
            "--override=limit.val=64",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "harness_bare_ratio" in out.stdout  # the table is printed
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["backend"] for r in rows] == ["pytorch", "keras", "keras_jax", "keras_torch"]
    for row in rows:
        assert tuple(row) == COLUMNS and row["protocol"] == "native"
        for key in (
            "pipeline_ips_32",
            "pipeline_ips_64",
            "harness_ips",
            "bare_ips",
            "harness_bare_ratio",
            "ratio_min",
            "ratio_max",
            "startup_seconds",
            "steady_ips",
        ):
            assert math.isfinite(float(row[key])) and float(row[key]) > 0, key
        assert math.isfinite(float(row["first_epoch_overhead_seconds"]))
        assert float(row["ratio_min"]) <= float(row["harness_bare_ratio"]) <= float(row["ratio_max"])
    assert [r["execution_mode"] for r in rows] == ["eager+channels_last", "tf.function", "jax.jit", "eager"]


def test_perf_rejects_unknown_backend(tmp_path, capsys):
    # in process: the argument checks run before any framework is imported
    from benchmark.perf import main

    assert main(["--backends", "jax", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "jax" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.cli
def test_perf_rejects_unknown_protocol_from_the_command_line(tmp_path):
    """The one subprocess of this exit path: `python -m benchmark.perf` exits 2 with one line."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.perf", "--protocols", "native,zoo", "--out", str(tmp_path / "x")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--protocols native,zoo" in out.stderr and not (tmp_path / "x").exists()
    assert len(out.stderr.strip().splitlines()) == 1
