"""The PyTorch side of the numerical-equivalence check (benchmark.parity.equivalence)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.backends.contract import Probe
from benchmark.backends.pytorch.models import canonical_state


def equivalence_probe(
    model: nn.Module,
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> Probe:
    model = model.cpu()
    dtype = next(model.parameters()).dtype  # float32, or float64 for the rounding-free comparison
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(dtype)
    y = torch.from_numpy(np.asarray(labels, np.int64))
    model.eval()
    with torch.no_grad():
        logits_eval = model(x).double().numpy()
    model.train()
    # the trainer's optimizer: coupled L2 inside torch's SGD
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = {}
    for key, p in model.named_parameters():
        if p.grad is None:
            raise RuntimeError(f"{name}: {key} got no gradient: the forward pass does not use it")
        grads[key] = p.grad.detach().double().numpy()
    optimizer.step()
    return Probe(logits_eval, float(loss.detach()), grads, canonical_state(model, name, np.float64))
