"""Structured config schema, registered in Hydra's ConfigStore.

``conf/config.yaml`` puts ``benchmark_schema`` first in its defaults list, so every
YAML file of every group is merged into these typed dataclasses: an unknown key, a
value of the wrong type or an unknown group option fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from benchmark import BenchmarkError
from benchmark.spec.models import list_models
from benchmark.spec.runkey import register_resolvers


@dataclass
class FrameworkConfig:
    name: str = MISSING  # pytorch | keras (one YAML per backend in conf/framework)
    # What the framework computes on (benchmark.spec.frameworks.ENGINES): Keras 3 runs on
    # tensorflow (its default), jax or torch; PyTorch on torch. A run-key field.
    engine: str | None = None  # null: the framework's default engine
    device: str = "auto"  # auto (accelerator when present) | cpu | cuda
    deterministic: bool = True  # deterministic kernels and seeded data order
    # How the engine runs the steps (docs/performance.md), a run-key field (each mode is
    # its own arm); the valid modes per framework and engine, the first the default, are
    # benchmark.spec.frameworks.EXECUTIONS: PyTorch eager | compile (torch.compile) |
    # compile-max-autotune | compile-reduce-overhead (CUDA graphs, GPU only); Keras on
    # TensorFlow graph (tf.function) | xla (tf.function jit_compile=True); on JAX jit; on
    # torch eager. The run records what it ran as `execution_mode` in summary.json.
    execution: str | None = None  # null: the engine's default mode
    channels_last: bool = True  # PyTorch: NHWC memory format for model and inputs


@dataclass
class ModelConfig:
    name: str = MISSING  # one of benchmark.spec.models.list_models() (conf/model/<name>.yaml)


@dataclass
class DatasetConfig:
    name: str = MISSING
    num_classes: int = MISSING
    image_size: int = MISSING  # square inputs: 32 (CIFAR, digits) or 64 (Tiny-ImageNet)
    crop_padding: int = MISSING  # zero padding of the random crop (docs/protocol.md §3)
    val_size: int = MISSING  # images held out of the training set, stratified, seed 42
    # Only for datasets without an official test split (digits): stratified test size.
    test_size: int | None = None
    epochs: int = MISSING
    # Protocol defaults of this dataset; the top-level keys of the same name use them.
    batch_size: int = 256
    warmup_epochs: int = 5
    # Per-channel statistics of the train split on [0, 1] pixels (docs/protocol.md §3). null takes
    # them from the prepared cache; constants are checked against it at every run.
    mean: list[float] | None = None
    std: list[float] | None = None
    # Where the raw data is: an archive file or a folder (docs/running.md, Datasets). null looks in
    # ${data_dir}/raw and then downloads from `url` where the network allows.
    source: str | None = None
    archive: str | None = None  # official file name, e.g. cifar-10-python.tar.gz
    url: str | None = None
    md5: str | None = None
    # Val accuracies whose time to reach is reported (first epoch and cumulative training
    # seconds; DAWNBench/MLPerf's figure). Analysis only: they never change a run.
    accuracy_targets: list[float] = field(default_factory=list)


# precision.matmul's values (benchmark.backends.contract.FLOAT32_MEANING words them)
FLOAT32_POLICIES = ("ieee", "tf32")


@dataclass
class PrecisionConfig:
    name: str = MISSING  # fp32 | amp
    mixed: bool = False
    # Reduced-precision dtype on an accelerator. On CPU, PyTorch autocast uses
    # bfloat16 instead (float16 matmuls are not what CPU AMP is built for).
    dtype: str = "float16"
    # The float32 arithmetic policy of every framework (docs/protocol.md §8): `ieee` keeps
    # float32 matmuls and convolutions in true float32 (TF32 off everywhere), `tf32` lets
    # Ampere-and-later GPUs use TF32 in all of them. Left to themselves the frameworks
    # disagree (TensorFlow and JAX use TF32, PyTorch only for cuDNN convolutions), so an
    # "fp32" comparison would compare different arithmetic. On a CPU: not applicable.
    matmul: str = "ieee"


@dataclass
class ProtocolConfig:
    """What may differ between the arms besides the framework (docs/protocol.md §11).

    Each knob is ``native`` (each framework's zoo and library defaults, as users run
    them) or ``aligned`` (one definition applied by every backend); benchmark.spec.protocol
    lists the knobs and checks the values."""

    name: str = "native"  # native | aligned (conf/protocol); a run-key field
    architecture: str = "native"  # aligned: the same network layer for layer (ResNet50 v1.5, symmetric padding)
    regularization: str = "native"  # aligned: the same dropout and stochastic depth
    init: str = "native"  # aligned: identical initial weights, drawn once by the neutral core
    optimizer: str = "native"  # aligned: PyTorch's SGD update rule in every backend
    data: str = "native"  # aligned: one shuffle/crop/flip stream, drawn by the neutral core


@dataclass
class OptimConfig:
    lr: float = 0.1  # at an effective batch of `lr_reference_batch`, scaled linearly
    lr_reference_batch: int = 256
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    warmup_epochs: int = "${dataset.warmup_epochs}"  # type: ignore[assignment]


@dataclass
class LimitConfig:
    """Use only the first N images of a split: smoke tests and debugging only."""

    train: int | None = None
    val: int | None = None
    test: int | None = None


@dataclass
class MarginsConfig:
    """Equivalence margins of the analysis (docs/protocol.md §7, "Verdicts"): declared
    with the sweep, before any result, so "the same" means one thing for every arm.
    Units (benchmark.analysis.verdicts.MARGIN_UNITS): accuracy metrics in percentage
    points, speed and time in percent of the second arm's mean."""

    test_accuracy: float = 0.5  # points: the spread of one seed's test accuracy on CIFAR-scale test sets
    test_macro_f1: float = 0.5  # points, as test accuracy
    images_per_sec_avg: float = 5.0  # percent: below what separates two runs on one node in practice
    epochs_to_val_acc: float = 10.0  # percent of the second arm's mean epochs to each target
    seconds_to_val_acc: float = 10.0  # percent of the second arm's mean seconds to each target


