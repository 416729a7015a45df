"""The Keras side of the numerical-equivalence check (benchmark.parity.equivalence), on
every engine: the forward passes, the SGD step and the canonical tensors are Keras code;
only the gradient is the engine's (each engine module passes its own `gradients`)."""

from __future__ import annotations

import contextlib
from typing import Callable

import keras
import numpy as np
from keras import ops

from benchmark.backends.contract import Probe
from benchmark.backends.keras.base import coupled_l2
from benchmark.backends.keras.models import canonical_state, canonical_variables, to_canonical
from benchmark.backends.keras.optim import make_sgd

# (model, x, y) -> (training-mode mean loss, d loss / d model.trainable_variables), the
# model's normalization statistics updated by that training-mode pass
Gradients = Callable[[keras.Model, object, object], tuple[object, list]]


def mean_loss(labels, logits):
    """The probe's loss in the model's own dtype (float64 models stay in float64)."""
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def equivalence_probe(model: keras.Model, name: str, images: np.ndarray, labels: np.ndarray, *, lr: float,
                      momentum: float, nesterov: bool, weight_decay: float, gradients: Gradients,
                      no_grad=contextlib.nullcontext) -> Probe:
    dtype = model.trainable_variables[0].dtype  # float32, or float64 for the rounding-free comparison
    x, y = ops.convert_to_tensor(images, dtype), ops.convert_to_tensor(np.asarray(labels, np.int32))
    logits_eval = np.asarray(ops.convert_to_numpy(model(x, training=False)), np.float64)
    variables = model.trainable_variables
    loss, grads = gradients(model, x, y)
    by_variable = {id(v): g for v, g in zip(variables, grads)}
    canonical_grads = {}
    for key, (variable, layout) in canonical_variables(model, name).items():
        if id(variable) in by_variable:
            canonical_grads[key] = to_canonical(np.asarray(ops.convert_to_numpy(by_variable[id(variable)]), np.float64),
                                                layout)
    # the trainer's step: coupled L2 added to the gradients, then the aligned (PyTorch) SGD rule
    optimizer = make_sgd(True, lr, momentum, nesterov)
    optimizer.build(variables)
    with no_grad():
        optimizer.apply(coupled_l2(grads, [v.value for v in variables], weight_decay), variables)
    return Probe(logits_eval, float(ops.convert_to_numpy(loss)), canonical_grads,
                 canonical_state(model, name, np.float64))
