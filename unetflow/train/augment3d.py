"""Training tiles of a 3-D net with the paper's augmentation carried to 3-D, sampled on the compute device.

As in 2-D (unetflow.train.augment) every geometric part of a tile's transform composes into ONE sampling
grid, so raw, labels and weights are each interpolated once (trilinear; labels nearest) and the volume is
mirrored wherever the grid leaves it:

- position: the output crop anywhere inside its run of consecutive training slices (drawn in proportion to
  each run's annotated voxels), the input around it mirrored at the run's ends;
- rotation about z by any angle and flips of every axis and transposition of y and x; where the data are
  isotropic (the net joins z from its first level), also any permutation of z, y and x (the 48 symmetries
  of the cube), and never where z is coarser: a section is not a column of pixels;
- elastic deformation: N(0, std) displacement vectors on a coarse g x g x g grid over the tile, interpolated
  tricubically (separably, as the paper's bicubic 2-D field); `std` is in in-plane pixels, so along a coarser
  z it is `std / step` slices (the same physical displacement);
- grey values: gamma, contrast and brightness per tile, after warping.

All random numbers come from the caller's `torch.Generator`, so a seed fixes a batch whatever the device.
`tile_sampler` builds the sampler a training run needs: this one for a 3-D net, unetflow.train.augment's
TileSampler (with context slices where the 2-D net reads them) for a 2-D net.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from unetflow.config.model import AugmentConfig
from unetflow.geometry import NetGeometry
from unetflow.train.augment import (
    LABELS,
    RAW,
    WEIGHTS,
    TileBatch,
    TileSampler,
    adjust_gray_values,
    bicubic_weights,
)
from unetflow.train.sources import TrainingData

PERMUTATIONS = list(itertools.permutations(range(3)))


@dataclass(frozen=True)
class VolumeTileParams:
    """The random draw behind a 3-D batch (CPU tensors).

    `source` is each tile's run, `start` (B, 3) its input tile's first voxel (z, y, x) in the run (negative
    where it starts in the mirrored border), `matrix` (B, 3, 3) maps tile offsets (z, y, x) from the tile
    centre to run offsets (rotation about z, flips, axis permutation), `coarse` (B, 3, g, g, g) the elastic
    displacements (z, y, x) in voxels; the grey-value factors per tile, or None where none apply.
    """

    source: torch.Tensor
    start: torch.Tensor
    matrix: torch.Tensor
    coarse: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    gamma: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        """Number of tiles."""
        return int(self.source.numel())

    def pick(self, tiles: torch.Tensor) -> VolumeTileParams:
        """The draws of some tiles of the batch."""

        def take(values: torch.Tensor | None) -> torch.Tensor | None:
            return None if values is None else values[tiles]

        return VolumeTileParams(
            source=self.source[tiles],
            start=self.start[tiles],
            matrix=self.matrix[tiles],
            coarse=take(self.coarse),
            contrast=take(self.contrast),
            brightness=take(self.brightness),
            gamma=take(self.gamma),
        )


def volume_matrices(
    angle: torch.Tensor, flips: torch.Tensor, permutation: torch.Tensor, swap: torch.Tensor
) -> torch.Tensor:
    """(B, 3, 3) float64 maps of (z, y, x) offsets: flip the axes (`flips` (B, 3) 0/1 for z, y, x), permute
    them (`permutation` (B,) indices into PERMUTATIONS), transpose y and x (`swap` (B,) 0/1), then rotate
    about z by `angle`. Right angles give exact 0/+-1 entries."""
    angle = angle.to(torch.float64)
    cos, sin = torch.cos(angle), torch.sin(angle)
    right = (cos.abs() < 1e-6) | (sin.abs() < 1e-6)
    cos, sin = torch.where(right, cos.round(), cos), torch.where(right, sin.round(), sin)
    zeros, ones = torch.zeros_like(cos), torch.ones_like(cos)
    rotation = torch.stack(
        [
            torch.stack([ones, zeros, zeros], -1),
            torch.stack([zeros, cos, -sin], -1),
            torch.stack([zeros, sin, cos], -1),
        ],
        -2,
    )
    orders = torch.tensor(PERMUTATIONS)[permutation]
    permute = functional.one_hot(orders, 3).to(torch.float64)  # row i picks axis orders[i]
    transpose = torch.where(
        swap[:, None, None].to(torch.bool),
        torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64),
        torch.eye(3, dtype=torch.float64),
    )
    mirror = torch.diag_embed(1.0 - 2.0 * flips.to(torch.float64))
    return rotation @ transpose @ permute @ mirror


def upsample_displacement_3d(coarse: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Per-voxel displacements (B, 3, Z, Y, X) from coarse vectors (B, 3, g, g, g), interpolated
    tricubically with align_corners (the field passes through the coarse points on the tile's corners)."""
    grid = coarse.shape[-1]
    weights = [bicubic_weights(length, grid, device=coarse.device) for length in shape]
    return torch.einsum("bkpqr,zp,yq,xr->bkzyx", coarse.to(torch.float32), *weights)


