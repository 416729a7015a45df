"""The TensorFlow engine (Keras on TensorFlow): TensorFlow's profiler and micro's kernels.

Profile: ``tf.profiler.experimental.start/stop``; the ``*.xplane.pb`` it writes
(TensorBoard's profiler reads the folder) is read with TensorFlow's own protobuf
(``tensorflow.tsl.profiler.protobuf.xplane_pb2``). Kept: the TensorFlow op events of the
host plane (named ``op_name:OpType`` on the executor's and tf.data's threads; on a GPU,
the device plane's kernels, named by their ``tf_op``). Self time: an event's duration
minus the op events nested in it on the same line (thread).

Kernels: in a ``tf.function``, NHWC (the layout Keras runs in).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from benchmark.backends.contract import Yardstick
from benchmark.backends.profiling import Call, epoch, newest_run, timed

LABEL = "TensorFlow"
LAYOUTS = ("NHWC",)
# tf.data's threads (xplane_calls prefixes their scopes with "tf.data/")
CATEGORY_PATTERNS: dict[tuple[str, str], str] = {("data/input", "context"): r"^tf\.data"}


def prepare(out: Path) -> None:
    """Nothing to set before the engine starts."""


# ------------------------------------------------------------------ TensorFlow's xplane

TF_OP = re.compile(r"^([^:]+):(_?[A-Z][A-Za-z0-9_]*)$")  # "scope/name:OpType"


def xplane_calls(space) -> tuple[list[Call], str]:
    """TensorFlow op events of an XSpace (the device planes' kernels where a GPU ran)."""
    device_planes = [p for p in space.planes if p.name.startswith("/device:GPU") and any(p.lines)]
    calls: list[Call] = []
    if device_planes:
        for plane in device_planes:
            stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
            for line in plane.lines:
                events = []
                for e in line.events:
                    name = plane.event_metadata[e.metadata_id].name
                    tf_op = next(
                        (s.str_value for s in e.stats if stat_names.get(s.metadata_id) == "tf_op" and s.str_value),
                        "",
                    )
                    match = TF_OP.match(tf_op)
                    op, scope = (match.group(2), match.group(1)) if match else (name, "")
                    events.append((e.offset_ps / 1e12, e.duration_ps / 1e12, Call(op, scope, 0.0, name)))
                calls += timed(events)
        return calls, "device"
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            thread = "tf.data/" if line.name.startswith("tf_data") else ""
            events = []
            for e in line.events:
                match = TF_OP.match(plane.event_metadata[e.metadata_id].name)
                if match:
                    scope, op = match.groups()
                    events.append((e.offset_ps / 1e12, e.duration_ps / 1e12, Call(op, thread + scope, 0.0)))
            calls += timed(events)
    return calls, "cpu"


def profile(trainer: Yardstick, out: Path) -> tuple[list[Call], str, float]:
    """One epoch under TensorFlow's profiler: (calls, clock, the epoch's training seconds)."""
    import tensorflow as tf  # the TensorFlow engine's own process: never loaded elsewhere
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.profiler.experimental.start(str(out))
    try:
        seconds = epoch(trainer)
    finally:
        tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    for path in sorted(newest_run(out).glob("*.xplane.pb")):
        one = xplane_pb2.XSpace()
        one.ParseFromString(path.read_bytes())
        space.MergeFrom(one)
    calls, clock = xplane_calls(space)
    return calls, clock, seconds


# ------------------------------------------------------------------ micro's kernels


def kernel(kind: str, layers, batch: int, layout: str) -> tuple[Callable[[], object], Callable[[object], None]]:
    """Micro's kernel `kind` over `layers`, forward and backward, in a tf.function (NHWC)."""
    import tensorflow as tf  # the TensorFlow child's own engine: never loaded in the parent

    rng = tf.random.Generator.from_seed(0)
    tensors = []
    for side, channels, third in layers:
        x = rng.normal((batch, side, side, channels))
        if kind == "depthwise":
            w = tf.Variable(rng.normal((3, 3, channels, 1)))
            out_side = -(-side // third)
            dy = tf.ones((batch, out_side, out_side, channels))
        elif kind == "pointwise":
            w = tf.Variable(rng.normal((1, 1, channels, third)))
            dy = tf.ones((batch, side, side, third))
        else:
            w = tf.Variable(tf.ones((channels,)))  # gamma (beta: the same cost)
            dy = tf.ones_like(x)
        tensors.append((x, w, dy, third))

    def forward(x, w, third):
        if kind == "depthwise":
            return tf.nn.depthwise_conv2d(x, w, strides=(1, third, third, 1), padding="SAME")
        if kind == "pointwise":
            return tf.nn.conv2d(x, w, strides=1, padding="SAME")
        mean, var = tf.nn.moments(x, axes=(0, 1, 2))  # as Keras' BatchNormalization on TensorFlow
        return tf.nn.batch_normalization(x, mean, var, None, w, 1e-3)

    @tf.function
    def step():
        grads = []
        for x, w, dy, third in tensors:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = forward(x, w, third)
            grads.append(tape.gradient(y, [x, w], output_gradients=dy))
        return grads

    return step, lambda out: out[-1][1].numpy()
