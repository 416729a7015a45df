"""An arm of the parity audit built in a process of its own: Keras binds one engine per
process, so Keras on JAX or on torch cannot share the audit's process with Keras on
TensorFlow. The child builds the arm's real Trainer and records its answers to every
question the audit asks through the contract (benchmark.backends.contract.Trainer);
the audit reads the recording as it reads a live trainer.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from benchmark.backends.contract import LayerInfo, ProtocolFacts
from benchmark.schedule import Schedule


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


def _record(config_yaml: str, schedule: Schedule, probe_gradients: np.ndarray) -> RecordedArm:
    """In the child: build the arm as the audit would, answer every question once."""
    from benchmark.backends import load_backend
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
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_record, OmegaConf.to_yaml(cfg, resolve=True), schedule, probe_gradients).result()
