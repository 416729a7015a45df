"""The engines' profilers and kernels, behind one neutral view: what benchmark.perf.profile
and benchmark.perf.micro reach each engine through.

One module per engine (``ENGINES``, keyed by the engine names of benchmark.spec.frameworks),
each with:

- ``LABEL``: the engine's display name (micro's column heads);
- ``CATEGORY_PATTERNS``: (category, field) -> a pattern that the engine adds to the rule of
  benchmark.perf.profile's ``CATEGORY_RULES`` with that category and field (names and
  scopes only this engine's operators carry);
- ``prepare(out)``: what must be set before the engine starts (JAX: XLA's HLO dump);
- ``profile(trainer, out)``: one epoch (``epoch``) under the engine's own profiler, reduced
  to neutral ``Call`` rows: (calls, clock "cpu" or "device", the epoch's training seconds);
  the raw traces stay in ``out``;
- ``LAYOUTS`` and ``kernel(kind, layers, batch, layout)``: micro's kernels (``KERNELS``)
  built for the engine: (run, sync), a call and a wait for what it returned.

The frameworks are imported inside those functions only, in the engine's own process:
``load_engine`` imports the one engine module asked for, and that module imports no
framework at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, cast

from benchmark.backends.contract import Yardstick

__all__ = [
    "DEPTHWISE",
    "ENGINES",
    "KERNELS",
    "REFERENCE",
    "Call",
    "Engine",
    "epoch",
    "load_engine",
    "newest_run",
    "self_times",
    "timed",
]

# engine (benchmark.spec.frameworks) -> the module that profiles it and builds its kernels;
# the order is micro's column order
ENGINES: dict[str, str] = {
    "tensorflow": "benchmark.backends.profiling.tensorflow",
    "jax": "benchmark.backends.profiling.jax",
    "torch": "benchmark.backends.profiling.torch",
}
# micro's reference column, the denominator of its ratios: native PyTorch's engine in the
# layout the benchmark runs it in
REFERENCE = ("torch", "channels_last")

# MobileNetV2's 17 depthwise 3x3 layers at a 32x32 input (the 32-px stem keeps stride 1:
# benchmark.spec.models, Stem(stride=1)): (feature-map side, channels, stride), in order,
# read from torchvision's mobilenet_v2 with that stem (tests/test_profile.py checks them).
DEPTHWISE = (
    (32, 32, 1),
    (32, 96, 2),
    (16, 144, 1),
    (16, 144, 2),
    (8, 192, 1),
    (8, 192, 1),
    (8, 192, 2),
    (4, 384, 1),
    (4, 384, 1),
    (4, 384, 1),
    (4, 384, 1),
    (4, 576, 1),
    (4, 576, 1),
    (4, 576, 2),
    (2, 960, 1),
    (2, 960, 1),
    (2, 960, 1),
)
# micro's kernels: name -> (kind, layers: (side, channels in, channels out or stride), why it is suspected)
KERNELS: dict[str, tuple[str, tuple[tuple[int, int, int], ...], str]] = {
    "depthwise3x3 x17 (all layers)": (
        "depthwise",
        DEPTHWISE,
        "the engine sentences: Keras on JAX trains MobileNetV2 far slower than on TensorFlow on a CPU, "
        "said to be XLA's depthwise convolutions (its filter gradient is a dense convolution plus a select)",
    ),
    "depthwise3x3 16x16x144": (
        "depthwise",
        ((16, 144, 1),),
        "one typical depthwise layer (block 2): the per-layer cost without the small late maps",
    ),
    "conv1x1 16x16 144->24": (
        "pointwise",
        ((16, 144, 24),),
        "the 1x1 convolutions carry most of MobileNetV2's FLOPs (block 2's projection)",
    ),
    "batchnorm 16x16x144": (
        "batchnorm",
        ((16, 144, 0),),
        "Keras' BatchNormalization runs as moments and elementwise ops on TensorFlow and JAX, "
        "PyTorch's as one native kernel (training mode: batch statistics, forward and backward)",
    ),
}

T = TypeVar("T")  # what a timed event carries


@dataclass
class Call:
    """One executed operator: its framework's name, the scope it ran in, self time in seconds."""

    operator: str
    context: str
    self_s: float
    example: str = ""


class Engine(Protocol):
    """What an engine module of ENGINES offers (see the module's docstring)."""

    LABEL: str
    LAYOUTS: tuple[str, ...]
    CATEGORY_PATTERNS: dict[tuple[str, str], str]

    def prepare(self, out: Path) -> None: ...

    def profile(self, trainer: Yardstick, out: Path) -> tuple[list[Call], str, float]: ...

    def kernel(
        self, kind: str, layers: tuple[tuple[int, int, int], ...], batch: int, layout: str
    ) -> tuple[Callable[[], object], Callable[[object], None]]: ...


def load_engine(engine: str) -> Engine:
    """The profiling module of `engine` (a key of ENGINES); only that one is imported."""
    if engine not in ENGINES:
        raise KeyError(f"no profiling module for engine {engine!r}; valid: {', '.join(ENGINES)}")
    return cast(Engine, importlib.import_module(ENGINES[engine]))


def epoch(trainer: Yardstick) -> float:
    """One training epoch of the trainer (its real step): its training seconds."""
    stats = trainer.train_epoch(1, lambda *a: None)
    return stats.seconds


def newest_run(logdir: Path) -> Path:
    """The newest run folder a profiler wrote under logdir/plugins/profile."""
    runs = [p for p in (logdir / "plugins" / "profile").iterdir() if p.is_dir()]
    return max(runs, key=lambda p: p.stat().st_mtime)


def self_times(events: Iterable[tuple[float, float, T]]) -> list[tuple[T, float]]:
    """(payload, self time) of events (start, duration, payload) of one thread: the duration
    minus that of the events directly nested in it (starting inside it)."""
    ordered = sorted(events, key=lambda e: (e[0], -e[1]))
    out: list[list] = []  # [payload, self time]
    stack: list[tuple[float, int]] = []  # (end, index into out)
    for start, duration, payload in ordered:
        while stack and start >= stack[-1][0]:
            stack.pop()
        if stack:
            out[stack[-1][1]][1] -= min(duration, stack[-1][0] - start)
        out.append([payload, duration])
        stack.append((start + duration, len(out) - 1))
    return [(p, max(0.0, s)) for p, s in out]


def timed(events: Iterable[tuple[float, float, Call]]) -> list[Call]:
    """The calls of one thread's events (start, duration, call), their self times filled in."""
    calls = []
    for call, seconds in self_times(events):
        call.self_s = seconds
        calls.append(call)
    return calls