@dataclass
class AnalysisConfig:
    """Read by the analysis only (benchmark.analyze), recorded with every run of the sweep;
    it never changes what a run computes (benchmark.run.resume leaves it out)."""

    margins: MarginsConfig = field(default_factory=MarginsConfig)


@dataclass
class BenchmarkConfig:
    framework: FrameworkConfig = MISSING
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    precision: PrecisionConfig = MISSING
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    seed: int = 42
    epochs: int = "${dataset.epochs}"  # type: ignore[assignment]
    batch_size: int = "${dataset.batch_size}"  # type: ignore[assignment]  # effective batch per optimizer step
    grad_accum_steps: int = 1  # micro-batch = batch_size / grad_accum_steps
    optim: OptimConfig = field(default_factory=OptimConfig)
    limit: LimitConfig = field(default_factory=LimitConfig)
    data_dir: str = "data"
    progress_updates: int = 10  # progress lines per epoch on the terminal and in the log
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "conf")


def framework_options() -> list[str]:
    """The framework= options (conf/framework/*.yaml): every framework on every engine,
    PyTorch first (torchvision loads before TensorFlow in a process that has both)."""
    names = [name[:-5] for name in os.listdir(os.path.join(CONF_DIR, "framework")) if name.endswith(".yaml")]
    return sorted(names, key=lambda name: (not name.startswith("pytorch"), name))


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line message of a bad override on one line, without the config search
    path, with the underlying cause (the one-line errors of every command that composes)."""
    text = str(exc).split("Config search path:")[0]
    text = " ".join(part.strip() for part in text.splitlines() if part.strip()) or exc.__class__.__name__
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        first = str(cause).strip().splitlines()[0].strip()
        if first not in text:
            text = f"{text}: {first}"
    return text


def register_configs() -> None:
    register_resolvers()  # ${run_key:} in conf/config.yaml
    cs = ConfigStore.instance()
    cs.store(name="benchmark_schema", node=BenchmarkConfig)


def keys_outside_schema(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Keys the schema does not define. Hydra lets ``+key=value`` add them to a
    structured config (the schema only rejects plain ``key=value``), so a typo
    written with ``+`` would otherwise be ignored without a word."""
    schema = OmegaConf.get_type(cfg)
    if not dataclasses.is_dataclass(schema):
        return []
    fields = {f.name for f in dataclasses.fields(schema)} | ({"hydra"} if not prefix else set())  # Hydra's own node
    extra = [prefix + str(key) for key in cfg.keys() if key not in fields]
    for name in sorted(fields & set(cfg.keys()) - {"hydra"}):
        node = cfg._get_node(name)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            extra += keys_outside_schema(node, f"{prefix}{name}.")
    return extra


# ------------------------------------------------------------------ value ranges

