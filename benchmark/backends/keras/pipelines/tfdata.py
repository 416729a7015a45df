"""The input pipeline of the Keras TensorFlow engine: tf.data over the shared uint8 cache
(docs/protocol.md §3), batch-vectorized.

Every random number comes from stateless ops keyed by one seed per epoch, drawn from
a ``tf.random.Generator``. The generator's state is a variable saved in the ``last``
checkpoint, so the data order and the crops are reproducible for a seed, independent
of how many threads the parallel map uses, and continue unchanged after a resume.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from benchmark.backends import contract, cpus
from benchmark.data.stream import epoch_plan

PREFETCH = 2  # batches made ahead of the step: one in use, one ready


def _batches(ds: tf.data.Dataset, make_batch) -> tf.data.Dataset:
    """`make_batch` over `ds` on as many threads as this process has CPUs
    (benchmark.backends.cpus), in order, two batches ahead. tf.data's autotuning is
    off: its background thread held the end of an epoch for 1.5 s in one epoch of
    three when the spent iterator was destroyed (docs/performance.md, "Where an
    epoch's time goes"), with no gain in the steps' speed on this CPU."""
    options = tf.data.Options()
    options.autotune.enabled = False
    batches = ds.map(make_batch, num_parallel_calls=cpus.allowed()[0], deterministic=True).prefetch(PREFETCH)
    return batches.with_options(options)


OWN_STREAM_FACT = (
    "own: stateless TensorFlow draws keyed per epoch by a tf.random.Generator seeded with the run's "
    "seed (order, then per batch crops and flips)"
)


def _host_tensor(array: np.ndarray, dtype=None) -> tf.Tensor:
    # the dataset stays in host memory; only batches travel to the accelerator
    with tf.device("/CPU:0"):
        return tf.convert_to_tensor(np.asarray(array), dtype=dtype)


class Normalizer:
    """uint8 NHWC -> float32 NHWC, (x / 255 - mean) / std, as benchmark.data.normalization.normalize_reference."""

    def __init__(self, mean, std):
        self.mean = tf.constant(np.asarray(mean, np.float32))
        self.std = tf.constant(np.asarray(std, np.float32))

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        x = tf.cast(images, tf.float32) / tf.constant(255.0, tf.float32)
        return (x - self.mean) / self.std


def random_crop_flip(images: tf.Tensor, padding: int, seed: tf.Tensor) -> tf.Tensor:
    """Per-image random crop of the zero-padded uint8 batch, then a random horizontal flip."""
    n = tf.shape(images)[0]
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offsets = tf.random.stateless_uniform([2, n], crop_seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([n], flip_seed) < 0.5
    return crop_flip(images, padding, offsets[0], offsets[1], flip)


def crop_flip(images: tf.Tensor, padding: int, top: tf.Tensor, left: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    """Crop image i of the zero-padded batch at (top[i], left[i]); flip it horizontally where flip[i]."""
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    rows = top[:, None] + tf.range(h)[None, :]  # (n, h)
    cols = left[:, None] + tf.range(w)[None, :]  # (n, w)
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)  # (n, h, w + 2p, c)
    cropped = tf.gather(cropped, cols, axis=2, batch_dims=1)  # (n, h, w, c)
    return tf.where(flip[:, None, None, None], tf.reverse(cropped, axis=[2]), cropped)


class TrainBatches:
    """Shuffled, augmented, normalized batches; exactly `batches` full batches per epoch.

    The draws come from this backend's own generator (checkpointed), or, with
    `shared_stream` (protocol.data=aligned), from the framework-neutral
    benchmark.data.stream, which every backend applies identically."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        batches: int,
        padding: int,
        normalize: Normalizer,
        seed: int,
        shared_stream: bool = False,
    ):
        self.images, self.labels = _host_tensor(images, tf.uint8), _host_tensor(labels, tf.int32)
        self.batch_size, self.batches, self.padding, self.normalize = batch_size, batches, padding, normalize
        self.seed, self.shared_stream = seed, shared_stream
        self.data_stream = contract.SHARED_STREAM_FACT if shared_stream else OWN_STREAM_FACT  # the audit's words
        with tf.device("/CPU:0"):
            self.generator = tf.random.Generator.from_seed(seed)

    def epoch(self, epoch: int | None = None) -> tf.data.Dataset:
        """The batches of 0-based `epoch`; from the own generator, the next epoch's
        (advancing it by one epoch seed), whatever `epoch` says."""
        if self.batches * self.batch_size > int(self.labels.shape[0]):
            raise ValueError(
                f"{self.batches} batches of {self.batch_size} need more than the {int(self.labels.shape[0])} images"
            )
        if self.shared_stream:
            return self._shared(int(epoch or 0))
        with tf.device("/CPU:0"):
            seed = self.generator.make_seeds(1)[:, 0]
            order_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(self.labels)[0]), order_seed)
            # drop the remainder here, so the batches that exist are all full
            index = tf.reshape(order[: self.batches * self.batch_size], [self.batches, self.batch_size])
        images, labels, padding, normalize = self.images, self.labels, self.padding, self.normalize

        def make_batch(b, idx):
            x = tf.gather(images, idx)
            x = random_crop_flip(x, padding, tf.random.experimental.stateless_fold_in(augment_seed, b))
            return normalize(x), tf.gather(labels, idx)

        ds = tf.data.Dataset.from_tensor_slices((tf.range(self.batches, dtype=tf.int64), index))
        return _batches(ds, make_batch)

    def _shared(self, epoch: int) -> tf.data.Dataset:
        plan = epoch_plan(self.seed, epoch, int(self.labels.shape[0]), self.padding)
        parts = [plan.batch(b, self.batch_size) for b in range(self.batches)]
        index, top, left, flip = (np.stack([p[i] for p in parts]) for i in range(4))
        images, labels, padding, normalize = self.images, self.labels, self.padding, self.normalize

        def make_batch(idx, crop_top, crop_left, flip_mask):
            x = crop_flip(tf.gather(images, idx), padding, crop_top, crop_left, flip_mask)
            return normalize(x), tf.gather(labels, idx)

        ds = tf.data.Dataset.from_tensor_slices((index, top, left, flip))
        return _batches(ds, make_batch)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        return iter(self.epoch())


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, normalize: Normalizer) -> tf.data.Dataset:
    """In-order batches with no augmentation, keeping the last partial batch."""
    x, y = _host_tensor(images, tf.uint8), _host_tensor(labels, tf.int32)
    n = len(labels)

    def make_batch(start):
        stop = tf.minimum(start + batch_size, n)
        return normalize(x[start:stop]), y[start:stop]

    starts = tf.data.Dataset.range(0, n, batch_size)
    return _batches(starts, make_batch)


def input_pipeline(
    images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int, mean, std, seed: int
) -> TrainBatches:
    """One epoch's training batches (contract.Backend; benchmark.perf)."""
    return TrainBatches(
        images, labels, batch_size, len(labels) // batch_size, padding, Normalizer(mean, std), seed=seed
    )


def synchronize() -> None:
    """Nothing to wait for: reading a tf.data batch returns only once it is computed."""
