"""torchvision models with the docs/protocol.md §4 stems: output shapes and feature-map sizes."""

import pytest
import torch

from benchmark.backends.pytorch.models import create_model, entry, feature_map_size, parameter_counts
from benchmark.spec.models import list_models, stem_for


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", list_models())
def test_output_shapes_and_final_map(name, size):
    for classes in (10, 100, 200):
        model = create_model(name, classes, size).eval()
        with torch.no_grad():
            out = model(torch.zeros(2, 3, size, size))
        assert out.shape == (2, classes)
    expected = stem_for(name, size).final_map
    assert feature_map_size(model, name, size) == (expected, expected)


@pytest.mark.parametrize("name", ["resnet50", "resnet18"])
def test_resnet_stems(name):
    small, large = create_model(name, 10, 32), create_model(name, 200, 64)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1) and small.conv1.padding == (1, 1)
    assert large.conv1.kernel_size == (7, 7) and large.conv1.stride == (2, 2)
    assert isinstance(small.maxpool, torch.nn.Identity) and isinstance(large.maxpool, torch.nn.Identity)
    # at 64: 4x4 map before the global pool (docs/protocol.md §4)
    assert feature_map_size(large, name, 64) == (4, 4)


def test_mobilenetv2_and_convnext_stems():
    assert create_model("mobilenetv2", 10, 32).features[0][0].stride == (1, 1)
    assert create_model("mobilenetv2", 200, 64).features[0][0].stride == (2, 2)
    c32 = create_model("convnext_tiny", 10, 32).features[0][0]
    c64 = create_model("convnext_tiny", 200, 64).features[0][0]
    assert (c32.kernel_size, c32.stride, c32.padding) == ((3, 3), (1, 1), (1, 1))
    assert (c64.kernel_size, c64.stride) == ((2, 2), (2, 2))


def test_parameter_counts_match_the_zoo():
    counts = parameter_counts(create_model("resnet50", 1000, 64))
    # torchvision's resnet50 has 25,557,032 parameters; the 64x64 stem keeps conv1 as is
    assert counts["trainable"] == 25_557_032
    assert counts["buffers"] > 0  # BatchNorm running statistics are buffers, not parameters
    assert parameter_counts(create_model("resnet18", 1000, 64))["trainable"] == 11_689_512  # torchvision's


def test_regularization_in_effect_is_the_zoos_unless_given():
    assert (entry("mobilenetv2").dropout(None), entry("mobilenetv2").dropout(0.5)) == (0.2, 0.5)
    assert (entry("convnext_tiny").drop_path(None), entry("convnext_tiny").drop_path(0.3)) == (0.1, 0.3)
    assert entry("resnet18").dropout(None) == entry("resnet18").drop_path(None) == 0.0
    assert create_model("mobilenetv2", 10, 32).classifier[0].p == 0.2
