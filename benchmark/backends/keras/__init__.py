"""Keras 3 backend, on the engine framework.engine names (benchmark.spec.frameworks.ENGINES).

One Keras trainer (trainer.py: keras.applications models with the edited stems, LR
schedule and SGD of optim.py, loss, the epoch loop, evaluation, checkpoints, the
contract's answers) runs on every engine; each engine module (``engines/tensorflow.py``,
``engines/jax.py``, ``engines/torch.py``, the backend module load_backend returns) adds
what Keras leaves to the engine: the training step, in the idiom of Keras' own
"training loop from scratch" guides, device set-up, the ``last`` checkpoint and the
input pipeline it reads (``pipelines/tfdata.py``, or ``pipelines/numpy.py`` for JAX and
torch, without TensorFlow).

Keras binds its engine when it is first imported, once per process, from
``KERAS_BACKEND``: ``use_engine`` sets it before that import, whatever the shell has,
and refuses a process whose Keras already runs on another engine. Nothing here
imports Keras or an engine.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

from benchmark import BenchmarkError

# Keras imports JAX whenever it is installed (keras.callbacks' Orbax checkpointing),
# which would load and count a second engine in every Keras run. A run keeps the other
# engines' packages out of its process: importing them raises the ImportError Keras
# expects where they are absent, so each engine's start-up time and memory are its
# own. PyTorch is only kept out of JAX runs: the TensorFlow engine shares processes
# with the native PyTorch backend (the parity audit, the tests).
KEPT_OUT = {"tensorflow": ("jax",), "jax": ("tensorflow", "torch"), "torch": ("tensorflow", "jax")}


class _KeptOut(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the kept-out packages first and fails to load them. The spec has no origin,
    so code that only asks whether a package exists (torch._dynamo asks for
    TensorFlow's location) learns nothing it acts on; sys.modules gets no placeholder
    (libraries such as SciPy read sys.modules to recognize arrays)."""

    def __init__(self, packages):
        self.packages = frozenset(packages)

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.packages:
            return importlib.machinery.ModuleSpec(name, self, origin=None)
        return None

    def create_module(self, spec):
        raise ImportError(
            f"{spec.name} is kept out of this Keras run, which runs on another engine "
            "(benchmark/backends/keras/__init__.py)",
            name=spec.name,
        )

    def exec_module(self, module):  # never reached: create_module refuses
        raise ImportError(module.__name__)


def use_engine(engine: str) -> None:
    """Make Keras run on `engine` in this process (before Keras is imported)."""
    keras = sys.modules.get("keras")
    if keras is not None:
        current = keras.backend.backend()
        if current != engine:
            raise BenchmarkError(
                f"framework.engine={engine}: Keras is already running on the {current} engine in this process "
                "and cannot switch; run each engine in its own process (as `python -m benchmark` and sweeps do)"
            )
        return
    os.environ["KERAS_BACKEND"] = engine
    kept_out = [p for p in KEPT_OUT[engine] if p not in sys.modules]
    if kept_out:
        sys.meta_path.insert(0, _KeptOut(kept_out))
