"""The comparison protocol's knobs (docs/protocol.md §11), defined once for every backend.

A protocol says what may differ between the arms besides the framework. Under
``native`` each framework runs as its users run it (its zoo's networks, initializers
and regularization, its library's SGD, its own augmentation stream); under
``aligned`` each of those is one definition applied by every backend, so that only
the framework is left. The knobs are independent, so one native difference can be
switched back on at a time (``protocol=aligned protocol.init=native``) to measure
what it alone does. Backends read the knobs through :class:`Knobs`, never the config.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark import BenchmarkError
from benchmark.spec.models import SPECS

SETTINGS = ("native", "aligned")
# knob -> what `aligned` makes equal (docs/parity.md; docs/protocol.md §11)
KNOBS = {
    "architecture": "the same network layer for layer: every weight-carrying layer maps to one layer of the other "
    "framework with the same shape, stride and symmetric padding (ResNet50 v1.5, no conv biases)",
    "regularization": "the same dropout (MobileNetV2 head 0.2) and stochastic depth (ConvNeXt 0.1, linear over "
    "blocks, per sample); the masks stay each framework's own random draws",
    "init": "identical initial weights: drawn once from the seed by the framework-neutral core (torchvision's "
    "initialization rules) and copied into each framework through the layer mapping",
    "optimizer": "PyTorch's SGD update rule (momentum buffer b = m*b + g, LR applied when b is used)",
    "data": "one stream of batches: per epoch the shuffle order, crop offsets and flips are drawn from the seed "
    "by the framework-neutral core and applied by every backend",
}

# Regularization of the aligned protocol: torchvision's, which Keras' zoo lacks
# (MobileNetV2 has no head dropout in keras.applications; its ConvNeXt defaults to no
# stochastic depth). (drop_rate, drop_path_rate) per model; None where a model has none.
ALIGNED_REGULARIZATION = {name: (s.dropout, s.drop_path) for name, s in SPECS.items()}


@dataclass(frozen=True)
class Knobs:
    """Which protocol differences are removed (True: aligned) for one run."""

    architecture: bool = False
    regularization: bool = False
    init: bool = False
    optimizer: bool = False
    data: bool = False

    @classmethod
    def of(cls, protocol) -> Knobs:
        """The knobs of a config's ``protocol`` node, checked; a one-line error otherwise."""
        if protocol is None:  # a config from before protocols existed: native
            return cls()
        values = {}
        for knob in KNOBS:
            value = protocol[knob]
            if value not in SETTINGS:
                raise BenchmarkError(f"protocol.{knob}={value} is unknown; valid: {', '.join(SETTINGS)}")
            values[knob] = value == "aligned"
        knobs = cls(**values)
        if knobs.init and not knobs.architecture:
            raise BenchmarkError(
                "protocol.init=aligned needs protocol.architecture=aligned: the shared initial "
                "weights are copied through the one-to-one layer mapping"
            )
        return knobs

    def model_options(self, model: str) -> dict:
        """create_model's regularization arguments under these knobs (None: the zoo's own)."""
        drop_rate, drop_path_rate = ALIGNED_REGULARIZATION[model] if self.regularization else (None, None)
        return {
            "architecture": "aligned" if self.architecture else "native",
            "drop_rate": drop_rate,
            "drop_path_rate": drop_path_rate,
        }

    def describe(self) -> str:
        aligned = [k for k in KNOBS if getattr(self, k)]
        if not aligned:
            return "native"
        if len(aligned) == len(KNOBS):
            return "aligned"
        return "aligned: " + ", ".join(aligned)
