"""`python -m benchmark.perf.profile` (operator profiles per arm) and `python -m benchmark.perf.micro`
(one micro-benchmark per suspected kernel): the reductions, the tables, the raw traces; timings are
never asserted. The real child processes are `slow`; the reductions and the argument checks are fast."""

import csv
import math
import subprocess
import sys
from collections import defaultdict

import pytest
from helpers import REPO

from benchmark.backends import profiling
from benchmark.backends.profiling import Call, self_times
from benchmark.backends.profiling import jax as jax_profiling
from benchmark.backends.profiling import torch as torch_profiling
from benchmark.perf import micro
from benchmark.perf import profile as prof
from benchmark.perf.profile import CATEGORIES, COLUMNS, aggregate, categorize
from benchmark.spec.frameworks import ENGINES

# ------------------------------------------------------------------ the reductions, in process


@pytest.mark.parametrize(
    ("operator", "context", "category"),
    [
        # PyTorch: the weight's shape marks a depthwise convolution; Python frames name the scope
        ("aten::convolution_backward", "autograd::engine::evaluate_function: X [depthwise]", "depthwise convolution"),
        ("aten::mkldnn_convolution", "torch/nn/modules/conv.py(554): forward", "convolution"),
        ("aten::native_batch_norm", "", "batchnorm"),
        ("aten::addmm", "", "matmul/dense"),
        ("aten::_foreach_add_", "", "optimizer update"),
        ("aten::add_", "torch/optim/sgd.py(90): step", "optimizer update"),
        ("aten::copy_", "keras/src/layers/convolutional/base_conv.py(240): call", "copy/layout"),
        ("aten::mul", "keras/src/layers/normalization/batch_normalization.py(300): call", "batchnorm"),
        ("aten::index", "benchmark/backends/pytorch/data.py(80): __iter__", "data/input"),
        ("aten::hardtanh", "", "elementwise/activation"),
        ("autograd::engine::evaluate_function: ConvolutionBackward0", "", "other"),
        # TensorFlow: op types, and the layer or optimizer scope of the elementwise ops
        (
            "_MklNativeDepthwiseConv2dNativeBackpropFilter",
            "gradient_tape/m/block_1_depthwise_1/depthwise",
            "depthwise convolution",
        ),
        ("_MklNativeConv2DBackpropInput", "gradient_tape/m/block_1_project_1/convolution", "convolution"),
        ("Mul", "m/expanded_conv_depthwise_BN_1/batchnorm/mul_1", "batchnorm"),
        ("SquaredDifference", "m/bn_Conv1_1/moments/SquaredDifference", "batchnorm"),
        ("Mul", "sgd/Mul_528", "optimizer update"),
        ("StatelessRandomUniformFullIntV2", "tf.data/stateless_random_uniform", "data/input"),
        ("Pad", "m/block_1_pad_1/Pad", "copy/layout"),
        ("ReadVariableOp", "m/block_1_expand_1/ReadVariableOp", "other"),
        # XLA: instruction names, the JAX primitive and Keras layer of their op_name
        (
            "convolution-base-dilated",
            "jit(s)/transpose(jvp(block_1_depthwise))/conv_general_dilated [depthwise]",
            "depthwise convolution",
        ),
        ("ynn_fusion", "jit(s)/transpose(jvp(block_2_depthwise))/conv_general_dilated", "depthwise convolution"),
        ("ynn_fusion", "jit(s)/jvp(Conv_1)/conv_general_dilated", "convolution"),
        ("ynn_fusion", "[convolution]", "convolution"),
        ("broadcast_subtract_fusion", "jit(s)/jvp(bn_Conv1)/jit(_var)/sub", "batchnorm"),
        ("transpose_copy_fusion", "jit(s)/jvp(block_1_expand_BN)/mul", "copy/layout"),
        ("multiply_subtract_fusion", "jit(s)/sgd/sub", "optimizer update"),
        ("add_clamp_fusion", "jit(s)/jvp(block_1_expand_relu)/jit(relu6)/min", "elementwise/activation"),
        ("dot", "jit(s)/jvp(predictions)/dot_general", "matmul/dense"),
    ],
)
def test_categories_name_each_frameworks_operators_by_family(operator, context, category):
    assert categorize(operator, context) == category
    assert category in CATEGORIES


