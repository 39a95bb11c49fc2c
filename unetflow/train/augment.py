"""Training tiles with the paper's data augmentation, sampled on the compute device.

Ronneberger et al. (2015) train on shifted, rotated, gray-value-varied and elastically deformed tiles: the
elastic part draws random displacement vectors on a coarse 3x3 grid (Gaussian, 10 px std) and interpolates
them bicubically to per-pixel displacements. Here every geometric part (tile position, rotation by any
angle, flips, elastic displacement) composes into ONE sampling grid per tile, so raw, labels and weights are
each interpolated once (`grid_sample`: raw bilinear or bicubic, labels nearest, weights bilinear), and the
slice is mirrored (NumPy's 'reflect', repeatedly where needed) wherever the grid leaves it. Gray values
(gamma, contrast, brightness) vary after warping. All random numbers come from the caller's
`torch.Generator`, so a seed fixes a batch whatever the device.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn import functional

from unetflow.config.model import AugmentConfig

ArrayLike = np.ndarray | torch.Tensor
RAW, WEIGHTS, LABELS = 0, 1, 2
WARP_MODES = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class TileParams:
    """The random draw behind a batch (CPU tensors): where each tile comes from and how it is transformed.

    `top`/`left` are the input tile's top-left corner in slice pixels (negative where it starts in the
    mirrored border); `matrix` (B, 2, 2) maps tile offsets (y, x) from the tile centre to slice offsets
    (rotation and flips); `coarse` (B, 2, g, g) holds the elastic displacement vectors (y, x) in pixels;
    the gray-value factors are per tile, or None where none apply.
    """

    slice_index: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    matrix: torch.Tensor
    coarse: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    gamma: torch.Tensor | None = None
    reverse: torch.Tensor | None = None
    """Per tile, whether a 2-D net's context slices are read in reverse order (a flip along z)."""

    @property
    def batch_size(self) -> int:
        """Number of tiles."""
        return int(self.slice_index.numel())

    @property
    def integral(self) -> bool:
        """Whether every tile pixel lands on a slice pixel (no elastic part, right-angle rotations only)."""
        return self.coarse is None and bool(torch.all(self.matrix == self.matrix.round()))


@dataclass(frozen=True)
class TileBatch:
    """A training batch on the device: raw (B, C, inp, inp) (C = 2k + 1 with k context slices), labels and
    weights (B, out, out); a 3-D batch's raw is (B, 1, inp_z, inp, inp), labels and weights (B, out_z, out,
    out) (unetflow.train.augment3d)."""

    raw: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    params: TileParams


