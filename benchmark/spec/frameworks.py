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
# framework -> engine -> its execution modes (framework.execution, a run-key field:
# each mode is its own arm), the first the default and what runs made before the field
# existed ran in (benchmark.spec.runkey). The trainer records the mode it ran as
# `execution_mode` (e.g. "torch.compile(max-autotune)+channels_last", "tf.function+xla").
EXECUTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    # torch.compile: its default mode, max-autotune (autotuned kernels) and reduce-overhead (CUDA graphs)
    "pytorch": {"torch": ("eager", "compile", "compile-max-autotune", "compile-reduce-overhead")},
    "keras": {
        "tensorflow": ("graph", "xla"),  # tf.function steps, without or with jit_compile=True (XLA)
        "jax": ("jit",),  # jax.jit steps: the only mode of the JAX engine
        "torch": ("eager",),  # the Keras model's forward and backward run eagerly
    },
}
# execution modes that need a CUDA device (CUDA graphs): refused on a CPU
CUDA_ONLY_EXECUTIONS = ("compile-reduce-overhead",)
# framework -> the framework.* options (benchmark.spec.config.FrameworkConfig) that it
# alone reads. Every run's config holds all of them (the schema is one), so another
# framework's runs ignore them, and so does the check that a run directory holds the
# same run (benchmark.run.resume).
OPTIONS: dict[str, tuple[str, ...]] = {
    "pytorch": ("channels_last",),
}
# framework.* options retired -> (the value every run recorded unless asked otherwise,
# the framework.execution that replaces the other value): a run recorded with the first
# ran in its engine's default mode (benchmark.run.resume); the other one is refused.
RETIRED_OPTIONS: dict[str, tuple[object, str]] = {"compile": (False, "compile"), "jit_compile": (False, "xla")}
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


def default_execution(engine: str | None) -> str | None:
    """The execution mode of a run on `engine` unless framework.execution says otherwise
    (one per engine: an engine's default is the same in every framework that has it)."""
    defaults = {e: modes[0] for engines in EXECUTIONS.values() for e, modes in engines.items()}
    return defaults.get(engine) if engine is not None else None


def check_execution(name: str, engine: str, execution: str | None, device: str | None = None) -> str:
    """The execution mode of a run of `name` on `engine` (`execution`, or the default when
    None); a one-line BenchmarkError for a mode the framework does not have on that engine,
    or one that needs CUDA on `device` "cpu"."""
    modes = EXECUTIONS.get(name, {}).get(engine, ())
    execution = execution or (modes[0] if modes else None)
    if execution not in modes:
        raise BenchmarkError(
            f"framework.execution={execution} is not an execution mode of framework={name} on "
            f"framework.engine={engine}; valid: {', '.join(modes)}"
        )
    if device == "cpu":
        check_execution_device(execution, "cpu")
    return execution


def check_execution_device(execution: str, device_type: str) -> None:
    """One-line BenchmarkError for a mode that needs CUDA (CUDA graphs) on another device."""
    if execution in CUDA_ONLY_EXECUTIONS and device_type != "cuda":
        raise BenchmarkError(
            f"framework.execution={execution} uses CUDA graphs and needs a CUDA device, not {device_type}; "
            "use framework.execution=compile or compile-max-autotune here"
        )


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
