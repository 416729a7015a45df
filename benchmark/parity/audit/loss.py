"""Loss: the training loss of each trainer, read and evaluated on the same random logits."""

from __future__ import annotations

import inspect
import re

import numpy as np

from benchmark.parity.frameworks import keras, tf, torch  # torch first, then TensorFlow

from benchmark.backends.keras import train as ktrain
from benchmark.parity.audit.arms import Arms, Finding


def check_loss(a: Arms) -> list[Finding]:
    crit = a.torch.criterion
    src = inspect.getsource(ktrain.Trainer._gradients)
    m = re.search(r"keras\.losses\.(\w+)\(([^)]*)\)", src)
    fn_name = m.group(1) if m else None
    from_logits = bool(m and "from_logits=True" in m.group(2))
    reduce = "mean" if "reduce_mean" in src else "sum" if "reduce_sum" in src else "?"
    t_desc = (f"{type(crit).__name__}(reduction='{crit.reduction}', label_smoothing={getattr(crit, 'label_smoothing', 0.0):g})"
              " on logits")
    k_desc = f"{fn_name}(from_logits={from_logits}), reduce_{reduce} (read from Trainer._gradients)"
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((16, a.classes)).astype(np.float32) * 3
    labels = rng.integers(0, a.classes, 16)
    t_val = float(crit(torch.from_numpy(logits), torch.from_numpy(labels)))
    k_val = float("nan")
    if fn_name and hasattr(keras.losses, fn_name):
        per = getattr(keras.losses, fn_name)(tf.constant(labels.astype(np.int32)), tf.constant(logits),
                                             from_logits=from_logits)
        k_val = float(tf.reduce_mean(per) if reduce == "mean" else tf.reduce_sum(per))
    same_val = abs(t_val - k_val) < 1e-5
    t_out = type(list(a.tm.modules())[-1]).__name__
    k_act = getattr(a.km.layers[-1].activation, "__name__", str(a.km.layers[-1].activation))
    logits_ok = t_out == "Linear" and k_act == "linear"
    return [
        Finding("Loss", "training loss", t_desc, k_desc, same_val and crit.reduction == reduce,
                "softmax cross-entropy, mean over the batch, in both (docs/protocol.md §5)"),
        Finding("Loss", "value on the same random logits", f"{t_val:.6f}", f"{k_val:.6f}", same_val,
                "equal" if same_val else "the losses differ numerically"),
        Finding("Loss", "model output", f"logits (last module {t_out})", f"logits (last layer activation {k_act})",
                logits_ok, "both models output logits; softmax is inside the loss" if logits_ok
                else "one model applies an activation to its output"),
    ]
