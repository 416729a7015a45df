"""env.json fields of a PyTorch run."""

from __future__ import annotations

import re

import torch
import torchvision


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


def environment() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "framework": "pytorch",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu_name": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch_threads": torch.get_num_threads(),
        **cpu_kernels(),
    }
