"""The Keras model registry: keras.applications zoo models with the stems of
docs/protocol.md §4 (from each model's benchmark.spec.models.ModelSpec).

As in the PyTorch registry: each model registered once (``@register_model``, by the
name of its neutral ModelSpec) and one ``create_model(name, ..., drop_rate=...,
drop_path_rate=...)`` with regularization as arguments (None keeps the zoo's own
value). A registration names what only Keras needs: the zoo builder, the stem edits,
the tensors at the block boundaries the parity audit compares by label, the aligned
architecture's edits, and the layer-name mapping onto torchvision's state_dict.

The stems are changed by cloning the official functional graph
(``keras.models.clone_model``): a ``clone_function`` rewrites the config of the stem
layers and a ``call_function`` skips ResNet's max-pool, so every other layer is the
zoo's own, with its own initializer. keras.applications has no ResNet18: it is built
here from layers, in the zoo's ResNet50 layer names, and goes through the same edits.

BatchNormalization is aligned to PyTorch's defaults (momentum 0.1 in PyTorch's
convention = 0.9 in Keras', epsilon 1e-5) on purpose: the Keras zoo defaults
(MobileNetV2 momentum 0.999, epsilon 1e-3; ResNet50 momentum 0.99) are a
cross-framework pitfall (docs/protocol.md §8), not part of the architectures being compared, and
with 0.999 the moving statistics lag far behind the weights on short runs, so
evaluation measures the lag rather than the model: mobilenetv2 on digits (10 epochs,
seed 42) stays at chance on val/test (9.7% test) with the zoo values and reaches 97.2%
test with these (PyTorch: 96.7-97.2% on the same run).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from benchmark.backends.contract import LayerInfo
from benchmark.spec.models import (
    Registration,
    Registry,
    Stem,
    check_architecture,
    check_init,
    final_map,
    labelled,
    stem_for,
)

# PyTorch nn.BatchNorm2d defaults, in Keras' convention (moving = m * moving + (1 - m) * batch)
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class DropPath(keras.layers.Layer):
    """Stochastic depth: in training, each sample's residual branch is dropped with
    probability `rate` and the kept ones scaled by 1 / (1 - rate) (torchvision's
    StochasticDepth, mode "row")."""

    def __init__(self, rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = keras.ops.cast(keras.random.uniform(shape, seed=self.seed_generator) < keep, x.dtype)
        return x * mask / keep

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


def _keras_padding(kernel: int, stride: int, padding: int) -> str:
    """Keras' name for symmetric zero padding of `padding` pixels."""
    if padding == 0:
        return "valid"
    if stride == 1 and kernel % 2 == 1 and padding == kernel // 2:
        return "same"  # symmetric only at stride 1 (TF pads bottom/right first otherwise)
    raise ValueError(f"padding {padding} for a {kernel}x{kernel}/{stride} conv has no Keras equivalent")


def _common(num_classes: int, image_size: int) -> dict:
    return dict(
        weights=None,
        include_top=True,
        classes=num_classes,
        input_shape=(image_size, image_size, 3),
        # logits out: the loss applies softmax itself, like torch's CrossEntropyLoss
        classifier_activation=None,
    )


def _last(model: keras.Model, pattern: str):
    return [layer for layer in model.layers if re.fullmatch(pattern, layer.name)][-1]


@dataclass(frozen=True, kw_only=True)
class Entry(Registration):
    zoo: Callable[[int, int], keras.Model]  # (num_classes, image_size) -> the unedited functional model
    edits: Callable[[keras.Model, Stem], tuple[dict, set]]  # config overrides per layer name, layers to skip
    blocks: Callable[[keras.Model], list]  # the output tensor ending each of spec.blocks, in order
    # the aligned architecture (docs/protocol.md §11): further config overrides per layer
    # name, and the layers that get a symmetric ZeroPadding2D(1) in front of them
    aligned: Callable[[keras.Model, Stem], tuple[dict, set]]
    # layer name -> the torchvision module (state_dict prefix) it is, under the aligned architecture
    canonical: Callable[[str], str | None]


