"""Input pipeline over the shared uint8 cache (docs/protocol.md §3), batch-vectorized.

Augmentation (zero-padded random crop + horizontal flip) runs on whole uint8 NHWC
batches on the CPU with one seeded ``torch.Generator``, so the data order and the
crops are reproducible and checkpointable; only uint8 crosses to the accelerator,
where the batch is normalized.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from benchmark.data.stream import epoch_plan


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch, then a random horizontal flip."""
    n = images.shape[0]
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return crop_flip(images, padding, top, left, flip)


def crop_flip(
    images: torch.Tensor, padding: int, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Crop image i of the zero-padded batch at (top[i], left[i]); flip it horizontally where flip[i]."""
    n, h, w, c = images.shape
    padded = images.new_zeros((n, h + 2 * padding, w + 2 * padding, c))
    padded[:, padding : padding + h, padding : padding + w] = images
    rows = (top[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = (left[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
    cropped = padded[torch.arange(n)[:, None, None], rows, cols]  # (n, h, w, c)
    return torch.where(flip[:, None, None, None], cropped.flip(2), cropped)


class Normalizer:
    """uint8 NHWC -> float32 NCHW, (x / 255 - mean) / std, on the target device."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool = False):
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        return ((x / 255.0 - self.mean) / self.std).contiguous(memory_format=self.memory_format)


class TrainBatches:
    """Shuffled, augmented, normalized batches; drops the last incomplete batch.

    The draws come from this backend's own seeded ``torch.Generator`` (checkpointed), or,
    with `shared_stream` (protocol.data=aligned), from the framework-neutral
    benchmark.data.stream, which every backend applies identically."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        padding: int,
        normalize: Normalizer,
        seed: int,
        shared_stream: bool = False,
    ):
        self.images, self.labels = images, torch.from_numpy(np.asarray(labels, np.int64))
        self.batch_size, self.padding, self.normalize = batch_size, padding, normalize
        self.seed, self.shared_stream = seed, shared_stream
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of 0-based `epoch`."""
        return self._shared(epoch) if self.shared_stream else iter(self)

    def _shared(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = epoch_plan(self.seed, epoch, len(self.labels), self.padding)
        device = self.normalize.device
        for b in range(len(self)):
            idx, top, left, flip = plan.batch(b, self.batch_size)
            images = crop_flip(
                torch.from_numpy(self.images[idx]),
                self.padding,
                torch.from_numpy(top).long(),
                torch.from_numpy(left).long(),
                torch.from_numpy(flip),
            )
            yield self.normalize(images), self.labels[idx].to(device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.labels), generator=self.generator)
        device = self.normalize.device
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            # sorted indices read the (memory-mapped) cache sequentially; order within
            # a batch does not matter to the loss
            idx = idx.sort().values
            images = torch.from_numpy(self.images[idx.numpy()])
            images = random_crop_flip(images, self.padding, self.generator)
            yield self.normalize(images), self.labels[idx].to(device, non_blocking=True)


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, normalize: Normalizer):
    """In-order batches with no augmentation, keeping the last partial batch."""
    targets = torch.from_numpy(np.asarray(labels, np.int64))
    for start in range(0, len(targets), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        yield normalize(x), targets[start : start + batch_size].to(normalize.device, non_blocking=True)


def input_pipeline(
    images: np.ndarray, labels: np.ndarray, batch_size: int, padding: int, mean, std, seed: int
) -> TrainBatches:
    """One epoch's training batches on the default device (contract.PerfBackend; benchmark.perf)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return TrainBatches(images, labels, batch_size, padding, Normalizer(mean, std, device), seed=seed)


def synchronize() -> None:
    """Wait for the default accelerator, so a clock read after it includes its work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
