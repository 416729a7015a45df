"""Shared helpers: walking the layers of a torch/Keras model, and formatting numbers and lists."""

from __future__ import annotations

from collections import Counter

from benchmark.parity.frameworks import keras  # torch first, then TensorFlow
from torch import nn

from benchmark.backends.keras import models as kmodels


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _n(x: int) -> str:
    return f"{x:,}"


def _pct(new: float, ref: float) -> str:
    return f"{(new - ref) / ref * 100:+.3f}%" if ref else "n/a"


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def _torch_convs(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _torch_bns(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _torch_lns(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]


def _torch_linears(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def _torch_conv_kind(m: nn.Conv2d) -> str:
    return "depthwise conv" if m.groups > 1 and m.groups == m.in_channels else "conv"


def _keras_layers(model):
    return kmodels.all_layers(model)


def _is_keras_conv(layer) -> bool:
    return isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))


def _keras_conv_kind(layer) -> str:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise conv"
    if getattr(layer, "groups", 1) > 1 and int(layer.kernel.shape[2]) == 1:
        return "depthwise conv"
    return "conv"


def _keras_convs(model):
    return [layer for layer in _keras_layers(model) if _is_keras_conv(layer)]


def _keras_bns(model):
    return [layer for layer in _keras_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def _keras_lns(model):
    return [layer for layer in _keras_layers(model) if isinstance(layer, keras.layers.LayerNormalization)]


def _keras_denses(model):
    return [layer for layer in _keras_layers(model) if isinstance(layer, keras.layers.Dense)]


def _keras_kernel(layer):
    return layer.kernel


def _shape_chw(shape, layout: str) -> tuple:
    dims = tuple(int(d) for d in shape[1:])
    if len(dims) == 3 and layout == "nhwc":
        dims = (dims[2], dims[0], dims[1])
    return dims


def _shape_str(dims: tuple) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _counter_str(c: Counter) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(c.items())) or "none"
