"""One run key, arms as data: directory names, the skip decision and the analysis read
benchmark.spec.runkey; sweeps made before it are found, skipped and analysed the same; any
pair of arms can be compared, and a third arm gives every pairwise comparison."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, compose, run_cli
from runs import make_run, make_stage2, make_sweep, run_name
from scipy import stats as scipy_stats

from benchmark.analysis.report import AnalysisError
from benchmark.analysis.time_to_accuracy import ordered as ordered_tta
from benchmark.analyze import analyze
from benchmark.spec.runkey import KEY, RUN_KEY, dirname, key_of_config, override_keys

GOLDEN = REPO / "tests" / "golden"
FIXTURE_V0 = REPO / "tests" / "fixtures" / "sweep_v0"  # two real quickstart runs written before runkey.py
NUMBERS = (
    "n_pairs",
    "mean_a",
    "std_a",
    "mean_b",
    "std_b",
    "delta",
    "ci_low",
    "ci_high",
    "wilcoxon_p",
    "wilcoxon_min_p",
    "ttest_p",
    "holm_p",
    "holm_ttest_p",
    "cohens_d",
    "cliffs_delta",
)


def read_csv(path):
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


# ------------------------------------------------------------------ one definition


def test_directory_names_come_from_the_key_and_keep_todays_layout():
    cfg = compose("framework=keras", "model=resnet50", "dataset=cifar100", "precision=amp", "seed=7")
    key = key_of_config(cfg)
    assert (
        tuple(key)
        == KEY
        == (
            "framework",
            "engine",
            "execution",
            "dataset",
            "model",
            "precision",
            "protocol",
            "seed",
        )
    )
    assert dirname(key) == run_name("keras", "cifar100", "resnet50", "amp", 7) == "keras_cifar100_resnet50_amp_seed7"
    full = compose("framework=keras", "seed=7", "epochs=3", "hydra.sweep.dir=/s", return_hydra=True)
    assert full.hydra.sweep.subdir == "keras_digits_mobilenetv2_fp32_seed7/epochs=3"  # the variant below its key
    assert full.hydra.run.dir.endswith("_keras_digits_mobilenetv2_fp32_seed7")
    # overriding a key field never makes a run a variant: the key's own overrides are left out
    assert set(full.hydra.job.config.override_dirname.exclude_keys) >= {f.path for f in RUN_KEY} | {"framework"}
    assert override_keys("x") == [k for f in RUN_KEY for k in f.overrides] + ["x"]


def test_a_new_key_field_at_its_legacy_value_keeps_old_names_and_runs(tmp_path):
    """The protocol was added as one KeyField (and its config group): at its legacy value
    (native) old directory names, keys and completed runs stay valid; aligned is another run."""
    import benchmark.run.resume as resume
    import benchmark.spec.runkey as runkey
    from benchmark import OtherRunError

    old = {"framework": "pytorch", "dataset": "digits", "model": "mobilenetv2", "precision": "fp32", "seed": 42}
    assert runkey.key_of_record(old)["protocol"] == "native"
    assert runkey.dirname(runkey.key_of_record(old)) == "pytorch_digits_mobilenetv2_fp32_seed42"
    assert runkey.dirname({**old, "protocol": "aligned"}) == "pytorch_digits_mobilenetv2_fp32_aligned_seed42"
    # a completed run recorded before the axis existed (no protocol node) is still this config's run ...
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_V0 / "pytorch_digits_mobilenetv2_fp32_seed42", run)
    assert "protocol" not in json.loads((run / "summary.json").read_text())["config"]
    assert resume.completed_result(run, compose("framework=pytorch"))["test_accuracy"] > 0.9
    # ... and never the run of another value of it
    with pytest.raises(
        OtherRunError,
        match="holds the run pytorch_digits_mobilenetv2_fp32_seed42, not "
        "pytorch_digits_mobilenetv2_fp32_aligned_seed42",
    ):
        resume.check_same_run(run, compose("framework=pytorch", "protocol=aligned"))


def test_the_execution_mode_is_an_arm_left_out_of_names_at_its_engines_default():
    """framework.execution joins the key after the engine: null and the engine's default
    are one run, named as before; another mode is its own directory and arm."""
    from benchmark.spec.frameworks import EXECUTIONS, default_execution
    from benchmark.spec.runkey import arm_name, key_of_record

    assert EXECUTIONS == {
        "pytorch": {"torch": ("eager", "compile", "compile-max-autotune", "compile-reduce-overhead")},
        "keras": {"tensorflow": ("graph", "xla"), "jax": ("jit",), "torch": ("eager",)},
    }
    assert [default_execution(e) for e in ("torch", "tensorflow", "jax", "mxnet")] == ["eager", "graph", "jit", None]
    cases = {
        ("framework=pytorch",): ("pytorch_digits_mobilenetv2_fp32_seed42", "pytorch", "eager"),
        ("framework=pytorch", "framework.execution=eager"): (
            "pytorch_digits_mobilenetv2_fp32_seed42",
            "pytorch",
            "eager",
        ),
        ("framework=pytorch", "framework.execution=compile"): (
            "pytorch_compile_digits_mobilenetv2_fp32_seed42",
            "pytorch/compile",
            "compile",
        ),
        ("framework=pytorch", "framework.execution=compile-max-autotune"): (
            "pytorch_compile-max-autotune_digits_mobilenetv2_fp32_seed42",
            "pytorch/compile-max-autotune",
            "compile-max-autotune",
        ),
        ("framework=keras",): ("keras_digits_mobilenetv2_fp32_seed42", "keras", "graph"),
        ("framework=keras", "framework.execution=xla"): (
            "keras_xla_digits_mobilenetv2_fp32_seed42",
            "keras/xla",
            "xla",
        ),
        ("framework=keras_jax",): ("keras_jax_digits_mobilenetv2_fp32_seed42", "keras/jax", "jit"),
        ("framework=keras_torch",): ("keras_torch_digits_mobilenetv2_fp32_seed42", "keras/torch", "eager"),
    }
    for overrides, (name, arm, execution) in cases.items():
        key = key_of_config(compose(*overrides))
        assert (dirname(key), arm_name(key), key["execution"]) == (name, arm, execution), overrides
    # a run recorded before the field existed ran in its engine's default mode
    old = {"framework": "keras", "dataset": "digits", "model": "mobilenetv2", "precision": "fp32", "seed": 42}
    assert key_of_record(old)["execution"] == "graph"
    assert key_of_record({**old, "engine": "jax"})["execution"] == "jit"
    assert key_of_record({**old, "framework": "pytorch"})["execution"] == "eager"
    # an execution mode is an arm, never a variant: Hydra leaves its override out of the sub-directory
    full = compose(
        "framework=pytorch", "framework.execution=compile", "seed=7", "hydra.sweep.dir=/s", return_hydra=True
    )
    assert full.hydra.sweep.subdir.rstrip("/") == "pytorch_compile_digits_mobilenetv2_fp32_seed7"


def test_runs_recorded_with_the_retired_compile_switches_are_found_or_refused(tmp_path):
    """summary.json of runs before framework.execution holds framework.compile /
    framework.jit_compile: at false they are today's default mode, skipped as before; a
    run recorded with true is refused in one line naming framework.execution."""
    import benchmark.run.resume as resume
    from benchmark import OtherRunError

    for framework in ("pytorch", "keras"):
        run = tmp_path / framework
        shutil.copytree(FIXTURE_V0 / f"{framework}_digits_mobilenetv2_fp32_seed42", run)
        retired = {"pytorch": "compile", "keras": "jit_compile"}[framework]
        assert json.loads((run / "summary.json").read_text())["config"]["framework"][retired] is False
        assert resume.completed_result(run, compose(f"framework={framework}"))["test_accuracy"] > 0.9
        assert resume.completed_result(
            run,
            compose(
                f"framework={framework}", "framework.execution=" + ("eager" if framework == "pytorch" else "graph")
            ),
        )
        with pytest.raises(OtherRunError, match="not " + framework + "_(compile|xla)_digits"):
            execution = {"pytorch": "compile", "keras": "xla"}[framework]
            resume.check_same_run(run, compose(f"framework={framework}", f"framework.execution={execution}"))
        summary = json.loads((run / "summary.json").read_text())
        summary["config"]["framework"][retired] = True
        (run / "summary.json").write_text(json.dumps(summary))
        with pytest.raises(
            OtherRunError, match=f"framework.{retired}=true, an option replaced by framework.execution"
        ) as err:
            resume.check_same_run(run, compose(f"framework={framework}"))
        assert "\n" not in str(err.value)


def test_the_analysis_reads_the_key_and_names_no_framework():
    """No module of the analysis, the sanity checks or perf names a framework."""
    sources = [
        *(REPO / "benchmark" / "analysis").glob("*.py"),
        *(REPO / "benchmark" / "perf").glob("*.py"),
        REPO / "benchmark" / "analyze.py",
    ]
    for path in sources:
        text = path.read_text().lower()
        for name in ("keras", "pytorch", "tensorflow", "torch", "jax"):
            assert name not in text, (path.name, name)


# ------------------------------------------------------------------ before and after


def build_golden_sweep(root):
    """The sweep behind tests/golden/*.csv (written by the code before runkey.py)."""
    make_stage2(root / "matrix", epochs=4)
    make_sweep(root / "quick", datasets=("cifar10",), models=("mobilenetv2",), seeds=(42, 123, 456), epochs=3)
    make_run(root / "quick", "pytorch", "cifar10", "mobilenetv2", "fp32", 789, epochs=3)
    make_run(root / "quick", "keras", "cifar10", "mobilenetv2", "fp32", 789, epochs=3, state="failed")
    for seed in (42, 123):
        make_run(
            root / "quick",
            "pytorch",
            "cifar10",
            "mobilenetv2",
            "fp32",
            seed,
            epochs=3,
            test_accuracy=0.97,
            execution_mode="torch.compile",
            name=f"compiled/seed{seed}",
        )


def test_todays_layout_is_analysed_as_before(tmp_path):
    build_golden_sweep(tmp_path)
    analyze(tmp_path, plots=False)
    report = tmp_path / "report"
    results, old_results = read_csv(report / "results.csv"), read_csv(GOLDEN / "results.csv")
    assert results["variant"].isna().all()  # "" for every run: none was launched with extra overrides
    assert (results["protocol"] == "native").all()  # recorded before protocols existed
    # ... and before engines existed: each framework's default engine
    assert dict(zip(results["framework"], results["engine"], strict=True)) == {
        "keras": "tensorflow",
        "pytorch": "torch",
    }
    new_columns = [
        "variant",
        "engine",
        "execution",
        "protocol",
        "modified_at",
        "note",
        "epoch_wall_over_train",
        *ordered_tta(results.columns),
    ]  # added later
    pd.testing.assert_frame_equal(results.drop(columns=new_columns), old_results)
    # the old columns were named by framework (delta = PyTorch − Keras); the default pair is the same
    new = read_csv(report / "statistical_results.csv")
    new = new[~new["metric"].isin(ordered_tta(results.columns))]
    old = read_csv(GOLDEN / "statistical_results.csv").rename(
        columns={
            "pytorch_mode": "mode_a",
            "keras_mode": "mode_b",
            "mean_pytorch": "mean_a",
            "std_pytorch": "std_a",
            "mean_keras": "mean_b",
            "std_keras": "std_b",
        }
    )
    assert set(zip(new["arm_a"], new["arm_b"], strict=True)) == {("pytorch", "keras")} and len(new) == len(old)
    on = ["dataset", "model", "precision", "metric", "mode_a", "mode_b"]
    both = old.merge(new, on=on, suffixes=("_old", ""), validate="one_to_one")
    for column in NUMBERS:
        np.testing.assert_array_equal(both[column].to_numpy(float), both[f"{column}_old"].to_numpy(float), column)
    assert (both["seeds"].astype(str) == both["seeds_old"].astype(str)).all()
    old_sanity, sanity = read_csv(GOLDEN / "sanity.csv"), read_csv(report / "sanity.csv")
    # modes are no longer pooled within a framework in seeds_differ: the compiled runs are their own arm
    kept = [c for c in old_sanity.columns if c != "detail"]
    common = old_sanity[kept].merge(sanity[kept], how="left", indicator=True)
    assert (common["_merge"] == "both").all(), common[common["_merge"] != "both"]


@pytest.mark.cli
def test_a_sweep_made_before_the_run_key_is_found_skipped_and_analysed(tmp_path):
    sweep = tmp_path / "quickstart"
    shutil.copytree(FIXTURE_V0, sweep)
    runs = [p for p in sweep.iterdir() if p.is_dir()]
    before = {p: p.stat().st_mtime_ns for run in runs for p in run.rglob("*") if p.is_file()}
    proc = run_cli("--multirun", "experiment=quickstart", "seed=42", f"hydra.sweep.dir={sweep}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep: 2 runs, 2 already completed" in proc.stderr + proc.stdout
    assert before == {p: p.stat().st_mtime_ns for run in runs for p in run.rglob("*") if p.is_file()}  # untouched
    results = read_csv(sweep / "report" / "results.csv")
    assert sorted(results["run_dir"]) == [
        "keras_digits_mobilenetv2_fp32_seed42",
        "pytorch_digits_mobilenetv2_fp32_seed42",
    ]
    assert (results["state"] == "completed").all() and results["variant"].isna().all()
    row = read_csv(sweep / "report" / "statistical_results.csv").iloc[0]
    assert (row["arm_a"], row["arm_b"], row["n_pairs"]) == ("pytorch", "keras", 1)


@pytest.mark.cli
def test_a_directory_holding_another_key_is_refused(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_V0 / "keras_digits_mobilenetv2_fp32_seed42", run)
    proc = run_cli("framework=pytorch", f"hydra.run.dir={run}", timeout=300)
    assert proc.returncode == 2
    assert (
        "holds the run keras_digits_mobilenetv2_fp32_seed42, not pytorch_digits_mobilenetv2_fp32_seed42" in proc.stderr
    )


# ------------------------------------------------------------------ arms


@pytest.fixture
def three_arms(tmp_path):
    """Two models, five seeds, three frameworks (the third invented for the fixture)."""
    for framework in ("keras", "pytorch", "jax"):
        make_sweep(
            tmp_path,
            ["cifar10"],
            ["resnet50", "mobilenetv2"],
            seeds=[42, 123, 456, 789, 1024],
            frameworks=[framework],
            epochs=4,
        )
    return tmp_path


def test_three_arms_give_every_pairwise_comparison_matching_a_recomputation(three_arms):
    analyze(three_arms, plots=False)
    stats = read_csv(three_arms / "report" / "statistical_results.csv")
    results = read_csv(three_arms / "report" / "results.csv")
    pairs = {("keras", "jax"), ("pytorch", "jax"), ("pytorch", "keras")}
    assert set(zip(stats["arm_a"], stats["arm_b"], strict=True)) == pairs
    tta = stats["metric"].isin(ordered_tta(results.columns))
    assert tta.sum() == 2 * 3 * 4  # models x arm pairs x (cifar10's 2 targets: epochs and seconds)
    stats = stats[~tta]
    assert len(stats) == 2 * 3 * 3  # models x arm pairs x metrics
    for row in stats.itertuples():
        runs = results[(results["model"] == row.model)].set_index(["framework", "seed"])[row.metric]
        a, b = runs[row.arm_a].sort_index().to_numpy(), runs[row.arm_b].sort_index().to_numpy()
        assert row.n_pairs == 5 and row.delta == pytest.approx(np.mean(a - b), rel=1e-12)
        assert row.ttest_p == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9)
        assert row.wilcoxon_p == pytest.approx(scipy_stats.wilcoxon(a - b, method="exact").pvalue, rel=1e-9)
        assert row.mean_a == pytest.approx(a.mean()) and row.mean_b == pytest.approx(b.mean())
    # Holm within a metric over all 6 comparisons
    for _, family in stats.groupby("metric"):
        assert len(family) == 6
    summary = (three_arms / "report" / "significance_summary.md").read_text()
    assert "keras is" in summary and "than jax" in summary and "pytorch − keras" in summary


def test_plots_stay_readable_with_three_arms(three_arms):
    from benchmark.analysis.plots import bars_figure, curves_figure, with_arms
    from benchmark.analysis.runs import collect

    sweep = collect(three_arms)
    curves = with_arms(sweep.curves.merge(sweep.results[["run_dir", "execution_mode"]], on="run_dir"))
    fig = curves_figure(curves[curves["model"] == "resnet50"], "t")
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()][:3] == [
        f"{arm} (mean over 5 seeds)" for arm in ("jax", "keras", "pytorch")
    ]
    assert len({line.get_linestyle() for line in legend.get_lines()[:3]}) == 3  # told apart without colour
    done = sweep.results[sweep.results["state"] == "completed"]
    ax = bars_figure(done, "test_accuracy", "acc", 100.0, "t").axes[0]
    low, high = ax.get_ylim()
    values = done["test_accuracy"] * 100
    assert low > 0.9 * values.min() and high - low < 2 * (values.max() - values.min())  # near the data, not from 0


@pytest.mark.cli
def test_compare_chooses_the_pairs_and_their_direction(three_arms, capsys):
    analyze(three_arms, plots=False, compare=["keras:pytorch"])
    stats = read_csv(three_arms / "report" / "statistical_results.csv")
    assert set(zip(stats["arm_a"], stats["arm_b"], strict=True)) == {("keras", "pytorch")}
    analyze(three_arms, plots=False)
    default = read_csv(three_arms / "report" / "statistical_results.csv")
    flipped = default[(default["arm_a"] == "pytorch") & (default["arm_b"] == "keras")]
    np.testing.assert_allclose(stats["delta"].to_numpy(), -flipped["delta"].to_numpy(), rtol=1e-12)
    with pytest.raises(AnalysisError, match="no runs of arm.*tensorflow.*arms present: jax, keras, pytorch"):
        analyze(three_arms, plots=False, compare=["tensorflow:keras"])
    for bad in ("keras", "keras:keras", "keras:"):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmark.analyze", str(three_arms), "--no-plots", "--compare", bad],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "A:B" in proc.stderr, (bad, proc.stderr)


def test_a_sweep_of_one_arm_has_a_report_without_comparisons(tmp_path):
    make_run(tmp_path, "pytorch", "cifar10", "resnet50", "fp32", 1, epochs=3)
    make_run(tmp_path, "pytorch", "cifar10", "resnet50", "fp32", 2, epochs=3, state="failed")
    report = analyze(tmp_path)
    assert read_csv(report / "statistical_results.csv").empty
    assert (report / "plots" / "bars_accuracy_fp32.png").is_file()
    assert "Comparisons here: none" in (report / "significance_summary.md").read_text()
