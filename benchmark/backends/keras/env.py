"""env.json fields of a Keras run, and the device set-up that must precede any GPU use.

Only TensorFlow is imported at module level: the package runs enable_memory_growth()
before keras (or anything else) can initialize the GPUs.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from benchmark import BenchmarkError

log = logging.getLogger(__name__)


def enable_memory_growth() -> None:
    """Without this TensorFlow reserves all GPU memory at start-up (docs/protocol.md §8), which
    hides the real footprint from the AMP-vs-fp32 memory comparison and blocks a second
    process on the GPU. It only works before the GPUs are initialized."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            # already initialized: fine if an earlier call did it (a second run in one
            # process), but say so, as memory figures would then be the whole GPU
            if not tf.config.experimental.get_memory_growth(gpu):
                log.warning("could not enable memory growth on %s: TensorFlow had already initialized it", gpu.name)


def select_device(name: str) -> str:
    """Resolve framework.device to 'cpu' or 'cuda', hiding the GPUs for 'cpu'."""
    if name not in ("auto", "cpu", "cuda"):
        raise BenchmarkError(f"framework.device={name} is unknown; valid: auto, cpu, cuda")
    gpus = tf.config.list_physical_devices("GPU")
    if name == "cuda" and not gpus:
        raise BenchmarkError("framework.device=cuda but TensorFlow sees no GPU; use framework.device=auto or cpu")
    if name == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError as exc:
            raise BenchmarkError("framework.device=cpu: TensorFlow had already initialized the GPU in this process") from exc
        return "cpu"
    return "cuda" if gpus else "cpu"


def environment() -> dict:
    import keras

    build = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    gpu_name = "cpu"
    if gpus:
        gpu_name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    return {
        "framework": "keras",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        # as in the PyTorch backend: the CUDA/cuDNN a run uses, None on a CPU run ...
        "cuda": build.get("cuda_version") if gpus else None,
        "cudnn": build.get("cudnn_version") if gpus else None,
        # ... and what this TensorFlow wheel was built against, always
        "tf_build_cuda": build.get("cuda_version"),
        "tf_build_cudnn": build.get("cudnn_version"),
        "gpu_name": gpu_name,
        "gpu_count": len(gpus),
        # TensorFlow's x86 builds use oneDNN kernels unless this is "0" (different rounding)
        "tf_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    }
