"""PyTorch backend: torchvision models, tensor-batch input pipeline, explicit training loop."""

from benchmark.backends.pytorch.env import environment
from benchmark.backends.pytorch.models import build_model
from benchmark.backends.pytorch.train import Trainer

__all__ = ["Trainer", "build_model", "environment"]
