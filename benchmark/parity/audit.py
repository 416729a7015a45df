"""Cross-framework parity audit of one configuration (model x dataset x precision).

Both arms are built through the backends' own code: the PyTorch and the Keras
``Trainer`` of the configuration (model, optimizer, LR schedule, loss, input
normalization, precision policy), without any data (the trainers only see the class
count, the input size and the normalization constants), plus the unmodified
``keras.applications`` model for the zoo's own defaults. Every finding is computed
from these objects: read from the built layers/modules and optimizers, measured by
running them (initial weight statistics, one optimizer step, the update rule on a
probe vector, forward passes in train and eval mode), or, for the few things that
only exist as code, read from the backend's source (said so in the finding).

Each finding is one row: category, item, pytorch, keras, same, impact, kind. ``kind``
is ``check`` for what is in effect in the benchmark and ``info`` for context that is
not (e.g. what the Keras zoo default would have been).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import random
import re
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np

from benchmark.parity.frameworks import keras, tf, torch  # torch first, then TensorFlow
from torch import nn  # noqa: E402

from benchmark.backends.keras import models as kmodels  # noqa: E402
from benchmark.backends.keras import train as ktrain  # noqa: E402
from benchmark.backends.pytorch import train as ttrain  # noqa: E402
from benchmark.backends.pytorch.models import parameter_counts as torch_parameter_counts  # noqa: E402
from benchmark.backends.pytorch.schedule import build_scheduler  # noqa: E402
from benchmark.models import stem_for  # noqa: E402
from benchmark.schedule import Schedule  # noqa: E402

CATEGORIES = (
    "Parameters", "Layer shapes", "Architecture", "BatchNorm", "LayerNorm", "Initializers", "Regularization",
    "Train/eval mode", "Weight decay", "Optimizer", "LR schedule", "Loss", "Input normalization", "Precision",
)

INTRO = {
    "Parameters": "Parameter counts of the two built models (the backends' `parameter_counts`). Keras keeps "
                  "BatchNorm moving statistics as non-trainable weights, PyTorch as buffers: they are compared "
                  "with each other.",
    "Layer shapes": "Feature-map shapes at every stage/block boundary, from a forward pass with hooks (PyTorch) "
                    "and the symbolic graph (Keras), both written as (C, H, W).",
    "Architecture": "Structural details read from the built modules and layers: stem, pooling, where ResNet "
                    "downsamples, convolution biases, padding of strided convolutions (TensorFlow's 'same' pads "
                    "bottom/right first), activations and layer counts.",
    "BatchNorm": "BatchNorm layers paired in order of appearance. Momentum is written in PyTorch's convention "
                 "(weight of the new batch statistic; Keras momentum m is 1 - m here).",
    "LayerNorm": "LayerNorm layers (ConvNeXt) paired in order of appearance.",
    "Initializers": "Initialization per layer family. PyTorch: measured from the built weights (std against each "
                    "candidate formula, distribution shape from the excess kurtosis) and the `nn.init` calls in "
                    "torchvision's source. Keras: the initializer in each layer's `get_config()`, measured the "
                    "same way.",
    "Regularization": "Regularization built into the architectures, read from the modules/layers.",
    "Train/eval mode": "Forward passes on a random batch: the trainers' evaluation path twice (must not update "
                       "BatchNorm statistics and must be deterministic) and the model in training mode twice "
                       "(stochastic when dropout or stochastic depth is active).",
    "Weight decay": "One step of each trainer's real update with a zero loss gradient and every variable set to 1: "
                    "the step is pure weight decay, so its size per variable tells which variables are decayed and "
                    "how (coupled L2 through Nesterov momentum shrinks by (1 + m) * lr * wd from zero momentum, "
                    "decoupled decay by lr * wd).",
    "Optimizer": "The trainers' optimizers, and their update rules measured on a probe vector with a fixed random "
                 "gradient sequence under the run's real LR schedule (each backend's own scheduler).",
    "LR schedule": "Each backend's LR schedule object evaluated at every optimizer step of the configured run, "
                   "against `benchmark.schedule.Schedule.lr_at`.",
    "Loss": "The loss of each training step (PyTorch: the trainer's criterion object; Keras: read from the "
            "trainer's step source, then evaluated) on the same random logits.",
    "Input normalization": "Each trainer's input normalizer applied to the same random uint8 batch.",
    "Precision": "Mixed-precision policy and loss scaling of each trainer on the device the audit ran on.",
}


@dataclass
class Finding:
    category: str
    item: str
    pytorch: str
    keras: str
    same: bool
    impact: str
    kind: str = "check"  # check: in effect in the benchmark; info: context, not in effect


@dataclass
class Arms:
    """Both arms of one configuration, built by the backends."""

    cfg: object
    schedule: Schedule
    train_images: int
    train_source: str
    torch: object  # benchmark.backends.pytorch.train.Trainer
    keras: object  # benchmark.backends.keras.train.Trainer
    zoo: object  # unmodified keras.applications model (the zoo's own defaults)

    @property
    def name(self) -> str:
        return self.cfg.model.name

    @property
    def size(self) -> int:
        return int(self.cfg.dataset.image_size)

    @property
    def classes(self) -> int:
        return int(self.cfg.dataset.num_classes)

    @property
    def tm(self) -> nn.Module:
        return self.torch.model

    @property
    def km(self):
        return self.keras.model


# ----------------------------------------------------------------- building

class _NoData:
    """What the trainers read from PreparedData at construction, without any images."""

    def __init__(self, cfg):
        ds = cfg.dataset
        self.name, self.num_classes, self.image_size = ds.name, int(ds.num_classes), int(ds.image_size)
        # null constants are taken from the cache at run time, identically by both backends
        self.mean = [float(v) for v in ds.mean] if ds.mean is not None else [0.0, 0.0, 0.0]
        self.std = [float(v) for v in ds.std] if ds.std is not None else [1.0, 1.0, 1.0]

    def split(self, name, limit=None):
        s = self.image_size
        return np.zeros((0, s, s, 3), np.uint8), np.zeros((0,), np.int64)


class _NoBatches:
    """Stands in for the Keras input pipeline, which needs a full epoch of images."""

    def __init__(self, *args, **kwargs):
        self.generator = None


@contextlib.contextmanager
def preserved_global_state():
    """The trainers seed the global RNGs and set process-wide flags: put them back afterwards."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    policy = keras.mixed_precision.global_policy().name
    threads = torch.get_num_threads()
    # The audit's forward passes are tiny; one thread avoids OpenMP barrier stalls when the
    # cores are shared (measured: a ResNet50 forward took 0.05-3 s with 2 threads, 0.12 s with 1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
        keras.mixed_precision.set_global_policy(policy)
        torch.set_num_threads(threads)


def build_arms(cfg, schedule: Schedule, train_images: int, train_source: str) -> Arms:
    run_cfg = copy.deepcopy(cfg)
    # determinism is a property of kernels, not of what is built; leave the process flags alone
    run_cfg.framework.deterministic = False
    data = _NoData(cfg)
    unused = Path(tempfile.gettempdir()) / "benchmark-parity-unused"  # the trainers never write at construction
    torch_trainer = ttrain.Trainer(run_cfg, data, schedule, unused)
    with mock.patch.object(ktrain, "TrainBatches", _NoBatches):
        keras_trainer = ktrain.Trainer(run_cfg, data, schedule, unused)
    zoo = kmodels._zoo(cfg.model.name, data.num_classes, data.image_size)
    return Arms(cfg, schedule, train_images, train_source, torch_trainer, keras_trainer, zoo)


# ------------------------------------------------------------------ helpers

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


# ---------------------------------------------------------------- parameters

