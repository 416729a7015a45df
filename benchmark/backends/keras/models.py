"""keras.applications zoo models with the stems of docs/protocol.md §4 (from benchmark.models.STEMS).

The stems are changed by cloning the official functional graph
(``keras.models.clone_model``): a ``clone_function`` rewrites the config of the stem
layers and a ``call_function`` skips ResNet's max-pool, so every other layer is the
zoo's own, with its own initializer.

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

import keras

from benchmark.models import MODELS, stem_for

# PyTorch nn.BatchNorm2d defaults, in Keras' convention (moving = m * moving + (1 - m) * batch)
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _keras_padding(kernel: int, stride: int, padding: int) -> str:
    """Keras' name for symmetric zero padding of `padding` pixels."""
    if padding == 0:
        return "valid"
    if stride == 1 and kernel % 2 == 1 and padding == kernel // 2:
        return "same"  # symmetric only at stride 1 (TF pads bottom/right first otherwise)
    raise ValueError(f"padding {padding} for a {kernel}x{kernel}/{stride} conv has no Keras equivalent")


def _zoo(name: str, num_classes: int, image_size: int) -> keras.Model:
    common = dict(weights=None, include_top=True, classes=num_classes, input_shape=(image_size, image_size, 3),
                  # logits out: the loss applies softmax itself, like torch's CrossEntropyLoss
                  classifier_activation=None)
    if name == "resnet50":
        return keras.applications.ResNet50(**common)
    if name == "mobilenetv2":
        return keras.applications.MobileNetV2(**common)
    if name == "convnext_tiny":
        # the benchmark normalizes its inputs itself (docs/protocol.md §3), as for the other models
        return keras.applications.ConvNeXtTiny(include_preprocessing=False, **common)
    raise ValueError(f"model {name!r} unknown; valid: {MODELS}")


def _stem_edits(name: str, model: keras.Model, image_size: int) -> tuple[dict, set]:
    """Config overrides per layer name, and the names of layers to skip."""
    stem = stem_for(name, image_size)
    edits: dict[str, dict] = {}
    skip: set[str] = set()
    if name == "resnet50":
        if stem.kernel is not None:
            # conv1_pad + 'valid' conv1_conv is the zoo's way of writing symmetric padding
            edits["conv1_pad"] = {"padding": ((stem.padding, stem.padding), (stem.padding, stem.padding))}
            edits["conv1_conv"] = {"kernel_size": (stem.kernel, stem.kernel), "strides": (stem.stride, stem.stride)}
        if not stem.keep_maxpool:
            skip |= {"pool1_pad", "pool1_pool"}
    elif name == "mobilenetv2":
        # 'same' at stride 1 is the symmetric 1-pixel padding of the torchvision stem
        edits["Conv1"] = {"strides": (stem.stride, stem.stride)}
    elif name == "convnext_tiny":
        padding = _keras_padding(stem.kernel, stem.stride, stem.padding)
        edits[f"{model.name}_stem_conv"] = {"kernel_size": (stem.kernel, stem.kernel),
                                             "strides": (stem.stride, stem.stride), "padding": padding}
    return edits, skip


def build_model(name: str, num_classes: int, image_size: int) -> keras.Model:
    zoo = _zoo(name, num_classes, image_size)
    edits, skip = _stem_edits(name, zoo, image_size)
    found = set()

    def clone_layer(layer):
        if isinstance(layer, keras.Sequential):
            # ConvNeXt's stem and downsampling blocks are inner Sequential models; their
            # recorded input shapes would pin the old spatial sizes, so rebuild them unpinned
            return keras.Sequential([clone_layer(inner) for inner in layer.layers], name=layer.name)
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
        return layer(*args, **kwargs)

    model = keras.models.clone_model(zoo, clone_function=clone_layer, call_function=call_layer)
    missing = (set(edits) | skip) - found
    if missing:  # a Keras release renamed the zoo's layers: fail rather than train the unedited model
        raise RuntimeError(f"{name}: layers {sorted(missing)} not found in keras.applications' graph")
    return model


def all_layers(model: keras.Model) -> list:
    """Every layer, those inside nested models (ConvNeXt's Sequential blocks) included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(all_layers(layer))
    return found


def _size(variable) -> int:
    n = 1
    for d in variable.shape:
        n *= int(d)
    return n


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Trainable weights, non-trainable weights and buffers, in the PyTorch backend's terms.

    Keras counts BatchNorm moving mean/variance as non-trainable weights; PyTorch keeps
    them as buffers. They are reported as buffers here so the two tables line up.
    """
    trainable = sum(_size(v) for v in model.trainable_weights)
    moving = {id(v) for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
              for v in (layer.moving_mean, layer.moving_variance)}
    buffers = sum(_size(v) for v in model.non_trainable_weights if id(v) in moving)
    frozen = sum(_size(v) for v in model.non_trainable_weights if id(v) not in moving)
    return {"trainable": trainable, "non_trainable": frozen, "buffers": buffers}


def feature_map_size(model: keras.Model, name: str, image_size: int) -> tuple[int, int]:
    """Spatial size of the last feature map before global pooling, for one input."""
    pool = next(layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    body = keras.Model(model.inputs, pool.input)
    out = body(keras.ops.zeros((1, image_size, image_size, 3)), training=False)
    return tuple(int(d) for d in out.shape[1:3])
