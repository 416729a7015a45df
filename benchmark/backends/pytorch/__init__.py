"""PyTorch backend: torchvision models, tensor-batch input pipeline, explicit training loop."""

from benchmark.backends.pytorch.data import input_pipeline, synchronize
from benchmark.backends.pytorch.env import environment
from benchmark.backends.pytorch.models import canonical_shapes, create_model, load_canonical
from benchmark.backends.pytorch.probe import equivalence_probe
from benchmark.backends.pytorch.train import Trainer

__all__ = [
    "Trainer",
    "canonical_shapes",
    "create_model",
    "environment",
    "equivalence_probe",
    "input_pipeline",
    "load_canonical",
    "synchronize",
]
