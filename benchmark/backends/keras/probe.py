"""The Keras side of the numerical-equivalence check (benchmark.parity.equivalence)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from benchmark.backends.contract import Probe
from benchmark.backends.keras.models import canonical_state, canonical_variables, to_canonical
from benchmark.backends.keras.optim import make_sgd
from benchmark.backends.keras.base import coupled_l2


def equivalence_probe(model: keras.Model, name: str, images: np.ndarray, labels: np.ndarray, *, lr: float,
                      momentum: float, nesterov: bool, weight_decay: float) -> Probe:
    dtype = model.trainable_variables[0].dtype  # float32, or float64 for the rounding-free comparison
    x, y = tf.constant(images, dtype), tf.constant(np.asarray(labels, np.int32))
    logits_eval = np.asarray(model(x, training=False), np.float64)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, variables)
    by_variable = {id(v): g for v, g in zip(variables, grads)}
    canonical_grads = {}
    for key, (variable, layout) in canonical_variables(model, name).items():
        if id(variable) in by_variable:
            canonical_grads[key] = to_canonical(np.asarray(by_variable[id(variable)], np.float64), layout)
    # the trainer's step: coupled L2 added to the gradients, then the aligned (PyTorch) SGD rule
    optimizer = make_sgd(True, lr, momentum, nesterov)
    optimizer.build(variables)
    optimizer.apply(coupled_l2(grads, variables, weight_decay), variables)
    return Probe(logits_eval, float(loss), canonical_grads, canonical_state(model, name, np.float64))
