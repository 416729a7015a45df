"""Cross-framework parity audit: what differs between the arms of one configuration.

Two commands (see docs/parity.md):

- ``python -m benchmark.parity.params [--out FILE.csv]``: parameter counts of every
  model x input size x classes in both frameworks (:mod:`benchmark.parity.params`).
- ``python -m benchmark.parity model=resnet50 dataset=cifar10 [--out DIR | out=DIR]``:
  builds every backend's trainer for one configuration and writes
  ``parity_<model>_<dataset>.md`` and ``.csv`` listing every difference it detects
  through the trainer contract (:mod:`benchmark.parity.audit`).

PyTorch and Keras on its default engine live in one process here, loaded in
``benchmark.backends.BACKENDS`` order, the only one that works (torch/torchvision before
TensorFlow); Keras on another engine runs in a process of its own. The modules stack
without cycles: ``arms`` (names, data-free trainers) and ``probe`` (the equivalence
probe) below ``recorded`` (the child processes), below ``equivalence`` and ``audit``,
below ``__main__``. This package imports nothing heavy itself, so ``import
benchmark.parity`` stays cheap.
"""
