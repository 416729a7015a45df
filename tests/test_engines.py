"""Keras 3 on its JAX and PyTorch engines (framework.engine): the run key, the one-line
errors, what a run imports, and resume / same-seed on every engine, through the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import (
    REPO,
    assert_same_run,
    compose,
    read_json,
    read_metrics,
    run_cli,
    run_main,
    sigkill_when_logged,
    without_timing,
)

from benchmark import BenchmarkError
from benchmark.spec.frameworks import ENGINES, check_engine, default_engine
from benchmark.spec.runkey import dirname, key_of_config, key_of_record

# small enough for a jitted JAX step to take about a second on a CPU core
TINY = (
    "limit.train=128",
    "limit.val=64",
    "limit.test=64",
    "batch_size=32",
    "epochs=3",
    "optim.warmup_epochs=1",
    "seed=7",
)


def test_engine_is_a_run_key_field_left_out_at_each_frameworks_default():
    names = {
        option: dirname(key_of_config(compose(f"framework={option}")))
        for option in ("keras", "keras_jax", "keras_torch", "pytorch")
    }
    assert names == {
        "keras": "keras_digits_mobilenetv2_fp32_seed42",
        "keras_jax": "keras_jax_digits_mobilenetv2_fp32_seed42",
        "keras_torch": "keras_torch_digits_mobilenetv2_fp32_seed42",
        "pytorch": "pytorch_digits_mobilenetv2_fp32_seed42",
    }
    assert dirname(key_of_config(compose("framework=keras", "framework.engine=jax"))) == names["keras_jax"]
    # a summary.json written before engines existed: each framework's default engine
    old = {"framework": "pytorch", "dataset": "digits", "model": "mobilenetv2", "precision": "fp32", "seed": 1}
    assert key_of_record(old)["engine"] == "torch"
    assert key_of_record({**old, "framework": "keras"})["engine"] == "tensorflow"
    assert [default_engine(f) for f in ENGINES] == ["torch", "tensorflow"]


def test_engine_errors_are_one_line_before_anything_is_written(tmp_path, monkeypatch):
    for args, expected in (
        (
            ("framework=pytorch", "framework.engine=jax"),
            "framework.engine=jax is not an engine of framework=pytorch; valid: torch",
        ),
        (
            ("framework=keras", "framework.engine=mxnet"),
            "framework.engine=mxnet is not an engine of framework=keras; valid: tensorflow, jax, torch",
        ),
        (
            ("framework=keras_torch", "framework.execution=xla"),
            "framework.execution=xla is not an execution mode of framework=keras on framework.engine=torch; "
            "valid: eager",
        ),
    ):
        run_dir = tmp_path / "run"
        code, _, stderr = run_main(*args, f"hydra.run.dir={run_dir}")
        assert code == 2, stderr
        assert stderr.strip().splitlines() == [f"error: {stderr.strip().removeprefix('error: ')}"]
        assert expected in stderr
        assert not run_dir.exists()
    # an engine whose package is not installed (one registered for this test only)
    monkeypatch.setitem(ENGINES["keras"], "mxnet", "mxnet")
    with pytest.raises(
        BenchmarkError,
        match=r"framework=keras framework.engine=mxnet needs mxnet, which is not "
        r"installed here",
    ):
        check_engine("keras", "mxnet")


def test_execution_errors_are_one_line_before_anything_is_written(tmp_path):
    """framework.execution: a mode the framework lacks on its engine, or CUDA graphs on
    framework.device=cpu, is refused by the run's validation, naming the valid modes."""
    for args, expected in (
        (
            ("framework=pytorch", "framework.execution=xla"),
            "framework.execution=xla is not an execution mode of framework=pytorch on framework.engine=torch; "
            "valid: eager, compile, compile-max-autotune, compile-reduce-overhead",
        ),
        (
            ("framework=keras", "framework.execution=compile"),
            "framework.execution=compile is not an execution mode of framework=keras on "
            "framework.engine=tensorflow; valid: graph, xla",
        ),
        (
            ("framework=keras_jax", "framework.execution=graph"),
            "framework.execution=graph is not an execution mode of framework=keras on framework.engine=jax; valid: jit",
        ),
        (
            ("framework=pytorch", "framework.execution=compile-reduce-overhead", "framework.device=cpu"),
            "framework.execution=compile-reduce-overhead uses CUDA graphs and needs a CUDA device, not cpu",
        ),
    ):
        run_dir = tmp_path / "run"
        code, _, stderr = run_main(*args, f"hydra.run.dir={run_dir}")
        assert code == 2, stderr
        assert stderr.strip().splitlines() == [f"error: {stderr.strip().removeprefix('error: ')}"]
        assert expected in stderr
        assert not run_dir.exists()


@pytest.mark.cli
def test_an_unknown_execution_mode_exits_2_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("framework=keras_torch", "framework.execution=compile", f"hydra.run.dir={run_dir}", timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "error: framework.execution=compile is not an execution mode of framework=keras on framework.engine=torch; "
        "valid: eager"
    ]
    assert not run_dir.exists()