class VolumeTileSampler:
    """Draws augmented 3-D training batches of `batch_size` tiles from runs of consecutive slices.

    `raw`, `labels` and `weights` hold one (z, y, x) array per run (any shapes). A tile's output crop
    (`output_size`: (z, in-plane)) lies inside its run where the run is large enough (any position,
    uniformly); the input (`input_size`) is mirrored past the run's ends; where a run is smaller than the
    output, the mirrored part of the crop weighs 0. `step` is the slice spacing in in-plane pixels (z over y
    of the voxel size), `isotropic` whether the tiles may be turned so that z changes place with y or x.
    """

    def __init__(
        self,
        raw: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        weights: Sequence[np.ndarray],
        *,
        input_size: tuple[int, int],
        output_size: tuple[int, int],
        config: AugmentConfig | None = None,
        device: torch.device | str | None = None,
        batch_size: int = 1,
        step: float = 1.0,
        isotropic: bool = False,
    ) -> None:
        self.config = config if config is not None else AugmentConfig()
        if self.config.interpolation == "bicubic":
            raise ValueError(
                "3-D tiles are interpolated trilinearly: set train.augment.interpolation bilinear"
            )
        if not raw or not len(raw) == len(labels) == len(weights):
            raise ValueError("give one raw, label and weight array per run")
        self.device = torch.device(device or "cpu")
        self.sources = [
            torch.stack([torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (r, w, lab)]).to(
                self.device
            )
            for r, w, lab in zip(raw, weights, labels, strict=True)
        ]
        if any(source.ndim != 4 for source in self.sources):
            raise ValueError("every run must be a (z, y, x) array")
        self.input_size = (input_size[0], input_size[1], input_size[1])
        self.output_size = (output_size[0], output_size[1], output_size[1])
        self.margin = tuple((i - o) // 2 for i, o in zip(self.input_size, self.output_size, strict=True))
        self.batch_size, self.step, self.isotropic = batch_size, float(step), isotropic
        self._extents = torch.tensor([list(source.shape[1:]) for source in self.sources])
        annotated = torch.stack([(source[WEIGHTS] > 0).sum().cpu() for source in self.sources])
        if float(annotated.sum()) == 0:
            raise ValueError("no run has a voxel of non-zero weight: there is nothing to train on")
        self._cumulative = torch.cumsum(annotated.to(torch.float64), 0)

    def draw(self, generator: torch.Generator | None = None) -> VolumeTileParams:
        """Draw the random parameters of one batch; the same draws whatever the switches."""
        config, batch = self.config, self.batch_size
        cpu = {"generator": generator, "device": generator.device if generator is not None else None}
        picked = torch.rand(batch, dtype=torch.float64, **cpu).cpu() * float(self._cumulative[-1])
        source = torch.searchsorted(self._cumulative, picked, right=True).clamp(max=len(self.sources) - 1)
        lengths = self._extents[source]
        output, margin = torch.tensor(self.output_size), torch.tensor(self.margin)
        low, high = (lengths - output).clamp(max=0), (lengths - output).clamp(min=0)
        offset = (torch.rand((batch, 3), dtype=torch.float64, **cpu).cpu() * (high - low + 1)).floor().long()
        start = low + offset.minimum(high - low) - margin
        angle = torch.rand(batch, dtype=torch.float64, **cpu).cpu() * (2 * math.pi)
        flips = torch.randint(0, 2, (batch, 3), **cpu).cpu()
        swap = torch.randint(0, 2, (batch,), **cpu).cpu()
        permutation = torch.randint(0, len(PERMUTATIONS), (batch,), **cpu).cpu()
        grid = config.elastic_grid
        coarse = torch.randn((batch, 3, grid, grid, grid), **cpu).cpu() * config.elastic_std
        coarse[:, 0] /= self.step  # the same physical displacement along a coarser z
        gray = {
            name: low_high[0]
            + torch.rand(batch, dtype=torch.float64, **cpu).cpu() * (low_high[1] - low_high[0])
            for name, low_high in (("contrast", config.contrast), ("brightness", config.brightness))
        }
        gamma = torch.exp(
            math.log(config.gamma[0])
            + torch.rand(batch, dtype=torch.float64, **cpu).cpu()
            * math.log(config.gamma[1] / config.gamma[0])
        )
        active = config.enabled
        flipping = active and config.flip
        matrix = volume_matrices(
            angle if active and config.rotate else torch.zeros_like(angle),
            flips if flipping else torch.zeros_like(flips),
            permutation if flipping and self.isotropic else torch.zeros_like(permutation),
            swap if flipping else torch.zeros_like(swap),
        )
        neutral = {"contrast": (1.0, 1.0), "brightness": (0.0, 0.0), "gamma": (1.0, 1.0)}
        factors = {**gray, "gamma": gamma}
        return VolumeTileParams(
            source=source,
            start=start,
            matrix=matrix,
            coarse=coarse if active and config.elastic_std > 0 else None,
            **{
                name: values if active and tuple(getattr(config, name)) != neutral[name] else None
                for name, values in factors.items()
            },
        )

    def sample(self, generator: torch.Generator | None = None) -> TileBatch:
        """One augmented batch on the device, fixed by the generator's state."""
        return self.render(self.draw(generator))

    def coordinates(self, params: VolumeTileParams) -> torch.Tensor:
        """Run voxel coordinates (B, Z, Y, X, 3) ordered (z, y, x) that each input-tile voxel samples."""
        size = self.input_size
        offsets = [torch.arange(n, dtype=torch.float32, device=self.device) - (n - 1) / 2 for n in size]
        centre = params.start.to(torch.float64) + torch.tensor(size, dtype=torch.float64)[None] / 2 - 0.5
        matrix = params.matrix.to(device=self.device, dtype=torch.float32)
        coordinates = centre.to(device=self.device, dtype=torch.float32)[:, None, None, None, :]
        for axis, values in enumerate(offsets):
            shape = [1, 1, 1]
            shape[axis] = -1
            coordinates = coordinates + values.view(1, *shape, 1) * matrix[:, None, None, None, :, axis]
        if params.coarse is not None:
            displacement = upsample_displacement_3d(params.coarse.to(self.device), size)
            coordinates = coordinates + displacement.permute(0, 2, 3, 4, 1)
        return coordinates

    def render(self, params: VolumeTileParams) -> TileBatch:
        """Cut and transform the tiles of `params`, one run at a time: one interpolation per channel."""
        parts = []
        for number in torch.unique(params.source).tolist():
            tiles = torch.nonzero(params.source == number).flatten()
            parts.append((tiles, self._render_run(number, params.pick(tiles))))
        shapes = {name: getattr(parts[0][1], name) for name in ("raw", "labels", "weights")}
        raw, labels, weights = (
            torch.empty((params.batch_size, *value.shape[1:]), dtype=value.dtype, device=self.device)
            for value in shapes.values()
        )
        for tiles, part in parts:
            index = tiles.to(self.device)
            raw[index], labels[index], weights[index] = part.raw, part.labels, part.weights
        return TileBatch(raw=raw, labels=labels, weights=weights, params=params)  # type: ignore[arg-type]

    def _render_run(self, number: int, params: VolumeTileParams) -> TileBatch:
        """The tiles of run `number`."""
        run = self.sources[number]
        lengths = torch.tensor(run.shape[1:], dtype=torch.float32, device=self.device)
        coordinates = self.coordinates(params)
        scale = 2.0 / (lengths - 1).clamp(min=1.0)
        normalised = (coordinates * scale - 1.0).flip(-1)  # grid_sample wants (x, y, z)
        stack = run[None].expand(params.batch_size, -1, -1, -1, -1)
        sample = {"padding_mode": "reflection", "align_corners": True}
        raw = functional.grid_sample(stack[:, RAW : RAW + 1], normalised, mode="bilinear", **sample)
        raw = adjust_gray_values(
            raw, contrast=params.contrast, brightness=params.brightness, gamma=params.gamma
        )
        # weights and labels only where the net's output lies: the same points, a fraction of the tile's
        crop = (slice(None), *(slice(m, m + o) for m, o in zip(self.margin, self.output_size, strict=True)))
        inner = normalised[crop].contiguous()
        weights = functional.grid_sample(stack[:, WEIGHTS : WEIGHTS + 1], inner, mode="bilinear", **sample)
        labels = functional.grid_sample(stack[:, LABELS : LABELS + 1], inner, mode="nearest", **sample)
        # a run smaller than the tile: the mirrored part of the output does not train
        inside = ((coordinates[crop] > -0.5) & (coordinates[crop] < lengths - 0.5)).all(dim=-1)
        return TileBatch(
            raw=raw.contiguous(),
            labels=labels[:, 0].round().to(torch.int64),
            weights=(weights[:, 0] * inside).contiguous(),
            params=params,  # type: ignore[arg-type]
        )


def tile_sampler(
    net: NetGeometry,
    data: Sequence[TrainingData],
    *,
    tile: int,
    config: AugmentConfig,
    device: torch.device,
    batch_size: int,
    step: float = 1.0,
) -> TileSampler | VolumeTileSampler:
    """The sampler of a training run: 3-D tiles of the runs for a 3-D net, 2-D tiles (with the context
    slices of each run as channels, where the net reads them) for a 2-D net; `tile` is the in-plane output
    asked for, `step` the slice spacing in in-plane pixels."""
    (input_z, output_z), (input_size, output_size) = net.training_tile(tile)
    arrays = [[getattr(part, name) for part in data] for name in ("raw", "labels", "weights")]
    if net.dims == 3:
        return VolumeTileSampler(
            *arrays,
            input_size=(input_z, input_size),
            output_size=(output_z, output_size),
            config=config,
            device=device,
            batch_size=batch_size,
            step=step,
            isotropic=net.axis(0).kernel(0) == 3,
        )
    single = len(data) == 1
    return TileSampler(
        *(values[0] if single else values for values in arrays),
        input_size=input_size,
        output_size=output_size,
        config=config,
        device=device,
        batch_size=batch_size,
        context=net.context,
    )