def test_every_engine_has_a_profiling_module_and_its_patterns_join_a_rule():
    engines = {engine for by_framework in ENGINES.values() for engine in by_framework}
    assert set(profiling.ENGINES) == engines
    for engine in profiling.ENGINES:
        module = profiling.load_engine(engine)
        assert module.LABEL and module.LAYOUTS
        prof.rules((engine,))  # every (category, field) an engine adds to has a rule
    assert profiling.REFERENCE in micro.COLUMNS
    # an engine's own scopes are read with its patterns (and by default with every engine's)
    frame = "benchmark/backends/pytorch/data.py(80): __iter__"
    assert categorize("aten::index", frame, "torch") == categorize("aten::index", frame) == "data/input"
    assert categorize("aten::index", frame, "jax") == "other"


def test_self_time_is_the_duration_minus_the_events_nested_in_it():
    # an outer event of 10 holding 2 and 3 (the 3 holding 1), then a sibling of 4
    events = [(0.0, 10.0, "outer"), (1.0, 2.0, "a"), (4.0, 3.0, "b"), (5.0, 1.0, "c"), (12.0, 4.0, "next")]
    assert dict(self_times(events)) == {"outer": 5.0, "a": 2.0, "b": 2.0, "c": 1.0, "next": 4.0}


def test_aggregate_ranks_by_self_time_and_shares_sum_to_one():
    calls = [Call("Mul", "sgd/Mul_1", 0.002), Call("Mul", "m/bn_1/batchnorm/mul", 0.006), Call("Conv2D", "", 0.012)]
    rows = aggregate(calls + calls, steps=2)
    assert [(r["rank"], r["operator"], r["category"]) for r in rows] == [
        (1, "Conv2D", "convolution"),
        (2, "Mul", "batchnorm"),
        (3, "Mul", "optimizer update"),
    ]
    assert math.isclose(sum(r["share"] for r in rows), 1.0)
    assert rows[0]["calls_per_step"] == 1 and math.isclose(rows[0]["self_ms_per_step"], 12.0)


def test_hlo_facts_give_fusions_their_computations_op_name_and_mark_grouped_convolutions(tmp_path):
    (tmp_path / "module_0001.jit_step.cpu_after_optimizations.txt").write_text(
        "HloModule jit_step, is_scheduled=true\n\n"
        "%fused_computation.1 (param_0.1: f32[8,16,16,8], param_1.1: f32[3,3,8,8]) -> f32[8,16,16,8] {\n"
        "  %param_0.1 = f32[8,16,16,8]{3,2,1,0} parameter(0)\n"
        "  ROOT %c.1 = f32[8,16,16,8]{3,2,1,0} convolution(%param_0.1, %param_1.1), "
        'metadata={op_name="jit(step)/jvp(Conv_1)/conv_general_dilated"}\n'
        "}\n\n"
        "%fused_computation.2 (param_0.2: f32[96,33,33,8], param_1.2: f32[16,16,8,96]) -> f32[96,3,3,96] {\n"
        "  ROOT %convolution-window-dilated.11 = f32[96,3,3,96]{3,2,1,0} convolution(%param_0.2, %param_1.2)\n"
        "}\n\n"
        "ENTRY %main.5 (x: f32[8,16,16,8]) -> f32[8,16,16,8] {\n"
        "  %ynn_fusion.3 = f32[8,16,16,8]{3,2,1,0} fusion(%x, %w), kind=kCustom, calls=%fused_computation.1\n"
        "  %ynn_fusion.60 = f32[96,3,3,96]{3,2,1,0} fusion(%a, %b), kind=kCustom, calls=%fused_computation.2\n"
        "  %conv_general_dilated.0 = f32[8,16,16,8]{3,2,1,0} convolution(%x, %w), feature_group_count=8, "
        'metadata={op_name="jit(step)/jvp(block_1_depthwise)/conv_general_dilated"}\n'
        "}\n"
    )
    facts = jax_profiling.hlo_facts(tmp_path)
    assert facts[("jit_step", "ynn_fusion.3")] == "jit(step)/jvp(Conv_1)/conv_general_dilated"
    assert facts[("jit_step", "ynn_fusion.60")] == "[convolution] [depthwise]"  # XLA's dense filter gradient
    assert facts[("jit_step", "conv_general_dilated.0")].endswith(" [depthwise]")
    trace = {
        "traceEvents": [
            {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
            {"ph": "X", "pid": 1, "tid": 7, "ts": 0, "dur": 100, "name": "ThunkExecutor::Execute"},
            {
                "ph": "X",
                "pid": 1,
                "tid": 7,
                "ts": 10,
                "dur": 50,
                "name": "ynn_fusion.3",
                "args": {"hlo_op": "ynn_fusion.3", "hlo_module": "jit_step"},
            },
            {
                "ph": "X",
                "pid": 1,
                "tid": 7,
                "ts": 20,
                "dur": 10,
                "name": "x",
                "args": {"hlo_op": "ynn_fusion.60", "hlo_module": "jit_step"},
            },
            {
                "ph": "X",
                "pid": 1,
                "tid": 8,
                "ts": 20,
                "dur": 30,
                "name": "x",
                "args": {"hlo_op": "conv_general_dilated.0", "hlo_module": "jit_step"},
            },
        ]
    }
    calls, clock = jax_profiling.trace_json_calls(trace, facts)
    assert clock == "cpu"
    by = {c.example.split()[0]: c for c in calls}
    assert set(by) == {"ynn_fusion.3", "ynn_fusion.60", "conv_general_dilated.0"}  # only XLA's executed ops
    assert math.isclose(by["ynn_fusion.3"].self_s, 40e-6) and by["ynn_fusion.3"].operator == "ynn_fusion"
    rows = aggregate(calls, steps=1)
    assert {r["category"] for r in rows} == {"convolution", "depthwise convolution"}


def test_torch_reduction_marks_depthwise_weights_and_scopes_backward_ops_by_their_forward():
    import torch  # the torch profiler's real events; this test's own process
    from torch.profiler import ProfilerActivity, profile

    model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=4), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1)
    )
    x = torch.randn(2, 4, 8, 8)
    model(x).sum().backward()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_stack=True) as p:
        model(x).sum().backward()
    calls = torch_profiling.torch_calls(p.events(), on_device=False)
    assert not [
        c for c in calls if torch_profiling.PYTHON_FRAME.search(c.operator)
    ]  # Python frames are scopes, not rows
    rows = aggregate(calls, steps=1)
    found = {(r["operator"], r["category"]) for r in rows}
    assert ("aten::convolution_backward", "depthwise convolution") in found
    assert ("aten::convolution_backward", "convolution") in found
    assert ("aten::native_batch_norm_backward", "batchnorm") in found
    assert math.isclose(sum(r["share"] for r in rows), 1.0)
    backward = [c for c in calls if c.operator == "aten::native_batch_norm_backward"]
    assert backward and all("batchnorm.py(" in c.context and "(backward)" in c.context for c in backward)