def affine_matrices(angle: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """(B, 2, 2) float64 maps of (y, x) offsets: flip x, then flip y, then transpose, then rotate by `angle`.

    `flips` is (B, 3) of 0/1 for (x, y, transpose). Right angles give exact 0/+-1 entries.
    """
    angle = angle.to(torch.float64)
    cos, sin = torch.cos(angle), torch.sin(angle)
    right = (cos.abs() < 1e-6) | (sin.abs() < 1e-6)  # within 1e-6 rad of a right angle
    cos, sin = torch.where(right, cos.round(), cos), torch.where(right, sin.round(), sin)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    signs = 1.0 - 2.0 * flips.to(torch.float64)
    mirror = torch.diag_embed(torch.stack([signs[:, 1], signs[:, 0]], -1))
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    transpose = torch.where(flips[:, 2, None, None].to(torch.bool), swap, eye)
    return rotation @ transpose @ mirror


def bicubic_weights(length: int, grid: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """(length, grid) weights that interpolate `grid` points bicubically onto `length` pixels (align_corners),
    exactly as `F.interpolate(mode='bicubic', align_corners=True)` does along one axis."""
    identity = torch.eye(grid, dtype=torch.float32, device=device)[None, None]
    return functional.interpolate(identity, size=(length, grid), mode="bicubic", align_corners=True)[0, 0]


def upsample_displacement(coarse: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Per-pixel displacements (..., 2, H, W) from coarse vectors (..., 2, g, g), interpolated bicubically.

    With align_corners the coarse points sit on the tile's corners, edge midpoints and so on, and the
    field passes exactly through them. Bicubic interpolation is separable, so this is W_y @ coarse @ W_x^T.
    """
    rows = bicubic_weights(shape[0], coarse.shape[-2], device=coarse.device)
    cols = bicubic_weights(shape[1], coarse.shape[-1], device=coarse.device)
    return rows @ coarse.to(torch.float32) @ cols.T


def elastic_displacement(
    shape: tuple[int, int],
    *,
    grid: int = 3,
    std: float = 10.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A smooth random displacement field (2, H, W) in pixels (y, x): N(0, std) vectors on a grid x grid
    coarse grid, interpolated bicubically (the paper's elastic deformation)."""
    coarse = _randn((2, grid, grid), generator) * std
    return upsample_displacement(coarse.to(device), shape)


def warp(image: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample `image` (B, C, H, W) at pixel coordinates `grid` (B, h, w, 2) ordered (y, x) -> (B, C, h, w).

    Outside the image the image is mirrored like np.pad(mode='reflect'), repeatedly as far as needed.
    `mode` is 'bilinear', 'bicubic' or 'nearest'.
    """
    height, width = image.shape[-2:]
    _check_mirrorable(height, width)
    scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], dtype=grid.dtype, device=grid.device)
    return _grid_sample(image, grid.flip(-1) * scale - 1.0, mode)


def _check_mirrorable(height: int, width: int) -> None:
    if height < 2 or width < 2:
        raise ValueError(f"cannot mirror an image of {height}x{width} pixels: both sides must be >= 2")


def _grid_sample(image: torch.Tensor, normalised: torch.Tensor, mode: str) -> torch.Tensor:
    """grid_sample with NumPy-'reflect' mirroring: reflection padding about the corner pixels' centres."""
    if mode not in WARP_MODES:
        raise ValueError(f"warp mode must be one of {WARP_MODES}, got {mode!r}")
    return functional.grid_sample(
        image, normalised.to(image.dtype), mode=mode, padding_mode="reflection", align_corners=True
    )


def adjust_gray_values(
    raw: torch.Tensor,
    *,
    contrast: torch.Tensor | None = None,
    brightness: torch.Tensor | None = None,
    gamma: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-tile gray-value variation of raw (B, C, H, W): gamma within each tile's [min, max], then contrast
    about the tile mean, then an added brightness; each factor is a (B,) tensor or None."""
    dims = tuple(range(1, raw.ndim))

    def per_tile(values: torch.Tensor) -> torch.Tensor:
        return values.to(device=raw.device, dtype=raw.dtype).reshape(-1, *([1] * (raw.ndim - 1)))

    if gamma is not None:
        low, high = raw.amin(dim=dims, keepdim=True), raw.amax(dim=dims, keepdim=True)
        span = (high - low).clamp_min(torch.finfo(raw.dtype).tiny)
        raw = low + span * ((raw - low) / span).clamp(0.0, 1.0) ** per_tile(gamma)
    if contrast is not None:
        mean = raw.mean(dim=dims, keepdim=True)
        raw = mean + (raw - mean) * per_tile(contrast)
    if brightness is not None:
        raw = raw + per_tile(brightness)
    return raw


def _randn(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else None
    return torch.randn(shape, generator=generator, device=device).cpu()


def _rand(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else None
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float64).cpu()


def _randint(low: int, high: int, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else None
    return torch.randint(low, high, shape, generator=generator, device=device).cpu()


def _reflect(index: torch.Tensor, length: int) -> torch.Tensor:
    """Integer positions mirrored into 0..length-1 (NumPy 'reflect'), as `geometry.reflect_indices`."""
    period = 2 * (length - 1)
    index = torch.remainder(index, period)
    return torch.where(index < length, index, period - index)


def _as_stack(name: str, values: ArrayLike) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim != 3:
        raise ValueError(f"{name} must be an array of slices (n, H, W), got shape {tuple(tensor.shape)}")
    return tensor


def _as_sources(values: ArrayLike | Sequence[ArrayLike]) -> list[ArrayLike]:
    """One array of slices, or a list of them (sources of different slice shapes), as a list."""
    if isinstance(values, np.ndarray | torch.Tensor):
        return [values]
    return list(values)


def _subset(params: TileParams, tiles: torch.Tensor, slice_index: torch.Tensor) -> TileParams:
    """The draws of some tiles of a batch (`tiles`: their positions), with slice indices `slice_index`."""

    def pick(values: torch.Tensor | None) -> torch.Tensor | None:
        return None if values is None else values[tiles]

    return TileParams(
        slice_index=slice_index,
        top=params.top[tiles],
        left=params.left[tiles],
        matrix=params.matrix[tiles],
        coarse=pick(params.coarse),
        contrast=pick(params.contrast),
        brightness=pick(params.brightness),
        gamma=pick(params.gamma),
        reverse=pick(params.reverse),
    )


class TileSampler:
    """Draws augmented training batches of `batch_size` tiles from 2-D slices kept on `device`.

    Each tile's output crop (`output_size`) lies inside its slice where the slice is large enough (any
    position, uniformly); the input tile (`input_size`, the output plus the net's context margin on every
    side) is mirrored where it passes the border. `device` defaults to that of `raw_slices` when it is a
    tensor, else the CPU.

    Several sources: `raw_slices`, `label_slices` and `weight_slices` may each be a list with one array of
    slices per source (one shape within a source, any shape across them). Slices are then drawn in
    proportion to their labelled area (pixels of non-zero weight), so every annotated pixel is equally
    likely to be trained on whatever source holds it. A slice smaller than the output tile is mirrored
    like any other, but the mirrored part of its output crop weighs 0: only its own pixels train.

    With `context` k > 0 (a 2-D net with context slices) a tile's raw holds the 2k + 1 slices around its
    slice as channels, mirrored at the ends of its source's stack (a run of consecutive slices), all moved by
    the tile's one transform; with flips on, the slices are read in reverse order for half the tiles.
    """

    def __init__(
        self,
        raw_slices: ArrayLike | Sequence[ArrayLike],
        label_slices: ArrayLike | Sequence[ArrayLike],
        weight_slices: ArrayLike | Sequence[ArrayLike],
        *,
        input_size: int,
        output_size: int,
        config: AugmentConfig | None = None,
        device: torch.device | str | None = None,
        batch_size: int = 1,
        context: int = 0,
    ) -> None:
        if output_size < 1 or input_size < output_size or (input_size - output_size) % 2:
            raise ValueError(
                f"tile sizes input {input_size} / output {output_size} are inconsistent: the input must "
                "exceed the output by twice the context margin; take them from UNetGeometry.input_for_output"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        raws, labels, weights = (_as_sources(v) for v in (raw_slices, label_slices, weight_slices))
        if not raws or not len(raws) == len(labels) == len(weights):
            raise ValueError(
                f"give one array of raw, label and weight slices per source, got {len(raws)}, {len(labels)} "
                f"and {len(weights)}"
            )
        if device is None:
            device = raws[0].device if isinstance(raws[0], torch.Tensor) else "cpu"
        self.device = torch.device(device)
        self.sources = [self._source(*arrays) for arrays in zip(raws, labels, weights, strict=True)]
        self.input_size = input_size
        self.output_size = output_size
        self.margin = (input_size - output_size) // 2
        self.config = config if config is not None else AugmentConfig()
        self.batch_size = batch_size
        self.context = context
        self.raw_channels = 2 * context + 1
        centre = (input_size - 1) / 2
        self._offsets = torch.arange(input_size, dtype=torch.float32, device=self.device) - centre
        counts = [int(source.shape[0]) for source in self.sources]
        self._first = torch.tensor([0, *itertools.accumulate(counts)])
        self._extents = torch.tensor(
            [
                list(source.shape[-2:])
                for source, n in zip(self.sources, counts, strict=True)
                for _ in range(n)
            ]
        )
        areas = torch.cat([(source[:, WEIGHTS] > 0).sum(dim=(1, 2)).cpu() for source in self.sources])
        self._cumulative = torch.cumsum(areas.to(torch.float64), 0)
        self._uniform = bool(torch.all(areas == areas[0]))
        if not self._uniform and float(self._cumulative[-1]) == 0:
            raise ValueError("no slice has a pixel of non-zero weight: there is nothing to train on")

    def _source(self, raw: ArrayLike, labels: ArrayLike, weights: ArrayLike) -> torch.Tensor:
        """One source's slices on the device as (n, channels RAW / WEIGHTS / LABELS, H, W) float32."""
        stacks = [
            _as_stack(name, values)
            for name, values in (("raw_slices", raw), ("weight_slices", weights), ("label_slices", labels))
        ]
        shapes = {tuple(stack.shape) for stack in stacks}
        if len(shapes) != 1:
            raise ValueError(
                f"raw, weight and label slices must have one shape, got {[tuple(s.shape) for s in stacks]}"
            )
        count, height, width = stacks[0].shape
        if count < 1 or height < 2 or width < 2:
            raise ValueError(
                f"slices of shape {tuple(stacks[0].shape)}: need >= 1 slice of at least 2x2 pixels"
            )
        if stacks[LABELS].is_floating_point() and not torch.equal(stacks[LABELS], stacks[LABELS].round()):
            raise ValueError("label_slices must hold class indices (0 = background, 1 = cell), got fractions")
        return torch.stack([stack.to(torch.float32) for stack in stacks], dim=1).to(self.device)

    @property
    def source(self) -> torch.Tensor:
        """The slices of the first source (n, channels, H, W): of the only one, in a single-source sampler."""
        return self.sources[0]

    def _locate(self, slice_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(source, index within it) of global slice indices."""
        source = torch.searchsorted(self._first, slice_index, right=True) - 1
        return source, slice_index - self._first[source]

    def draw(self, generator: torch.Generator | None = None) -> TileParams:
        """Draw the random parameters of one batch; the same draws are taken whatever the switches, so
        turning one augmentation off leaves the others' values unchanged."""
        config, batch = self.config, self.batch_size
        count = int(self._first[-1])
        if self._uniform:
            slice_index = _randint(0, count, (batch,), generator)
        else:
            total = float(self._cumulative[-1])
            drawn = torch.searchsorted(self._cumulative, _rand((batch,), generator) * total, right=True)
            slice_index = drawn.clamp(max=count - 1)
        starts = []
        for axis in (0, 1):
            lengths = self._extents[:, axis]
            if len(self.sources) == 1:  # one shape: one range for every tile
                length = int(lengths[0])
                low, high = min(0, length - self.output_size), max(0, length - self.output_size)
                starts.append(_randint(low, high + 1, (batch,), generator) - self.margin)
            else:
                length = lengths[slice_index]
                low = (length - self.output_size).clamp(max=0)
                high = (length - self.output_size).clamp(min=0)
                offset = (_rand((batch,), generator) * (high - low + 1).to(torch.float64)).floor().long()
                starts.append(low + offset.minimum(high - low) - self.margin)
        angle = _rand((batch,), generator) * (2 * math.pi)
        flips = _randint(0, 2, (batch, 3), generator)
        coarse = _randn((batch, 2, config.elastic_grid, config.elastic_grid), generator) * config.elastic_std
        gray = {
            "contrast": config.contrast[0]
            + _rand((batch,), generator) * (config.contrast[1] - config.contrast[0]),
            "brightness": config.brightness[0]
            + _rand((batch,), generator) * (config.brightness[1] - config.brightness[0]),
            "gamma": torch.exp(
                math.log(config.gamma[0])
                + _rand((batch,), generator) * math.log(config.gamma[1] / config.gamma[0])
            ),
        }
        active = config.enabled
        matrix = affine_matrices(
            angle if active and config.rotate else torch.zeros(batch, dtype=torch.float64),
            flips if active and config.flip else torch.zeros_like(flips),
        )
        neutral = {"contrast": (1.0, 1.0), "brightness": (0.0, 0.0), "gamma": (1.0, 1.0)}
        gray = {
            name: values if active and getattr(config, name) != neutral[name] else None
            for name, values in gray.items()
        }
        reverse = None
        if self.context:  # drawn last, and only with context: a net without it draws as it always did
            reverse = _randint(0, 2, (batch,), generator).bool() & (active and config.flip)
        return TileParams(
            slice_index=slice_index,
            top=starts[0],
            left=starts[1],
            matrix=matrix,
            coarse=coarse if active and config.elastic_std > 0 else None,
            reverse=reverse,
            **gray,
        )

    def sample(self, generator: torch.Generator | None = None) -> TileBatch:
        """One augmented batch (raw, labels, weights) on the device, fixed by the generator's state."""
        return self.render(self.draw(generator))

    def normalised_grid(self, params: TileParams) -> torch.Tensor:
        """The grid_sample grid (B, inp, inp, 2), ordered (x, y) in [-1, 1] over each tile's slice.

        Slice coordinate k of tile pixel (i, j) is centre_k + M_k0 dy_i + M_k1 dx_j + (W_y C_k W_x^T)_ij
        with dy, dx the offsets from the tile centre, M the rotation/flip matrix and C_k the coarse elastic
        vectors: a sum of separable terms, so the whole grid is one small matrix product U @ V. Every tile
        of `params` must come from slices of one shape (one source).
        """
        size, batch = self.input_size, params.batch_size
        height, width = self._shape_of(params)
        scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], dtype=torch.float64)  # x, y
        centre = torch.stack([params.left, params.top], dim=-1).to(torch.float64) + (size - 1) / 2
        matrix = params.matrix.to(torch.float64).flip(1)  # rows (x, y), columns (dy, dx)
        matrix = (matrix * scale[None, :, None]).to(device=self.device, dtype=torch.float32)
        offset = (centre * scale - 1.0).to(device=self.device, dtype=torch.float32)
        # V[b, j, k, :] pairs with U[i, :] = [1, dy_i, W_y[i, :]]
        columns = [
            offset[:, None, :] + matrix[:, None, :, 1] * self._offsets[None, :, None],
            matrix[:, None, :, 0].expand(batch, size, 2),
        ]
        rows = [torch.ones_like(self._offsets), self._offsets]
        if params.coarse is not None:
            grid = params.coarse.shape[-1]
            weights = bicubic_weights(size, grid, device=self.device)
            coarse = params.coarse.to(device=self.device, dtype=torch.float32).flip(1)  # (B, 2: x, y, g, g)
            coarse = coarse * scale.to(device=self.device, dtype=torch.float32)[None, :, None, None]
            columns.append(torch.einsum("nkac,jc->njka", coarse, weights))
            rows.extend(weights.unbind(1))
        u = torch.stack(rows, dim=1)  # (inp, r)
        v = torch.cat([c if c.ndim == 4 else c[..., None] for c in columns], dim=-1)  # (B, inp, 2, r)
        flat = u @ v.reshape(-1, u.shape[1]).T  # (inp, B * inp * 2)
        return flat.view(size, batch, size, 2).permute(1, 0, 2, 3)

    def _shape_of(self, params: TileParams) -> tuple[int, int]:
        """(H, W) of the slices the tiles of `params` come from (one shape: see `normalised_grid`)."""
        extents = self._extents[params.slice_index]
        if not bool(torch.all(extents == extents[0])):
            raise ValueError("the tiles come from slices of several shapes; take them one source at a time")
        return int(extents[0, 0]), int(extents[0, 1])

    def coordinates(self, params: TileParams) -> torch.Tensor:
        """Slice pixel coordinates (B, inp, inp, 2) ordered (y, x) that each input-tile pixel samples."""
        height, width = self._shape_of(params)
        scale = torch.tensor([(width - 1) / 2.0, (height - 1) / 2.0], device=self.device)
        return ((self.normalised_grid(params) + 1.0) * scale).flip(-1)

    def render(self, params: TileParams) -> TileBatch:
        """Cut and transform the tiles described by `params`: one interpolation per channel, or an exact
        gather where every pixel lands on a slice pixel (no elastic part, right-angle rotations); with
        several sources, one source's tiles at a time."""
        if len(self.sources) == 1:
            return self._render_source(0, params, params)
        source, local = self._locate(params.slice_index)
        parts = []
        for number in torch.unique(source).tolist():
            tiles = torch.nonzero(source == number).flatten()
            parts.append((tiles, self._render_source(number, _subset(params, tiles, local[tiles]), params)))
        raw, labels, weights = (
            torch.empty(
                (params.batch_size, *getattr(parts[0][1], name).shape[1:]),
                dtype=getattr(parts[0][1], name).dtype,
                device=self.device,
            )
            for name in ("raw", "labels", "weights")
        )
        for tiles, part in parts:
            index = tiles.to(self.device)
            raw[index], labels[index], weights[index] = part.raw, part.labels, part.weights
        return TileBatch(raw=raw, labels=labels, weights=weights, params=params)

    def _render_source(self, number: int, local: TileParams, params: TileParams) -> TileBatch:
        """The tiles of source `number` (`local`: their draws with indices within it); `params` is what the
        batch records."""
        source = self.sources[number]
        first = int(self._first[number])
        shifted = (
            local if first == 0 else _subset(local, torch.arange(local.batch_size), local.slice_index + first)
        )
        channels = self.raw_channels
        if self.context:  # each tile's own stack of its context slices, weights and labels
            source = self._with_context(source, local)
            local = replace(local, slice_index=torch.arange(local.batch_size))
        if local.integral:
            tiles = self._gather(source, local)
            raw, weights, labels = tiles[:, :channels], tiles[:, channels], tiles[:, channels + 1]
        else:
            index = local.slice_index
            single = local.batch_size == 1
            chosen = source.narrow(0, int(index[0]), 1) if single else source[index.to(self.device)]
            grid = self.normalised_grid(shifted)
            labels = _grid_sample(chosen[:, channels + 1 : channels + 2], grid, "nearest")[:, 0]
            if self.config.interpolation == "bilinear":
                both = _grid_sample(chosen[:, : channels + 1], grid, "bilinear")
                raw, weights = both[:, :channels], both[:, channels]
            else:
                raw = _grid_sample(chosen[:, :channels], grid, self.config.interpolation)
                weights = _grid_sample(chosen[:, channels : channels + 1], grid, "bilinear")[:, 0]
        raw = adjust_gray_values(raw, contrast=local.contrast, brightness=local.brightness, gamma=local.gamma)
        crop = slice(self.margin, self.margin + self.output_size)
        weights = weights[:, crop, crop]
        if min(source.shape[-2:]) < self.output_size:  # a small crop: its mirrored part does not train
            weights = weights * self._inside(shifted)[:, crop, crop]
        return TileBatch(
            raw=raw.contiguous(),
            labels=labels[:, crop, crop].round().to(torch.int64),
            weights=weights.contiguous(),
            params=params,
        )

    def _inside(self, params: TileParams) -> torch.Tensor:
        """(B, inp, inp) 1 where a tile pixel samples its slice itself (nearest pixel), 0 where its mirror."""
        height, width = self._shape_of(params)
        coordinates = self.coordinates(params)
        rows, columns = coordinates[..., 0], coordinates[..., 1]
        inside = (rows > -0.5) & (rows < height - 0.5) & (columns > -0.5) & (columns < width - 0.5)
        return inside.to(torch.float32)

    def _with_context(self, source: torch.Tensor, params: TileParams) -> torch.Tensor:
        """(B, 2k + 3, H, W): each tile's 2k + 1 raw slices around its own (mirrored at the stack's ends,
        reversed where the tile flips along z), then its slice's weights and labels."""
        count, k = int(source.shape[0]), self.context
        index = params.slice_index[:, None] + torch.arange(-k, k + 1)
        index = _reflect(index, count) if count > 1 else torch.zeros_like(index)
        if params.reverse is not None:
            index = torch.where(params.reverse[:, None], index.flip(1), index)
        raw = source[index.to(self.device), RAW]
        return torch.cat([raw, source[params.slice_index.to(self.device), WEIGHTS:]], dim=1)

    def _gather(self, source: torch.Tensor, params: TileParams) -> torch.Tensor:
        """Exact tiles (B, C, inp, inp) for integral params: flipped or transposed crops of mirrored slices.

        A signed permutation M either keeps the axes (slice row i <- tile row i) or swaps them (transpose);
        either way the slice rows and columns read are 1-D index vectors, mirrored like NumPy's 'reflect'.
        """
        size = self.input_size
        height, width = int(source.shape[-2]), int(source.shape[-1])
        twice = 2 * torch.arange(size) - (size - 1)  # twice the offsets from the tile centre
        matrix = params.matrix.round().to(torch.int64)
        tiles = []
        for tile in range(params.batch_size):
            swap = bool(matrix[tile, 0, 0] == 0)
            row_sign = int(matrix[tile, 0, 1] if swap else matrix[tile, 0, 0])
            col_sign = int(matrix[tile, 1, 0] if swap else matrix[tile, 1, 1])
            rows = _reflect(params.top[tile] + (row_sign * twice + size - 1) // 2, height)
            cols = _reflect(params.left[tile] + (col_sign * twice + size - 1) // 2, width)
            crop = source[int(params.slice_index[tile])].index_select(1, rows.to(self.device))
            crop = crop.index_select(2, cols.to(self.device))
            tiles.append(crop.transpose(1, 2) if swap else crop)
        return torch.stack(tiles)
