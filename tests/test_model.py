"""The paper's network: 23 convolutions, valid sizes, He initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from unetflow.model import UNet, UNetConfig, count_conv_layers


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
