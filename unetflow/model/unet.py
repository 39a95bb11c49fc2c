"""The paper's valid-convolution U-Net (Ronneberger et al. 2015, Fig. 1), depth and width configurable, in
2-D or 3-D.

The network knows no files and no tiling: it maps an input tile of a valid size (see `geometry`) to class
logits over the centre crop the valid convolutions leave. In 3-D (Cicek et al. 2016) every 3x3 convolution
is 3x3x3 and every 2x2 pooling 2x2x2, except at the levels where an anisotropic volume's z is much coarser
than y and x: there kernels are 1x3x3 and pooling 1x2x2 (`kernels`, `pools`; unetflow.geometry's
`anisotropic_layout` chooses them from the voxel size). A 2-D net may read `context_slices` neighbouring
slices on each side as extra input channels. This file imports only torch at its top: it is the
architecture source of the bioimage.io packages `unetflow export` writes, where it runs without unetflow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from unetflow.config.model import ModelConfig
    from unetflow.geometry import NetGeometry, UNetGeometry


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
    dims: int = 2
    """2: the paper's net on slices; 3: 3-D convolutions and pooling (Cicek et al. 2016)."""
    context_slices: int = 0
    """2-D nets: neighbouring slices read on each side as input channels (2k + 1 per image channel)."""
    kernels: Any = None
    """3-D nets: (z, y, x) kernel widths per level 0..depth (None: 3 everywhere)."""
    pools: Any = None
    """3-D nets: (z, y, x) pooling factors per pooling (None: 2 everywhere)."""

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r} is not one of {', '.join(NORMS)}")
        if self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {self.dims!r}")
        if self.context_slices < 0 or (self.context_slices and self.dims == 3):
            raise ValueError(f"context_slices ({self.context_slices}) are for 2-D nets, >= 0")
        for name in ("kernels", "pools"):  # lists from a checkpoint or package: tuples, to compare equal
            value = getattr(self, name)
            if value is not None:
                if self.dims == 2:
                    raise ValueError(f"{name} are for 3-D nets (dims 3)")
                object.__setattr__(self, name, tuple(tuple(int(v) for v in level) for level in value))
        values = {
            v
            for layout in (self.kernels, self.pools)
            if layout is not None
            for level in layout
            for v in level
        }
        if self.kernels is not None and self.pools is not None and values <= {2, 3}:
            # 3x3x3 kernels and 2x2x2 pooling throughout: the isotropic net, whose one form is None
            object.__setattr__(self, "kernels", None)
            object.__setattr__(self, "pools", None)
        expected = {"kernels": self.depth + 1, "pools": self.depth}
        for name, count in expected.items():
            value = getattr(self, name)
            if value is not None and (len(value) != count or any(len(level) != 3 for level in value)):
                raise ValueError(f"{name} {value}: give {count} (z, y, x) triples for depth {self.depth}")

    @classmethod
    def from_section(cls, section: ModelConfig, *, voxel_size: Any = None) -> UNetConfig:
        """The network the config's `model:` section describes; a 3-D net with `anisotropy: auto` takes its
        per-level kernels and pooling from the training data's `voxel_size` (z, y, x) by nnU-Net's rule."""
        layout = section.layout(voxel_size) if section.dims == 3 else (None, None)
        return cls(
            depth=section.depth,
            base_channels=section.base_channels,
            dropout=section.dropout,
            norm=section.norm,
            dims=section.dims,
            context_slices=section.context_slices,
            kernels=layout[0],
            pools=layout[1],
        )

    @property
    def net_geometry(self) -> NetGeometry:
        """The tiling geometry of this network along z, y and x."""
        from unetflow.geometry import NetGeometry

        return NetGeometry(self.depth, self.dims, self.context_slices, self.kernels, self.pools)

    @property
    def geometry(self) -> UNetGeometry:
        """The tile geometry of this network in-plane (along y and x)."""
        return self.net_geometry.plane

    @property
    def input_channels(self) -> int:
        """Channels the first convolution reads: the image's, times 2k + 1 with k context slices."""
        return self.in_channels * (2 * self.context_slices + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for checkpoints, logs and package kwargs; the fields that only a 3-D net or one
        with context sets are left out at their defaults, so a 2-D net's record is as it always was."""
        values = asdict(self)
        for name in ("dims", "context_slices", "kernels", "pools"):
            if values[name] == _THREE_D_DEFAULTS[name]:
                del values[name]
            elif isinstance(values[name], tuple):
                values[name] = [list(level) for level in values[name]]
        return values


_THREE_D_DEFAULTS = {"dims": 2, "context_slices": 0, "kernels": None, "pools": None}


LAYERS = {
    2: {"conv": nn.Conv2d, "norm": nn.BatchNorm2d, "pool": nn.MaxPool2d, "up": nn.ConvTranspose2d},
    3: {"conv": nn.Conv3d, "norm": nn.BatchNorm3d, "pool": nn.MaxPool3d, "up": nn.ConvTranspose3d},
}
"""The torch layers of a 2-D and of a 3-D net."""
Size = int | tuple[int, ...]


def conv_unit(
    in_channels: int, out_channels: int, norm: str, *, kernel: Size = 3, dims: int = 2
) -> list[nn.Module]:
    """One valid convolution (3x3, or `kernel` in 3-D), its normalisation (one of NORMS) and a ReLU."""
    unit: list[nn.Module] = [LAYERS[dims]["conv"](in_channels, out_channels, kernel_size=kernel)]
    if norm == "batch":
        unit.append(LAYERS[dims]["norm"](out_channels))
    return [*unit, nn.ReLU(inplace=True)]


class DoubleConv(nn.Sequential):
    """Two valid convolutions, each followed by the normalisation (if any) and a ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, norm: str = "none", *, kernel: Size = 3, dims: int = 2
    ) -> None:
        super().__init__(
            *conv_unit(in_channels, out_channels, norm, kernel=kernel, dims=dims),
            *conv_unit(out_channels, out_channels, norm, kernel=kernel, dims=dims),
        )


def center_crop(features: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Crop the spatial centre of `features` to `size` (the paper's copy-and-crop), along its last axes."""
    spatial = features.shape[-len(size) :]
    starts = [(have - want) // 2 for have, want in zip(spatial, size, strict=True)]
    window = tuple(slice(start, start + want) for start, want in zip(starts, size, strict=True))
    return features[(..., *window)]


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
        config, dims = self.config, self.config.dims
        widths = [config.base_channels * 2**level for level in range(config.depth + 1)]
        kernels: list[Size] = list(config.kernels or [3] * (config.depth + 1))
        pools: list[Size] = list(config.pools or [2] * config.depth)
        self.down = nn.ModuleList()
        in_channels = config.input_channels
        for level, width in enumerate(widths[:-1]):
            self.down.append(DoubleConv(in_channels, width, config.norm, kernel=kernels[level], dims=dims))
            in_channels = width
        self.pools = nn.ModuleList(LAYERS[dims]["pool"](pool) for pool in pools)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], config.norm, kernel=kernels[-1], dims=dims)
        self.dropout = (nn.Dropout3d if dims == 3 else nn.Dropout2d)(config.dropout)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for level in reversed(range(config.depth)):
            up = LAYERS[dims]["up"](
                widths[level + 1], widths[level], kernel_size=pools[level], stride=pools[level]
            )
            self.up.append(up)
            self.up_conv.append(
                DoubleConv(2 * widths[level], widths[level], config.norm, kernel=kernels[level], dims=dims)
            )
        self.head = LAYERS[dims]["conv"](widths[0], config.num_classes, kernel_size=1)
        self.label_offset: tuple[float, float] = (0.0, 0.0)
        """(dy, dx) px by which prediction moves the raw image before the net: the offset of the training
        labels from the raw image's boundaries (`unetflow.data.alignment`), recorded in the checkpoint."""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal initialisation: std sqrt(2 / N) with N = k * k * C_in incoming nodes (k * k * k * C_in
        in 3-D), zero biases."""
        for module in self.modules():
            if isinstance(module, CONVOLUTIONS):
                fan_in = module.in_channels * math.prod(module.kernel_size)
                nn.init.normal_(module.weight, mean=0.0, std=(2.0 / fan_in) ** 0.5)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, out, out) for an input (N, C, in, in) of a valid size; in 3-D (N, K, *out) for
        (N, C, *in) over (z, y, x)."""
        skips = []
        spatial = self.config.dims
        for level, (block, pool) in enumerate(zip(self.down, self.pools, strict=True)):
            x = block(x)
            if level == self.config.depth - 1:
                x = self.dropout(x)
            skips.append(x)
            x = pool(x)
        x = self.dropout(self.bottleneck(x))
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = up(x)
            x = conv(torch.cat([center_crop(skip, tuple(x.shape[-spatial:])), x], dim=1))
        return self.head(x)


CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d, nn.Conv3d, nn.ConvTranspose3d)


def count_conv_layers(model: UNet) -> int:
    """Number of convolution layers (23 for the paper's depth-4 net, up-convolutions included)."""
    return sum(isinstance(m, CONVOLUTIONS) for m in model.modules())