def check_parameters(a: Arms) -> list[Finding]:
    t = torch_parameter_counts(a.tm)
    k = kmodels.parameter_counts(a.km)
    t_total = t["trainable"] + t["non_trainable"] + t["buffers"]
    k_total = int(a.km.count_params())
    rows = []
    diff = k["trainable"] - t["trainable"]
    impact = ("identical trainable parameter count" if diff == 0 else
              f"Keras has {diff:+,} trainable parameters ({_pct(k['trainable'], t['trainable'])}); "
              "see Architecture for where they come from")
    rows.append(Finding("Parameters", "trainable parameters", _n(t["trainable"]), _n(k["trainable"]), diff == 0, impact))
    rows.append(Finding(
        "Parameters", "BatchNorm running/moving statistics", f"{_n(t['buffers'])} (buffers)",
        f"{_n(k['buffers'])} (non-trainable weights)", t["buffers"] == k["buffers"],
        "same statistics, kept as buffers in PyTorch and as non-trainable weights in Keras"
        if t["buffers"] == k["buffers"] else "different number of normalization statistics",
    ))
    rows.append(Finding(
        "Parameters", "other non-trainable (frozen) weights", _n(t["non_trainable"]), _n(k["non_trainable"]),
        t["non_trainable"] == k["non_trainable"], "nothing is frozen" if t["non_trainable"] == k["non_trainable"] == 0
        else "frozen weights differ",
    ))
    rows.append(Finding(
        "Parameters", "total (parameters + statistics)", _n(t_total), _n(k_total), t_total == k_total,
        "identical" if t_total == k_total else f"Keras {_pct(k_total, t_total)}; model size and FLOPs nearly equal"
        if abs(k_total - t_total) / max(t_total, 1) < 0.01 else f"Keras {_pct(k_total, t_total)}",
    ))
    return rows


# -------------------------------------------------------------------- shapes