def test_markdown_puts_the_arms_side_by_side():
    arm = {"execution_mode": "m", "step_ms": 10.0, "op_ms_per_step": 9.0}
    rows = aggregate([Call("Conv2D", "", 0.003), Call("Mul", "", 0.001)], steps=1)
    text = prof.markdown(
        [{"backend": "keras", **arm, "rows": rows}, {"backend": "pytorch", **arm, "rows": rows[:1]}], 3
    )
    lines = text.splitlines()
    assert lines[0] == "| rank | keras (m) | pytorch (m) |"
    assert lines[2] == "| 1 | Conv2D (convolution) 75.0%, 3.00 ms | Conv2D (convolution) 75.0%, 3.00 ms |"
    assert lines[3] == "| 2 | Mul (elementwise/activation) 25.0%, 1.00 ms |  |"
    assert "| convolution | 75.0% | 75.0% |" in lines


def test_profile_rejects_an_unknown_backend_in_one_line(tmp_path, capsys):
    assert prof.main(["--backends", "pytorch,jax", "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "'jax'" in err
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.cli
def test_profile_rejects_an_unknown_backend_from_the_command_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.perf.profile", "--backends", "zoo", "--out", str(tmp_path / "p.csv")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "'zoo'" in out.stderr
    assert not (tmp_path / "p.csv").exists()


def test_micro_rejects_an_unknown_engine_in_one_line(tmp_path, capsys):
    assert micro.main(["--engines", "torch,mxnet", "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "mxnet" in err
    assert not (tmp_path / "m.csv").exists()


def test_micro_says_so_where_an_engine_is_not_installed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(micro, "installed", lambda package: package != "jax")
    assert micro.main(["--engines", "jax", "--out", str(tmp_path / "m.csv")]) == 0  # no child: nothing to time
    text = capsys.readouterr().out
    assert (
        "| depthwise3x3 x17 (all layers) | not timed | not installed | not timed | not timed | n/a | n/a | n/a |"
        in text
    )
    with open(tmp_path / "m.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["ms_per_call"] for r in rows if r["engine"] == "jax"} == {"not installed"}
    assert list(rows[0]) == ["kernel", "engine", "layout", "ms_per_call", "ratio_to_pytorch_channels_last"]


def test_the_depthwise_shapes_are_mobilenetv2s_at_32_pixels():
    import torch  # the PyTorch model the shapes are read from; this test's own process

    from benchmark.backends.pytorch.models import create_model

    model = create_model("mobilenetv2", 10, 32)
    seen = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.groups > 1:
            module.register_forward_hook(
                lambda m, inputs, output: seen.append((inputs[0].shape[-1], m.in_channels, m.stride[0]))
            )
    model.eval()(torch.zeros(1, 3, 32, 32))
    assert tuple(seen) == micro.DEPTHWISE
    assert all(kind in ("depthwise", "pointwise", "batchnorm") for kind, _, _ in micro.KERNELS.values())


# ------------------------------------------------------------------ the real commands (child processes)


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _check_csv(path, backends):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    by = defaultdict(list)
    for row in rows:
        by[row["backend"]].append(row)
    assert list(by) == backends
    for arm in by.values():
        assert math.isclose(sum(float(r["share"]) for r in arm), 1.0, abs_tol=0.01)
        top = arm[0]
        assert top["rank"] == "1" and top["operator"] and float(top["self_ms_per_step"]) > 0
        assert float(top["step_ms"]) > 0 and float(top["op_ms_per_step"]) > 0
        assert {r["category"] for r in arm} <= set(CATEGORIES)
    return by


@pytest.mark.slow
@pytest.mark.cli
def test_profile_writes_the_table_the_traces_and_the_markdown(tmp_path):
    out = _run(
        "benchmark.perf.profile",
        "--backends",
        "pytorch,keras",
        "--steps",
        "2",
        "--batch",
        "4",
        "--out",
        str(tmp_path / "profile.csv"),
        "--trace-dir",
        str(tmp_path / "profile"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    by = _check_csv(tmp_path / "profile.csv", ["pytorch", "keras"])
    assert by["pytorch"][0]["execution_mode"] == "eager+channels_last" and by["keras"][0]["clock"] == "cpu"
    assert (tmp_path / "profile" / "pytorch" / "trace.json.gz").stat().st_size > 0
    assert list((tmp_path / "profile" / "keras" / "plugins" / "profile").glob("*/*.xplane.pb"))
    lines = out.stdout.splitlines()
    assert "| rank | pytorch (eager+channels_last) | keras (tf.function) |" in lines
    assert [line.split(" |")[0] for line in lines if line[:4] in {f"| {i} " for i in range(1, 6)}] == [
        f"| {i}" for i in range(1, 6)
    ]
    assert any(line.startswith("| convolution | ") for line in lines)


@pytest.mark.slow
@pytest.mark.cli
@pytest.mark.engines
def test_profile_of_keras_on_jax_reads_xla_ops_without_tensorflow(tmp_path):
    out = _run(
        "benchmark.perf.profile",
        "--backends",
        "keras_jax",
        "--steps",
        "2",
        "--batch",
        "4",
        "--out",
        str(tmp_path / "profile.csv"),
        "--trace-dir",
        str(tmp_path / "profile"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    arm = _check_csv(tmp_path / "profile.csv", ["keras_jax"])["keras_jax"]
    # the HLO dump named the layers: the depthwise convolutions are found as such
    assert "depthwise convolution" in {r["category"] for r in arm}
    run = tmp_path / "profile" / "keras_jax"
    assert list(run.glob("plugins/profile/*/perfetto_trace.json.gz")) and list(
        run.glob("plugins/profile/*/*.xplane.pb")
    )
    assert list(run.glob("xla_dump/*train_step*after_optimizations.txt"))
    assert "| rank | keras_jax (jax.jit) |" in out.stdout


@pytest.mark.slow
@pytest.mark.cli
@pytest.mark.engines
def test_micro_times_every_kernel_on_every_engine_with_ratios(tmp_path):
    out = _run(
        "benchmark.perf.micro",
        "--batch",
        "2",
        "--rounds",
        "1",
        "--round-seconds",
        "0.01",
        "--out",
        str(tmp_path / "micro.csv"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / "micro.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["kernel"], r["engine"], r["layout"]) for r in rows} == {
        (k, e, lay) for k in micro.KERNELS for e, lay in micro.COLUMNS
    }
    for row in rows:
        assert float(row["ms_per_call"]) > 0 and float(row["ratio_to_pytorch_channels_last"]) > 0
    header = out.stdout.splitlines()[0]
    for engine, layout in micro.COLUMNS:
        assert f"{micro.LABELS[engine]} {layout}" in header
    assert "/ PyTorch channels_last" in header