def test_cuda_graphs_are_refused_when_the_resolved_device_is_not_cuda(tmp_path):
    """framework.device=auto is resolved when the trainer is built: compile-reduce-overhead
    on a machine without CUDA is a one-line error there, before a model is built."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: reduce-overhead is valid here")
    from benchmark.backends.pytorch.train import Trainer

    cfg = compose("framework=pytorch", "framework.execution=compile-reduce-overhead")
    with pytest.raises(BenchmarkError, match=r"^framework.execution=compile-reduce-overhead uses CUDA graphs.*not cpu"):
        Trainer(cfg, None, None, tmp_path)


@pytest.mark.cli
@pytest.mark.engines
def test_keras_cannot_switch_engines_within_a_process():
    code = (
        "from benchmark.backends import load_backend\n"
        "load_backend('keras', 'torch')\n"
        "from benchmark import BenchmarkError\n"
        "try:\n    load_backend('keras', 'jax')\nexcept BenchmarkError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == (
        "framework.engine=jax: Keras is already running on the torch engine in this process "
        "and cannot switch; run each engine in its own process (as `python -m benchmark` "
        "and sweeps do)"
    )


@pytest.mark.slow
@pytest.mark.cli
@pytest.mark.engines
@pytest.mark.parametrize(
    "option, engine, loaded, mode",
    [
        ("keras_jax", "jax", ["jax"], "jax.jit"),
        ("keras_torch", "torch", ["torch"], "eager"),
    ],
)
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, data_dir, option, engine, loaded, mode):
    """On each engine: two processes with the same seed give the same metrics, and a run
    killed mid-epoch resumes to exactly the uninterrupted run's metrics and test result."""
    args = (f"framework={option}", *TINY, f"data_dir={data_dir}")
    # JAX's persistent compilation cache: the second and third processes load the XLA
    # programs the first compiled (the same programs, so the same numbers) in seconds
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache")}
    reference = tmp_path / "reference"
    out = run_cli(*args, f"hydra.run.dir={reference}", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    summary, recorded = read_json(reference / "summary.json"), read_json(reference / "env.json")
    assert (summary["framework"], summary["engine"], summary["execution_mode"]) == ("keras", engine, mode)
    assert recorded["keras_backend"] == engine
    assert recorded["engines_loaded"] == loaded  # JAX: no TensorFlow; Keras on torch: neither TensorFlow nor JAX

    run_dir = tmp_path / "killed"
    sigkill_when_logged(run_dir, "epoch 2/3  step 2/4", *args, env=env)
    assert len(read_metrics(run_dir)) == 1
    # same seed, another process: epoch 1 already equals the reference's
    assert without_timing(read_metrics(run_dir)) == without_timing(read_metrics(reference))[:1]

    resumed = run_cli(*args, f"hydra.run.dir={run_dir}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1" in resumed.stdout
    assert_same_run(run_dir, reference)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.json",
        "best.weights.h5",
        "last-epoch0003.weights.h5",
        "last.json",
    ]


def test_report_says_the_api_effect_and_the_engine_effects(tmp_path):
    """Four arms x 3 seeds: every pair compared; the pairs on one engine are the API
    effect, the pairs of one framework the engine effects, the rest both together."""
    import pandas as pd
    from runs import make_run

    from benchmark.analyze import analyze

    accuracy = {("keras", None): 0.90, ("keras", "jax"): 0.91, ("keras", "torch"): 0.92, ("pytorch", None): 0.95}
    for (framework, engine), base in accuracy.items():
        for i, seed in enumerate((42, 123, 456)):
            make_run(
                tmp_path,
                framework,
                "cifar10",
                "resnet50",
                "fp32",
                seed,
                epochs=4,
                engine=engine,
                test_accuracy=base + 0.001 * i,
            )
    report = analyze(tmp_path, plots=False)
    results = pd.read_csv(report / "results.csv")
    assert sorted(zip(results["framework"], results["engine"], strict=True))[::3] == [
        ("keras", "jax"),
        ("keras", "tensorflow"),
        ("keras", "torch"),
        ("pytorch", "torch"),
    ]
    table = pd.read_csv(report / "api_engine.csv")
    accuracy_rows = table[table["metric"] == "test_accuracy"].set_index(["arm_a", "arm_b"])
    assert len(accuracy_rows) == 6  # every two of the four arms
    assert accuracy_rows["effect"].to_dict() == {
        ("keras/jax", "keras"): "engine",
        ("keras/torch", "keras"): "engine",
        ("keras/torch", "keras/jax"): "engine",
        ("pytorch", "keras"): "api+engine",
        ("pytorch", "keras/jax"): "api+engine",
        ("pytorch", "keras/torch"): "api",
    }
    assert accuracy_rows.loc[("pytorch", "keras/torch"), "delta"] == pytest.approx(0.03)
    summary = (report / "significance_summary.md").read_text()
    assert (
        "API effect (the same torch engine, pytorch vs keras code and model zoo) on test accuracy: "
        "pytorch (pytorch on torch) − keras/torch (keras on torch) = 3.00 [3.00, 3.00] points"
    ) in summary
    assert (
        "Engine effect (the same keras code, jax vs tensorflow under it) on test accuracy: "
        "keras/jax (keras on jax) − keras (keras on tensorflow) = 1.00 [1.00, 1.00] points"
    ) in summary
