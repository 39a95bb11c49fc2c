"""The paper's valid-convolution U-Net (Ronneberger et al. 2015, Fig. 1), depth and width configurable.

The network knows no files and no tiling: it maps an input tile of a valid size (see `geometry`) to class
logits over the centre crop the valid convolutions leave. This file imports only torch at its top: it is
the architecture source of the bioimage.io packages `unetflow export` writes, where it runs without unetflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from unetflow.config.model import ModelConfig
    from unetflow.geometry import UNetGeometry


NORMS = ("none", "batch")
"""Normalisation after each 3x3 convolution: none (the paper) or batch normalisation, whose running
statistics make it a fixed per-channel affine map at prediction, so overlap-tiling stays seamless (a per-tile
normalisation such as instance or group norm would not)."""


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters that define the network (stored in every checkpoint).

    Depth and width have no default here: the config's `model:` section (unetflow.config.model.ModelConfig) is
    where they are stated once (`from_section`); the paper's net is UNetConfig(depth=4, base_channels=64).
    """

    depth: int
    base_channels: int
    in_channels: int = 1
    num_classes: int = 2
    dropout: float = 0.5
    norm: str = "none"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r} is not one of {', '.join(NORMS)}")

    @classmethod
    def from_section(cls, section: ModelConfig) -> UNetConfig:
        """The network the config's `model:` section describes."""
        return cls(
            depth=section.depth,
            base_channels=section.base_channels,
            dropout=section.dropout,
            norm=section.norm,
        )

    @property
    def geometry(self) -> UNetGeometry:
        """The tile geometry of this network."""
        from unetflow.geometry import UNetGeometry

        return UNetGeometry(self.depth)

    def to_dict(self) -> dict[str, int | float | str]:
        """Plain-dict form for checkpoints and logs."""
        return asdict(self)


def conv_unit(in_channels: int, out_channels: int, norm: str) -> list[nn.Module]:
    """One 3x3 valid convolution, its normalisation (one of NORMS) and a ReLU."""
    unit: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size=3)]
    if norm == "batch":
        unit.append(nn.BatchNorm2d(out_channels))
    return [*unit, nn.ReLU(inplace=True)]


class DoubleConv(nn.Sequential):
    """Two 3x3 valid convolutions, each followed by the normalisation (if any) and a ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "none") -> None:
        super().__init__(
            *conv_unit(in_channels, out_channels, norm), *conv_unit(out_channels, out_channels, norm)
        )


def center_crop(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the spatial centre of `features` to `size` (the paper's copy-and-crop)."""
    height, width = features.shape[-2:]
    top = (height - size[0]) // 2
    left = (width - size[1]) // 2
    return features[..., top : top + size[0], left : left + size[1]]


class UNet(nn.Module):
    """Contracting path of DoubleConv + 2x2 max-pool, expansive path of 2x2 up-convolution + crop-concat.

    Built from a `config`, or from UNetConfig's fields as keywords (`UNet(depth=2, base_channels=4)`): how a
    bioimage.io package's architecture entry (a callable and plain keyword arguments) builds it.
    """

    def __init__(self, config: UNetConfig | None = None, **fields: int | float) -> None:
        super().__init__()
        if config is not None and fields:
            raise TypeError(f"give UNet a config or its fields as keywords, not both ({sorted(fields)})")
        self.config = config or UNetConfig(**fields)
        widths = [self.config.base_channels * 2**level for level in range(self.config.depth + 1)]
        self.down = nn.ModuleList()
        in_channels = self.config.in_channels
        for width in widths[:-1]:
            self.down.append(DoubleConv(in_channels, width, self.config.norm))
            in_channels = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], self.config.norm)
        self.dropout = nn.Dropout2d(self.config.dropout)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for level in reversed(range(self.config.depth)):
            self.up.append(nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2))
            self.up_conv.append(DoubleConv(2 * widths[level], widths[level], self.config.norm))
        self.head = nn.Conv2d(widths[0], self.config.num_classes, kernel_size=1)
        self.label_offset: tuple[float, float] = (0.0, 0.0)
        """(dy, dx) px by which prediction moves the raw image before the net: the offset of the training
        labels from the raw image's boundaries (`unetflow.data.alignment`), recorded in the checkpoint."""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal initialisation: std sqrt(2 / N) with N = k * k * C_in incoming nodes, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                nn.init.normal_(module.weight, mean=0.0, std=(2.0 / fan_in) ** 0.5)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, K, out, out) for an input of shape (N, C, in, in) of a valid size."""
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level == self.config.depth - 1:
                x = self.dropout(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = up(x)
            x = conv(torch.cat([center_crop(skip, x.shape[-2:]), x], dim=1))
        return self.head(x)


def count_conv_layers(model: UNet) -> int:
    """Number of convolution layers (23 for the paper's depth-4 net, up-convolutions included)."""
    return sum(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules())
