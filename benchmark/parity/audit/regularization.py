"""Regularization: dropout, stochastic depth, layer scale and label smoothing."""

from __future__ import annotations

import numpy as np

from benchmark.parity.frameworks import keras  # torch first, then TensorFlow
from torch import nn

from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import _fmt, _keras_layers


def check_regularization(a: Arms) -> list[Finding]:
    rows = []
    t_drop = [(n, float(m.p)) for n, m in a.tm.named_modules() if isinstance(m, nn.Dropout) and m.p > 0]
    k_drop = [(layer.name, float(layer.rate)) for layer in _keras_layers(a.km)
              if isinstance(layer, keras.layers.Dropout) and layer.rate > 0]

    def drop_desc(items):
        return "; ".join(f"{n}: p={p:g}" for n, p in items) or "none"

    same = sorted(p for _, p in t_drop) == sorted(p for _, p in k_drop)
    impact = "same dropout" if same else (
        "only one framework drops activations before the classifier in training: regularizes that arm "
        "(can lower its training accuracy and help its test accuracy, more so on small data); the zoo's "
        "architecture, reported, not removed")
    rows.append(Finding("Regularization", "dropout", drop_desc(t_drop), drop_desc(k_drop), same, impact))

    from torchvision.ops import StochasticDepth

    t_sd = [float(m.p) for m in a.tm.modules() if isinstance(m, StochasticDepth)]
    t_sd_mode = sorted({m.mode for m in a.tm.modules() if isinstance(m, StochasticDepth)})
    k_sd = [float(getattr(layer, "drop_path_rate", 0.0)) for layer in _keras_layers(a.km)
            if type(layer).__name__ == "StochasticDepth"]
    if t_sd or k_sd:
        def sd_desc(ps, mode=""):
            active = [p for p in ps if p > 0]
            if not active:
                return f"{len(ps)} layers, all p=0 (off)" if ps else "none (drop_path_rate 0.0: no layers)"
            return (f"{len(active)} of {len(ps)} blocks, p {min(ps):g}-{max(ps):g} (linear in depth, mean {np.mean(ps):.3f})"
                    + (f", mode '{mode}'" if mode else ""))

        same = sorted(t_sd) == sorted(k_sd) or (not any(t_sd) and not any(k_sd))
        rows.append(Finding(
            "Regularization", "stochastic depth (drop path)", sd_desc(t_sd, ",".join(t_sd_mode)), sd_desc(k_sd), same,
            "same" if same else
            "torchvision's ConvNeXt-Tiny drops residual branches during training (stochastic_depth_prob 0.1), "
            "keras.applications' does not (drop_path_rate 0.0): PyTorch is regularized more; on CIFAR-size data "
            "this can help its test accuracy while slowing its training-loss decrease; reported, not removed",
        ))
    t_ls = [p.detach().cpu().numpy() for n, p in a.tm.named_parameters() if n.endswith("layer_scale")]
    k_ls = [layer for layer in _keras_layers(a.km) if type(layer).__name__ == "LayerScale"]
    if t_ls or k_ls:
        t_vals = sorted({float(v) for arr in t_ls for v in np.unique(arr)})
        k_vals = sorted({float(v) for layer in k_ls for w in layer.weights for v in np.unique(np.asarray(w))})
        k_init = sorted({float(layer.get_config().get("init_values", float("nan"))) for layer in k_ls})
        same = len(t_ls) == len(k_ls) and len(t_vals) == len(k_vals) and bool(np.allclose(t_vals, k_vals))
        rows.append(Finding("Regularization", "layer scale (initial values)",
                            f"{len(t_ls)} blocks, values {[_fmt(v) for v in t_vals]}",
                            f"{len(k_ls)} LayerScale layers, init_values {[_fmt(v) for v in k_init]}, "
                            f"values {[_fmt(v) for v in k_vals]}", same,
                            "same layer scale" if same else "residual branches start at different scales"))
    label_smoothing = float(getattr(a.torch.criterion, "label_smoothing", 0.0))
    rows.append(Finding("Regularization", "label smoothing", f"{label_smoothing:g}",
                        "0 (sparse_categorical_crossentropy has none)", label_smoothing == 0.0,
                        "none in either" if label_smoothing == 0.0 else "only PyTorch smooths its targets"))
    return rows
