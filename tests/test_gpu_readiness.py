"""Ready for the GPU node, checked on the CPU: the float32 (TF32) policy each engine
applies and reports, determinism that is enforced or stops the run in one line, the
PyTorch models free of operations without a deterministic CUDA kernel, and thread pools
sized from the CPUs the process may use (docs/protocol.md §8, §9; docs/running.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import REPO, read_json
from torch.nn import functional as F
from torchvision import models as tvm

from benchmark import BenchmarkError, OtherRunError
from benchmark.backends import contract, determinism_errors, nondeterministic_op
from benchmark.backends.pytorch import models
from benchmark.backends.torch_device import (
    apply_float32_policy,
    cuda_nondeterministic_ops,
    float32_state,
)
from benchmark.spec.config import check_values
from benchmark.spec.models import list_models

# ------------------------------------------------------------------ global average pooling


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(8, 1280, 1, 1), (8, 1280, 2, 2), (4, 2048, 4, 4), (3, 768, 7, 7)])
def test_global_average_pooling_equals_adaptive_pooling_bit_for_bit(shape, channels_last):
    """The replacement computes torchvision's numbers exactly on this CPU, forward and backward."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ours, theirs = models.GlobalAvgPool()(x), F.adaptive_avg_pool2d(x, 1)
    upstream = torch.randn(ours.shape, generator=generator)
    (g_ours,) = torch.autograd.grad(ours, x, upstream)
    (g_theirs,) = torch.autograd.grad(theirs, x, upstream)
    assert torch.equal(ours, theirs) and torch.equal(g_ours, g_theirs)


def _step(model: torch.nn.Module, size: int = 32):
    x, y = torch.randn(2, 3, size, size), torch.tensor([0, 1])

    def step():
        model.train()
        F.cross_entropy(model(x), y).backward()

    return step


@pytest.mark.parametrize("name", list_models())
def test_no_pytorch_model_runs_an_op_without_a_deterministic_cuda_kernel(name):
    """A training step of every registry model, profiled on the CPU, calls none of the
    operations torch documents as having no deterministic CUDA kernel: a deterministic
    CUDA run will not stop at one."""
    model = models.create_model(name, 10, 32)
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules()), name
    assert cuda_nondeterministic_ops(_step(model)) == [], name


def test_the_profile_check_finds_adaptive_pooling_to_more_than_one_pixel():
    """The check can fail: adaptive pooling to 2x2 runs the backward that has no deterministic
    CUDA kernel. (To 1x1, as torchvision's networks pool, torch itself dispatches to a mean:
    the check finds nothing in torchvision's ResNet-18 either.)"""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 10)
    )
    found = cuda_nondeterministic_ops(_step(net))
    assert found == ["aten::_adaptive_avg_pool2d_backward"]
    assert cuda_nondeterministic_ops(_step(tvm.resnet18(num_classes=10))) == []