REGISTRY = Registry("keras", __name__)


def register_model(name: str, **fields) -> Callable:
    """Register the decorated zoo builder for `name` (a benchmark.spec.models.SPECS key)
    with Entry's other fields; an unknown name fails at import."""
    return REGISTRY.register(Entry, name, "zoo", **fields)


KERAS_INIT = "conv and dense: glorot uniform, zero bias (Keras layer defaults); BatchNorm: ones/zeros"


def _no_changes(model, stem):
    return {}, set()


# ------------------------------------------------------------------ ResNet


def _resnet_edits(model, stem):
    edits, skip = {}, set()
    if stem.kernel is not None:
        # conv1_pad + 'valid' conv1_conv is the zoo's way of writing symmetric padding
        edits["conv1_pad"] = {"padding": ((stem.padding, stem.padding), (stem.padding, stem.padding))}
        edits["conv1_conv"] = {"kernel_size": (stem.kernel, stem.kernel), "strides": (stem.stride, stem.stride)}
    if not stem.keep_maxpool:
        skip |= {"pool1_pad", "pool1_pool"}
    return edits, skip


def _resnet_blocks(m):
    stem = _last(m, "pool1_pool") if any(x.name == "pool1_pool" for x in m.layers) else _last(m, "conv1_relu")
    return [stem.output, *[_last(m, rf"conv{k + 1}_block\d+_out").output for k in range(1, 5)]]


def _resnet_aligned(model, stem):
    """torchvision's ResNet50 (v1.5): no conv biases (BatchNorm follows every conv), and a
    downsampling block strides in its 3x3 conv, padded 1 on every side, not in its first
    1x1 conv (Keras' zoo is v1: stride in the 1x1, 'same' padding pads bottom/right only)."""
    edits: dict = {layer.name: {"use_bias": False} for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    pads = set()
    for layer in model.layers:
        match = re.fullmatch(r"conv(\d)_block1_1_conv", layer.name)
        if match and tuple(layer.strides) != (1, 1):
            stride, second = tuple(layer.strides), f"conv{match.group(1)}_block1_2_conv"
            edits[layer.name]["strides"] = (1, 1)
            edits[second].update(strides=stride, padding="valid")
            pads.add(second)
    return edits, pads


def _resnet_canonical(name: str) -> str | None:
    fixed = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", name)
    if not match:
        return None
    stage, block, index, kind = int(match[1]), int(match[2]), int(match[3]), match[4]
    base = f"layer{stage - 1}.{block - 1}."
    if index == 0:  # the projection shortcut
        return base + ("downsample.0" if kind == "conv" else "downsample.1")
    return base + f"{kind}{index}"


@register_model(
    "resnet50",
    edits=_resnet_edits,
    blocks=_resnet_blocks,
    aligned=_resnet_aligned,
    canonical=_resnet_canonical,
    initializers=KERAS_INIT,
)
def _resnet50(num_classes: int, image_size: int) -> keras.Model:
    return keras.applications.ResNet50(**_common(num_classes, image_size))


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool):
    """torchvision's conv (no bias, padding kernel // 2 on every side) + BatchNorm (+ ReLU)."""
    if kernel > 1 and stride > 1:  # 'same' would pad bottom/right only at stride 2
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same" if stride == 1 else "valid", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


