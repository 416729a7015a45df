"""Every check of the audit, run on both arms of one configuration."""

from __future__ import annotations

from benchmark.parity.frameworks import keras  # torch first, then TensorFlow

from benchmark.parity.audit.architecture import check_architecture
from benchmark.parity.audit.arms import Finding, build_arms, preserved_global_state
from benchmark.parity.audit.categories import CATEGORIES
from benchmark.parity.audit.initializers import check_initializers
from benchmark.parity.audit.input_normalization import check_input_normalization
from benchmark.parity.audit.loss import check_loss
from benchmark.parity.audit.modes import check_modes
from benchmark.parity.audit.normalization import check_batchnorm, check_layernorm
from benchmark.parity.audit.optimizer import check_optimizer
from benchmark.parity.audit.parameters import check_parameters
from benchmark.parity.audit.precision import check_precision
from benchmark.parity.audit.regularization import check_regularization
from benchmark.parity.audit.schedule import check_schedule, keras_lrs, torch_lrs
from benchmark.parity.audit.shapes import check_shapes
from benchmark.parity.audit.weight_decay import check_weight_decay
from benchmark.schedule import Schedule


def audit(cfg, schedule: Schedule, train_images: int, train_source: str) -> list[Finding]:
    """Every finding for one configuration, in CATEGORIES order."""
    with preserved_global_state():
        a = build_arms(cfg, schedule, train_images, train_source)
        findings = []
        findings += check_parameters(a)
        findings += check_shapes(a)
        findings += check_architecture(a)
        findings += check_batchnorm(a)
        findings += check_layernorm(a)
        findings += check_initializers(a)
        findings += check_regularization(a)
        findings += check_modes(a)
        t_lrs, k_lrs = torch_lrs(a), keras_lrs(a)
        findings += check_schedule(a, t_lrs, k_lrs)
        findings += check_optimizer(a, t_lrs, k_lrs)
        findings += check_loss(a)
        findings += check_input_normalization(a)
        findings += check_precision(a)
        findings += check_weight_decay(a)  # last: overwrites the weights
        keras.backend.clear_session()
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(findings, key=lambda f: order[f.category])
