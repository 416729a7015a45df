"""PyTorch backend: torchvision models, tensor-batch input pipeline, explicit training loop."""

from benchmark.backends.pytorch.data import input_pipeline, synchronize
from benchmark.backends.pytorch.env import environment
from benchmark.backends.pytorch.models import create_model
from benchmark.backends.pytorch.train import Trainer

__all__ = ["Trainer", "create_model", "environment", "input_pipeline", "synchronize"]
