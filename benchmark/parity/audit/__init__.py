"""Cross-framework parity audit of one configuration (model x dataset x precision).

Both arms are built through the backends' own code: the PyTorch and the Keras
``Trainer`` of the configuration (model, optimizer, LR schedule, loss, input
normalization, precision policy), without any data (the trainers only see the class
count, the input size and the normalization constants), plus the unmodified
``keras.applications`` model for the zoo's own defaults. Every finding is computed
from these objects: read from the built layers/modules and optimizers, measured by
running them (initial weight statistics, one optimizer step, the update rule on a
probe vector, forward passes in train and eval mode), or, for the few things that
only exist as code, read from the backend's source (said so in the finding).

Each finding is one row: category, item, pytorch, keras, same, impact, kind. ``kind``
is ``check`` for what is in effect in the benchmark and ``info`` for context that is
not (e.g. what the Keras zoo default would have been).
"""

from __future__ import annotations

from benchmark.parity.audit.categories import CATEGORIES, INTRO
from benchmark.parity.audit.run import audit

__all__ = ["CATEGORIES", "INTRO", "audit"]
