"""One place per model: the neutral ModelSpec, one registration per backend, one conf/model file
(docs/architecture.md "Add a model"); and each registered model is the same network in every backend."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from helpers import CONF_DIR, compose

from benchmark import BenchmarkError
from benchmark.backends import BACKENDS, load_backend
from benchmark.spec.config import check_values
from benchmark.spec.models import SPECS, Registration, Registry, list_models, spec


def registry_module(backend: str):
    load_backend(backend)  # the backend first (Keras: its engine is pinned before keras is imported)
    return importlib.import_module(f"{BACKENDS[backend]}.models")


def test_conf_model_names_the_registered_models():
    files = sorted(Path(CONF_DIR, "model").glob("*.yaml"))
    assert sorted(path.stem for path in files) == sorted(list_models())
    for path in files:
        assert yaml.safe_load(path.read_text()) == {"name": path.stem}, path


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_backend_registers_exactly_the_neutral_models(backend):
    models = registry_module(backend)
    assert models.REGISTRY.names() == list_models()
    for name in list_models():
        assert models.entry(name).spec is SPECS[name]


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_registration_without_a_neutral_spec_fails_when_it_is_made(backend):
    models = registry_module(backend)
    with pytest.raises(BenchmarkError, match=r"registers model=vgg16, which has no ModelSpec .*valid: resnet50"):
        models.register_model("vgg16", initializers="")
    with pytest.raises(BenchmarkError, match="registers model=resnet50 twice"):
        models.register_model("resnet50", initializers="")


def test_a_missing_registration_is_named():
    registry = Registry("demo", "demo.models")
    # the decorated value lands in the entry field named by the third argument: here, no builder at all
    registry.register(Registration, "resnet50", "initializers")("the zoo's own")
    assert registry.names() == ["resnet50"] != list_models()
    with pytest.raises(
        BenchmarkError, match="model=mobilenetv2 has no demo registration; add one with @register_model in demo.models"
    ):
        registry["mobilenetv2"]
    with pytest.raises(BenchmarkError, match="model=nope is unknown; valid: resnet50$"):
        registry["nope"]


def test_a_model_name_without_a_spec_is_a_one_line_config_error():
    cfg = compose("model.name=vgg16")
    with pytest.raises(BenchmarkError) as error:
        check_values(cfg)
    assert str(error.value) == f"model.name=vgg16 is unknown; valid: {', '.join(list_models())}"
    check_values(compose("model=resnet18"))


@pytest.mark.parametrize(
    "backend,zoo",
    [
        ("pytorch", {"mobilenetv2": (0.2, 0.0), "convnext_tiny": (0.0, 0.1)}),
        ("keras", {"mobilenetv2": (0.0, 0.0), "convnext_tiny": (0.0, 0.0)}),
    ],
)
def test_regularization_in_effect(backend, zoo):
    """The zoo's own rates for None (Keras' zoo has neither of torchvision's); a given rate
    where the network has the layer; 0 where it has none."""
    models = registry_module(backend)
    for name in list_models():
        e = models.entry(name)
        assert (e.dropout(None), e.drop_path(None)) == zoo.get(name, (0.0, 0.0)), name
        assert e.dropout(0.3) == (0.0 if spec(name).dropout is None else 0.3)
        assert e.drop_path(0.3) == (0.0 if spec(name).drop_path is None else 0.3)


@pytest.mark.parametrize("name", list_models())
def test_the_backends_build_the_same_network(name):
    """What the parity tools compare, from the registrations alone: block shapes by label,
    trainable parameters within the spec's tolerance, BatchNorm statistics, and under the
    aligned architecture the same tensors by torchvision state_dict name and shape."""
    built = {}
    for backend in ("pytorch", "keras"):  # torchvision before TensorFlow
        models = registry_module(backend)
        native, aligned = models.create_model(name, 10, 32), models.create_model(name, 10, 32, architecture="aligned")
        built[backend] = (
            models.block_shapes(native, name, 32),
            models.parameter_counts(native),
            {k: tuple(v) for k, v in models.canonical_shapes(aligned, name).items()},
        )
    (t_blocks, t_counts, t_shapes), (k_blocks, k_counts, k_shapes) = built["pytorch"], built["keras"]
    assert [label for label, _ in t_blocks] == [*spec(name).blocks, "pooled", "logits"]
    assert t_blocks == k_blocks
    diff_pct = abs(k_counts["trainable"] - t_counts["trainable"]) / t_counts["trainable"] * 100
    assert diff_pct < spec(name).param_tolerance_pct
    assert k_counts["buffers"] == t_counts["buffers"]
    assert t_shapes == k_shapes