@register_model(
    "resnet18",
    edits=_resnet_edits,
    blocks=_resnet_blocks,
    aligned=_no_changes,
    canonical=_resnet_canonical,
    initializers="conv: glorot uniform, no bias; dense: glorot uniform, zero bias (Keras layer defaults); "
    "BatchNorm: ones/zeros",
)
def _resnet18(num_classes: int, image_size: int) -> keras.Model:
    """keras.applications has no ResNet18: torchvision's, layer for layer, in the layer names
    of the zoo's ResNet50 (so its stem edits, block boundaries and canonical names apply)."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, filters in enumerate((64, 128, 256, 512), start=2):
        for block in (1, 2):  # torchvision's BasicBlock, two per stage
            name, stride = f"conv{stage}_block{block}", 2 if block == 1 and stage > 2 else 1
            shortcut = x if stride == 1 else _conv_bn(x, filters, 1, stride, f"{name}_0", relu=False)
            y = _conv_bn(x, filters, 3, stride, f"{name}_1", relu=True)
            y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
            x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
            x = keras.layers.Activation("relu", name=f"{name}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="predictions")(x), name="resnet18")


# ------------------------------------------------------------------ MobileNetV2


def _mobilenet_edits(model, stem):
    # 'same' at stride 1 is the symmetric 1-pixel padding of the torchvision stem
    return {"Conv1": {"strides": (stem.stride, stem.stride)}}, set()


def _mobilenet_aligned(model, stem):
    """torchvision's MobileNetV2: every stride-2 3x3 conv padded 1 on every side (Keras'
    zoo pads bottom/right only: ZeroPadding2D((0, 1), (0, 1)) before each stride-2
    depthwise conv, 'same' in a stride-2 stem)."""
    edits: dict = {
        layer.name: {"padding": ((1, 1), (1, 1))}
        for layer in model.layers
        if re.fullmatch(r"block_\d+_pad", layer.name)
    }
    pads = set()
    if stem.stride != 1:
        edits["Conv1"] = {"padding": "valid"}
        pads.add("Conv1")
    return edits, pads


_MOBILENET_BLOCK = {
    "expand": "conv.0.0",
    "expand_BN": "conv.0.1",
    "depthwise": "conv.1.0",
    "depthwise_BN": "conv.1.1",
    "project": "conv.2",
    "project_BN": "conv.3",
}


def _mobilenet_canonical(name: str) -> str | None:
    fixed = {
        "Conv1": "features.0.0",
        "bn_Conv1": "features.0.1",
        "Conv_1": "features.18.0",
        "Conv_1_bn": "features.18.1",
        "predictions": "classifier.1",
        # the first block has no expansion: torchvision numbers its layers from 0
        "expanded_conv_depthwise": "features.1.conv.0.0",
        "expanded_conv_depthwise_BN": "features.1.conv.0.1",
        "expanded_conv_project": "features.1.conv.1",
        "expanded_conv_project_BN": "features.1.conv.2",
    }
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"block_(\d+)_(expand|expand_BN|depthwise|depthwise_BN|project|project_BN)", name)
    return f"features.{int(match[1]) + 1}.{_MOBILENET_BLOCK[match[2]]}" if match else None


@register_model(
    "mobilenetv2",
    edits=_mobilenet_edits,
    aligned=_mobilenet_aligned,
    canonical=_mobilenet_canonical,
    blocks=lambda m: [
        _last(m, "Conv1_relu").output,
        *[_last(m, ("expanded_conv_" if i == 1 else f"block_{i - 1}_") + ".*").output for i in range(1, 18)],
        _last(m, "out_relu").output,
    ],
    initializers=KERAS_INIT,
    zoo_dropout=0.0,
)
def _mobilenetv2(num_classes: int, image_size: int) -> keras.Model:
    return keras.applications.MobileNetV2(**_common(num_classes, image_size))


# ------------------------------------------------------------------ ConvNeXt


def _convnext_edits(model, stem):
    padding = _keras_padding(stem.kernel, stem.stride, stem.padding)
    return {
        f"{model.name}_stem_conv": {
            "kernel_size": (stem.kernel, stem.kernel),
            "strides": (stem.stride, stem.stride),
            "padding": padding,
        }
    }, set()


def _convnext_blocks(m):
    p, rows = m.name, []
    layers = {layer.name: layer for layer in m.layers}
    gap = next(layer for layer in m.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    rows.append(layers[f"{p}_stem"].output)
    for s in range(4):
        # a stage ends in a sum that has no layer: its output is the input of what follows
        following = layers.get(f"{p}_downsampling_block_{s}", gap)
        rows.append(following.input)
        if s < 3:
            rows.append(following.output)
    return rows


_CONVNEXT_BLOCK = {
    "depthwise_conv": "block.0",
    "layernorm": "block.2",
    "pointwise_conv_1": "block.3",
    "pointwise_conv_2": "block.5",
    "layer_scale": "layer_scale",
}


def _convnext_canonical(name: str) -> str | None:
    fixed = {
        "convnext_tiny_stem_conv": "features.0.0",
        "convnext_tiny_stem_layernorm": "features.0.1",
        "convnext_tiny_head_layernorm": "classifier.0",
        "convnext_tiny_head_dense": "classifier.2",
    }
    if name in fixed:
        return fixed[name]
    match = re.fullmatch(r"convnext_tiny_stage_(\d)_block_(\d+)_(\w+)", name)
    if match and match[3] in _CONVNEXT_BLOCK:
        return f"features.{1 + 2 * int(match[1])}.{match[2]}.{_CONVNEXT_BLOCK[match[3]]}"
    match = re.fullmatch(r"convnext_tiny_downsampling_(layernorm|conv)_(\d)", name)
    if match:
        return f"features.{2 + 2 * int(match[2])}.{0 if match[1] == 'layernorm' else 1}"
    return None


@register_model(
    "convnext_tiny",
    edits=_convnext_edits,
    blocks=_convnext_blocks,
    canonical=_convnext_canonical,
    # the zoo's ConvNeXt is torchvision's layer for layer already (the stem edit is symmetric)
    aligned=_no_changes,
    initializers="conv and dense: glorot uniform, zero bias (Keras layer defaults); LayerNorm: ones/zeros; "
    "layer scale 1e-6",
    zoo_drop_path=0.0,
)
def _convnext_tiny(num_classes: int, image_size: int) -> keras.Model:
    # the benchmark normalizes its inputs itself (docs/protocol.md §3), as for the other models
    return keras.applications.ConvNeXtTiny(include_preprocessing=False, **_common(num_classes, image_size))


def entry(name: str) -> Entry:
    return REGISTRY[name]


# benchmark.spec.models.INITIALIZERS as keras.initializers (fans as Keras computes them)
INIT = {
    "kaiming_normal_fan_out": lambda: keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
    "glorot_uniform": keras.initializers.GlorotUniform,
    "trunc_normal_0.02": lambda: keras.initializers.TruncatedNormal(stddev=0.02),
}


def create_model(
    name: str,
    num_classes: int,
    image_size: int,
    *,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    init: str | None = None,
    architecture: str = "native",
    dtype: str | None = None,
) -> keras.Model:
    """The zoo model `name` with the protocol's stem and PyTorch's BatchNorm settings;
    regularization None = the zoo's own (a dropout before the classifier, stochastic
    depth linear over the residual blocks, where the model has them); init None = the
    zoo's own, else `init` (benchmark.spec.models.INITIALIZERS) on every conv and dense
    kernel, biases zero. `architecture="aligned"`: torchvision's network layer for layer
    (Entry.aligned; docs/protocol.md §11). `dtype`: every layer's dtype policy (None: the
    global one; "float64" for the numerical-equivalence check)."""
    check_init(init)
    check_architecture(architecture)
    previous = keras.config.dtype_policy()
    if dtype is not None:
        keras.config.set_dtype_policy(dtype)
    try:
        model = _create(name, num_classes, image_size, drop_rate, drop_path_rate, architecture == "aligned")
    finally:
        keras.config.set_dtype_policy(previous)
    if init is not None:
        for layer in all_layers(model):
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
                layer.kernel.assign(INIT[init]()(layer.kernel.shape, layer.kernel.dtype))
                if layer.use_bias:
                    layer.bias.assign(keras.ops.zeros(layer.bias.shape, layer.bias.dtype))
    return model


def _create(
    name: str, num_classes: int, image_size: int, drop_rate: float | None, drop_path_rate: float | None, aligned: bool
) -> keras.Model:
    e = entry(name)
    e.check_rates(drop_rate, drop_path_rate)
    dropout, drop_path = e.dropout(drop_rate), e.drop_path(drop_path_rate)
    stem = stem_for(name, image_size)
    zoo = e.zoo(num_classes, image_size)
    edits, skip = e.edits(zoo, stem)
    pad_before: set = set()
    if aligned:
        more, pad_before = e.aligned(zoo, stem)
        for layer_name, changes in more.items():
            edits[layer_name] = {**edits.get(layer_name, {}), **changes}
    branches = [
        layer.name for layer in zoo.layers if re.fullmatch(rf"{zoo.name}_stage_\d+_block_\d+_identity", layer.name)
    ]
    # torchvision's and Keras' ConvNeXt rule: the rate grows linearly from 0 at the first block
    rates = {b: drop_path * i / max(1, len(branches) - 1) for i, b in enumerate(branches)} if drop_path else {}
    found = set()

    def clone_layer(layer):
        if isinstance(layer, keras.Sequential):
            # ConvNeXt's stem and downsampling blocks are inner Sequential models; their
            # recorded input shapes would pin the old spatial sizes, so rebuild them unpinned
            return keras.Sequential([clone_layer(inner) for inner in layer.layers], name=layer.name)
        if layer.name in rates:
            return DropPath(rates[layer.name], name=layer.name.replace("_identity", "_drop_path"))
        config = layer.get_config()
        if layer.name in edits:
            config.update(edits[layer.name])
            found.add(layer.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            config.update(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        return layer.__class__.from_config(config)

    def call_layer(layer, *args, **kwargs):
        if layer.name in skip:
            found.add(layer.name)
            return args[0]  # the layer is left out of the graph: its input flows on
        if layer.name in pad_before:  # torch's symmetric padding=1, as its own layer before a 'valid' conv
            found.add(layer.name)
            return layer(keras.layers.ZeroPadding2D(1, name=f"{layer.name}_sympad")(args[0]), **kwargs)
        if dropout and isinstance(layer, keras.layers.Dense):  # the classifier, as torchvision places it
            return layer(keras.layers.Dropout(dropout, name="head_dropout")(args[0]), **kwargs)
        return layer(*args, **kwargs)

    model = keras.models.clone_model(zoo, clone_function=clone_layer, call_function=call_layer)
    missing = (set(edits) | skip | pad_before) - found
    if missing:  # a Keras release renamed the zoo's layers: fail rather than train the unedited model
        raise RuntimeError(f"{name}: layers {sorted(missing)} not found in keras.applications' graph")
    return model


# ------------------------------------------------------------------ canonical layout
# Under the aligned architecture every variable is one tensor of torchvision's network:
# Entry.canonical names the module, the layer type names the tensor and its layout.

# the axes of a Keras kernel, in the order of torch's: Keras -> torch is value.transpose(layout)
_CONV = (3, 2, 0, 1)  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
_DEPTHWISE = (2, 3, 0, 1)  # Keras (kh, kw, C, 1) -> torch (C, 1, kh, kw)
_DENSE = (1, 0)  # Keras (in, out) -> torch (out, in)
# how a variable's value maps to torch's: the transpose above, None (as it is), or
# "layer_scale" (ConvNeXt's, (C,) in Keras, (C, 1, 1) in torch)
Layout = tuple[int, ...] | str | None


def _layer_tensors(layer) -> list[tuple[str, keras.Variable, Layout]]:
    """(tensor name, variable, layout: the transpose to torch's axes, or None) of one layer."""

    def with_bias(kernel_layout):
        rows = [("weight", layer.kernel, kernel_layout)]
        return rows + [("bias", layer.bias, None)] if layer.use_bias else rows

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return with_bias(_DEPTHWISE)
    if isinstance(layer, keras.layers.Conv2D):
        return with_bias(_CONV)
    if isinstance(layer, keras.layers.Dense):
        return with_bias(_DENSE)
    if isinstance(layer, keras.layers.BatchNormalization):
        return [
            ("weight", layer.gamma, None),
            ("bias", layer.beta, None),
            ("running_mean", layer.moving_mean, None),
            ("running_var", layer.moving_variance, None),
        ]
    if isinstance(layer, keras.layers.LayerNormalization):
        return [("weight", layer.gamma, None), ("bias", layer.beta, None)]
    if type(layer).__name__ == "LayerScale":  # ConvNeXt's; torch keeps it as (C, 1, 1)
        return [("", layer.weights[0], "layer_scale")]
    return []


def canonical_variables(model: keras.Model, name: str) -> dict[str, tuple[keras.Variable, Layout]]:
    """{torchvision state_dict name: (variable, layout)} of a model built with the aligned
    architecture; a weight-carrying layer without a counterpart is an error."""
    mapping = entry(name).canonical
    out: dict[str, tuple[keras.Variable, Layout]] = {}
    for layer in all_layers(model):
        tensors = [] if isinstance(layer, keras.Model) else _layer_tensors(layer)
        if not tensors:
            continue
        module = mapping(layer.name)
        if module is None:
            raise ValueError(f"{name}: layer {layer.name} has no counterpart in torchvision's network")
        for tensor, variable, layout in tensors:
            key = f"{module}.{tensor}" if tensor else module
            if key in out:
                raise ValueError(f"{name}: {key} is mapped twice")
            out[key] = (variable, layout)
    return out


def to_canonical(value: np.ndarray, layout) -> np.ndarray:
    """A Keras variable's value (or its gradient) in torchvision's layout."""
    if layout == "layer_scale":
        return value.reshape(-1, 1, 1)
    return value.transpose(layout) if layout else value


def _from_torch(value: np.ndarray, layout, shape) -> np.ndarray:
    if layout == "layer_scale":
        return value.reshape(shape)
    return value.transpose(np.argsort(layout)) if layout else value


def canonical_state(model: keras.Model, name: str, dtype=np.float32) -> dict[str, np.ndarray]:
    """Every variable by torchvision name, in torchvision's layout, as `dtype` arrays."""
    return {
        key: to_canonical(np.asarray(v, dtype), layout) for key, (v, layout) in canonical_variables(model, name).items()
    }


def canonical_shapes(model: keras.Model, name: str) -> dict[str, tuple[int, ...]]:
    return {key: value.shape for key, value in canonical_state(model, name).items()}


def load_canonical(model: keras.Model, name: str, state: dict[str, np.ndarray]) -> None:
    """Copy `state` (torchvision names and layout) into the model; every tensor must be given."""
    variables = canonical_variables(model, name)
    missing = set(variables) - set(state)
    if missing:
        raise ValueError(f"no value for {sorted(missing)[:3]} ({len(missing)} tensors)")
    for key, (variable, layout) in variables.items():
        value = _from_torch(np.asarray(state[key]), layout, tuple(variable.shape))
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{key}: shape {np.asarray(state[key]).shape} given, the model's is "
                f"{to_canonical(np.zeros(variable.shape), layout).shape}"
            )
        variable.assign(value.astype(variable.dtype))


