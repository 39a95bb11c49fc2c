"""Synthetic serial-section EM of neural tissue with exact labels, for the default run without a download.

Each slice is a tessellation of touching cells (the power diagram of a random packing of disks of log-normal
sizes, its boundaries made wavy by a smooth displacement field) separated by dark membranes whose thickness
varies per boundary and along it, with wider dark gaps at some junctions. Cells carry dark, striped
mitochondria-like ellipses and ring-shaped vesicles that belong to the cell interior in the labels, as in ISBI
2012. The raw image adds per-cell shading, grain, an illumination gradient with a few dark smudges, a Gaussian
point-spread function and Gaussian plus shot noise; the labels are the truth before any of that. Slice k is
drawn from its own generator spawned from `seed`, so it is the same whatever the number of slices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from scipy import fft
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

MIN_SPATIAL_SIZE = 16
CYTOPLASM_LEVEL = 150.0
MEMBRANE_LEVEL = 52.0
MITOCHONDRION_LEVEL = 98.0
NEIGHBOURS = 6
CHUNK_PIXELS = 1 << 17
SIZE_SPREAD = 0.55
DISK_COVER = 0.5
CLEARANCE = 0.9
DART_TRIES = 40
GAP_REACH = 2.5
GAP_BOUNDARY = 0.7
SMUDGES_PER_PIXEL = 1.0e-5
WARP = ((0.28, 0.6), (0.04, 0.2))
VESICLES = ((2.0, 38.0), (2.8, 42.0), (3.6, 40.0))
MIN_BORDER_PIECE = 8
FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)


def interior_mask(labels: np.ndarray) -> np.ndarray:
    """The binary cell-interior mask of an instance-label volume (True inside cells, False on membranes)."""
    return np.asarray(labels) > 0


def synthesize_volume(
    *,
    shape: tuple[int, int, int],
    seed: int,
    cell_diameter: float = 40.0,
    membrane_width: tuple[float, float] = (2.0, 5.0),
    noise: float = 8.0,
    blur: float = 1.0,
    organelles: float = 1.0,
    membrane_contrast: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """An EM-like (raw uint8, instance labels uint32) pair of `shape` (z, y, x); labels 0 are membrane.

    `cell_diameter` is the diameter in pixels of a disk of the mean cell area (membrane share included; the
    sizes are skewed, so the median cell is smaller), `membrane_width` the (min, max) full membrane thickness
    in pixels, `noise` the noise sd in grey levels at mid-grey (Gaussian read noise plus Poisson shot noise
    that grows with brightness), `blur` the sd in pixels of the Gaussian point-spread function and
    `organelles` a multiplier of the density of mitochondria and vesicles (0 for none) and
    `membrane_contrast` how dark the membranes are against the cytoplasm (1 the default look, 0.5 half as
    dark, 0 as bright as the cytoplasm: another stain or microscope, for fine-tuning). Cell ids run 1..n
    over the whole volume, slice after slice; the same `seed` gives bit-identical output.
    """
    depth, height, width = _check_shape(shape)
    look = check_look(
        seed=seed,
        cell_diameter=cell_diameter,
        membrane_width=membrane_width,
        noise=noise,
        blur=blur,
        organelles=organelles,
        membrane_contrast=membrane_contrast,
    )
    diameter, (thin, thick), contrast = look.diameter, look.widths, look.contrast
    noise_sd, blur_sd, organelle_density = look.noise, look.blur, look.organelles

    raw = np.empty((depth, height, width), dtype=np.uint8)
    labels = np.empty((depth, height, width), dtype=np.uint32)
    next_id = 1
    for k in range(depth):
        # Separate streams for geometry, texture + acquisition and organelles: changing one knob (e.g.
        # organelles=0) leaves what the others draw unchanged.
        streams = np.random.SeedSequence(int(seed), spawn_key=(k,)).spawn(3)
        geometry_rng, texture_rng, organelle_rng = (np.random.default_rng(s) for s in streams)
        cells, boundary, darkness = _tessellate(geometry_rng, (height, width), diameter, (thin, thick))
        n_cells = int(cells.max())
        labels[k] = np.where(cells > 0, cells.astype(np.uint32) + np.uint32(next_id - 1), 0)
        next_id += n_cells
        image = _render(
            texture_rng,
            organelle_rng,
            cells,
            n_cells,
            boundary,
            darkness,
            diameter,
            organelle_density,
            contrast,
        )
        raw[k] = _acquire(texture_rng, image, noise_sd, blur_sd)
    return raw, labels


@dataclass(frozen=True)
class Look:
    """The checked options that both generators (2-D and unetflow.data.synthesize3d) take alike."""

    diameter: float
    widths: tuple[float, float]
    noise: float
    blur: float
    organelles: float
    contrast: float


def check_look(
    *,
    seed: object,
    cell_diameter: object,
    membrane_width: object,
    noise: object,
    blur: object,
    organelles: object,
    membrane_contrast: object,
) -> Look:
    """Validate the seed and the options of the cells' look; a bad one is a ValueError that names it."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}; pass e.g. seed=0")
    diameter = _check_number("cell_diameter", cell_diameter, minimum=0.0, inclusive=False)
    thin, thick = _check_membrane_width(membrane_width)
    if diameter < 2.0 * thick:
        raise ValueError(
            f"cell_diameter ({diameter}) must be at least twice the largest membrane_width ({thick}); "
            "raise cell_diameter or make the membranes thinner"
        )
    return Look(
        diameter=diameter,
        widths=(thin, thick),
        noise=_check_number("noise", noise, minimum=0.0, inclusive=True),
        blur=_check_number("blur", blur, minimum=0.0, inclusive=True),
        organelles=_check_number("organelles", organelles, minimum=0.0, inclusive=True),
        contrast=_check_number("membrane_contrast", membrane_contrast, minimum=0.0, inclusive=True),
    )


