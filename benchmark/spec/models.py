"""Stem changes of docs/protocol.md §4, defined once; both backends build their zoo models from this."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from benchmark import BenchmarkError

MODELS = ("resnet50", "mobilenetv2", "convnext_tiny")
# Initializers a model registry can apply to every conv and dense kernel instead of the
# zoo's own (`create_model(..., init=...)`), biases set to zero, normalization layers
# left at ones/zeros; each backend computes fans in its own framework's convention.
INITIALIZERS = {
    "kaiming_normal_fan_out": "kaiming normal, fan_out (torchvision's ResNet and MobileNetV2 convolutions)",
    "glorot_uniform": "glorot uniform (the Keras layer default)",
    "trunc_normal_0.02": "truncated normal, std 0.02 (torchvision's ConvNeXt)",
}


@dataclass(frozen=True)
class Stem:
    """The first convolution after editing, and whether ResNet's max-pool stays.

    ``kernel`` None keeps the zoo's own first convolution (only ``stride`` may change).
    ``padding`` is symmetric zero padding in pixels.
    """

    kernel: int | None
    stride: int
    padding: int
    keep_maxpool: bool = True
    final_map: int = 0  # spatial size of the feature map before global pooling


STEMS: dict[tuple[str, int], Stem] = {
    ("resnet50", 32): Stem(kernel=3, stride=1, padding=1, keep_maxpool=False, final_map=4),
    ("resnet50", 64): Stem(kernel=None, stride=2, padding=3, keep_maxpool=False, final_map=4),
    ("mobilenetv2", 32): Stem(kernel=None, stride=1, padding=1, final_map=2),
    ("mobilenetv2", 64): Stem(kernel=None, stride=2, padding=1, final_map=2),
    ("convnext_tiny", 32): Stem(kernel=3, stride=1, padding=1, final_map=4),
    ("convnext_tiny", 64): Stem(kernel=2, stride=2, padding=0, final_map=4),
}


def stem_for(model: str, image_size: int) -> Stem:
    try:
        return STEMS[(model, image_size)]
    except KeyError:
        sizes = sorted({s for m, s in STEMS if m == model})
        raise BenchmarkError(
            f"no stem defined for model={model} at {image_size}x{image_size}; "
            f"models: {', '.join(MODELS)}; input sizes: {sizes or [32, 64]}"
        ) from None


def final_map(block_shapes: list[tuple[str, tuple[int, ...]]]) -> tuple[int, int]:
    """(H, W) of the last feature map before global pooling, from a registry's block shapes."""
    return next(shape for _, shape in reversed(block_shapes) if len(shape) == 3)[1:]


def registry_entry(registry: dict, name: str):
    """A backend model registry's entry for `name`, or a one-line error naming the valid ones."""
    try:
        return registry[name]
    except KeyError:
        raise BenchmarkError(f"model={name} is unknown; valid: {', '.join(registry)}") from None


ARCHITECTURES = ("native", "aligned")


def check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise BenchmarkError(f"architecture={architecture} is unknown; valid: {', '.join(ARCHITECTURES)}")


def check_init(init: str | None) -> None:
    if init is not None and init not in INITIALIZERS:
        raise BenchmarkError(f"init={init} is unknown; valid: {', '.join(INITIALIZERS)} (or None: the zoo's own)")


# ------------------------------------------------------------------ shared initial weights
# The aligned protocol's initial weights (protocol.init=aligned, docs/protocol.md §11):
# torchvision's initialization rules, drawn with NumPy from the seed by this
# framework-neutral code and copied into every backend through its layer mapping, so
# every initial parameter and normalization statistic is the same number in each arm.
# Tensors are named and shaped as in torchvision's state_dict (the canonical layout).

@dataclass(frozen=True)
class InitRule:
    conv: str  # every conv kernel
    linear: str  # every dense kernel
    linear_bias: str  # dense biases (conv biases, where a model has them, start at zero)


TORCHVISION_INIT = {
    "resnet50": InitRule("kaiming_normal_fan_out", "uniform_fan_in", "uniform_fan_in"),
    "mobilenetv2": InitRule("kaiming_normal_fan_out", "normal_0.01", "zeros"),
    "convnext_tiny": InitRule("trunc_normal_0.02", "trunc_normal_0.02", "zeros"),
}
LAYER_SCALE_INIT = 1e-6  # ConvNeXt's layer scale, in both zoos


def _draw(rule: str, shape: tuple[int, ...], fan_in: int, rng) -> np.ndarray:
    if rule == "zeros":
        return np.zeros(shape)
    if rule == "kaiming_normal_fan_out":  # torch's fan_out of a conv kernel: out * kh * kw
        return rng.normal(0.0, math.sqrt(2.0 / (shape[0] * int(np.prod(shape[2:])))), shape)
    if rule == "uniform_fan_in":  # nn.Linear's default (kaiming uniform, a=sqrt(5)): bound 1/sqrt(fan_in)
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape)
    if rule == "normal_0.01":
        return rng.normal(0.0, 0.01, shape)
    if rule == "trunc_normal_0.02":  # nn.init.trunc_normal_(std=0.02): cut at +-2 (absolute)
        return np.clip(rng.normal(0.0, 0.02, shape), -2.0, 2.0)
    raise ValueError(f"unknown init rule {rule}")


def shared_initial_weights(model: str, shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """float32 initial values of every tensor in `shapes` (torchvision state_dict names
    and layout) by torchvision's rules for `model`. Each tensor has its own stream of
    (seed, name), so the values do not depend on the order the backend lists them in."""
    rule = TORCHVISION_INIT[model]
    out = {}
    for key, shape in shapes.items():
        shape = tuple(int(d) for d in shape)
        parent, _, leaf = key.rpartition(".")
        rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
        weight_shape = shapes.get(f"{parent}.weight", ())
        if leaf == "running_mean" or (leaf == "bias" and len(weight_shape) != 2):
            value = np.zeros(shape)  # BatchNorm mean, normalization shift, conv bias
        elif leaf == "running_var" or (leaf == "weight" and len(shape) == 1):
            value = np.ones(shape)  # BatchNorm variance, normalization scale
        elif leaf == "layer_scale":
            value = np.full(shape, LAYER_SCALE_INIT)
        elif leaf == "weight" and len(shape) == 4:
            value = _draw(rule.conv, shape, int(np.prod(shape[1:])), rng)
        elif leaf == "weight" and len(shape) == 2:
            value = _draw(rule.linear, shape, shape[1], rng)
        elif leaf == "bias":
            value = _draw(rule.linear_bias, shape, int(weight_shape[1]), rng)
        else:
            raise ValueError(f"{model}: no initialization rule for {key} {shape}")
        out[key] = value.astype(np.float32)
    return out


def create_for_protocol(registry, name: str, num_classes: int, image_size: int, knobs, seed: int):
    """A backend's model under a run's protocol knobs (benchmark.spec.protocol.Knobs): built by
    its registry module (``create_model``, ``canonical_shapes``, ``load_canonical``) with
    the knobs' architecture and regularization, and holding the shared initial weights
    when ``knobs.init`` (docs/protocol.md §11). One definition for every backend."""
    model = registry.create_model(name, num_classes, image_size, **knobs.model_options(name))
    if knobs.init:
        registry.load_canonical(model, name, shared_initial_weights(name, registry.canonical_shapes(model, name), seed))
    return model