def all_layers(model: keras.Model) -> list:
    """Every layer, those inside nested models (ConvNeXt's Sequential blocks) included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(all_layers(layer))
    return found


def _size(variable) -> int:
    return int(np.prod([int(d) for d in variable.shape]))


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Trainable weights, non-trainable weights and buffers, in the PyTorch backend's terms.

    Keras counts BatchNorm moving mean/variance as non-trainable weights; PyTorch keeps
    them as buffers. They are reported as buffers here so the two tables line up.
    """
    trainable = sum(_size(v) for v in model.trainable_weights)
    moving = {
        id(v)
        for layer in all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    }
    buffers = sum(_size(v) for v in model.non_trainable_weights if id(v) in moving)
    frozen = sum(_size(v) for v in model.non_trainable_weights if id(v) not in moving)
    return {"trainable": trainable, "non_trainable": frozen, "buffers": buffers}


def _padding(layer, producers) -> tuple | None:
    """(top, bottom, left, right) zero padding of a conv, a ZeroPadding2D feeding it included;
    TensorFlow's 'same' at stride 2 pads the extra row/column at the bottom/right."""
    pads = [0, 0, 0, 0]
    try:
        source = producers.get(id(layer.input))
    except Exception:  # an inner Sequential's layer: no graph input of its own
        source = None
    if isinstance(source, keras.layers.ZeroPadding2D):
        (top, bottom), (left, right) = source.padding
        pads = [int(top), int(bottom), int(left), int(right)]
    if layer.padding == "same":
        try:
            size = [int(layer.input.shape[1]), int(layer.input.shape[2])]
        except Exception:  # an inner Sequential's layer: no recorded input size
            size = None
        for axis, (k, st) in enumerate(zip(layer.kernel_size, layer.strides, strict=True)):
            if st == 1 and k % 2 == 1:
                total = k - 1  # symmetric whatever the input size
            elif size is None:
                return None
            else:
                total = max((math.ceil(size[axis] / st) - 1) * st + k - size[axis], 0)
            pads[2 * axis] += total // 2
            pads[2 * axis + 1] += total - total // 2
    return tuple(pads)