def _boundaries(a: Arms):
    """[(label, torch module, 'out'|'in', keras shape)] at stage/block boundaries, in forward order."""
    tm, km = a.tm, a.km
    top = {layer.name: layer for layer in km.layers}
    dense = _keras_denses(km)[-1]

    def last(pattern: str):
        found = [layer for layer in km.layers if re.fullmatch(pattern, layer.name)]
        return found[-1] if found else None

    rows = []
    if a.name == "resnet50":
        stem = top["pool1_pool"] if "pool1_pool" in top else top["conv1_relu"]
        rows.append(("stem", tm.maxpool, "out", stem.output.shape))
        for k in range(1, 5):
            rows.append((f"stage {k}", getattr(tm, f"layer{k}"), "out", last(rf"conv{k + 1}_block\d+_out").output.shape))
        head = tm.fc
    elif a.name == "mobilenetv2":
        rows.append(("stem", tm.features[0], "out", top["Conv1_relu"].output.shape))
        for i in range(1, len(tm.features) - 1):
            prefix = "expanded_conv_" if i == 1 else f"block_{i - 1}_"
            layer = [layer for layer in km.layers if layer.name.startswith(prefix)][-1]
            rows.append((f"block {i}", tm.features[i], "out", layer.output.shape))
        rows.append(("last 1x1 conv", tm.features[-1], "out", top["out_relu"].output.shape))
        head = tm.classifier[-1]
    elif a.name == "convnext_tiny":
        p = km.name
        gap = next(layer for layer in km.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
        rows.append(("stem", tm.features[0], "out", top[f"{p}_stem"].output.shape))
        for s in range(4):
            # the block's sum has no Keras layer: its shape is the input of what follows
            following = top.get(f"{p}_downsampling_block_{s}", gap)
            rows.append((f"stage {s + 1}", tm.features[1 + 2 * s], "out", following.input.shape))
            if s < 3:
                rows.append((f"downsample {s + 1}", tm.features[2 + 2 * s], "out",
                             top[f"{p}_downsampling_block_{s}"].output.shape))
        head = tm.classifier[-1]
    else:  # pragma: no cover - MODELS is closed
        raise ValueError(a.name)
    rows.append(("pooled (classifier input)", head, "in", dense.input.shape))
    rows.append(("logits", head, "out", dense.output.shape))
    return rows


def check_shapes(a: Arms) -> list[Finding]:
    boundaries = _boundaries(a)
    seen: dict[int, tuple] = {}
    hooks = []
    for i, (_, module, where, _) in enumerate(boundaries):
        def hook(mod, inputs, output=None, i=i, where=where):
            seen[i] = tuple((inputs[0] if where == "in" else output).shape)
        hooks.append(module.register_forward_pre_hook(hook) if where == "in" else module.register_forward_hook(hook))
    try:
        a.tm.eval()
        with torch.no_grad():
            a.tm(torch.zeros(1, 3, a.size, a.size, device=next(a.tm.parameters()).device))
    finally:
        for h in hooks:
            h.remove()

    rows, first_mismatch, last_map = [], None, None
    for i, (label, _, _, kshape) in enumerate(boundaries):
        t = _shape_chw(seen[i], "nchw")
        k = _shape_chw(kshape, "nhwc")
        same = t == k
        if not same and first_mismatch is None:
            first_mismatch = label
        if len(t) == 3:
            last_map = (label, t, k)
        rows.append(Finding("Layer shapes", label, _shape_str(t), _shape_str(k), same,
                            "same shape" if same else "shapes differ: the two arms are not the same network here"))
    expected = stem_for(a.name, a.size).final_map
    label, t, k = last_map
    ok = t == k and t[1:] == (expected, expected)
    rows.insert(0, Finding(
        "Layer shapes", "final feature map before global pooling", f"{_shape_str(t)} after {label}",
        f"{_shape_str(k)} after {label}", ok,
        f"both {expected}x{expected} as the stems of SPEC §4 intend" if ok
        else f"SPEC §4 expects {expected}x{expected} before pooling",
    ))
    n = len(boundaries)
    rows.insert(0, Finding(
        "Layer shapes", "shape sequence over all boundaries", f"{n} boundaries", f"{n} boundaries",
        first_mismatch is None,
        "every stage/block boundary has the same shape" if first_mismatch is None
        else f"first mismatch at {first_mismatch}",
    ))
    return rows


# --------------------------------------------------------------- architecture

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


def _counter_str(c: Counter) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(c.items())) or "none"


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
        impact = f"the SPEC §4 stem for {a.size}x{a.size} in both"
    elif geometry:
        impact = ("same kernel and stride, different padding: TensorFlow's 'same' at stride 2 pads bottom/right "
                  "only (see the strided-convolution row); the zoo's stem, reported, not removed")
    else:
        impact = "the stems differ: the first feature maps are computed differently"
    rows.append(Finding("Architecture", "stem convolution", t_desc, k_desc, same, impact))
    t_pools = sum(isinstance(m, nn.MaxPool2d) for m in tm.modules())
    k_pools = sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in _keras_layers(km))
    rows.append(Finding("Architecture", "max-pool layers", str(t_pools), str(k_pools), t_pools == k_pools,
                        "same" + (" (ResNet's stem max-pool removed in both, SPEC §4)"
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


# ----------------------------------------------------------------- normalization

def _bn_torch_convention(momentum) -> str:
    return "cumulative average (None)" if momentum is None else _fmt(momentum)


def check_batchnorm(a: Arms) -> list[Finding]:
    t_bns, k_bns, zoo_bns = _torch_bns(a.tm), _keras_bns(a.km), _keras_bns(a.zoo)
    if not t_bns and not k_bns:
        return [Finding("BatchNorm", "BatchNorm layers", "none", "none", True,
                        "no BatchNorm in this architecture (see LayerNorm)")]
    rows = [Finding("BatchNorm", "BatchNorm layers", str(len(t_bns)), str(len(k_bns)), len(t_bns) == len(k_bns),
                    "one Keras layer per PyTorch layer, paired in order of appearance" if len(t_bns) == len(k_bns)
                    else f"counts differ: only the first {min(len(t_bns), len(k_bns))} are paired")]
    pairs = list(zip(t_bns, k_bns))
    combos: dict[tuple, list] = {}
    mismatched = []
    channel_swaps = []
    for (tn, t), k in pairs:
        tm_ = None if t.momentum is None else float(t.momentum)
        km_ = 1.0 - float(k.momentum)  # PyTorch's convention
        key = (tm_, float(t.eps), round(km_, 12), float(k.epsilon))
        combos.setdefault(key, []).append((tn, k.name))
        if tm_ is None or not _close(tm_, km_, 1e-9) or not _close(float(t.eps), float(k.epsilon), 1e-9):
            mismatched.append(f"{tn} <-> {k.name}")
        if t.num_features != int(k.gamma.shape[0]):
            channel_swaps.append(f"{tn} <-> {k.name}")
    for (tm_, te, km_, ke), members in combos.items():
        same = tm_ is not None and _close(tm_, km_, 1e-9) and _close(te, ke, 1e-9)
        rows.append(Finding(
            "BatchNorm", f"momentum / epsilon ({len(members)} layers)",
            f"momentum {_bn_torch_convention(tm_)}, eps {_fmt(te)}",
            f"momentum {_fmt(km_)} (Keras {_fmt(1 - km_)}), eps {_fmt(ke)}", same,
            "equal: the Keras backend sets PyTorch's defaults on every BatchNorm on purpose "
            "(benchmark/backends/keras/models.py); removed as a source of difference" if same else
            "the moving statistics used at evaluation follow the weights at different speeds and the "
            "normalization differs by eps: evaluation accuracy can differ, mostly on short runs",
        ))
    rows.append(Finding("BatchNorm", "mismatched layers (momentum or eps)", _names(mismatched) if mismatched else "none",
                        _names(mismatched) if mismatched else "none", not mismatched,
                        "every paired layer has the same momentum and eps" if not mismatched else
                        "these layers normalize differently"))
    affine_t = all(m.affine for _, m in t_bns)
    affine_k = all(layer.center and layer.scale for layer in k_bns)
    rows.append(Finding("BatchNorm", "learned scale and shift (gamma, beta)", "yes" if affine_t else "not all",
                        "yes" if affine_k else "not all", affine_t == affine_k, "same" if affine_t == affine_k
                        else "different number of learned normalization parameters"))
    if channel_swaps:
        rows.append(Finding(
            "BatchNorm", "pairs in order of appearance with different channel counts", _names(channel_swaps),
            _names(channel_swaps), True,
            "the two graphs list the shortcut BatchNorm of a downsampling block at a different position "
            "(PyTorch after the block's last BN, Keras before); every BN has the same settings, so the pairing "
            "order does not change the verdict", kind="info",
        ))
    zoo = Counter((round(1.0 - float(b.momentum), 12), float(b.epsilon)) for b in zoo_bns)
    torch_defaults = Counter((None if m.momentum is None else float(m.momentum), float(m.eps)) for _, m in t_bns)
    zoo_desc = "; ".join(f"momentum {_fmt(m)} (Keras {_fmt(1 - m)}), eps {_fmt(e)} on {n} layers"
                         for (m, e), n in zoo.items())
    t_desc = "; ".join(f"momentum {_bn_torch_convention(m)}, eps {_fmt(e)} on {n} layers"
                       for (m, e), n in torch_defaults.items())
    zoo_same = set(zoo) == set((m, e) for (m, e) in torch_defaults)
    rows.append(Finding(
        "BatchNorm", "Keras zoo default (keras.applications, not used)", t_desc, zoo_desc, zoo_same,
        "what an unmodified keras.applications model would use; the backend overrides it (see above). "
        "Left in place, the slower moving statistics (momentum closer to 1 in Keras' convention) lag the "
        "weights and depress evaluation accuracy on short runs" if not zoo_same else "the zoo default already matches",
        kind="info",
    ))
    return rows


def check_layernorm(a: Arms) -> list[Finding]:
    t_lns, k_lns = _torch_lns(a.tm), _keras_lns(a.km)
    if not t_lns and not k_lns:
        return []
    rows = [Finding("LayerNorm", "LayerNorm layers", str(len(t_lns)), str(len(k_lns)), len(t_lns) == len(k_lns),
                    "one Keras layer per PyTorch layer" if len(t_lns) == len(k_lns) else "counts differ")]
    combos = Counter()
    mismatched = []
    for (tn, t), k in zip(t_lns, k_lns):
        combos[(float(t.eps), float(k.epsilon), bool(t.elementwise_affine), bool(k.center and k.scale))] += 1
        if not _close(float(t.eps), float(k.epsilon), 1e-9):
            mismatched.append(f"{tn} <-> {k.name}")
    for (te, ke, ta, ka), n in combos.items():
        same = _close(te, ke, 1e-9) and ta == ka
        rows.append(Finding("LayerNorm", f"epsilon / affine ({n} layers)", f"eps {_fmt(te)}, affine {ta}",
                            f"eps {_fmt(ke)}, affine {ka}", same,
                            "same normalization" if same else "different epsilon or affine parameters"))
    rows.append(Finding("LayerNorm", "mismatched layers (eps)", _names(mismatched) if mismatched else "none",
                        _names(mismatched) if mismatched else "none", not mismatched,
                        "every paired layer has the same eps" if not mismatched else "these layers differ"))
    return rows


# ---------------------------------------------------------------- initializers

# (id, label, allowed distribution shapes, std as a function of (fan_in, fan_out))
CANDIDATES = (
    ("kaiming_normal_fan_out", "kaiming normal, fan_out (std sqrt(2/fan_out))", ("normal",), lambda fi, fo: math.sqrt(2 / fo)),
    ("kaiming_normal_fan_in", "kaiming normal, fan_in (std sqrt(2/fan_in))", ("normal",), lambda fi, fo: math.sqrt(2 / fi)),
    ("normal_0.01", "normal(0, 0.01)", ("normal",), lambda fi, fo: 0.01),
    ("trunc_normal_0.02", "truncated normal, std 0.02", ("normal", "truncated normal"), lambda fi, fo: 0.02),
    ("torch_default_uniform", "uniform +-1/sqrt(fan_in) (kaiming_uniform a=sqrt(5), torch's nn default)", ("uniform",),
     lambda fi, fo: math.sqrt(1 / (3 * fi))),
    ("glorot_uniform", "glorot uniform +-sqrt(6/(fan_in+fan_out))", ("uniform",), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("he_uniform", "he uniform +-sqrt(6/fan_in)", ("uniform",), lambda fi, fo: math.sqrt(2 / fi)),
    ("lecun_uniform", "lecun uniform +-sqrt(3/fan_in)", ("uniform",), lambda fi, fo: math.sqrt(1 / fi)),
    ("glorot_normal", "glorot normal (truncated)", ("truncated normal",), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("he_normal", "he normal (truncated), fan_in", ("truncated normal",), lambda fi, fo: math.sqrt(2 / fi)),
    ("lecun_normal", "lecun normal (truncated)", ("truncated normal",), lambda fi, fo: math.sqrt(1 / fi)),
)
KERAS_SCHEMES = {"GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal", "HeNormal": "he_normal",
                 "HeUniform": "he_uniform", "LecunNormal": "lecun_normal", "LecunUniform": "lecun_uniform"}


def _keras_fans(shape) -> tuple[int, int]:
    """keras.initializers' fans: receptive field x input / output channels of the kernel layout."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def _distribution(weights: list[np.ndarray], per_layer: int = 20_000) -> tuple[str, float]:
    """Shape of the pooled, per-layer standardized weights (a fixed sample of each large layer)."""
    rng = np.random.default_rng(0)
    parts = []
    for w in weights:
        flat = w.ravel()
        if flat.size > per_layer:
            flat = flat[rng.integers(0, flat.size, per_layer)]
        flat = flat.astype(np.float64)
        if flat.std() > 0:
            parts.append((flat - flat.mean()) / flat.std())
    z = np.concatenate(parts)
    kurt = float((z ** 4).mean() - 3.0)
    if kurt < -0.95:
        return "uniform", kurt
    if kurt < -0.3:
        return "truncated normal", kurt
    return "normal", kurt


def _match_init(layers: list[tuple[np.ndarray, int, int]]) -> dict:
    """Best candidate scheme for (weights, fan_in, fan_out) of a family of layers."""
    stds = [float(w.std()) for w, _, _ in layers]
    if max(stds) == 0.0:
        values = sorted({float(w.ravel()[0]) for w, _, _ in layers})
        return {"id": f"constant_{values}", "label": f"constant {values}", "text": f"constant {values}"}
    shape, kurt = _distribution([w for w, _, _ in layers])
    best = None
    for cid, label, shapes, std_fn in CANDIDATES:
        if shape not in shapes:
            continue
        ratios = np.array([s / std_fn(fi, fo) for s, (_, fi, fo) in zip(stds, layers)])
        score = float(np.median(np.abs(np.log(ratios))))
        if best is None or score < best[0]:
            best = (score, cid, label, ratios)
    if best is None or best[0] > math.log(1.15):
        lo, hi = min(stds), max(stds)
        return {"id": f"unrecognized_{shape}", "label": f"unrecognized {shape}",
                "text": f"unrecognized {shape} (std {_fmt(lo)}-{_fmt(hi)}, excess kurtosis {kurt:+.2f})"}
    _, cid, label, ratios = best
    text = (f"{label}; measured std/expected median {np.median(ratios):.2f} (range {ratios.min():.2f}-{ratios.max():.2f}) "
            f"over {len(layers)} layers, {shape} (excess kurtosis {kurt:+.2f})")
    return {"id": cid, "label": label, "text": text}


def _keras_init_config(layer, key: str) -> str:
    cfg = layer.get_config().get(key)
    if cfg is None:
        return "none"
    if isinstance(cfg, str):
        return cfg
    name = cfg.get("class_name", "?")
    args = {k: v for k, v in (cfg.get("config") or {}).items() if k != "seed" and v is not None}
    return name + (f"({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")


def _torch_families(model) -> dict[str, list]:
    fams: dict[str, list] = {}
    for _, m in _torch_convs(model):
        fams.setdefault(_torch_conv_kind(m), []).append(m)
    linears = [m for _, m in _torch_linears(model)]
    for m in linears[:-1]:
        fams.setdefault("dense (inside blocks)", []).append(m)
    if linears:
        fams.setdefault("dense (classifier head)", []).append(linears[-1])
    return fams


def _keras_families(model) -> dict[str, list]:
    fams: dict[str, list] = {}
    for layer in _keras_convs(model):
        fams.setdefault(_keras_conv_kind(layer), []).append(layer)
    denses = _keras_denses(model)
    for layer in denses[:-1]:
        fams.setdefault("dense (inside blocks)", []).append(layer)
    if denses:
        fams.setdefault("dense (classifier head)", []).append(denses[-1])
    return fams


def _torch_bias_desc(mods) -> tuple[str, str]:
    biases = [(m.bias.detach().cpu().numpy(), m) for m in mods if m.bias is not None]
    if not biases:
        return "none", "no bias"
    if len(biases) < len(mods):
        prefix = f"{len(biases)} of {len(mods)} layers: "
    else:
        prefix = ""
    if all(not b.any() for b, _ in biases):
        return "zeros", prefix + "zeros"
    ratios = []
    for b, m in biases:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
        ratios.append(float(b.std()) / math.sqrt(1 / (3 * fan_in)))
    if abs(math.log(float(np.median(ratios)))) < math.log(1.3):
        return "torch_default_uniform", prefix + "uniform +-1/sqrt(fan_in) (torch's nn default; measured)"
    return "other", prefix + f"nonzero (std {np.median([float(b.std()) for b, _ in biases]):.3g})"


def _keras_bias_desc(layers) -> tuple[str, str]:
    used = [layer for layer in layers if layer.use_bias]
    if not used:
        return "none", "no bias"
    prefix = f"{len(used)} of {len(layers)} layers: " if len(used) < len(layers) else ""
    names = Counter(_keras_init_config(layer, "bias_initializer") for layer in used)
    if all(not np.asarray(layer.bias).any() for layer in used) and set(names) == {"Zeros"}:
        return "zeros", prefix + "Zeros"
    return "other", prefix + ", ".join(names)


# how each measured scheme appears in torchvision's source (None: no nn.init call, the module default)
SOURCE_PATTERNS = {
    "kaiming_normal_fan_out": r"kaiming_normal_\([^\n]*fan_out",
    "kaiming_normal_fan_in": r"kaiming_normal_\((?![^\n]*fan_out)",
    "normal_0.01": r"\bnormal_\([^\n]*0\.01",
    "trunc_normal_0.02": r"trunc_normal_\([^\n]*0\.02",
    "torch_default_uniform": None,
}


def _torch_init_calls(model) -> tuple[list[str], str]:
    try:
        src = inspect.getsource(type(model).__init__)
    except (OSError, TypeError):
        return [], ""
    return re.findall(r"nn\.init\.\w+\([^\n]*?\)(?=\s*$)", src, flags=re.M), src


def _torch_init_source(model) -> str:
    calls, src = _torch_init_calls(model)
    if not src:
        return "source not available"
    conditional = "zero_init_residual" in src
    text = "; ".join(dict.fromkeys(calls)) or "no nn.init calls"
    return f"{type(model).__name__}.__init__: {text}" + (" (the bn2/bn3 zero-init lines only with "
                                                         "zero_init_residual=True, off by default)" if conditional else "")


def check_initializers(a: Arms) -> list[Finding]:
    t_fams, k_fams = _torch_families(a.tm), _keras_families(a.km)
    rows = []
    measured = set()
    order = ("conv", "depthwise conv", "dense (inside blocks)", "dense (classifier head)")
    for fam in order:
        tmods, klayers = t_fams.get(fam, []), k_fams.get(fam, [])
        if not tmods and not klayers:
            continue
        t_match = k_match = None
        if tmods:
            t_match = _match_init([
                (m.weight.detach().cpu().numpy(), *nn.init._calculate_fan_in_and_fan_out(m.weight))
                for m in tmods
            ])
        if klayers:
            k_match = _match_init([
                (np.asarray(_keras_kernel(layer)), *_keras_fans(_keras_kernel(layer).shape))
                for layer in klayers
            ])
            key = "depthwise_initializer" if isinstance(klayers[0], keras.layers.DepthwiseConv2D) else "kernel_initializer"
            configured = Counter(_keras_init_config(layer, key) for layer in klayers)
            k_text = f"{', '.join(configured)} (get_config); {k_match['text']}"
        t_text = t_match["text"] if t_match else "none"
        if t_match:
            measured.add(t_match["id"])
        same = bool(t_match and k_match and t_match["id"] == k_match["id"])
        rows.append(Finding(
            "Initializers", f"{fam} weights ({len(tmods)} / {len(klayers)} layers)", t_text,
            k_text if klayers else "none", same,
            "same scheme" if same else
            "each framework keeps its default initialization (SPEC §4): different starting weight scales change "
            "the early training dynamics; may favour either side, reported, not removed",
        ))
        t_bias = _torch_bias_desc(tmods) if tmods else ("none", "none")
        k_bias = _keras_bias_desc(klayers) if klayers else ("none", "none")
        same = t_bias[0] == k_bias[0]
        if same:
            impact = "same"
        elif t_bias[0] == "none" or k_bias[0] == "none":
            impact = "one framework has biases here, the other not (see Architecture)"
        else:
            impact = "different initial biases: a small difference in the starting point"
        rows.append(Finding("Initializers", f"{fam} biases", t_bias[1], k_bias[1], same, impact))

    # normalization layers' scale/shift start values
    for label, tnorm, knorm in (("BatchNorm", [m for _, m in _torch_bns(a.tm)], _keras_bns(a.km)),
                                ("LayerNorm", [m for _, m in _torch_lns(a.tm)], _keras_lns(a.km))):
        if not tnorm and not knorm:
            continue
        t_ok = all(bool((m.weight == 1).all()) and bool((m.bias == 0).all()) for m in tnorm if m.weight is not None)
        k_ok = all(bool((np.asarray(layer.gamma) == 1).all()) and bool((np.asarray(layer.beta) == 0).all())
                   for layer in knorm if layer.scale and layer.center)
        k_cfg = Counter(f"{_keras_init_config(layer, 'gamma_initializer')}/{_keras_init_config(layer, 'beta_initializer')}"
                        for layer in knorm)
        rows.append(Finding("Initializers", f"{label} gamma / beta",
                            "ones / zeros (measured)" if t_ok else "not ones/zeros",
                            f"{', '.join(k_cfg)} (ones / zeros measured)" if k_ok else f"{', '.join(k_cfg)}",
                            t_ok == k_ok, "same" if t_ok == k_ok else "different start of the normalization"))
    calls, _ = _torch_init_calls(a.tm)
    code = "\n".join(calls)
    unexplained = sorted({i for i in measured if i in SOURCE_PATTERNS and SOURCE_PATTERNS[i]
                          and not re.search(SOURCE_PATTERNS[i], code)} | {i for i in measured if i not in SOURCE_PATTERNS})
    k_classes = sorted({_keras_init_config(layer, key) for fam in k_fams.values() for layer in fam
                        for key in ("kernel_initializer", "depthwise_initializer") if key in layer.get_config()})
    rows.append(Finding("Initializers", "where the PyTorch init comes from", _torch_init_source(a.tm),
                        f"keras.applications passes no initializers: every layer keeps its class default "
                        f"({', '.join(k_classes)} kernels)", True,
                        "every measured PyTorch scheme matches an nn.init call in this code or the nn module default"
                        if not unexplained else f"measured but not found in the source: {', '.join(unexplained)} "
                        "(the backend's own stem init, or a torchvision change)", kind="info"))
    return rows


# --------------------------------------------------------------- regularization

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


# -------------------------------------------------------------- train/eval mode

def _torch_bn_state(model) -> list[np.ndarray]:
    return [b.detach().cpu().numpy().copy() for n, b in model.named_buffers() if b.dtype.is_floating_point]


def _keras_bn_state(model) -> list[np.ndarray]:
    return [np.asarray(v).copy() for layer in _keras_bns(model) for v in (layer.moving_mean, layer.moving_variance)]


def _same_arrays(xs, ys) -> bool:
    return len(xs) == len(ys) and all(np.array_equal(x, y) for x, y in zip(xs, ys))


def _has_torch_noise(model) -> bool:
    from torchvision.ops import StochasticDepth

    return any((isinstance(m, nn.Dropout) or isinstance(m, StochasticDepth)) and m.p > 0 for m in model.modules())


def _has_keras_noise(model) -> bool:
    return any((isinstance(layer, keras.layers.Dropout) and layer.rate > 0)
               or (type(layer).__name__ == "StochasticDepth" and getattr(layer, "drop_path_rate", 0) > 0)
               for layer in _keras_layers(model))


def check_modes(a: Arms) -> list[Finding]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, a.size, a.size, 3), dtype=np.uint8)
    labels = rng.integers(0, a.classes, 4).astype(np.int64)

    # evaluation path of each trainer, twice, on two images
    a.tm.train()  # predict must switch to eval itself
    before = _torch_bn_state(a.tm)
    l1, p1 = a.torch.predict(images[:2], labels[:2])
    l2, p2 = a.torch.predict(images[:2], labels[:2])
    t_eval_frozen, t_eval_det = _same_arrays(before, _torch_bn_state(a.tm)), l1 == l2 and np.array_equal(p1, p2)

    x = a.keras.normalize(tf.constant(images))
    y = tf.constant(labels.astype(np.int32))
    before = _keras_bn_state(a.km)
    kl1, kp1 = a.keras._eval_step_fn(x[:2], y[:2])
    kl2, kp2 = a.keras._eval_step_fn(x[:2], y[:2])
    k_eval_frozen = _same_arrays(before, _keras_bn_state(a.km))
    k_eval_det = float(kl1) == float(kl2) and np.array_equal(np.asarray(kp1), np.asarray(kp2))

    # training mode: a second forward differs when dropout or drop path is active. Drop path on
    # 4 images can drop nothing by chance: arms that have such layers get up to 3 tries.
    xt = a.torch.normalize(torch.from_numpy(images))
    a.tm.train()
    before = _torch_bn_state(a.tm)
    torch.manual_seed(0)
    with torch.no_grad():
        o1 = a.tm(xt).float().cpu().numpy()
        for _ in range(3 if _has_torch_noise(a.tm) else 1):
            # exact comparison: at initialization ConvNeXt's layer scale (1e-6) makes a dropped
            # branch change the logits by ~1e-6 only; the CPU kernels are deterministic
            t_stochastic = not np.array_equal(o1, a.tm(xt).float().cpu().numpy())
            if t_stochastic:
                break
    a.tm.eval()
    t_updates = not _same_arrays(before, _torch_bn_state(a.tm))
    before = _keras_bn_state(a.km)
    q1 = np.asarray(tf.cast(a.km(x, training=True), tf.float32))
    for _ in range(3 if _has_keras_noise(a.km) else 1):
        k_stochastic = not np.array_equal(q1, np.asarray(tf.cast(a.km(x, training=True), tf.float32)))
        if k_stochastic:
            break
    k_updates = not _same_arrays(before, _keras_bn_state(a.km))
    has_bn = bool(_torch_bns(a.tm) or _keras_bns(a.km))

    def yes(v):
        return "yes" if v else "no"

    rows = [
        Finding("Train/eval mode", "evaluation path leaves normalization statistics unchanged",
                f"{yes(t_eval_frozen)} (Trainer.predict, model.eval())", f"{yes(k_eval_frozen)} (eval step, training=False)",
                t_eval_frozen and k_eval_frozen,
                "both evaluate with frozen statistics" if t_eval_frozen and k_eval_frozen
                else "evaluation changes the model in one arm"),
        Finding("Train/eval mode", "evaluation path is deterministic (dropout/drop path off)", yes(t_eval_det),
                yes(k_eval_det), t_eval_det and k_eval_det,
                "both evaluate without stochastic layers" if t_eval_det and k_eval_det
                else "evaluation is stochastic in one arm"),
    ]
    if has_bn:
        rows.append(Finding("Train/eval mode", "training mode updates BatchNorm statistics", yes(t_updates),
                            yes(k_updates), t_updates == k_updates,
                            "both" if t_updates == k_updates else "one arm never updates its statistics"))
    rows.append(Finding(
        "Train/eval mode", "training-mode forward is stochastic (dropout / stochastic depth active)",
        yes(t_stochastic), yes(k_stochastic), t_stochastic == k_stochastic,
        "same" if t_stochastic == k_stochastic else
        "measured confirmation of the Regularization rows: only one arm injects noise while training",
    ))
    return rows


# ------------------------------------------------------------------ LR schedule

def torch_lrs(a: Arms) -> np.ndarray:
    """The LR of each optimizer step from the PyTorch trainer's own scheduler (stepped once per step)."""
    opt, sched = a.torch.optimizer, a.torch.scheduler
    lrs = np.empty(a.schedule.total_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler.step() without optimizer.step()
        for s in range(a.schedule.total_steps):
            lrs[s] = opt.param_groups[0]["lr"]
            sched.step()
    return lrs


def keras_lrs(a: Arms) -> np.ndarray:
    steps = tf.range(a.schedule.total_steps, dtype=tf.int64)
    return np.asarray(tf.vectorized_map(a.keras.lr_schedule, steps), dtype=np.float64)


def check_schedule(a: Arms, t_lrs: np.ndarray, k_lrs: np.ndarray) -> list[Finding]:
    s = a.schedule
    ref = np.array([s.lr_at(i) for i in range(s.total_steps)])
    d_tk = float(np.abs(t_lrs - k_lrs).max())
    d_t, d_k = float(np.abs(t_lrs - ref).max()), float(np.abs(k_lrs - ref).max())
    shape = (f"{s.total_steps:,} steps = {a.cfg.epochs} epochs x {s.steps_per_epoch} "
             f"({a.train_images:,} train images [{a.train_source}] // batch {a.cfg.batch_size}), "
             f"warmup {s.warmup_steps:,} steps, peak {_fmt(s.base_lr)}")
    rows = [
        Finding("LR schedule", "schedule evaluated", f"{type(a.torch.scheduler).__name__}: {shape}",
                f"{type(a.keras.lr_schedule).__name__}: {shape}", True,
                "both built from benchmark.schedule.Schedule", kind="info"),
        Finding("LR schedule", "max |LR difference| over every step", f"{d_tk:.3g}", f"{d_tk:.3g}", d_tk < 1e-6,
                "the two backends use the same LR at every step (SPEC §5: < 1e-6)" if d_tk < 1e-6
                else "the LR differs between the backends"),
        Finding("LR schedule", "max |LR - closed form| (Schedule.lr_at)", f"{d_t:.3g}", f"{d_k:.3g}",
                d_t < 1e-6 and d_k < 1e-6, "both follow the protocol" if d_t < 1e-6 and d_k < 1e-6
                else "a backend deviates from the protocol"),
    ]
    per_step_t = s.steps_per_epoch > 1 and t_lrs[1] != t_lrs[0]
    per_step_k = s.steps_per_epoch > 1 and k_lrs[1] != k_lrs[0]
    t_src = "scheduler.step()" in inspect.getsource(ttrain.Trainer.train_epoch)
    k_src = "self.step.assign_add(1)" in inspect.getsource(ktrain.Trainer._apply)
    rows.append(Finding(
        "LR schedule", "LR updated per optimizer step (not per epoch)",
        f"{'yes' if per_step_t else 'no'} (LR changes within epoch 1; train_epoch steps the scheduler "
        f"after every optimizer step: {'found' if t_src else 'NOT found'} in source)",
        f"{'yes' if per_step_k else 'no'} (CosineDecay of the trainer's step counter, incremented in _apply: "
        f"{'found' if k_src else 'NOT found'} in source)",
        per_step_t == per_step_k and t_src and k_src,
        "same granularity (SPEC §8 pitfall avoided)" if per_step_t == per_step_k else "different granularity",
    ))
    return rows


# -------------------------------------------------------------------- optimizer

def _keras_sgd(a: Arms):
    opt = a.keras.optimizer
    return getattr(opt, "inner_optimizer", opt)


def simulate_torch_sgd(grads: np.ndarray, lrs: np.ndarray, momentum: float, nesterov: bool,
                       dampening: float = 0.0) -> np.ndarray:
    """torch.optim.SGD: b = m*b + (1-d)*g (b = g at the first step); w -= lr * (g + m*b) (Nesterov) or lr * b."""
    w = np.zeros(grads.shape[1])
    b = None
    out = np.empty((len(lrs), grads.shape[1]))
    for t, lr in enumerate(lrs):
        g = grads[t]
        b = g.copy() if b is None else momentum * b + (1 - dampening) * g
        w = w - lr * ((g + momentum * b) if nesterov else b)
        out[t] = w
    return out


def simulate_keras_sgd(grads: np.ndarray, lrs: np.ndarray, momentum: float, nesterov: bool) -> np.ndarray:
    """keras.optimizers.SGD: v = m*v - lr*g; w += m*v - lr*g (Nesterov) or v."""
    w = np.zeros(grads.shape[1])
    v = np.zeros(grads.shape[1])
    out = np.empty((len(lrs), grads.shape[1]))
    for t, lr in enumerate(lrs):
        g = grads[t]
        v = momentum * v - lr * g
        w = w + ((momentum * v - lr * g) if nesterov else v)
        out[t] = w
    return out


def _probe_gradients(steps: int, dim: int = 32) -> np.ndarray:
    """Column 0: a constant gradient of 1; the rest: i.i.d. standard normal (seed 0)."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((steps, dim + 1))
    g[:, 0] = 1.0
    return g


def _real_trajectories(a: Arms, grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The real optimizers, configured like the trainers', on a probe vector for len(grads) steps."""
    group = a.torch.optimizer.param_groups[0]
    p = torch.zeros(grads.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=a.schedule.base_lr, momentum=group["momentum"], nesterov=group["nesterov"],
                          dampening=group["dampening"])
    sched = build_scheduler(opt, a.schedule)
    t_out = np.empty_like(grads)
    for t in range(len(grads)):
        p.grad = torch.from_numpy(grads[t].copy())
        opt.step()
        sched.step()
        t_out[t] = p.detach().numpy()

    inner = _keras_sgd(a)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    lr_schedule = a.keras.lr_schedule
    sgd = keras.optimizers.SGD(learning_rate=lambda: lr_schedule(step), momentum=inner.momentum,
                               nesterov=inner.nesterov)
    v = keras.Variable(np.zeros(grads.shape[1], np.float32))
    sgd.build([v])
    k_out = np.empty_like(grads)
    g32 = grads.astype(np.float32)
    for t in range(len(grads)):
        sgd.apply([tf.constant(g32[t])], [v])
        step.assign_add(1)
        k_out[t] = np.asarray(v)
    return t_out, k_out


def _rel_traj(w_t: np.ndarray, w_k: np.ndarray) -> np.ndarray:
    """||w_keras - w_torch|| / ||w_torch|| per step over the random columns (NaN where torch has not moved)."""
    num = np.linalg.norm(w_k[:, 1:] - w_t[:, 1:], axis=1)
    den = np.linalg.norm(w_t[:, 1:], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _max_rel_err(real: np.ndarray, model: np.ndarray) -> float:
    scale = np.abs(model).max(axis=0, keepdims=True)
    scale[scale == 0] = 1.0
    return float((np.abs(real - model) / scale).max())


def check_optimizer(a: Arms, t_lrs: np.ndarray, k_lrs: np.ndarray) -> list[Finding]:
    s = a.schedule
    group = a.torch.optimizer.param_groups[0]
    inner = _keras_sgd(a)
    m_t, m_k = float(group["momentum"]), float(inner.momentum)
    n_t, n_k = bool(group["nesterov"]), bool(inner.nesterov)
    rows = [
        Finding("Optimizer", "optimizer", type(a.torch.optimizer).__name__ + " (torch.optim)",
                type(inner).__name__ + " (keras.optimizers)" + (
                    f", wrapped in {type(a.keras.optimizer).__name__}" if inner is not a.keras.optimizer else ""),
                type(a.torch.optimizer).__name__ == type(inner).__name__, "SGD in both (SPEC §5)"),
        Finding("Optimizer", "momentum", _fmt(m_t), _fmt(m_k), _close(m_t, m_k), "same" if _close(m_t, m_k) else
                "different momentum"),
        Finding("Optimizer", "Nesterov", str(n_t), str(n_k), n_t == n_k, "same" if n_t == n_k else "different"),
        Finding("Optimizer", "dampening", _fmt(group["dampening"]), "n/a (Keras SGD has none, i.e. 0)",
                float(group["dampening"]) == 0.0, "equivalent" if float(group["dampening"]) == 0.0 else
                "PyTorch damps its momentum"),
    ]
    t_eps = "eps" in a.torch.optimizer.defaults
    k_eps = hasattr(inner, "epsilon")
    rows.append(Finding("Optimizer", "epsilon", "n/a (SGD has none)" if not t_eps else _fmt(a.torch.optimizer.defaults["eps"]),
                        "n/a (SGD has none)" if not k_eps else _fmt(inner.epsilon), t_eps == k_eps,
                        "no epsilon in SGD: the TF-vs-PyTorch epsilon default (SPEC §8) does not apply"))
    adam_t = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults["eps"]
    adam_k = keras.optimizers.Adam().epsilon
    rows.append(Finding("Optimizer", "adaptive optimizers' default epsilon (Adam; not used)", _fmt(adam_t), _fmt(adam_k),
                        _close(adam_t, adam_k), "would matter only if an adaptive optimizer were used", kind="info"))

    # the update rule, measured on a probe vector under the real schedule
    n_real = max(2, min(s.total_steps, 400))  # eager Keras steps cost ~1 ms each
    grads = _probe_gradients(s.total_steps)
    real_t, real_k = _real_trajectories(a, grads[:n_real])
    sim_t = simulate_torch_sgd(grads[:n_real], t_lrs[:n_real], m_t, n_t, float(group["dampening"]))
    sim_k = simulate_keras_sgd(grads[:n_real], k_lrs[:n_real], m_k, n_k)
    err_t, err_k = _max_rel_err(real_t, sim_t), _max_rel_err(real_k, sim_k)
    cross_t, cross_k = _max_rel_err(real_t, simulate_keras_sgd(grads[:n_real], t_lrs[:n_real], m_t, n_t)), \
        _max_rel_err(real_k, simulate_torch_sgd(grads[:n_real], k_lrs[:n_real], m_k, n_k))
    t_rule = "b = m*b + g; w -= lr*(g + m*b)" if n_t else "b = m*b + g; w -= lr*b"
    k_rule = "v = m*v - lr*g; w += m*v - lr*g" if n_k else "v = m*v - lr*g; w += v"
    formulation_same = cross_t < 1e-4 and cross_k < 1e-4
    rows.append(Finding(
        "Optimizer", "momentum buffer formulation (measured)",
        f"{t_rule} (LR applied at use); real torch.optim.SGD matches within {err_t:.1g} over {n_real} steps, "
        f"the other rule off by {cross_t:.2g}",
        f"{k_rule} (LR folded into the buffer); real keras SGD matches within {err_k:.1g} over {n_real} steps, "
        f"the other rule off by {cross_k:.2g}",
        formulation_same,
        "identical whenever the LR is constant; with warmup and cosine the Keras buffer carries gradients scaled "
        "by the older LRs: Keras takes smaller steps than PyTorch while the LR rises (warmup) and larger ones while it "
        "falls. In PyTorch the step-0 gradient (taken at LR 0) also enters the momentum buffer, in Keras it does "
        "not. Not removed (each framework's own SGD); quantified in the next row",
    ))
    real_rel = _rel_traj(real_t, real_k)
    full_t = simulate_torch_sgd(grads, t_lrs, m_t, n_t, float(group["dampening"]))
    full_k = simulate_keras_sgd(grads, k_lrs, m_k, n_k)
    rel = _rel_traj(full_t, full_k)
    w_end = max(s.warmup_steps - 1, 0)
    late = rel[s.steps_per_epoch:] if s.total_steps > s.steps_per_epoch else rel
    with np.errstate(divide="ignore", invalid="ignore"):
        const = full_k[:, 0] / np.where(full_t[:, 0] != 0, full_t[:, 0], np.nan) - 1
    rows.append(Finding(
        "Optimizer", "parameter trajectory difference caused by the formulation (measured)",
        "reference",
        f"real optimizers, first {n_real} steps: max {np.nanmax(real_rel):.3g} (step {int(np.nanargmax(real_rel))}). "
        f"Full schedule ({s.total_steps:,} steps, update rules simulated): max {np.nanmax(rel):.3g} "
        f"(step {int(np.nanargmax(rel))}), after epoch 1 max {np.nanmax(late):.3g}, end of warmup {rel[w_end]:.3g}, "
        f"last step {rel[-1]:.3g}; constant gradient: distance travelled {const[w_end] * 100:+.2f}% at the end of "
        f"warmup, {const[-1] * 100:+.2f}% at the end",
        bool(np.nanmax(rel) < 1e-3),
        "||w_keras - w_torch|| / ||w_torch|| on a 32-d probe fed the same i.i.d. gradients under each backend's "
        "own LR schedule. " + (
            "Large in the first warmup steps (the LR grows fast relative to the momentum memory of ~1/(1-m) "
            "steps), a few percent or less from the end of warmup on"
            if rel[w_end] < 0.05 else
            f"Still {rel[w_end]:.2g} at the end of the {s.warmup_steps}-step warmup: a short warmup makes the LR "
            "change fast relative to the momentum memory (~1/(1-m) steps), so the effect lasts") +
        "; the constant-gradient figure is the systematic part (negative: Keras moves less during warmup, then "
        "catches up while the LR decays). " + ("Slows Keras' early progress slightly"
                                               if abs(const[w_end]) < 0.05 else "Slows Keras' warmup noticeably")
        + "; measured here, not removed",
    ))
    accum_t, accum_k = a.torch.accum_steps, a.keras.accum_steps
    rows.append(Finding("Optimizer", "gradient accumulation (micro-batch x steps)",
                        f"{a.torch.micro_batch} x {accum_t}", f"{a.keras.micro_batch} x {accum_k}",
                        (a.torch.micro_batch, accum_t) == (a.keras.micro_batch, accum_k),
                        f"same effective batch {a.cfg.batch_size}"))
    return rows


# ----------------------------------------------------------------- weight decay

def check_weight_decay(a: Arms) -> list[Finding]:
    """Destructive: sets every weight to 1 and steps both optimizers once. Run last."""
    wd_cfg = float(a.cfg.optim.weight_decay)
    group = a.torch.optimizer.param_groups[0]
    m_t = float(group["momentum"])
    # the LR both trainers use after warmup
    a.keras.step.assign(min(a.schedule.warmup_steps, max(a.schedule.total_steps - 1, 0)))
    lr = float(_keras_sgd(a).learning_rate)
    if lr == 0.0:
        lr = a.schedule.base_lr
        a.keras.step.assign(0)

    # PyTorch: zero loss gradient, every parameter 1
    t_opt = a.torch.optimizer
    t_params = [p for g in t_opt.param_groups for p in g["params"]]
    t_wd = sorted({float(g["weight_decay"]) for g in t_opt.param_groups})
    t_opt.state.clear()
    with torch.no_grad():
        for p in t_params:
            p.fill_(1.0)
            p.grad = torch.zeros_like(p)
    for g in t_opt.param_groups:
        g["lr"] = lr
    t_opt.step()
    t_mult = [float((1.0 - p.detach().double().mean()) / (lr * wd_cfg)) if wd_cfg else 0.0 for p in t_params]

    # Keras: the trainer's own update (_apply), zero loss gradient, every variable 1
    k_vars = list(a.keras.variables)
    for v in k_vars:
        v.assign(tf.ones(v.shape, v.dtype))
    lr_k = float(_keras_sgd(a).learning_rate)
    a.keras._apply([tf.zeros(v.shape, v.dtype) for v in k_vars])
    k_mult = [float((1.0 - np.asarray(v, np.float64).mean()) / (lr_k * wd_cfg)) if wd_cfg else 0.0 for v in k_vars]

    def classify(mults, momentum):
        decayed = [x for x in mults if abs(x) > 1e-3]
        kinds = Counter()
        for x in decayed:
            if abs(x - (1 + momentum)) < 1e-2:
                kinds["coupled L2 through momentum"] += 1
            elif abs(x - 1.0) < 1e-2:
                kinds["decoupled (or no momentum)"] += 1
            else:
                kinds[f"x{x:.3g}"] += 1
        return decayed, kinds

    t_dec, t_kinds = classify(t_mult, m_t)
    k_dec, k_kinds = classify(k_mult, float(_keras_sgd(a).momentum))
    t_size = sum(p.numel() for p, x in zip(t_params, t_mult) if abs(x) > 1e-3)
    k_size = sum(int(np.prod(v.shape)) for v, x in zip(k_vars, k_mult) if abs(x) > 1e-3)
    t_total = sum(p.numel() for p in a.tm.parameters() if p.requires_grad)
    k_total = sum(int(np.prod(v.shape)) for v in a.km.trainable_variables)
    t_bn = {id(p) for _, m in _torch_bns(a.tm) + _torch_lns(a.tm) for p in m.parameters()}
    k_bn = {id(v) for layer in _keras_bns(a.km) + _keras_lns(a.km) for v in layer.trainable_weights}
    t_bn_dec = sum(1 for p, x in zip(t_params, t_mult) if id(p) in t_bn and abs(x) > 1e-3)
    k_bn_dec = sum(1 for v, x in zip(k_vars, k_mult) if id(v) in k_bn and abs(x) > 1e-3)
    t_mean = float(np.mean(t_dec)) if t_dec else 0.0
    k_mean = float(np.mean(k_dec)) if k_dec else 0.0

    rows = [
        Finding("Weight decay", "coefficient", ", ".join(_fmt(v) for v in t_wd) + " (optimizer weight_decay)",
                f"{_fmt(a.keras.weight_decay)} (added to the gradients by the trainer)",
                t_wd == [a.keras.weight_decay], "same" if t_wd == [a.keras.weight_decay] else "different coefficient"),
        Finding("Weight decay", "formulation (measured: first-step shrink / (lr * wd))",
                f"{t_mean:.4g} = 1 + momentum: {_counter_str(t_kinds)}",
                f"{k_mean:.4g} = 1 + momentum: {_counter_str(k_kinds)}" if k_kinds else "no decay measured",
                set(t_kinds) == set(k_kinds) and _close(t_mean, k_mean, 1e-3),
                "PyTorch's coupled L2 in both: the Keras trainer adds wd*w to every gradient before SGD, so the decay "
                "goes through Nesterov momentum like torch.optim.SGD(weight_decay=...); Keras' own (decoupled) "
                "weight_decay is not used (SPEC §8 pitfall removed)" if set(t_kinds) == set(k_kinds)
                else "the decay is applied differently (coupled vs decoupled)",
        ),
        Finding("Weight decay", "variables decayed",
                f"{len(t_dec)} of {len(t_params)} tensors, {_n(t_size)} of {_n(t_total)} values; "
                f"normalization gamma/beta: {t_bn_dec} tensors",
                f"{len(k_dec)} of {len(k_vars)} tensors, {_n(k_size)} of {_n(k_total)} values; "
                f"normalization gamma/beta: {k_bn_dec} tensors",
                (t_size == t_total) == (k_size == k_total) and bool(t_bn_dec) == bool(k_bn_dec),
                ("every trainable variable is decayed in both, normalization parameters and biases included"
                 if t_size == t_total and k_size == k_total else "the decayed sets differ")
                + (f"; Keras decays {len(k_dec) - len(t_dec):+d} more tensors ({k_size - t_size:+,} values): "
                   "its extra convolution biases" if k_size != t_size else ""),
        ),
        Finding("Weight decay", "Keras optimizer's own weight_decay (decoupled)", "n/a",
                str(getattr(_keras_sgd(a), "weight_decay", None)), True,
                "unset: no decoupled decay on top of the coupled L2", kind="info"),
    ]
    return rows


# ------------------------------------------------------------------------ loss

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
                "softmax cross-entropy, mean over the batch, in both (SPEC §5)"),
        Finding("Loss", "value on the same random logits", f"{t_val:.6f}", f"{k_val:.6f}", same_val,
                "equal" if same_val else "the losses differ numerically"),
        Finding("Loss", "model output", f"logits (last module {t_out})", f"logits (last layer activation {k_act})",
                logits_ok, "both models output logits; softmax is inside the loss" if logits_ok
                else "one model applies an activation to its output"),
    ]


# ---------------------------------------------------------------- normalization

def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def check_input_normalization(a: Arms) -> list[Finding]:
    tn, kn = a.torch.normalize, a.keras.normalize
    t_mean, t_std = tn.mean.flatten().cpu().numpy(), tn.std.flatten().cpu().numpy()
    k_mean, k_std = np.asarray(kn.mean).ravel(), np.asarray(kn.std).ravel()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, a.size, a.size, 3), dtype=np.uint8)
    t_x = tn(torch.from_numpy(images)).permute(0, 2, 3, 1).cpu().numpy()
    k_x = np.asarray(kn(tf.constant(images)))
    diff = float(np.abs(t_x - k_x).max())
    consts = np.array_equal(t_mean, k_mean) and np.array_equal(t_std, k_std)
    note = "" if a.cfg.dataset.mean is not None else " (null in the config: taken from the prepared cache at run time)"
    return [
        Finding("Input normalization", "mean / std", f"{_rounded(t_mean)} / {_rounded(t_std)}{note}",
                f"{_rounded(k_mean)} / {_rounded(k_std)}{note}", consts,
                "same per-channel constants of the train split" if consts else "different constants"),
        Finding("Input normalization", "max |difference| on the same uint8 batch", f"{diff:.2g}", f"{diff:.2g}",
                diff < 1e-5, "identical inputs up to float rounding (SPEC §3: < 1e-5)" if diff < 1e-5
                else "the inputs differ"),
    ]


def check_precision(a: Arms) -> list[Finding]:
    t, k = a.torch, a.keras
    device = t.device.type if hasattr(t.device, "type") else str(t.device)
    t_dtype = str(t.amp_dtype).replace("torch.", "") if t.amp else "float32"
    k_dtype = k.reduced_dtype or "float32"
    t_desc = f"autocast {'on' if t.amp else 'off'}" + (f" ({t_dtype})" if t.amp else "") + f" on {device}"
    k_desc = f"policy {k.model.dtype_policy.name}" + f" on {k.device}"
    same = t_dtype == k_dtype
    scaling_t, scaling_k = bool(t.scaler.is_enabled()), bool(k.loss_scaling)
    return [
        Finding("Precision", f"compute dtype (precision={a.cfg.precision.name})", t_desc, k_desc, same,
                "same compute precision" if same else "different compute precision"),
        Finding("Precision", "loss scaling", "GradScaler " + ("on" if scaling_t else "off"),
                "LossScaleOptimizer " + ("on" if scaling_k else "off"), scaling_t == scaling_k,
                "same" if scaling_t == scaling_k else "only one arm scales the loss"),
        Finding("Precision", "what a GPU run uses (backend code)",
                f"autocast {a.cfg.precision.dtype} + GradScaler when precision.mixed" if a.cfg.precision.mixed
                else "float32", f"mixed_{a.cfg.precision.dtype} + LossScaleOptimizer when precision.mixed"
                if a.cfg.precision.mixed else "float32", True,
                "the audit measured the device above; on a CPU both use bfloat16 without loss scaling for amp",
                kind="info"),
    ]


# ------------------------------------------------------------------------ audit

def audit(cfg, schedule: Schedule, train_images: int, train_source: str) -> list[Finding]:
    """Every finding for one configuration, in CATEGORIES order."""
    with preserved_global_state():
        a = build_arms(cfg, schedule, train_images, train_source)
        findings = []
        findings += check_parameters(a)
        findings += check_shapes(a)
        findings += check_architecture(a)
        findings += check_batchnorm(a)
        findings += check_layernorm(a)
        findings += check_initializers(a)
        findings += check_regularization(a)
        findings += check_modes(a)
        t_lrs, k_lrs = torch_lrs(a), keras_lrs(a)
        findings += check_schedule(a, t_lrs, k_lrs)
        findings += check_optimizer(a, t_lrs, k_lrs)
        findings += check_loss(a)
        findings += check_input_normalization(a)
        findings += check_precision(a)
        findings += check_weight_decay(a)  # last: overwrites the weights
        keras.backend.clear_session()
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(findings, key=lambda f: order[f.category])
