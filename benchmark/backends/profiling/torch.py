"""The torch engine (native PyTorch, Keras on torch): ``torch.profiler`` and micro's kernels.

Profile: ``torch.profiler`` (CPU, and CUDA when the trainer's device is a GPU). Each
operator call's self time is ``FunctionEvent.self_cpu_time_total`` (on a GPU
``self_device_time_total``: its kernels' time), the figure ``key_averages()`` sums; the
raw trace is ``trace.json.gz`` (``export_chrome_trace``: Perfetto, chrome://tracing).
Python frames (``with_stack=True``) name the scope an operator ran in.

Kernels: eagerly, in the layout the benchmark runs PyTorch in (channels_last) and in NCHW.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from benchmark.backends.contract import Yardstick
from benchmark.backends.profiling import Call, epoch

LABEL = "PyTorch"
LAYOUTS = ("channels_last", "NCHW")
# Python frames in an operator's scope: the benchmark's own pipelines (the Keras backend's
# pipelines, native PyTorch's data.py) and the Keras backend's optimizer
CATEGORY_PATTERNS: dict[tuple[str, str], str] = {
    ("data/input", "context"): r"keras/pipelines/\w+\.py|pytorch/data\.py",
    ("optimizer update", "context"): r"keras/optim\.py",
}


def prepare(out: Path) -> None:
    """Nothing to set before the engine starts."""


# ------------------------------------------------------------------ torch.profiler


def _depthwise_weight(shapes) -> bool:
    """A (C, 1, k, k) weight among an operator's input shapes, k > 1: a depthwise convolution."""
    return any(isinstance(s, (list, tuple)) and len(s) == 4 and s[1] == 1 and s[0] > 1 and s[2] > 1 for s in shapes)


PYTHON_FRAME = re.compile(r"\.py\(\d+\): |^<built-in")  # torch.profiler's Python events (with_stack=True)


def _ancestors(evt) -> list:
    out, parent = [], evt.cpu_parent
    while parent is not None:
        out.append(parent)
        parent = parent.cpu_parent
    return out[::-1]


def torch_calls(events, on_device: bool) -> list[Call]:
    """The CPU-side operator events of torch.profiler, self time as key_averages() sums it
    (FunctionEvent.self_cpu_time_total, or self_device_time_total: the kernels it launched).
    Python frames (with_stack=True) are not operators: they are left out, and only name the
    scope of the operators they call; a backward operator gets the scope of the forward
    operator whose autograd node it runs (same sequence_nr)."""
    events = sorted(events, key=lambda e: e.time_range.start)
    forward: dict[int, str] = {}  # sequence_nr -> the forward operator's scope
    for evt in events:
        if evt.sequence_nr >= 0 and evt.name.startswith("aten::") and evt.sequence_nr not in forward:
            scopes = _ancestors(evt)
            if not any(p.name.startswith("autograd::engine") for p in scopes):
                forward[evt.sequence_nr] = "/".join(p.name for p in scopes)
    calls = []
    for evt in events:
        if str(evt.device_type).rsplit(".", 1)[-1] != "CPU" or evt.is_async or PYTHON_FRAME.search(evt.name):
            continue
        self_us = evt.self_device_time_total if on_device else evt.self_cpu_time_total
        scopes = _ancestors(evt)
        context = "/".join(p.name for p in scopes)
        node = next((p for p in scopes if p.name.startswith("autograd::engine::evaluate_function")), None)
        if node is not None:
            context = f"{forward.get(node.sequence_nr, '')} (backward)/{context}"
        if "conv" in evt.name and _depthwise_weight(evt.input_shapes or ()):
            context += " [depthwise]"
        calls.append(Call(evt.name, context, self_us / 1e6, f"{evt.name} {evt.input_shapes}"))
    return calls


def profile(trainer: Yardstick, out: Path) -> tuple[list[Call], str, float]:
    """One epoch under torch.profiler: (calls, clock, the epoch's training seconds)."""
    import torch  # the torch engine's own process (pytorch, keras_torch): never loaded elsewhere
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    on_device = str(trainer.device).startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    # shapes: a depthwise convolution is known by its weight; stacks: the layer an operator runs in
    with torch_profile(activities=activities, record_shapes=True, with_stack=True) as prof:
        seconds = epoch(trainer)
        if on_device:
            torch.cuda.synchronize()
    prof.export_chrome_trace(str(out / "trace.json.gz"))  # gzip: Python stacks make it large
    return torch_calls(prof.events(), on_device), "device" if on_device else "cpu", seconds


# ------------------------------------------------------------------ micro's kernels


def kernel(kind: str, layers, batch: int, layout: str) -> tuple[Callable[[], object], Callable[[object], None]]:
    """Micro's kernel `kind` over `layers`, forward and backward, eagerly in `layout`."""
    import torch  # the PyTorch child's own engine: never loaded in the parent
    import torch.nn.functional as F

    device = "cuda" if torch.cuda.is_available() else "cpu"
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    tensors = []
    for side, channels, third in layers:
        x = torch.randn(batch, channels, side, side, generator=gen).to(device, memory_format=fmt)
        if kind == "depthwise":
            w = torch.randn(channels, 1, 3, 3, generator=gen).to(device, memory_format=fmt)
            out_side = -(-side // third)
            dy = torch.ones(batch, channels, out_side, out_side, device=device).to(memory_format=fmt)
        elif kind == "pointwise":
            w = torch.randn(third, channels, 1, 1, generator=gen).to(device, memory_format=fmt)
            dy = torch.ones(batch, third, side, side, device=device).to(memory_format=fmt)
        else:
            w = torch.ones(channels, device=device)
            dy = torch.ones_like(x)
        tensors.append((x.requires_grad_(), w.requires_grad_(), dy, third))

    def forward(x, w, third):
        if kind == "depthwise":
            return F.conv2d(x, w, stride=third, padding=1, groups=x.shape[1])
        if kind == "pointwise":
            return F.conv2d(x, w)
        return F.batch_norm(x, None, None, w, None, training=True, eps=1e-5)

    def step():
        return [torch.autograd.grad(forward(x, w, third), (x, w), dy) for x, w, dy, third in tensors]

    def sync(out):
        if device == "cuda":
            torch.cuda.synchronize()

    return step, sync
