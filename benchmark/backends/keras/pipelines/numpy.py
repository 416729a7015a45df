"""The input pipeline of the Keras engines other than TensorFlow (JAX, torch): NumPy on the host.

Keras on JAX or torch must not need TensorFlow (no tf.data), so batches are cut,
augmented and normalized with NumPy from the shared stream of benchmark.data.stream:
the order, crops and flips of an epoch come from (seed, epoch) alone, so a resumed
run continues the stream with nothing checkpointed, and the same seed gives the same
batches on both engines. Each engine's module moves a batch to its device.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from benchmark.backends import contract
from benchmark.data.stream import epoch_plan


def crop_flip(images: np.ndarray, padding: int, top: np.ndarray, left: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Crop image i of the zero-padded uint8 NHWC batch at (top[i], left[i]); flip it horizontally where flip[i]."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    rows = (top[:, None] + np.arange(h))[:, :, None]  # (n, h, 1)
    cols = (left[:, None] + np.arange(w))[:, None, :]  # (n, 1, w)
    cropped = padded[np.arange(n)[:, None, None], rows, cols]  # (n, h, w, c)
    return np.where(flip[:, None, None, None], cropped[:, :, ::-1], cropped)


class Normalizer:
    """uint8 NHWC -> float32 NHWC, (x / 255 - mean) / std, as benchmark.data.normalization.normalize_reference."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return (images.astype(np.float32) / np.float32(255.0) - self.mean) / self.std


class TrainBatches:
    """Shuffled, augmented, normalized (images, labels) NumPy batches; exactly `batches`
    full batches per epoch, from the shared stream.

    The shared stream is the only one: it needs no checkpointed state, which the engines'
    Keras weights files could not hold. `shared_stream` (protocol.data) is taken as the
    TensorFlow pipeline takes it, and changes nothing; data_stream says so to the audit."""

    data_stream = contract.SHARED_STREAM_FACT

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        batches: int,
        padding: int,
        normalize: Normalizer,
        seed: int,
        shared_stream: bool = True,
    ):
        self.images, self.labels = images, np.asarray(labels, np.int32)
        self.batch_size, self.batches, self.padding, self.normalize, self.seed = (
            batch_size,
            batches,
            padding,
            normalize,
            seed,
        )

    def epoch(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.batches * self.batch_size > len(self.labels):
            raise ValueError(
                f"{self.batches} batches of {self.batch_size} need more than the {len(self.labels)} images"
            )
        plan = epoch_plan(self.seed, epoch, len(self.labels), self.padding)
        for b in range(self.batches):
            index, top, left, flip = plan.batch(b, self.batch_size)
            yield self.normalize(crop_flip(self.images[index], self.padding, top, left, flip)), self.labels[index]

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        return self.epoch()


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, normalize: Normalizer):
    """In-order batches with no augmentation, keeping the last partial batch."""
    labels = np.asarray(labels, np.int32)
    for start in range(0, len(labels), batch_size):
        yield normalize(images[start : start + batch_size]), labels[start : start + batch_size]


class DevicePipeline:
    """Training batches of TrainBatches moved to an engine's device, each finished before
    the next is cut (benchmark.perf times the pipeline alone)."""

    def __init__(self, batches: TrainBatches, move):
        self.batches, self.move = batches, move

    def __iter__(self):
        for x, y in self.batches:
            yield self.move(x, y)

    def __len__(self) -> int:
        return len(self.batches)


def input_pipeline(
    images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int, mean, std, seed: int, move
) -> DevicePipeline:
    """One epoch's training batches on the device `move` puts them on (contract.Backend; benchmark.perf)."""
    batches = TrainBatches(images, labels, batch_size, len(labels) // batch_size, padding, Normalizer(mean, std), seed)
    return DevicePipeline(batches, move)
