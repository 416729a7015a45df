"""The frameworks and the engines each computes on, as names: what a run may ask for.

The run key, the config checks and the environment read this table; which module
implements a framework on an engine is the backends' business (benchmark.backends).
Checking a choice here imports nothing, so a config is checked before any directory
is written.
"""

from __future__ import annotations

import importlib.machinery

from benchmark import BenchmarkError

# framework -> engine -> the package the engine needs. The first engine is the
# framework's default and what runs made before engines existed ran on
# (benchmark.spec.runkey: such runs keep their directory names and arm names).
ENGINES: dict[str, dict[str, str]] = {
    "pytorch": {"torch": "torch"},
    "keras": {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"},
}
# framework -> the framework.* options (benchmark.spec.config.FrameworkConfig) that it
# alone reads. Every run's config holds all of them (the schema is one), so another
# framework's runs ignore them, and so does the check that a run directory holds the
# same run (benchmark.run.resume).
OPTIONS: dict[str, tuple[str, ...]] = {
    "pytorch": ("compile", "channels_last"),
    "keras": ("jit_compile",),
}
# every package an engine can be (env.json records which of them a run imported)
ENGINE_PACKAGES = ("tensorflow", "jax", "torch")
# how the README installs an engine's package (the one-line error for a missing one says it)
INSTALL = {
    "tensorflow": "pip install tensorflow",
    "jax": "pip install 'jax[cpu]' (GPU: 'jax[cuda12]')",
    "torch": "pip install torch",
}


def default_engine(framework: str) -> str | None:
    """The engine a framework runs on unless framework.engine says otherwise."""
    return next(iter(ENGINES.get(framework, {})), None)


def foreign_options(framework: str) -> set[str]:
    """The framework.* options that only other frameworks read."""
    return {option for name, options in OPTIONS.items() if name != framework for option in options}


def check_engine(name: str, engine: str | None) -> str:
    """The engine a run of `name` uses (`engine`, or the default when None); a one-line
    BenchmarkError for an unknown framework or engine, or an engine not installed."""
    if name not in ENGINES:
        raise BenchmarkError(f"framework={name} is unknown; valid: {', '.join(ENGINES)}")
    engine = engine or default_engine(name)
    if engine not in ENGINES[name]:
        raise BenchmarkError(
            f"framework.engine={engine} is not an engine of framework={name}; valid: {', '.join(ENGINES[name])}"
        )
    package = ENGINES[name][engine]
    # on sys.path itself: a Keras run keeps other engines out of sys.modules (backends/keras/__init__.py)
    if importlib.machinery.PathFinder.find_spec(package) is None:
        raise BenchmarkError(
            f"framework={name} framework.engine={engine} needs {package}, which is not installed "
            f"here: {INSTALL.get(package, 'pip install ' + package)}, or choose another engine"
        )
    return engine
