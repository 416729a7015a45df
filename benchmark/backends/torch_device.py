"""The PyTorch engine's process set-up, shared by every backend that computes on it
(native PyTorch, and Keras 3 with framework.engine=torch): device choice, seeding and
determinism flags, the float32 (TF32) policy, CPU threads, device synchronization, and
what env.json records of them. Imports torch only (never torchvision or Keras), so
Keras on torch loads nothing more."""

from __future__ import annotations

import os
import random
import re

import numpy as np
import torch

from benchmark import BenchmarkError
from benchmark.backends import cpus

# Thread pools sized from the CPUs this process may use (benchmark.backends.cpus), before
# any parallel work: the inter-op pool can only be sized before its first use.
torch.set_num_threads(cpus.allowed()[0])
try:
    torch.set_num_interop_threads(cpus.allowed()[0])
except RuntimeError:  # already used in this process (a test session): the intra-op pool is what computes
    pass


def resolve_device(name: str) -> torch.device:
    """framework.device (auto, cpu or cuda: benchmark.spec.config.CHOICES checked the name) on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("framework.device=cuda but PyTorch sees no CUDA device; use framework.device=auto or cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every generator; with `deterministic`, deterministic kernels only: an operation
    without one raises (no warn_only: a run that says it is deterministic is), which
    benchmark.backends.determinism_errors turns into a one-line error naming it. The
    models avoid the one such kernel torchvision's networks use (adaptive average
    pooling's CUDA backward: benchmark.backends.pytorch.models.GlobalAvgPool)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        # cuBLAS needs this before its first call to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)


def determinism_switches() -> dict:
    """torch's determinism switches as it reports them (env.json: determinism.switches)."""
    return {
        "torch.are_deterministic_algorithms_enabled": torch.are_deterministic_algorithms_enabled(),
        "torch.is_deterministic_algorithms_warn_only_enabled": torch.is_deterministic_algorithms_warn_only_enabled(),
        "torch.backends.cudnn.deterministic": torch.backends.cudnn.deterministic,
        "torch.backends.cudnn.benchmark": torch.backends.cudnn.benchmark,
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


# The switches of the float32 policy (precision.matmul), in torch's own words: since 2.9
# one fp32_precision per kernel family ("ieee" | "tf32"; oneDNN's on the CPU); earlier
# releases had only the allow_tf32 flags (and mixing the two APIs is an error in torch).
_FP32_SWITCHES = {
    "matmul": ("cuda", "matmul"),
    "conv": ("cudnn", "conv"),
    "rnn": ("cudnn", "rnn"),
    "onednn_matmul": ("mkldnn", "matmul"),
    "onednn_conv": ("mkldnn", "conv"),
}


def _switch(backend: str, family: str):
    return getattr(getattr(torch.backends, backend), family)


def apply_float32_policy(policy: str) -> None:
    """precision.matmul on every torch kernel family, before the first kernel runs."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        for backend, family in _FP32_SWITCHES.values():
            switch = _switch(backend, family)
            # oneDNN has no TF32 on most CPUs: the CPU kernels stay in float32 either way
            switch.fp32_precision = "ieee" if backend == "mkldnn" else policy
    else:  # torch < 2.9
        torch.backends.cuda.matmul.allow_tf32 = policy == "tf32"
        torch.backends.cudnn.allow_tf32 = policy == "tf32"


def float32_state() -> dict[str, bool | None]:
    """Whether torch reports TF32 on, per kind of accelerator kernel (contract.float32_fact)."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return {
            "matmul": torch.backends.cuda.matmul.fp32_precision == "tf32",
            "conv": torch.backends.cudnn.conv.fp32_precision == "tf32",  # type: ignore[attr-defined]
        }
    return {"matmul": torch.backends.cuda.matmul.allow_tf32, "conv": torch.backends.cudnn.allow_tf32}


def float32_switches() -> dict:
    """torch's float32 switches as it reports them (env.json: float32_policy.switches)."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return {
            f"torch.backends.{b}.{f}.fp32_precision": _switch(b, f).fp32_precision for b, f in _FP32_SWITCHES.values()
        }
    return {
        "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
    }


def cpu_threads() -> dict:
    """env.json's ``cpu_threads`` for torch."""
    return cpus.record(torch_intra_op=torch.get_num_threads(), torch_inter_op=torch.get_num_interop_threads())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_kernels() -> dict:
    """The CPU kernel libraries this torch build uses and the ISA level it dispatches to."""
    config = torch.__config__.show()
    onednn = re.search(r"(?:oneDNN|MKL-DNN) v([\d.]+)", config)
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    return {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_onednn": onednn.group(1) if onednn else None,
        "torch_blas": blas.group(1) if blas else None,
    }


# The operators torch documents as having no deterministic CUDA kernel (the RuntimeError
# list of torch.use_deterministic_algorithms), by the names torch's profiler gives them
# on any device: a CPU step that calls none of them will not stop a deterministic CUDA
# run (tests/test_gpu_readiness.py profiles every model's step on the CPU).
CUDA_NONDETERMINISTIC_OPS = frozenset(
    {
        "aten::avg_pool3d_backward",
        "aten::_adaptive_avg_pool2d_backward",
        "aten::_adaptive_avg_pool3d_backward",
        "aten::adaptive_max_pool2d_backward",
        "aten::fractional_max_pool2d_backward",
        "aten::fractional_max_pool3d_backward",
        "aten::max_unpool2d",
        "aten::max_unpool3d",
        "aten::upsample_linear1d_backward",
        "aten::upsample_bilinear2d_backward",
        "aten::upsample_bicubic2d_backward",
        "aten::upsample_trilinear3d_backward",
        "aten::reflection_pad1d_backward",
        "aten::reflection_pad2d_backward",
        "aten::reflection_pad3d_backward",
        "aten::nll_loss2d_forward",
        "aten::_ctc_loss_backward",
        "aten::put_",
        "aten::histc",
        "aten::bincount",
        "aten::median",
        "aten::grid_sampler_2d_backward",
        "aten::grid_sampler_3d_backward",
    }
)


def cuda_nondeterministic_ops(step) -> list[str]:
    """The CUDA_NONDETERMINISTIC_OPS that calling `step()` (a training step) runs, found
    with torch's profiler on whatever device the step uses."""
    from torch.profiler import ProfilerActivity, profile  # the profiler only where a check asks for it

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sorted({event.key for event in prof.key_averages()} & CUDA_NONDETERMINISTIC_OPS)
