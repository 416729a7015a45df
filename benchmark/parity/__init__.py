"""Cross-framework parity audit: what differs between the PyTorch and the Keras arm.

Two commands (see README, *Known differences*):

- ``python -m benchmark.parity.params [--out FILE.csv]``: parameter counts of every
  model x input size x classes in both frameworks (:mod:`benchmark.parity.params`).
- ``python -m benchmark.parity model=resnet50 dataset=cifar10 [--out DIR | out=DIR]``:
  builds both arms of one configuration through the backends' own code and writes
  ``parity_<model>_<dataset>.md`` and ``.csv`` listing every difference it detects
  (:mod:`benchmark.parity.audit`).

Both frameworks live in one process here; :mod:`benchmark.parity.frameworks` imports
them in the only order that works (torch/torchvision before TensorFlow). This package
imports nothing heavy itself, so ``import benchmark.parity`` stays cheap.
"""
