"""Keras 3 on the TensorFlow engine: tf.data pipeline, GradientTape step in tf.function."""

import os

from benchmark.backends.keras import use_engine

use_engine("tensorflow")  # before keras is imported, whatever KERAS_BACKEND the shell has
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter stays out of the logs

from benchmark.backends.keras.env import enable_memory_growth, environment  # noqa: E402

enable_memory_growth()  # before keras or a model can touch the GPU

from benchmark.backends.keras.data import input_pipeline, synchronize  # noqa: E402
from benchmark.backends.keras.models import canonical_shapes, create_model, load_canonical  # noqa: E402
from benchmark.backends.keras.train import Trainer, equivalence_probe  # noqa: E402

__all__ = ["Trainer", "canonical_shapes", "create_model", "environment", "equivalence_probe", "input_pipeline",
           "load_canonical", "synchronize"]
