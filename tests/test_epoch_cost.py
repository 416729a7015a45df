"""Every second of an epoch accounted for: metrics.csv's timing columns, summary.json's
totals, TensorBoard's time/* scalars, the status table's train share and the report's
"Where the time goes" (docs/performance.md); runs written before the columns still load."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import pytest
from helpers import REPO, read_json, read_metrics

from benchmark.analysis.epoch_cost import EPOCH_COST_COLUMNS, epoch_cost
from benchmark.analysis.runs import collect, read_metrics_checked
from benchmark.run.metrics import CORE_COLUMNS, METRICS_COLUMNS, TIMING_COLUMNS, MetricsLog
from benchmark.run.tensorboard import TIMING_TAGS, scalars

LEGACY = REPO / "tests" / "fixtures" / "sweep_v0"


@pytest.mark.parametrize("framework", ["pytorch", "keras"])
def test_every_epoch_records_where_its_wall_time_went(trained_run, framework):
    run_dir, _ = trained_run(framework)
    rows = read_metrics(run_dir)
    assert tuple(rows[0]) == METRICS_COLUMNS
    for row in rows:
        seconds = {name: float(row[name]) for name in ("epoch_time_seconds", *TIMING_COLUMNS)}
        assert all(math.isfinite(v) and v >= 0 for v in seconds.values()), seconds
        parts = seconds["epoch_time_seconds"] + sum(seconds[n] for n in TIMING_COLUMNS[1:])
        # the parts lie inside the epoch's clock; what is left is the trainer's work outside its own
        assert parts <= seconds["epoch_wall_seconds"] + 1e-6, seconds
        assert seconds["checkpoint_seconds"] > 0 and seconds["eval_seconds"] > 0, seconds
    summary = read_json(run_dir / "summary.json")
    for name in TIMING_COLUMNS:
        total = f"{name[: -len('_seconds')]}_seconds_total"
        assert summary[total] == pytest.approx(sum(float(r[name]) for r in rows)), total
    assert summary["train_seconds_total"] == pytest.approx(sum(float(r["epoch_time_seconds"]) for r in rows))
    assert summary["other_seconds_total"] >= -1e-6
    assert summary["launch_wall_seconds"] > summary["epoch_wall_seconds_total"] + summary["test_seconds"] > 0
    # TensorBoard: one point per epoch and timing tag, equal to metrics.csv's
    points = scalars(run_dir)
    for column, tag in TIMING_TAGS.items():
        assert [step for step, _ in points[tag]] == [int(r["epoch"]) for r in rows], tag
        assert [v for _, v in points[tag]] == pytest.approx([float(r[column]) for r in rows], rel=1e-6), tag


def test_the_status_table_and_the_report_show_the_split(trained_run, tmp_path):
    run_dir, _ = trained_run("pytorch")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copytree(run_dir, sweep / "pytorch_digits_mobilenetv2_fp32_seed42")
    status = subprocess.run(  # the real command, as a user types it
        [sys.executable, "-m", "benchmark.status", str(sweep)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0, status.stderr
    header, row = status.stdout.splitlines()[1:3]
    share = row.split()[header.split().index("train%")]
    assert share.endswith("%") and 0 < int(share[:-1]) <= 100, status.stdout

    swept = collect(sweep)
    table = epoch_cost(swept.curves, swept.results)
    assert list(table.columns) == list(EPOCH_COST_COLUMNS) and len(table) == 1
    row = table.iloc[0]
    assert row["epochs_timed"] == 2 and row["runs"] == 1
    assert row["epoch_wall_seconds"] == pytest.approx(
        row["train_seconds"]
        + row["eval_seconds"]
        + row["checkpoint_seconds"]
        + row["logging_seconds"]
        + row["other_seconds"]
    )
    assert 0 < row["outside_training_share"] < 1 and row["wall_over_train"] > 1


def test_runs_written_before_the_timing_columns_still_load_and_resume(tmp_path):
    """The analysis reads a metrics.csv of the old 8 columns (timing NaN, no report row);
    a resumed run continues such a history with the timing of its old epochs blank."""
    sweep = tmp_path / "sweep"
    shutil.copytree(LEGACY, sweep)
    old = sweep / "pytorch_digits_mobilenetv2_fp32_seed42" / "metrics.csv"
    assert old.read_text().splitlines()[0] == ",".join(CORE_COLUMNS)
    metrics, note = read_metrics_checked(old)
    assert note == "" and len(metrics) > 0 and metrics["epoch_wall_seconds"].isna().all()
    swept = collect(sweep)
    assert swept.results["epoch_wall_over_train"].isna().all()
    assert epoch_cost(swept.curves, swept.results).empty

    log = MetricsLog(old)
    log.truncate(1)
    log.append({name: 1.0 for name in CORE_COLUMNS} | {"epoch": 2})
    log.complete_last(**{name: 0.5 for name in TIMING_COLUMNS})
    lines = old.read_text().splitlines()
    assert lines[0] == ",".join(METRICS_COLUMNS)
    assert lines[1].endswith(",,,,") and lines[2].endswith(",0.5,0.5,0.5,0.5")
    again = MetricsLog(old)  # the mixed history reads back
    assert [r["epoch_wall_seconds"] for r in again.rows] == ["", "0.5"]
    assert read_metrics_checked(old)[0]["epoch_wall_seconds"].isna().tolist() == [True, False]


def test_keras_weights_files_reuse_kerass_skip_sets(tmp_path):
    """The work-around of Keras' skip-set cache (benchmark.backends.keras.trainer) fills the
    key Keras reads, and a weights file written with it loads back the same weights."""
    import numpy as np

    from benchmark.backends.keras.engines import tensorflow as engine  # the pytest process's Keras engine
    from benchmark.backends.keras.trainer import load_weights, save_weights

    model = engine.create_model("mobilenetv2", 10, 32)
    save_weights(model, tmp_path, "best", "best.weights.h5", {"epoch": 1})
    from keras.src.backend.common import global_state

    assert global_state.get_global_attribute("saving_attr_skiplist_Layer") is not None
    other = engine.create_model("mobilenetv2", 10, 32, init="glorot_uniform")
    assert load_weights(other, tmp_path, "best") == {"epoch": 1}
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights(), strict=True))


@pytest.mark.engines
def test_the_jax_engines_one_call_lr_trajectory_is_the_per_step_one():
    """Keras on JAX maps the LR schedule over an epoch's steps in one call
    (Engine.vectorized_lr): the values are the per-step calls', bit for bit, over warm-up and decay."""
    script = (
        "import numpy as np\n"
        "from benchmark.backends.keras.engines import jax as engine\n"
        "from keras import ops\n"
        "from benchmark.backends.keras.optim import build_lr_schedule\n"
        "from benchmark.spec.schedule import Schedule\n"
        "assert engine.JaxEngine.vectorized_lr\n"
        "schedule = build_lr_schedule(Schedule(base_lr=0.0125, warmup_steps=44, total_steps=440, steps_per_epoch=44))\n"
        "from types import SimpleNamespace\n"
        "from benchmark.backends.keras.trainer import KerasTrainer\n"
        "trainer = SimpleNamespace(engine=engine.JaxEngine, lr_schedule=schedule)  # what the method reads\n"
        "one = np.concatenate([KerasTrainer.lr_trajectory_between(trainer, e * 44, e * 44 + 44) for e in range(10)])\n"
        "each = np.array([float(ops.convert_to_numpy(schedule(s))) for s in range(440)])\n"
        "assert np.array_equal(one, each), np.abs(one - each).max()\n"
        "print('OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-2000:]
