"""Backend registry: the backends and how one is loaded.

A backend is a subpackage ``benchmark.backends.<name>`` that implements the contract
of :mod:`benchmark.backends.contract` (``BackendModule`` for the module, ``BackendTrainer``
for its trainer: every consumer's view of each) on each of its engines (MODULES; the
engines are named in benchmark.spec.frameworks), and a model registry
(``models.create_model(name, num_classes, image_size, drop_rate=..., drop_path_rate=...,
init=..., architecture=...)``) whose aligned architecture maps every tensor onto
torchvision's names and layout (``canonical_shapes``/``load_canonical``; docs/protocol.md
§11). Adding a backend is one entry in BACKENDS and MODULES (and
benchmark.spec.frameworks) and its subpackage; adding an engine, one entry in each and its module.
Only the selected backend and engine are imported, so a PyTorch run never imports
TensorFlow, and a Keras run on the JAX engine never imports TensorFlow either.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from typing import cast

from benchmark import BenchmarkError
from benchmark.backends.contract import Backend, BackendModule, EpochStats, Progress, Trainer
from benchmark.spec.frameworks import check_engine

__all__ = [
    "BACKENDS",
    "MODULES",
    "OPTION_RULES",
    "check_options",
    "determinism_errors",
    "nondeterministic_op",
    "Backend",
    "BackendModule",
    "EpochStats",
    "Progress",
    "Trainer",
    "load_backend",
    "report_every",
]

# framework -> its package (the model registry is <package>.models)
BACKENDS = {"pytorch": "benchmark.backends.pytorch", "keras": "benchmark.backends.keras"}
# framework -> engine (benchmark.spec.frameworks) -> the module implementing the contract on it
MODULES: dict[str, dict[str, str]] = {
    "pytorch": {"torch": "benchmark.backends.pytorch"},
    "keras": {
        "tensorflow": "benchmark.backends.keras.engines.tensorflow",
        "jax": "benchmark.backends.keras.engines.jax",
        "torch": "benchmark.backends.keras.engines.torch",
    },
}


# framework -> its framework-free module of option rules (check_options(cfg, engine)), run by
# validation before anything is written: it must not import the framework or an engine.
# None today: the execution modes each engine has, the one rule that was here (Keras' XLA
# switch on the torch engine), are checked with the engine (benchmark.spec.frameworks.EXECUTIONS).
OPTION_RULES: dict[str, str] = {}


def check_options(cfg, engine: str) -> None:
    """One-line BenchmarkError for an option the framework cannot honour on `engine`."""
    rules = OPTION_RULES.get(cfg.framework.name)
    if rules is not None:
        importlib.import_module(rules).check_options(cfg, engine)


def report_every(steps: int, updates: int) -> int:
    """Steps between progress reads, so an epoch reads its running loss from the device
    at most `updates` times (each read waits for the device)."""
    return -(-steps // max(1, updates))


def load_backend(name: str, engine: str | None = None) -> BackendModule:
    """The backend module of framework `name` on `engine` (default: the framework's first)."""
    engine = check_engine(name, engine)
    module_name = MODULES[name][engine]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("benchmark"):
            raise BenchmarkError(f"framework={name} is not implemented in this version") from exc
        raise BenchmarkError(
            f"framework={name} needs {exc.name}, which is not installed (docs/running.md: Installation)"
        ) from exc
    if not isinstance(module, BackendModule):  # a backend that forgot part of the contract fails here, not mid-run
        raise BenchmarkError(
            f"framework={name}: {module_name} does not implement benchmark.backends.contract.BackendModule"
        )
    return cast(BackendModule, module)


# How each framework says that an operation has no deterministic kernel (PyTorch's
# use_deterministic_algorithms and TensorFlow's enable_op_determinism raise these)
_NONDETERMINISTIC = (
    re.compile(r"(\S+) does not have a deterministic implementation"),  # torch
    re.compile(r"[Dd]eterminism is not yet supported (?:in|for) (?:the )?(?:GPU implementation of )?([^.\n]+)"),  # TF
    re.compile(r"[Nn]o deterministic GPU implementation (?:of|for|is available for) ([^.\n]+)"),  # TF, older wording
)


def nondeterministic_op(exc: BaseException) -> str | None:
    """The operation `exc` says has no deterministic kernel, or None for any other error."""
    text = str(exc)
    for pattern in _NONDETERMINISTIC:
        found = pattern.search(text)
        if found:
            return found.group(1).strip().strip("'\"`")
    return None


@contextlib.contextmanager
def determinism_errors():
    """Turn a framework's "no deterministic kernel" error into one line naming the operation."""
    try:
        yield
    except BenchmarkError:
        raise
    except Exception as exc:
        op = nondeterministic_op(exc)
        if op is None:
            raise
        raise BenchmarkError(
            f"framework.deterministic=true: {op} has no deterministic kernel on this device, so the run stopped "
            "rather than silently not be deterministic; run with framework.deterministic=false (recorded as such) "
            "or use a model without it"
        ) from exc
