"""The Keras backend's own rules on its options, checked before a run writes anything.

Framework-free on purpose: the run's validation (benchmark.run.loop.validate, from the CLI
and the sweeper before Hydra creates a directory) imports this module by name
(benchmark.backends.OPTION_RULES), and must
not pay for, or be broken by, importing Keras or an engine.
"""

from __future__ import annotations

from benchmark import BenchmarkError


def check_options(cfg, engine: str) -> None:
    """Raise BenchmarkError (one line) for an option this engine cannot honour."""
    # XLA compilation is a tf.function switch: the torch engine has no graph to compile,
    # and silently running eagerly would record a mode the user did not get
    if engine == "torch" and cfg.framework.jit_compile:
        raise BenchmarkError(
            "framework.jit_compile=true is TensorFlow's XLA switch; Keras on the torch engine runs "
            "eagerly here: drop it, or use framework.engine=tensorflow (XLA) or jax (always jitted)"
        )