INF = float("inf")


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of one numeric config key: [low, high], either end open, where a
    bound may name another key ("epochs"); `nullable` lets null through; a list value is
    checked item by item."""

    key: str
    low: float | str = -INF
    high: float | str = INF
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    integer: bool = False
    hint: str = ""  # what a user who hit the bound most likely wants, appended to the error


@dataclasses.dataclass(frozen=True)
class Choice:
    key: str
    values: tuple


# Every numeric option of the schema and its valid range, in one list (checked by
# check_values before any work; tests/test_config.py walks it). The why is beside each.
RANGES = (
    # the dataset's defaults first: a top-level key that takes its value from one (epochs:
    # ${dataset.epochs}) would otherwise be named for the user's dataset.* override
    Range("dataset.num_classes", 2, integer=True),
    Range("dataset.image_size", 8, integer=True),
    Range("dataset.crop_padding", 0, "dataset.image_size", high_open=True, integer=True),
    Range("dataset.val_size", "dataset.num_classes", integer=True),  # stratified: one image per class at least
    Range("dataset.test_size", "dataset.num_classes", nullable=True, integer=True),
    Range("dataset.epochs", 1, integer=True),
    Range("dataset.batch_size", 1, integer=True),
    Range("dataset.warmup_epochs", 0, "dataset.epochs", integer=True),
    Range("dataset.mean", 0, 1, nullable=True),  # per-channel mean of [0, 1] pixels
    Range("dataset.std", 0, 1, low_open=True, nullable=True),
    Range("dataset.accuracy_targets", 0, 1, low_open=True),
    Range("seed", 0, 2**32 - 1, integer=True),  # NumPy's and TensorFlow's seeds are unsigned 32-bit
    Range("epochs", 1, integer=True),
    Range("batch_size", 1, integer=True),
    Range("grad_accum_steps", 1, "batch_size", integer=True),
    Range("progress_updates", 0, integer=True),  # 0: no progress lines within an epoch
    Range("optim.lr", 0, low_open=True),  # a step against the gradient, never along it
    Range("optim.lr_reference_batch", 1, integer=True),
    Range("optim.momentum", 0, 1, high_open=True),  # 1 never forgets: the velocity grows without bound
    Range("optim.weight_decay", 0),  # negative decay pushes weights away from 0
    # a short run (epochs=1) keeps the dataset's warm-up, which is right for the protocol;
    # a smoke run wants none: conf/debug/smoke.yaml sets it
    Range("optim.warmup_epochs", 0, "epochs", integer=True, hint="set optim.warmup_epochs=0 or use debug=smoke"),
    Range("limit.train", 1, nullable=True, integer=True),
    Range("limit.val", 1, nullable=True, integer=True),
    Range("limit.test", 1, nullable=True, integer=True),
    # a margin of 0 could never be met: equivalence needs room on both sides of 0
    *(
        Range(f"analysis.margins.{f.name}", 0, low_open=True, hint="margins are > 0 (docs/protocol.md §7)")
        for f in dataclasses.fields(MarginsConfig)
    ),
)
CHOICES = (
    Choice("framework.device", ("auto", "cpu", "cuda")),
    Choice("model.name", tuple(list_models())),  # a conf/model file or model.name=... naming no ModelSpec
    Choice("precision.dtype", ("float16", "bfloat16")),
    Choice("precision.matmul", FLOAT32_POLICIES),
)


def _bound(cfg, bound) -> float:
    return OmegaConf.select(cfg, bound) if isinstance(bound, str) else bound


def describe(rule: Range, cfg) -> str:
    """ "[0, 4294967295]", "(0, 1]", "[0, epochs = 10]" ..."""

    def show(bound, open_, left):
        value = _bound(cfg, bound)
        text = (
            ("-inf" if left else "inf")
            if value in (INF, -INF)
            else (str(int(value)) if float(value).is_integer() else f"{value:g}")
        )
        text = f"{bound} = {text}" if isinstance(bound, str) else text
        return ("(" if open_ else "[") + text if left else text + (")" if open_ or value == INF else "]")

    span = f"{show(rule.low, rule.low_open, True)}, {show(rule.high, rule.high_open, False)}"
    return span + (" or null" if rule.nullable else "") + (", whole numbers" if rule.integer else "")


def _out_of_range(rule: Range, value, cfg) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    low, high = _bound(cfg, rule.low), _bound(cfg, rule.high)
    if not math.isfinite(value) or (rule.integer and value != int(value)):
        return True
    return (value <= low if rule.low_open else value < low) or (value >= high if rule.high_open else value > high)


def check_values(cfg, run_dir=None, run_dir_key: str = "hydra.run.dir") -> None:
    """Raise BenchmarkError naming the first key whose value is outside RANGES or CHOICES,
    the value and the valid range; and refuse a data_dir or run directory that is a file."""
    for rule in RANGES:
        value = OmegaConf.select(cfg, rule.key, throw_on_missing=False)
        if value is None and rule.nullable:
            continue
        values = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
        for item in values:
            if item is None or _out_of_range(rule, item, cfg):
                shown = list(values) if len(values) > 1 or not isinstance(value, (int, float)) else value
                hint = f"; {rule.hint}" if rule.hint else ""
                raise BenchmarkError(f"{rule.key}={shown} is out of range: valid {describe(rule, cfg)}{hint}")
    for choice in CHOICES:
        value = OmegaConf.select(cfg, choice.key)
        if value not in choice.values:
            raise BenchmarkError(f"{choice.key}={value} is unknown; valid: {', '.join(choice.values)}")
    for what, path in (("data_dir", cfg.data_dir), (run_dir_key, run_dir)):
        if path is not None and os.path.exists(str(path)) and not os.path.isdir(str(path)):
            raise BenchmarkError(
                f"{what}={path} is a file, not a directory: give a directory (it is created if missing)"
            )


def is_benchmark_config(cfg) -> bool:
    """Whether a composed config (with or without its hydra node) is this benchmark's."""
    return OmegaConf.get_type(cfg) is BenchmarkConfig or (
        isinstance(cfg, DictConfig) and {"framework", "model", "dataset", "optim"} <= set(cfg.keys())
    )