def _check_shape(shape: object) -> tuple[int, int, int]:
    """Validate `shape` as three positive integers with spatial sizes of at least MIN_SPATIAL_SIZE."""
    if (
        not isinstance(shape, tuple | list)
        or len(shape) != 3
        or not all(isinstance(n, Integral) and not isinstance(n, bool) for n in shape)
    ):
        raise ValueError(
            f"shape must be a tuple of three integers (z, y, x), got {shape!r}; "
            "pass e.g. shape=(12, 256, 256)"
        )
    depth, height, width = (int(n) for n in shape)
    if depth < 1:
        raise ValueError(
            f"shape[0] (the number of slices) must be >= 1, got {depth}; ask for one slice or more"
        )
    if height < MIN_SPATIAL_SIZE or width < MIN_SPATIAL_SIZE:
        raise ValueError(
            f"shape[1] and shape[2] (y, x) must each be >= {MIN_SPATIAL_SIZE}, got {(height, width)}; "
            "ask for a larger slice"
        )
    return depth, height, width


def _check_number(name: str, value: object, *, minimum: float, inclusive: bool) -> float:
    """Validate a finite real `value` above `minimum` (or at it, when `inclusive`), named `name`."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}; pass a float such as 1.0")
    number = float(value)
    if number < minimum or (number == minimum and not inclusive):
        bound = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {bound} {minimum}, got {number}; pass a value {bound} {minimum}")
    return number


def _check_membrane_width(membrane_width: object) -> tuple[float, float]:
    """Validate `membrane_width` as (min, max) full thicknesses in pixels with 0 < min <= max."""
    if not isinstance(membrane_width, tuple | list) or len(membrane_width) != 2:
        raise ValueError(f"membrane_width must be a (min, max) pair of pixel widths, got {membrane_width!r}")
    thin = _check_number("membrane_width[0]", membrane_width[0], minimum=0.0, inclusive=False)
    thick = _check_number("membrane_width[1]", membrane_width[1], minimum=0.0, inclusive=False)
    if thin > thick:
        raise ValueError(
            f"membrane_width must be (min, max) with min <= max, got {membrane_width!r}; swap them"
        )
    return thin, thick


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-sd Gaussian random field correlated over `sigma` pixels (filtered in Fourier space)."""
    padded = tuple(fft.next_fast_len(n + min(int(2 * sigma), n)) for n in shape)
    fy = fft.fftfreq(padded[0])[:, None]
    fx = fft.rfftfreq(padded[1])[None, :]
    transfer = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fy**2 + fx**2))
    spectrum = (rng.standard_normal(transfer.shape) + 1j * rng.standard_normal(transfer.shape)) * transfer
    field = fft.irfft2(spectrum, s=padded)[: shape[0], : shape[1]]
    field = field - field.mean()
    return field / max(float(field.std()), 1e-12)


