"""Arms of the parity audit built in a process of their own: Keras binds one engine per
process, so Keras on JAX or on torch cannot share the audit's process with Keras on
TensorFlow. For the audit, the child builds the arm's real Trainer and records its
answers to every question the audit asks through the contract
(benchmark.backends.contract.Trainer), which the audit reads as it reads a live
trainer; for the numerical-equivalence check, the child runs the arm's probe with the
weights and batch the parent hands it.

Arms are named as in the analysis (benchmark.spec.runkey.arm_name): "pytorch", "keras",
"keras/jax", ...: the framework, then the engine when it is not the default.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from benchmark.backends import load_backend
from benchmark.spec.frameworks import default_engine
from benchmark.backends.contract import Backend, LayerInfo, ProtocolFacts, Probe
from benchmark.spec.schedule import Schedule

# the framework that shares the audit's process on its default engine only
ONE_ENGINE_PER_PROCESS = ("keras",)


def arm_spec(arm: str) -> tuple[str, str | None]:
    """(framework, engine) of an arm name ("keras/jax" -> ("keras", "jax"); "keras" -> ("keras", None))."""
    framework, _, engine = arm.partition("/")
    return framework, engine or None


def arm_backend(arm: str) -> Backend:
    return load_backend(*arm_spec(arm))


def needs_own_process(arm: str) -> bool:
    """An arm whose framework binds one engine per process, on another than its default."""
    framework, engine = arm_spec(arm)
    return framework in ONE_ENGINE_PER_PROCESS and engine not in (None, default_engine(framework))


@dataclass
class RecordedArm:
    """A Trainer's answers to the audit (the subset of contract.Trainer it reads)."""

    mode: str
    device: str
    facts: ProtocolFacts
    layer_table: list[LayerInfo]
    blocks: list[tuple[str, tuple[int, ...]]]
    counts: dict[str, int]
    probe_gradients: np.ndarray
    trajectory: np.ndarray

    def protocol_facts(self) -> ProtocolFacts:
        return self.facts

    def layers(self) -> list[LayerInfo]:
        return self.layer_table

    def block_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return self.blocks

    def parameter_counts(self) -> dict[str, int]:
        return self.counts

    def update_trajectory(self, grads: np.ndarray) -> np.ndarray:
        if not np.array_equal(grads, self.probe_gradients):
            raise ValueError("this arm was recorded for other probe gradients")
        return self.trajectory


def _spawned():
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def _record(config_yaml: str, schedule: Schedule, probe_gradients: np.ndarray) -> RecordedArm:
    """In the child: build the arm as the audit would, answer every question once."""
    from benchmark.parity.audit import NoData

    cfg = OmegaConf.create(config_yaml)
    trainer = load_backend(cfg.framework.name, cfg.framework.engine).Trainer(
        cfg, NoData(cfg), schedule, Path(tempfile.gettempdir()) / "benchmark-parity-unused")
    return RecordedArm(trainer.mode, str(trainer.device), trainer.protocol_facts(), trainer.layers(),
                       trainer.block_shapes(), trainer.parameter_counts(), probe_gradients,
                       trainer.update_trajectory(probe_gradients))


def record_in_own_process(cfg, schedule: Schedule, probe_gradients: np.ndarray) -> RecordedArm:
    """The arm of `cfg`, built and recorded in a fresh interpreter (spawned, not forked:
    nothing of this process's Keras comes along)."""
    with _spawned() as pool:
        return pool.submit(_record, OmegaConf.to_yaml(cfg, resolve=True), schedule, probe_gradients).result()


def _probe(model: str, image_size: int, arm: str, weights: dict, seed: int, float64: bool) -> dict[str, Probe]:
    from benchmark.parity.equivalence import probes

    dtypes = ("float32", "float64") if float64 else ("float32",)
    return {dtype: probes(model, image_size, [arm], dtype, None, weights, seed)[0][arm] for dtype in dtypes}


def probe_in_own_process(model: str, image_size: int, arm: str, weights: dict, seed: int,
                         float64: bool) -> dict[str, Probe]:
    """{dtype: the arm's equivalence probe} with these shared initial weights, in a fresh interpreter."""
    with _spawned() as pool:
        return pool.submit(_probe, model, image_size, arm, weights, seed, float64).result()
