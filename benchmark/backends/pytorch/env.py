"""env.json fields of a PyTorch run."""

from __future__ import annotations

import torch
import torchvision

from benchmark.backends.torch_device import cpu_kernels, cpu_threads


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
        "cpu_threads": cpu_threads(),
        **cpu_kernels(),
    }