def _pack_disks(
    rng: np.random.Generator, shape: tuple[int, int], diameter: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and radii of disjoint disks of log-normal sizes covering half of the slice and a margin.

    Their power diagram gives cells of mean area pi diameter**2 / 4 and a skewed size distribution (a few
    large dendrites among many small axons), like cross-sections of neurites. Largest first, by dart throwing
    with a shrinking clearance (a disk that finds no room overlaps a little; its cell may then vanish).
    """
    margin = diameter
    low = np.array([-margin, -margin])
    high = np.array([shape[0] + margin, shape[1] + margin])
    area = float(np.prod(high - low))
    count = max(4, round(area / (math.pi * diameter**2 / 4.0)))
    radii = np.sort(np.clip(rng.lognormal(0.0, SIZE_SPREAD, size=count), 0.3, 3.0))[::-1]
    radii *= math.sqrt(DISK_COVER * area / (math.pi * float(np.sum(radii**2))))
    bucket = 2.0 * CLEARANCE * radii[0]
    buckets: dict[tuple[int, int], list[int]] = {}
    centres = np.empty((count, 2))
    for index, radius in enumerate(radii):
        for attempt in range(DART_TRIES):
            centre = rng.uniform(low, high)
            by, bx = int(centre[0] // bucket), int(centre[1] // bucket)
            near = [j for dy in (-1, 0, 1) for dx in (-1, 0, 1) for j in buckets.get((by + dy, bx + dx), ())]
            shrink = 1.0 - 0.5 * attempt / DART_TRIES
            if near:
                gaps = np.hypot(*(centres[near] - centre).T) - CLEARANCE * shrink * (radii[near] + radius)
                if gaps.min() < 0.0 and attempt < DART_TRIES - 1:
                    continue
            centres[index] = centre
            buckets.setdefault((by, bx), []).append(index)
            break
    return centres, radii


def _tessellate(
    rng: np.random.Generator, shape: tuple[int, int], diameter: float, widths: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells 1..n (0 = membrane) of one slice, distance to the nearest boundary in half-widths, and darkness.

    The distance map is < 1 on membrane pixels and grows into the cells; darkness (0..1) varies per boundary;
    junctions far from every seed's disk become wider dark gaps (extracellular space).
    """
    height, width = shape
    seeds, radii = _pack_disks(rng, shape, diameter)
    weights = radii**2
    width_key, dark_key = rng.random(len(seeds)), rng.random(len(seeds))

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    for amplitude, correlation in WARP:
        yy += amplitude * diameter * _smooth_field(rng, shape, correlation * diameter)
        xx += amplitude * diameter * _smooth_field(rng, shape, correlation * diameter)
    along = np.clip(1.0 + 0.3 * _smooth_field(rng, shape, 0.15 * diameter), 0.55, 1.6)
    per_pixel = [a.ravel() for a in (yy, xx, *np.gradient(yy), *np.gradient(xx), along)]

    tree = cKDTree(seeds)
    own = np.empty(height * width, dtype=np.int64)
    neighbour = np.empty(height * width, dtype=np.int64)
    boundary = np.empty(height * width)
    reach = np.empty(height * width)
    for start in range(0, height * width, CHUNK_PIXELS):
        part = slice(start, start + CHUNK_PIXELS)
        y, x, dyy, dyx, dxy, dxx, stretch_along = (a[part, None] for a in per_pixel)
        _, near = tree.query(np.hstack([y, x]), k=min(NEIGHBOURS, len(seeds)))
        power = (y - seeds[near, 0]) ** 2 + (x - seeds[near, 1]) ** 2 - weights[near]
        order = np.argsort(power, axis=1)[:, :3]
        near = np.take_along_axis(near, order, axis=1)
        power = np.take_along_axis(power, order, axis=1)
        mine, others = near[:, 0], near[:, 1:]
        normal_y, normal_x = seeds[others, 0] - seeds[mine, :1], seeds[others, 1] - seeds[mine, 1:]
        separation = np.maximum(np.hypot(normal_y, normal_x), 1e-9)
        # The bisector distance is linear in warped coordinates; the warp's Jacobian turns it into pixels.
        stretch = np.hypot(dyy * normal_y + dxy * normal_x, dyx * normal_y + dxx * normal_x) / separation
        to_bisector = (power[:, 1:] - power[:, :1]) / (2.0 * separation * np.maximum(stretch, 0.2))
        pair = (width_key[mine, None] + width_key[others]) % 1.0
        full_width = (widths[0] + (widths[1] - widths[0]) * pair) * stretch_along
        ratio = to_bisector / (0.5 * np.clip(full_width, widths[0], widths[1]))
        second = ratio[:, 1] < ratio[:, 0]
        own[part] = mine
        neighbour[part] = np.where(second, others[:, 1], others[:, 0])
        boundary[part] = np.where(second, ratio[:, 1], ratio[:, 0])
        reach[part] = np.sqrt(np.maximum(power[:, 0] + weights[mine], 0.0)) / radii[mine]
    darkness = ((dark_key[own] + dark_key[neighbour]) % 1.0).reshape(shape)
    boundary = boundary.reshape(shape)

    gap = (reach > GAP_REACH).reshape(shape)
    cells = np.where((boundary >= 1.0) & ~gap, own.reshape(shape) + 1, 0)
    cells = _separate(cells, min_area=0.05 * diameter**2)
    boundary = np.where(
        cells == 0, np.minimum(boundary, np.where(gap, GAP_BOUNDARY, 1.0)), np.maximum(boundary, 1.0)
    )
    return cells, boundary, darkness


def _separate(cells: np.ndarray, *, min_area: float) -> np.ndarray:
    """Relabel to 1..n so every cell is one 4-connected piece of at least `min_area` px, apart from the rest.

    Pixels 4-adjacent to another cell become membrane; of a cell split in pieces only the largest stays, and
    tiny cells turn into membrane (small unresolved processes, like the dark gaps between ISBI cells), unless
    they are the visible part of a cell cut by the slice border.
    """
    cells = cells.copy()
    for axis in (0, 1):
        ahead = np.swapaxes(cells, 0, axis)
        clash = (ahead[1:] != ahead[:-1]) & (ahead[1:] > 0) & (ahead[:-1] > 0)
        ahead[1:][clash] = 0
    pieces, n_pieces = ndi.label(cells > 0, structure=FOUR_CONNECTED)
    if n_pieces == 0:
        return pieces
    sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    owner = np.zeros(n_pieces + 1, dtype=np.int64)
    owner[pieces.ravel()] = cells.ravel()
    order = np.lexsort((-sizes[1:], owner[1:])) + 1
    first_of_owner = np.ones(len(order), dtype=bool)
    first_of_owner[1:] = owner[order[1:]] != owner[order[:-1]]
    on_border = np.zeros(n_pieces + 1, dtype=bool)
    on_border[np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]])] = True
    big_enough = (sizes >= min_area) | (on_border & (sizes >= MIN_BORDER_PIECE))
    kept = order[first_of_owner & big_enough[order]]
    renumber = np.zeros(n_pieces + 1, dtype=np.int64)
    renumber[np.sort(kept)] = np.arange(1, len(kept) + 1)
    return renumber[pieces]


