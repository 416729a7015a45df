"""The PyTorch engine's process set-up, shared by every backend that computes on it
(native PyTorch, and Keras 3 with framework.engine=torch): device choice, seeding and
determinism flags, device synchronization, and the CPU kernels env.json records.
Imports torch only (never torchvision or Keras), so Keras on torch loads nothing more."""

from __future__ import annotations

import os
import random
import re

import numpy as np
import torch

from benchmark import BenchmarkError


def resolve_device(name: str) -> torch.device:
    """framework.device (auto, cpu or cuda: benchmark.spec.config.CHOICES checked the name) on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("framework.device=cuda but PyTorch sees no CUDA device; use framework.device=auto or cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        # cuBLAS needs this before its first call to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: a few backward kernels (e.g. adaptive pooling on CUDA) have no
        # deterministic version; they warn instead of stopping the run
        torch.use_deterministic_algorithms(True, warn_only=True)


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
