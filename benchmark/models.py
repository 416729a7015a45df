"""Stem changes of docs/protocol.md §4, defined once; both backends build their zoo models from this."""

from __future__ import annotations

from dataclasses import dataclass

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


def check_init(init: str | None) -> None:
    if init is not None and init not in INITIALIZERS:
        raise BenchmarkError(f"init={init} is unknown; valid: {', '.join(INITIALIZERS)} (or None: the zoo's own)")
