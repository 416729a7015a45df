"""The backend contract (benchmark.backends.contract) and the model registries, for every backend."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import numpy as np
import pytest

from benchmark import BenchmarkError
from benchmark.backends import BACKENDS, Backend, Trainer, load_backend
from benchmark.backends.contract import ProtocolFacts
from benchmark.data import prepare_dataset
from benchmark.spec.schedule import make_schedule
from helpers import compose

# what the native protocol aligns between the frameworks on purpose (docs/protocol.md §5, §8)
ALIGNED = ("optimizer", "weight_decay", "loss", "lr_stepping", "precision", "input_normalization", "batchnorm",
           "accumulation")


@pytest.fixture(scope="module")
def trainers(data_dir):
    """One mobilenetv2 trainer on digits per backend (BACKENDS order: torch before TensorFlow)."""
    built = {}
    for name in BACKENDS:
        cfg = compose(f"framework={name}", f"data_dir={data_dir}", "limit.train=64")
        data = prepare_dataset(cfg.dataset, cfg.data_dir)
        built[name] = load_backend(name).Trainer(cfg, data, make_schedule(cfg, 64), Path(tempfile.mkdtemp()))
    return built


def test_every_backend_implements_the_contract(trainers):
    for name, trainer in trainers.items():
        assert isinstance(load_backend(name), Backend)
        assert isinstance(trainer, Trainer), name
        assert isinstance(trainer.protocol_facts(), ProtocolFacts)
    facts = [dict(t.protocol_facts().items()) for t in trainers.values()]
    for field in ALIGNED:
        assert len({f[field] for f in facts}) == 1, field


def test_the_evaluation_path_is_deterministic_and_leaves_the_model_alone(trainers, data_dir):
    """Eval mode in every backend: no dropout, BatchNorm statistics frozen (what the audit used to check)."""
    cfg = compose(f"data_dir={data_dir}")
    images, labels = prepare_dataset(cfg.dataset, cfg.data_dir).split("val", 16)
    for name, trainer in trainers.items():
        first = trainer.predict(images, labels)
        second = trainer.predict(images, labels)
        assert first[0] == second[0] and np.array_equal(first[1], second[1]), name


def test_lr_and_update_rule_are_measured_from_each_backends_own_objects(trainers):
    lrs = {name: t.lr_trajectory(t.schedule.total_steps) for name, t in trainers.items()}
    reference = [next(iter(trainers.values())).schedule.lr_at(s) for s in range(len(next(iter(lrs.values()))))]
    for name, values in lrs.items():
        np.testing.assert_allclose(values, reference, atol=1e-7, err_msg=name)
    grads = np.random.default_rng(0).standard_normal((20, 4))
    paths = {name: t.update_trajectory(grads) for name, t in trainers.items()}
    assert all(p.shape == (20, 4) and np.abs(p).max() > 0 for p in paths.values())


@pytest.mark.parametrize("name", list(BACKENDS))
def test_registry_takes_regularization_as_arguments(name):
    load_backend(name)  # the backend first (Keras: its engine is pinned before keras is imported)
    models = importlib.import_module(f"{BACKENDS[name]}.models")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 32, 32) if name == "pytorch" else (8, 32, 32, 3)).astype(np.float32)

    def forward(model, training):
        if name == "pytorch":
            import torch

            model.train(training)
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()
        return np.asarray(model(x, training=training))

    for model_name, kwargs in (("mobilenetv2", {"drop_rate": 0.5}), ("convnext_tiny", {"drop_path_rate": 0.5})):
        model = models.create_model(model_name, 10, 32, **kwargs)
        assert not np.array_equal(forward(model, True), forward(model, True)), (model_name, "training is stochastic")
        assert np.array_equal(forward(model, False), forward(model, False)), (model_name, "eval is not")
        off = models.create_model(model_name, 10, 32, **{k: 0.0 for k in kwargs})
        assert np.array_equal(forward(off, True), forward(off, True)), (model_name, "rate 0 draws nothing")
    with pytest.raises(BenchmarkError, match="resnet50 has no dropout"):
        models.create_model("resnet50", 10, 32, drop_rate=0.1)
    with pytest.raises(BenchmarkError, match="model=nope is unknown"):
        models.create_model("nope", 10, 32)


@pytest.mark.parametrize("name", list(BACKENDS))
def test_registry_takes_the_initializer_as_an_argument(name):
    """init=... replaces the zoo's initialization on every kernel: the measured fit says which."""
    from benchmark.parity.initializers import fit_initializer

    load_backend(name)
    models = importlib.import_module(f"{BACKENDS[name]}.models")
    for init in ("kaiming_normal_fan_out", "glorot_uniform", "trunc_normal_0.02"):
        layers = models.layer_table(models.create_model("mobilenetv2", 10, 32, init=init))
        # the 1280 -> 10 head cannot tell glorot from he uniform (fans 1280 + 10 vs 1280): not asked there
        for kind in ("conv", "depthwise conv", "dense")[: 2 if init == "glorot_uniform" else 3]:
            family = [(x.kernel, *x.fans) for x in layers if x.kind == kind]
            assert fit_initializer(family)["id"] == init, (init, kind)
    with pytest.raises(BenchmarkError, match="init=orthogonal is unknown; valid: kaiming_normal_fan_out"):
        models.create_model("mobilenetv2", 10, 32, init="orthogonal")