def _render(
    rng: np.random.Generator,
    organelle_rng: np.random.Generator,
    cells: np.ndarray,
    n_cells: int,
    boundary: np.ndarray,
    darkness: np.ndarray,
    diameter: float,
    density: float,
    contrast: float = 1.0,
    *,
    shade: np.ndarray | None = None,
    paint: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Noise-free intensities: shaded, grainy cytoplasm, dark membranes, organelles, an illumination field.

    Organelles draw from `organelle_rng` only, so the rest of the image does not depend on `density`;
    `contrast` scales the membranes' darkness below the cytoplasm level. A 3-D volume gives each cell's
    `shade` (indexed by its id, the same in every slice) and paints its own organelles (`paint`, in place
    of the 2-D ones: cross-sections of 3-D organelles, unetflow.data.synthesize3d).
    """
    shape = cells.shape
    inside = cells > 0
    if shade is None:
        shade = np.concatenate([[0.0], np.clip(rng.normal(0.0, 9.0, size=n_cells), -20.0, 20.0)])
    grain = 15.0 * _smooth_field(rng, shape, 1.0) + 7.0 * _smooth_field(rng, shape, 3.0)
    halo = np.exp(-(((boundary - 1.0) / 0.8) ** 2))
    cytoplasm = CYTOPLASM_LEVEL + shade[cells] + grain - 18.0 * halo
    membrane = MEMBRANE_LEVEL + 30.0 * (darkness - 0.5) + 22.0 * boundary**2 + 0.5 * grain
    if contrast != 1.0:
        membrane = CYTOPLASM_LEVEL - contrast * (CYTOPLASM_LEVEL - membrane)
    image = np.where(inside, cytoplasm, membrane)
    if paint is not None:
        image = paint(image)
    elif density > 0 and n_cells > 0:
        depth_to_membrane = ndi.distance_transform_edt(inside)
        image = _add_mitochondria(organelle_rng, image, cells, depth_to_membrane, diameter, density)
        image = _add_vesicles(organelle_rng, image, cells, n_cells, depth_to_membrane, diameter, density)
    gain = 1.0 + 0.07 * _smooth_field(rng, shape, max(shape) / 3.0)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ramp = (math.cos(angle) * yy + math.sin(angle) * xx) / max(shape)
    gain += rng.uniform(0.05, 0.15) * (ramp - ramp.mean())
    for _ in range(rng.poisson(SMUDGES_PER_PIXEL * cells.size)):
        centre = rng.uniform((0.0, 0.0), shape)
        spread = rng.uniform(0.25, 0.6) * diameter
        gain -= rng.uniform(0.15, 0.35) * np.exp(
            -((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * spread**2)
        )
    return image * gain


def _add_mitochondria(
    rng: np.random.Generator,
    image: np.ndarray,
    cells: np.ndarray,
    depth_to_membrane: np.ndarray,
    diameter: float,
    density: float,
) -> np.ndarray:
    """Paint elongated, striped, dark-rimmed ellipses inside cells (some reaching the membrane)."""
    scale = diameter / 40.0
    area = image.size
    count = rng.poisson(density * 0.25 * area / (diameter**2))
    candidates = np.flatnonzero(depth_to_membrane.ravel() >= 4.0 * scale)
    if count == 0 or len(candidates) == 0:
        return image
    image = image.copy()
    for centre in rng.choice(candidates, size=count):
        cy, cx = divmod(int(centre), image.shape[1])
        room = depth_to_membrane[cy, cx]
        minor = min(rng.uniform(4.5, 9.0) * scale, room + 1.0)
        major = minor * rng.uniform(1.2, 2.6)
        theta = rng.uniform(0.0, math.pi)
        reach = math.ceil(major) + 1
        y0, y1 = max(cy - reach, 0), min(cy + reach + 1, image.shape[0])
        x0, x1 = max(cx - reach, 0), min(cx + reach + 1, image.shape[1])
        dy, dx = np.mgrid[y0:y1, x0:x1]
        dy, dx = dy - cy, dx - cx
        along = math.cos(theta) * dy + math.sin(theta) * dx
        across = -math.sin(theta) * dy + math.cos(theta) * dx
        radius = np.sqrt((along / major) ** 2 + (across / minor) ** 2)
        inside = (radius <= 1.0) & (cells[y0:y1, x0:x1] == cells[cy, cx])
        period = rng.uniform(5.0, 7.0) * scale
        cristae = np.cos(2.0 * math.pi * along / period + rng.uniform(0, 2 * math.pi))
        level = (
            MITOCHONDRION_LEVEL
            + rng.normal(0.0, 8.0)
            + 20.0 * cristae * (radius < 0.8)
            - 28.0 * np.exp(-(((radius - 0.92) / 0.1) ** 2))
        )
        patch = image[y0:y1, x0:x1]
        patch[inside] = level[inside] + (patch[inside] - patch[inside].mean()) * 0.3
    return image


def _add_vesicles(
    rng: np.random.Generator,
    image: np.ndarray,
    cells: np.ndarray,
    n_cells: int,
    depth_to_membrane: np.ndarray,
    diameter: float,
    density: float,
) -> np.ndarray:
    """Darken small rings and dots inside cells; a few cells (synaptic boutons) are packed with them."""
    scale = diameter / 40.0
    richness = np.concatenate([[0.0], rng.lognormal(-0.3, 0.9, size=n_cells)])
    rate = density * 0.006 * richness[cells] / scale**2
    ys, xs = np.nonzero(rng.random(image.shape) < rate)
    kinds = rng.integers(0, len(VESICLES), size=len(ys))
    darken = np.zeros(image.size)
    for kind, (radius, strength) in enumerate(VESICLES):
        radius *= scale
        reach = math.ceil(radius + 1.5)
        dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        ring = strength * np.exp(-(((np.hypot(dy, dx) - radius) / 0.75) ** 2))
        fits = (kinds == kind) & (depth_to_membrane[ys, xs] >= radius + 1.0)
        ty = ys[fits, None] + dy.ravel()
        tx = xs[fits, None] + dx.ravel()
        weight = np.broadcast_to(ring.ravel(), ty.shape)
        valid = (ty >= 0) & (ty < image.shape[0]) & (tx >= 0) & (tx < image.shape[1])
        darken += np.bincount(ty[valid] * image.shape[1] + tx[valid], weight[valid], minlength=image.size)
    darken = darken.reshape(image.shape)
    return image - np.minimum(darken, 55.0)


def _acquire(rng: np.random.Generator, image: np.ndarray, noise_sd: float, blur_sd: float) -> np.ndarray:
    """Blur by the point-spread function, add shot and Gaussian noise, and quantise to uint8."""
    signal = ndi.gaussian_filter(image, blur_sd) if blur_sd > 0 else image
    signal = np.clip(signal, 0.0, 255.0)
    if noise_sd > 0:
        shot_gain = (0.6 * noise_sd) ** 2 / 128.0
        signal = rng.poisson(signal / shot_gain) * shot_gain
        signal = signal + rng.normal(0.0, 0.8 * noise_sd, size=signal.shape)
    return np.clip(np.rint(signal), 0, 255).astype(np.uint8)