@pytest.mark.engines
def test_a_keras_on_torch_model_runs_no_op_without_a_deterministic_cuda_kernel():
    """Keras on the torch engine (its own process: Keras binds one engine per process)."""
    script = (
        "from benchmark.backends.keras.engines import torch as engine\n"
        "import keras, torch\n"
        "from benchmark.backends.torch_device import cuda_nondeterministic_ops\n"
        "from benchmark.spec.models import list_models\n"
        "found = {}\n"
        "for name in list_models():\n"
        "    model = engine.create_model(name, 10, 32)\n"
        "    x, y = torch.randn(2, 32, 32, 3), torch.tensor([0, 1])\n"
        "    def step():\n"
        "        loss = torch.nn.functional.cross_entropy(model(x, training=True), y)\n"
        "        loss.backward()\n"
        "    found[name] = cuda_nondeterministic_ops(step)\n"
        "print('FOUND', found)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    found = eval(out.stdout.split("FOUND ", 1)[1])  # noqa: S307  our own child's printed dict
    assert found == {name: [] for name in list_models()}


# ------------------------------------------------------------------ determinism errors


def test_an_op_without_a_deterministic_kernel_stops_the_run_in_one_line():
    """torch's put_ (accumulate=False) has no deterministic kernel on any device: under the
    flags a deterministic run sets it raises, and the run's guard names it in one line."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(BenchmarkError) as caught, determinism_errors():
            torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
    finally:
        torch.use_deterministic_algorithms(before)
    message = str(caught.value)
    assert "\n" not in message and "put_" in message and "framework.deterministic=false" in message
    # any other error passes through unchanged
    with pytest.raises(ZeroDivisionError), determinism_errors():
        _ = 1 / 0


def test_tensorflows_wording_of_a_missing_deterministic_kernel_is_recognized():
    """TensorFlow's enable_op_determinism raises UnimplementedError in these words (its
    kernels' sources); nothing else is taken for it."""
    said = "Determinism is not yet supported in GPU implementation of FusedBatchNormV3 with reserve space."
    assert nondeterministic_op(RuntimeError(said)) == "FusedBatchNormV3 with reserve space"
    assert nondeterministic_op(RuntimeError("CUDA out of memory")) is None


# ------------------------------------------------------------------ the float32 policy


def test_pytorchs_switches_follow_the_policy_and_report_it():
    before = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    try:
        apply_float32_policy("tf32")
        assert float32_state() == {"matmul": True, "conv": True}
        apply_float32_policy("ieee")
        assert float32_state() == {"matmul": False, "conv": False}
        assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"  # the CPU kernels stay in float32
    finally:
        apply_float32_policy("ieee")
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before


def test_the_float32_fact_is_the_same_words_for_every_framework_and_names_a_mismatch():
    on, off = {"matmul": True, "conv": True}, {"matmul": False, "conv": False}
    assert contract.float32_fact("ieee", "cuda", off) == contract.float32_fact("ieee", "cuda", {"matmul": False})
    assert contract.float32_fact("tf32", "cuda", on).startswith("tf32: TF32 on")
    assert contract.float32_fact("ieee", "cuda", {"matmul": False, "conv": True}) == (
        "ieee requested, but the framework reports TF32 on for conv"
    )
    # on a CPU nothing is claimed about TF32, whatever the switches say
    assert "not applicable on cpu" in contract.float32_fact("tf32", "cpu", off)


def test_an_unknown_float32_policy_is_one_line(tmp_path):
    from helpers import compose

    cfg = compose("precision.matmul=tf16")
    with pytest.raises(BenchmarkError, match=r"^precision.matmul=tf16 is unknown; valid: ieee, tf32$"):
        check_values(cfg)


ENGINE_CHILD = """
import json, sys
from helpers import compose
option = sys.argv[1]
cfg = compose(f"framework={option}", "precision.matmul=tf32", "framework.deterministic=false")
if option == "keras":
    from benchmark.backends.keras.engines import tensorflow as module
    engine = module.TensorFlowEngine(cfg)
elif option == "keras_jax":
    from benchmark.backends.keras.engines import jax as module
    engine = module.JaxEngine(cfg)
else:
    from benchmark.backends.keras.engines import torch as module
    engine = module.TorchEngine(cfg)
print("ANSWER " + json.dumps({
    "state": engine.float32_state(), "switches": engine.float32_switches(),
    "determinism": engine.determinism_switches(), "threads": module.environment()["cpu_threads"],
}))
"""


@pytest.mark.engines
@pytest.mark.parametrize("option", ["keras", "keras_jax", "keras_torch"])
def test_each_keras_engine_applies_the_policy_and_sizes_its_threads_from_the_affinity_mask(option):
    """In a process pinned to one CPU (taskset), each engine reports TF32 on under
    precision.matmul=tf32, its determinism switch off under framework.deterministic=false,
    and thread pools of one thread."""
    if shutil.which("taskset") is None:
        pytest.fail("taskset (util-linux) is needed to pin a process to one CPU")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "XLA_FLAGS")}
    env["PYTHONPATH"] = f"{REPO / 'tests'}:{env.get('PYTHONPATH', '')}"
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", ENGINE_CHILD, option],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.split("ANSWER ", 1)[1])
    assert answer["state"] == {"matmul": True, "conv": True}, answer
    assert answer["threads"]["allowed"] == answer["threads"]["affinity"] == 1, answer
    assert answer["threads"]["source"] == "affinity mask"
    pools = {k: v for k, v in answer["threads"].items() if k.startswith(("tf_", "torch_"))}
    assert all(v == 1 for v in pools.values()), pools
    enforcing = {
        "keras": "tf.config.experimental.enable_op_determinism",
        "keras_torch": "torch.are_deterministic_algorithms_enabled",
    }.get(option)
    if enforcing:
        assert answer["determinism"][enforcing] is False, answer


def test_slurms_cpu_count_lowers_the_pytorch_thread_pools():
    """A job given fewer CPUs than its affinity mask shows (SLURM_CPUS_PER_TASK) gets that many threads."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["SLURM_CPUS_PER_TASK"] = "1"
    script = "import json; from benchmark.backends.torch_device import cpu_threads; print(json.dumps(cpu_threads()))"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert threads["allowed"] == threads["torch_intra_op"] == threads["torch_inter_op"] == 1, threads
    if threads["affinity"] > 1:
        assert threads["source"] == "SLURM_CPUS_PER_TASK", threads


# ------------------------------------------------------------------ runs recorded before the policy


def _old_run(tmp_path, device: str):
    from helpers import compose

    src = REPO / "tests" / "fixtures" / "sweep_v0" / "pytorch_digits_mobilenetv2_fp32_seed42"
    run = tmp_path / src.name
    shutil.copytree(src, run)
    env = read_json(run / "env.json")
    (run / "env.json").write_text(json.dumps({**env, "device": device}))
    summary = read_json(run / "summary.json")
    assert "matmul" not in summary["config"]["precision"]  # recorded before the policy existed
    cfg = compose(*[f"{k}={v}" for k, v in [("framework", "pytorch"), ("seed", 42)]])
    return run, summary, cfg


def test_a_cpu_run_recorded_before_the_float32_policy_is_still_this_run(tmp_path):
    """On a CPU there was nothing to pin: such a run is what precision.matmul=ieee runs."""
    from benchmark.run.resume import check_same_run

    run, summary, cfg = _old_run(tmp_path, "cpu")
    check_same_run(run, cfg)  # skipped or resumed, not refused


def test_a_gpu_run_recorded_before_the_float32_policy_is_not_taken_for_an_ieee_run(tmp_path):
    from benchmark.run.resume import check_same_run

    run, summary, cfg = _old_run(tmp_path, "cuda")
    with pytest.raises(OtherRunError, match="precision.matmul: None -> ieee"):
        check_same_run(run, cfg)
