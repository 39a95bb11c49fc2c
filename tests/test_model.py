"""The paper's network: 23 convolutions, valid sizes, He initialisation; batch norm that tiles seamlessly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unetflow.model.unet import UNet, UNetConfig, count_conv_layers
from unetflow.predict import predict_array, predict_whole_slice


def test_paper_net_has_23_conv_layers_and_maps_572_to_388() -> None:
    model = UNet(UNetConfig(depth=4, base_channels=64)).eval()
    assert count_conv_layers(model) == 23
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)


@pytest.mark.parametrize(("depth", "base"), [(2, 4), (3, 8), (4, 4)])
def test_output_size_matches_geometry(depth: int, base: int) -> None:
    config = UNetConfig(depth=depth, base_channels=base)
    geometry = config.geometry
    size = geometry.valid_input(100)
    with torch.inference_mode():
        out = UNet(config).eval()(torch.zeros(2, 1, size, size))
    assert out.shape == (2, 2, geometry.output_size(size), geometry.output_size(size))


def test_he_normal_init_std() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=4, base_channels=32))
    conv = model.down[2][0]  # 64 -> 128 channels, 3x3: N = 9 * 64
    expected = math.sqrt(2.0 / (9 * 64))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert torch.all(conv.bias == 0)


def test_dropout_only_in_training_mode() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=2, base_channels=4, dropout=0.5))
    x = torch.randn(1, 1, model.config.geometry.valid_input(40), model.config.geometry.valid_input(40))
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_batch_norm_follows_every_3x3_convolution() -> None:
    model = UNet(UNetConfig(depth=4, base_channels=4, norm="batch"))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 18  # 9 double convolutions
    assert count_conv_layers(model) == 23
    with pytest.raises(ValueError, match="norm 'group' is not one of none, batch"):
        UNet(UNetConfig(depth=2, base_channels=4, norm="group"))


def test_batch_norm_net_overlap_tiles_seamlessly_at_prediction() -> None:
    """Running statistics make batch norm a fixed affine map in eval mode: tiling must not change a pixel."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=3, base_channels=4, norm="batch"))
    size = model.config.geometry.valid_input(40)
    with torch.no_grad():
        for _ in range(3):  # running statistics away from their initial 0 and 1
            model(torch.randn(2, 1, size, size) * 3 + 1)
    model.eval()
    assert not torch.allclose(model.down[0][1].running_var, torch.ones(4))
    image = np.random.default_rng(4).random((61, 77)).astype(np.float32)
    whole = predict_whole_slice(model, image)
    for stride in (8, 24):
        tiled = predict_array(model, image, mean=0.0, std=1.0, stride=stride, device="cpu")
        np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)
