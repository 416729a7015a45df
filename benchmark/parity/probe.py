"""The numerical-equivalence probe of one or more arms (docs/protocol.md §11): each arm's
aligned model with regularization off, holding the shared initial weights, run on one
batch through ``ModelRegistry.equivalence_probe``.

Below both the equivalence check (benchmark.parity.equivalence), which compares the
probes, and the child processes of benchmark.parity.recorded, which run an arm's probe
away from the parent's Keras engine: neither needs the other to compute a probe.
"""

from __future__ import annotations

import numpy as np

from benchmark.parity.arms import arm_models
from benchmark.spec.models import shared_initial_weights
from benchmark.spec.protocol import ALIGNED_REGULARIZATION

NUM_CLASSES = 10
BATCH = 8
# The probe's optimizer step: the protocol's SGD settings at a large LR, so the update is visible
LR, MOMENTUM, NESTEROV, WEIGHT_DECAY = 0.1, 0.9, True, 1e-4


def probe_batch(image_size: int, seed: int = 0, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """The probe's batch: normalized-scale NHWC float32 inputs and labels (a numerical
    probe, not training data)."""
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((batch, image_size, image_size, 3)).astype(np.float32),
        rng.integers(0, NUM_CLASSES, batch),
    )


def build(backend_name: str, model: str, image_size: int, weights: dict | None, seed: int = 0, dtype: str = "float32"):
    """A backend's aligned model with regularization off, holding the shared initial weights."""
    backend = arm_models(backend_name)
    # the aligned protocol's regularization switched off (rate 0) where the model has it
    off = [None if rate is None else 0.0 for rate in ALIGNED_REGULARIZATION[model]]
    net = backend.create_model(
        model, NUM_CLASSES, image_size, architecture="aligned", drop_rate=off[0], drop_path_rate=off[1], dtype=dtype
    )
    if weights is None:
        weights = shared_initial_weights(model, backend.canonical_shapes(net, model), seed)
    backend.load_canonical(net, model, weights)
    return net, weights


def probes(
    model: str,
    image_size: int,
    names: list[str],
    dtype: str,
    models: dict | None = None,
    weights: dict | None = None,
    seed: int = 0,
):
    """({backend: Probe}, the shared initial weights) on the probe batch."""
    models = dict(models or {})
    for name in names:
        if name not in models:
            models[name], weights = build(name, model, image_size, weights, seed, dtype)
    if weights is None:
        shapes = arm_models(names[0]).canonical_shapes(models[names[0]], model)
        weights = shared_initial_weights(model, shapes, seed)
    x, y = probe_batch(image_size, seed)
    return {
        name: arm_models(name).equivalence_probe(
            models[name], model, x, y, lr=LR, momentum=MOMENTUM, nesterov=NESTEROV, weight_decay=WEIGHT_DECAY
        )
        for name in names
    }, weights