def layer_table(model: keras.Model) -> list[LayerInfo]:
    """Weight and normalization layers in graph order, in PyTorch's layout (see contract.LayerInfo)."""
    producers = {}
    for layer in all_layers(model):
        try:
            producers[id(layer.output)] = layer
        except (AttributeError, ValueError):  # a layer never called on a graph tensor: no output node
            continue
    rows = []
    for layer in all_layers(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kernel = np.asarray(layer.kernel)  # (kh, kw, in, out) or depthwise (kh, kw, in, 1)
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D) or (
                getattr(layer, "groups", 1) > 1 and kernel.shape[2] == 1
            )
            torch_layout = (
                kernel.transpose(3, 2, 0, 1)
                if not isinstance(layer, keras.layers.DepthwiseConv2D)
                else kernel.transpose(2, 3, 0, 1)
            )
            receptive = kernel.shape[0] * kernel.shape[1]
            bias = _size(layer.bias) if layer.use_bias else 0
            rows.append(
                LayerInfo(
                    layer.name,
                    "depthwise conv" if depthwise else "conv",
                    torch_layout.shape,
                    int(layer.strides[0]),
                    _padding(layer, producers),
                    bias,
                    kernel=torch_layout,
                    fans=(receptive * kernel.shape[2], receptive * kernel.shape[3]),
                )
            )
        elif isinstance(layer, keras.layers.Dense):
            kernel = np.asarray(layer.kernel)
            rows.append(
                LayerInfo(
                    layer.name,
                    "dense",
                    kernel.T.shape,
                    bias=_size(layer.bias) if layer.use_bias else 0,
                    kernel=kernel.T,
                    fans=(kernel.shape[0], kernel.shape[1]),
                )
            )
        elif isinstance(layer, keras.layers.BatchNormalization):
            rows.append(
                LayerInfo(
                    layer.name,
                    "batchnorm",
                    (_size(layer.gamma),),
                    momentum=1.0 - float(layer.momentum),
                    eps=float(layer.epsilon),
                )
            )
        elif isinstance(layer, keras.layers.LayerNormalization):
            rows.append(LayerInfo(layer.name, "layernorm", (_size(layer.gamma),), eps=float(layer.epsilon)))
    return rows


def block_shapes(model: keras.Model, name: str, image_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """(label, (C, H, W)) after every block of the registry, then the pooled features and
    the logits, from the symbolic graph."""
    dense = [layer for layer in all_layers(model) if isinstance(layer, keras.layers.Dense)][-1]
    e = entry(name)
    rows = [*labelled(e, e.blocks(model)), ("pooled", dense.input), ("logits", dense.output)]

    def chw(shape) -> tuple[int, ...]:
        dims = tuple(int(d) for d in shape[1:])
        return (dims[2], dims[0], dims[1]) if len(dims) == 3 else dims

    return [(label, chw(tensor.shape)) for label, tensor in rows]


def feature_map_size(model: keras.Model, name: str, image_size: int) -> tuple[int, int]:
    """Spatial size of the last feature map before global pooling, for one input."""
    return final_map(block_shapes(model, name, image_size))
