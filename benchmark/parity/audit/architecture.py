"""Architecture: stem, pooling, ResNet downsampling, convolution biases, padding, activations."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from benchmark.parity.frameworks import keras, tf  # torch first, then TensorFlow
from torch import nn

from benchmark.models import stem_for
from benchmark.parity.audit.arms import Arms, Finding
from benchmark.parity.audit.layers import (
    _counter_str, _is_keras_conv, _keras_bns, _keras_conv_kind, _keras_convs, _keras_denses, _keras_layers,
    _n, _names, _torch_conv_kind, _torch_convs, _torch_linears,
)


def _keras_producers(model) -> dict[int, object]:
    producers = {}
    for layer in _keras_layers(model):
        try:
            producers[id(layer.output)] = layer
        except Exception:  # a layer without a single output node
            continue
    return producers


def _keras_input_hw(layer):
    try:
        shape = layer.input.shape
        return int(shape[1]), int(shape[2])
    except Exception:
        return None


def _keras_conv_padding(layer, producers) -> tuple | None:
    """(top, bottom, left, right) zero padding of a Keras conv, a ZeroPadding2D feeding it included."""
    pads = [0, 0, 0, 0]
    try:
        source = producers.get(id(layer.input))
    except Exception:
        source = None
    if isinstance(source, keras.layers.ZeroPadding2D):
        (t, b), (l, r) = source.padding
        pads = [int(t), int(b), int(l), int(r)]
    if layer.padding == "same":
        if all(s == 1 and k % 2 == 1 for k, s in zip(layer.kernel_size, layer.strides)):
            half = [k // 2 for k in layer.kernel_size]  # symmetric whatever the input size
            return (pads[0] + half[0], pads[1] + half[0], pads[2] + half[1], pads[3] + half[1])
        hw = _keras_input_hw(layer)
        if hw is None:
            return None
        for axis, (size, k, s) in enumerate(zip(hw, layer.kernel_size, layer.strides)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads[2 * axis] += total // 2
            pads[2 * axis + 1] += total - total // 2
    return tuple(pads)


def _torch_conv_padding(m: nn.Conv2d) -> tuple | None:
    if isinstance(m.padding, str):
        return None if m.padding == "same" else (0, 0, 0, 0)
    ph, pw = m.padding
    return (ph, ph, pw, pw)


def _pad_str(p) -> str:
    if p is None:
        return "'same' (input size unknown)"
    t, b, l, r = p
    if t == b and l == r:
        return f"{t}" if t == l else f"{t}x{l}"
    return f"top {t}/bottom {b}, left {l}/right {r}"


def _activation_kinds_torch(model) -> Counter:
    kinds = Counter()
    for m in model.modules():
        if isinstance(m, nn.ReLU6):
            kinds["ReLU6"] += 1
        elif isinstance(m, nn.ReLU):
            kinds["ReLU"] += 1
        elif isinstance(m, nn.GELU):
            kinds["GELU (exact, erf)" if m.approximate == "none" else "GELU (tanh approximation)"] += 1
        elif isinstance(m, (nn.SiLU, nn.Hardswish, nn.Sigmoid, nn.Tanh)):
            kinds[type(m).__name__] += 1
    return kinds


def _gelu_kind(fn) -> str:
    x = np.linspace(-3, 3, 61).astype(np.float32)
    y = np.asarray(fn(tf.constant(x)))
    exact = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return "GELU (exact, erf)" if np.abs(y - exact).max() < 1e-5 else "GELU (tanh approximation)"


def _activation_kinds_keras(model) -> Counter:
    kinds = Counter()
    for layer in _keras_layers(model):
        if isinstance(layer, keras.layers.ReLU):
            mv = layer.max_value
            kinds["ReLU6" if mv is not None and float(mv) == 6.0 else "ReLU"] += 1
        elif isinstance(layer, keras.layers.Activation):
            name = getattr(layer.activation, "__name__", str(layer.activation))
            if name in ("linear",):
                continue
            kinds[_gelu_kind(layer.activation) if name == "gelu" else {"relu": "ReLU", "relu6": "ReLU6"}.get(name, name)] += 1
        elif _is_keras_conv(layer) or isinstance(layer, keras.layers.Dense):
            name = getattr(layer.activation, "__name__", "linear")
            if name != "linear":
                kinds[{"relu": "ReLU", "relu6": "ReLU6"}.get(name, name) + " (fused in layer)"] += 1
    return kinds


def check_architecture(a: Arms) -> list[Finding]:
    tm, km = a.tm, a.km
    rows = []
    # stem: the first convolution
    t_name, t_stem = _torch_convs(tm)[0]
    producers = _keras_producers(km)
    k_stem = _keras_convs(km)[0]
    t_desc = (f"{t_name}: {t_stem.kernel_size[0]}x{t_stem.kernel_size[1]}, stride {t_stem.stride[0]}, "
              f"padding {_pad_str(_torch_conv_padding(t_stem))}")
    k_pad = _keras_conv_padding(k_stem, producers)
    k_desc = (f"{k_stem.name}: {k_stem.kernel_size[0]}x{k_stem.kernel_size[1]}, stride {k_stem.strides[0]}, "
              f"padding {_pad_str(k_pad)}")
    same = (tuple(t_stem.kernel_size) == tuple(k_stem.kernel_size) and tuple(t_stem.stride) == tuple(k_stem.strides)
            and _torch_conv_padding(t_stem) == k_pad)
    stem = stem_for(a.name, a.size)
    geometry = (tuple(t_stem.kernel_size) == tuple(k_stem.kernel_size)
                and tuple(t_stem.stride) == tuple(k_stem.strides))
    if same:
        impact = f"the docs/protocol.md §4 stem for {a.size}x{a.size} in both"
    elif geometry:
        impact = ("same kernel and stride, different padding: TensorFlow's 'same' at stride 2 pads bottom/right "
                  "only (see the strided-convolution row); the zoo's stem, reported, not removed")
    else:
        impact = "the stems differ: the first feature maps are computed differently"
    rows.append(Finding("Architecture", "stem convolution", t_desc, k_desc, same, impact))
    t_pools = sum(isinstance(m, nn.MaxPool2d) for m in tm.modules())
    k_pools = sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in _keras_layers(km))
    rows.append(Finding("Architecture", "max-pool layers", str(t_pools), str(k_pools), t_pools == k_pools,
                        "same" + (" (ResNet's stem max-pool removed in both, docs/protocol.md §4)"
                                  if a.name == "resnet50" and not stem.keep_maxpool and t_pools == 0 else "")
                        if t_pools == k_pools else "different downsampling"))

    if a.name == "resnet50":
        rows.extend(_resnet_stride_placement(a))

    # convolution biases
    t_convs, k_convs = _torch_convs(tm), _keras_convs(km)
    t_bias = [n for n, m in t_convs if m.bias is not None]
    k_bias = [layer.name for layer in k_convs if layer.use_bias]
    t_bias_n = sum(m.bias.numel() for _, m in t_convs if m.bias is not None)
    k_bias_n = sum(int(np.prod(layer.bias.shape)) for layer in k_convs if layer.use_bias)
    same = len(t_bias) == len(k_bias) and t_bias_n == k_bias_n
    if same:
        impact = "same" if t_bias else "no convolution has a bias in either framework"
    else:
        followed = "each followed by BatchNorm, which removes a constant shift: functionally redundant" \
            if _keras_bns(km) else "not cancelled by a normalization"
        impact = (f"Keras has {len(k_bias) - len(t_bias):+d} biased convolutions ({k_bias_n - t_bias_n:+,} parameters), "
                  f"{followed}, but they are trained and weight-decayed; counted in the parameter difference; "
                  "reported, not removed (the zoo's architecture)")
    rows.append(Finding("Architecture", "convolution biases",
                        f"{len(t_bias)} of {len(t_convs)} convs ({_n(t_bias_n)} values)",
                        f"{len(k_bias)} of {len(k_convs)} convs ({_n(k_bias_n)} values)", same, impact))

    # padding of strided convolutions
    t_strided = [(n, _torch_conv_padding(m)) for n, m in t_convs if max(m.stride) > 1]
    k_strided = [(layer.name, _keras_conv_padding(layer, producers)) for layer in k_convs if max(layer.strides) > 1]
    t_asym = [n for n, p in t_strided if p is None or p[0] != p[1] or p[2] != p[3]]
    k_asym = [n for n, p in k_strided if p is None or p[0] != p[1] or p[2] != p[3]]

    def strided_desc(items, asym):
        if not items:
            return "no strided convolutions"
        pads = Counter(_pad_str(p) for _, p in items)
        text = f"{len(items)} strided convs, padding " + "; ".join(f"{k} x{v}" for k, v in pads.items())
        if asym:
            text += f"; asymmetric: {_names(asym)}"
        return text

    same = not t_asym and not k_asym
    impact = ("symmetric padding at every strided convolution in both" if same else
              "TensorFlow-style padding adds the extra row/column at the bottom/right only, PyTorch pads both "
              "sides: the strided layers sample windows shifted by one pixel (their outputs are not comparable "
              "weight for weight) and the border is treated differently; trained from scratch this is a small "
              "architectural difference of the Keras zoo, reported, not removed")
    rows.append(Finding("Architecture", "padding of strided convolutions", strided_desc(t_strided, t_asym),
                        strided_desc(k_strided, k_asym), same, impact))

    # activations
    t_act, k_act = _activation_kinds_torch(tm), _activation_kinds_keras(km)
    same = set(t_act) == set(k_act)
    rows.append(Finding("Architecture", "activation functions", _counter_str(t_act), _counter_str(k_act), same,
                        "same activation functions (counts differ only where a module is reused)" if same and t_act != k_act
                        else "same" if same else "different nonlinearities"))

    # layer counts by kind
    def kinds_torch():
        c = Counter(_torch_conv_kind(m) for _, m in t_convs)
        c["dense/linear"] = len(_torch_linears(tm))
        return c

    def kinds_keras():
        c = Counter(_keras_conv_kind(layer) for layer in k_convs)
        c["dense/linear"] = len(_keras_denses(km))
        return c

    tc, kc = kinds_torch(), kinds_keras()
    rows.append(Finding("Architecture", "weight layers by kind", _counter_str(tc), _counter_str(kc), tc == kc,
                        "same number of convolutions and dense layers of each kind" if tc == kc
                        else "different layer counts"))
    return rows


def _resnet_stride_placement(a: Arms) -> list[Finding]:
    """ResNet v1 (stride in the first 1x1 of a downsampling block) vs v1.5 (stride in the 3x3)."""
    top = {layer.name: layer for layer in a.km.layers}

    def version(strides: list[int]) -> str:
        where = [i for i, s in enumerate(strides) if s > 1]
        if where == [0]:
            return "v1 (stride 2 in the first 1x1 conv)"
        if where == [1]:
            return "v1.5 (stride 2 in the 3x3 conv)"
        return f"strides {strides}"

    t_versions, k_versions, detail = [], [], []
    for stage in (2, 3, 4):
        block = getattr(a.tm, f"layer{stage}")[0]
        ts = [block.conv1.stride[0], block.conv2.stride[0], block.conv3.stride[0]]
        ks = [top[f"conv{stage + 1}_block1_{i}_conv"].strides[0] for i in (1, 2, 3)]
        t_versions.append(version(ts))
        k_versions.append(version(ks))
        if stage == 2:
            detail = (f"layer2[0] conv1/conv2/conv3 strides {ts}", f"conv3_block1_1/2/3_conv strides {ks}")
    t_v, k_v = Counter(t_versions), Counter(k_versions)
    same = t_v == k_v
    return [Finding(
        "Architecture", "ResNet downsampling blocks (stages 2-4)",
        f"{'; '.join(t_v)} [{detail[0]}]", f"{'; '.join(k_v)} [{detail[1]}]", same,
        "same" if same else
        "torchvision's ResNet50 is v1.5, keras.applications' is v1: with the stride in the 1x1 conv the block "
        "drops 3/4 of its input before the 3x3 sees it. NVIDIA's ResNet50 v1.5 model card reports ~0.5 pt more "
        "ImageNet top-1 than v1 at ~5% lower throughput, so it may favour PyTorch's accuracy and Keras' speed; "
        "the zoo architectures are compared as they are: reported, not removed",
    )]
