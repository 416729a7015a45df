"""Arms of the parity tools computed in a process of their own, and what comes back.

Keras binds one engine per process, so Keras on JAX or on torch cannot share the audit's
process with Keras on TensorFlow (benchmark.parity.arms.needs_own_process). For the audit,
the child builds the arm's real trainer and records its answers to every question of
:class:`benchmark.backends.contract.Introspection`; the parent gets them back as a
:class:`RecordedArm`, an Introspection of its own, which the audit reads as it reads a
live trainer. For the numerical-equivalence check, the child runs the arm's probe
(benchmark.parity.probe) with the weights and batch the parent hands it.

This module sits below the audit and the equivalence check and imports neither: the
children need only the arm (benchmark.parity.arms) and the probe.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from omegaconf import OmegaConf

from benchmark.backends.contract import Introspection, LayerInfo, Probe, ProtocolFacts
from benchmark.parity.arms import build_trainer
from benchmark.parity.probe import probes
from benchmark.spec.schedule import Schedule


@dataclass(frozen=True, eq=False)
class RecordedArm:
    """The answers of an Introspection, recorded once: an Introspection that needs no
    framework in this process. Only update_trajectory takes an argument, so it answers
    the gradients it was recorded with and no others."""

    facts: ProtocolFacts
    layer_table: list[LayerInfo]
    blocks: list[tuple[str, tuple[int, ...]]]
    counts: dict[str, int]
    probe_gradients: np.ndarray
    trajectory: np.ndarray

    @classmethod
    def of(cls, arm: Introspection, probe_gradients: np.ndarray) -> RecordedArm:
        return cls(
            arm.protocol_facts(),
            arm.layers(),
            arm.block_shapes(),
            arm.parameter_counts(),
            probe_gradients,
            arm.update_trajectory(probe_gradients),
        )

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
    # spawned, not forked: nothing of this process's Keras comes along
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def _record(config_yaml: str, schedule: Schedule, probe_gradients: np.ndarray) -> RecordedArm:
    """In the child: build the arm as the audit would, answer every question once."""
    return RecordedArm.of(build_trainer(OmegaConf.create(config_yaml), schedule), probe_gradients)


def record_in_own_process(cfg, schedule: Schedule, probe_gradients: np.ndarray) -> RecordedArm:
    """The arm of `cfg`, built and recorded in a fresh interpreter."""
    with _spawned() as pool:
        return pool.submit(_record, OmegaConf.to_yaml(cfg, resolve=True), schedule, probe_gradients).result()


def _probe(model: str, image_size: int, arm: str, weights: dict, seed: int, float64: bool) -> dict[str, Probe]:
    dtypes = ("float32", "float64") if float64 else ("float32",)
    return {dtype: probes(model, image_size, [arm], dtype, None, weights, seed)[0][arm] for dtype in dtypes}


def probe_in_own_process(
    model: str, image_size: int, arm: str, weights: dict, seed: int, float64: bool
) -> dict[str, Probe]:
    """{dtype: the arm's equivalence probe} with these shared initial weights, in a fresh interpreter."""
    with _spawned() as pool:
        return pool.submit(_probe, model, image_size, arm, weights, seed, float64).result()
