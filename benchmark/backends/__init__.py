"""Backend registry: the backends and how one is loaded.

A backend is a subpackage ``benchmark.backends.<name>`` that implements the contract
of :mod:`benchmark.backends.contract` (``Backend`` for the module, ``Trainer`` for its
trainer) on each of its engines (ENGINES), and a model registry (``models.create_model(name, num_classes, image_size,
drop_rate=..., drop_path_rate=..., init=..., architecture=...)``) whose aligned
architecture maps every tensor onto torchvision's names and layout
(``canonical_shapes``/``load_canonical``; docs/protocol.md §11). Adding a backend is one entry in BACKENDS and ENGINES and
its subpackage; adding an engine to a backend is one entry in ENGINES and its module.
Only the selected backend and engine are imported, so a PyTorch run never imports
TensorFlow, and a Keras run on the JAX engine never imports TensorFlow either.
"""

from __future__ import annotations

import importlib
import importlib.machinery
from typing import cast

from benchmark import BenchmarkError
from benchmark.backends.contract import Backend, EpochStats, Progress, Trainer

__all__ = ["BACKENDS", "ENGINES", "Backend", "EpochStats", "Progress", "Trainer", "check_engine", "default_engine",
           "load_backend", "report_every"]

# framework -> its package (the model registry is <package>.models)
BACKENDS = {"pytorch": "benchmark.backends.pytorch", "keras": "benchmark.backends.keras"}
# framework -> engine -> (the module implementing the contract on it, the package the engine
# needs). The first engine is the framework's default and what runs made before engines
# existed ran on (benchmark.runkey: such runs keep their directory names and arm names).
ENGINES: dict[str, dict[str, tuple[str, str]]] = {
    "pytorch": {"torch": ("benchmark.backends.pytorch", "torch")},
    "keras": {
        "tensorflow": ("benchmark.backends.keras.on_tensorflow", "tensorflow"),
        "jax": ("benchmark.backends.keras.on_jax", "jax"),
        "torch": ("benchmark.backends.keras.on_torch", "torch"),
    },
}
# how the README installs an engine's package (the one-line error for a missing one says it)
INSTALL = {"tensorflow": "pip install tensorflow", "jax": "pip install 'jax[cpu]' (GPU: 'jax[cuda12]')",
           "torch": "pip install torch"}


def default_engine(framework: str) -> str | None:
    """The engine a framework runs on unless framework.engine says otherwise."""
    return next(iter(ENGINES.get(framework, {})), None)


def report_every(steps: int, updates: int) -> int:
    """Steps between progress reads, so an epoch reads its running loss from the device
    at most `updates` times (each read waits for the device)."""
    return -(-steps // max(1, updates))


def check_engine(name: str, engine: str | None) -> str:
    """The engine a run of `name` uses (`engine`, or the default when None); a one-line
    BenchmarkError for an unknown framework or engine, or an engine not installed. Cheap:
    imports nothing, so configs are checked with it before any directory is written."""
    if name not in BACKENDS:
        raise BenchmarkError(f"framework={name} is unknown; valid: {', '.join(BACKENDS)}")
    engine = engine or default_engine(name)
    if engine not in ENGINES[name]:
        raise BenchmarkError(f"framework.engine={engine} is not an engine of framework={name}; "
                             f"valid: {', '.join(ENGINES[name])}")
    package = ENGINES[name][engine][1]
    # on sys.path itself: a Keras run keeps other engines out of sys.modules (keras/__init__.py)
    if importlib.machinery.PathFinder.find_spec(package) is None:
        raise BenchmarkError(f"framework={name} framework.engine={engine} needs {package}, which is not installed "
                             f"here: {INSTALL.get(package, 'pip install ' + package)}, or choose another engine")
    return engine


def load_backend(name: str, engine: str | None = None) -> Backend:
    """The backend module of framework `name` on `engine` (default: the framework's first)."""
    engine = check_engine(name, engine)
    module_name = ENGINES[name][engine][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("benchmark"):
            raise BenchmarkError(f"framework={name} is not implemented in this version") from exc
        raise BenchmarkError(f"framework={name} needs {exc.name}, which is not installed (see README: Quick start)") from exc
    if not isinstance(module, Backend):  # a backend that forgot part of the contract fails here, not mid-run
        raise BenchmarkError(f"framework={name}: {module_name} does not implement benchmark.backends.contract.Backend")
    return cast(Backend, module)
