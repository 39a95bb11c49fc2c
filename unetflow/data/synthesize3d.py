"""Synthetic 3-D EM of neuropil with exact instance labels: neurites that run through the volume, cut as
serial sections (anisotropic) or imaged isotropically (FIB-SEM), for the 3-D nets without a download.

Cells are tubes. Across a main axis (tilted by `tilt` degrees from z, at a random azimuth) every plane is the
power diagram of seeds (a random packing of disks of log-normal sizes, as in the 2-D generator) that drift
along the axis with a smooth random flow, neighbours alike, so that a cell continues from plane to plane and
its boundaries lean against the cutting plane; a smooth 3-D displacement makes them wavy. Membranes are
sheets of a physical thickness (varying per boundary and along it): a voxel is membrane where its 3-D
distance to the nearest boundary is below half that thickness, so a sheet that a section cuts obliquely looks
wider in it, as in real serial sections. Mitochondria are 3-D ellipsoids along the neurites and vesicles
hollow spheres; a slice shows their cross-sections. A cell keeps its shade through the volume; every slice is
rendered and acquired (texture, illumination, blur, noise) by the 2-D generator's steps
(unetflow.data.synthesize).

Sizes are in-plane pixels; `voxel_size` (z, y, x, with y = x) says how far apart the sections lie: (1, 1, 1)
is isotropic, (50, 4, 4) sections 12.5 pixels apart. Cell ids run 1..n over the volume, one 6-connected
piece each, the same id in every slice it crosses; the same seed gives bit-identical output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from unetflow.data.synthesize import (
    GAP_BOUNDARY,
    GAP_REACH,
    MIN_BORDER_PIECE,
    MITOCHONDRION_LEVEL,
    NEIGHBOURS,
    VESICLES,
    _acquire,
    _check_number,
    _check_shape,
    _pack_disks,
    _render,
    check_look,
)

FLOW_ALONG = 2.0
"""Correlation length of the seeds' drift along the axis, in cell diameters."""
FLOW_ACROSS = 1.5
"""Correlation length of the drift across the axis, in cell diameters (neighbours drift alike)."""
FLOW_STEP = 0.5
"""Spacing of the drift's coarse grid, in cell diameters."""
WARP_3D = (0.28, 0.6)
"""Amplitude and correlation length (in cell diameters) of the 3-D displacement that makes boundaries wavy."""
WARP_STEP = 0.2
"""Spacing of the displacement's coarse grid, in cell diameters."""
PLANE_STEP = 0.5
"""Pixels between the planes across the axis at which the seeds' positions are tabulated."""
MIN_PIECE = 0.025
"""Smallest piece of a cell kept, in cubed cell diameters (physical volume); smaller ones become membrane."""
MITOCHONDRION_LENGTH = 25.6
"""Mean length of a mitochondrion in pixels (at the 2-D generator's scale, cell diameter 40): 3-D volumes hold
the 2-D generator's mitochondria per slice area divided by it, so a slice shows as many as a 2-D slice."""
VESICLE_RATE = 0.006
"""The 2-D generator's vesicle rate per pixel; in 3-D scaled so that a slice shows as many cross-sections."""
MEAN_VESICLE_RADIUS = 2.8
SIX_CONNECTED = ndi.generate_binary_structure(3, 1)
FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)


def synthesize_volume_3d(
    *,
    shape: tuple[int, int, int],
    seed: int,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    cell_diameter: float = 40.0,
    tilt: float = 30.0,
    wander: float = 0.6,
    membrane_width: tuple[float, float] = (2.0, 5.0),
    noise: float = 8.0,
    blur: float = 1.0,
    organelles: float = 1.0,
    membrane_contrast: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """An EM-like 3-D (raw uint8, instance labels uint32) pair of `shape` (z, y, x); labels 0 are membrane.

    `voxel_size` (z, y, x; y = x) sets the section spacing, `cell_diameter` the mean neurite diameter in
    pixels, `tilt` the angle in degrees between the neurites' main direction and z (0: they run along z, as
    cross-sections in every slice; 90: they lie in the slices), `wander` how far a neurite drifts sideways
    over two diameters of its length (in diameters); the other options as in
    unetflow.data.synthesize.synthesize_volume (sizes in in-plane pixels, membranes as sheets in 3-D).
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
    step = section_step(voxel_size)
    angle = _check_number("tilt", tilt, minimum=0.0, inclusive=True)
    if angle > 90.0:
        raise ValueError(f"tilt must be between 0 and 90 degrees, got {angle}")
    drift = _check_number("wander", wander, minimum=0.0, inclusive=True)
    diameter, thin, thick, density = look.diameter, *look.widths, look.organelles

    geometry_rng, organelle_rng = (
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, i))) for i in (0, 1)
    )
    scene = _scene(geometry_rng, (depth, height, width), step, diameter, math.radians(angle), drift)
    cells = np.empty((depth, height, width), dtype=np.int64)
    boundary = np.empty((depth, height, width), dtype=np.float32)
    darkness = np.empty((depth, height, width), dtype=np.float32)
    gap = np.empty((depth, height, width), dtype=bool)
    for k in range(depth):
        cells[k], boundary[k], darkness[k], gap[k] = _tessellate_slice(scene, k, (thin, thick))
    cells = np.where((boundary >= 1.0) & ~gap, cells + 1, 0)
    labels = separate_cells(cells, step=step, min_volume=MIN_PIECE * diameter**3 / step)
    boundary = np.where(
        labels == 0, np.minimum(boundary, np.where(gap, GAP_BOUNDARY, 1.0)), np.maximum(boundary, 1.0)
    )
    del cells, gap
    n_cells = int(labels.max())
    shade = np.concatenate([[0.0], np.clip(geometry_rng.normal(0.0, 9.0, size=n_cells), -20.0, 20.0)])
    painter = _Organelles(organelle_rng, labels, step, diameter, density, scene.axis)
    raw = np.empty((depth, height, width), dtype=np.uint8)
    for k in range(depth):
        texture_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, k)))
        image = _render(
            texture_rng,
            organelle_rng,
            labels[k],
            n_cells,
            boundary[k],
            darkness[k],
            diameter,
            density,
            look.contrast,
            shade=shade,
            paint=painter.for_slice(k),
        )
        raw[k] = _acquire(texture_rng, image, look.noise, look.blur)
    return raw, labels.astype(np.uint32)


def section_step(voxel_size: Sequence[float]) -> float:
    """The distance between sections in in-plane pixels (z over y) of a (z, y, x) voxel size with y = x."""
    if not isinstance(voxel_size, Sequence) or len(voxel_size) != 3:
        raise ValueError(f"voxel_size must be (z, y, x), got {voxel_size!r}; pass e.g. (50.0, 4.0, 4.0)")
    z, y, x = (_check_number("voxel_size", value, minimum=0.0, inclusive=False) for value in voxel_size)
    if not math.isclose(y, x, rel_tol=1e-6):
        raise ValueError(
            f"voxel_size {tuple(voxel_size)}: the generator's pixels are square in-plane; give y = x"
        )
    return z / y


def smooth_field_nd(rng: np.random.Generator, shape: tuple[int, ...], sigma: Sequence[float]) -> np.ndarray:
    """Zero-mean, unit-sd Gaussian random field of `shape`, correlated over `sigma` grid steps per axis."""
    padded = tuple(fft.next_fast_len(n + min(int(2 * s), n)) for n, s in zip(shape, sigma, strict=True))
    frequencies = [fft.fftfreq(n) for n in padded[:-1]] + [fft.rfftfreq(padded[-1])]
    mesh = np.meshgrid(*frequencies, indexing="ij", sparse=True)
    exponent = sum((s * f) ** 2 for s, f in zip(sigma, mesh, strict=True))
    transfer = np.exp(-2.0 * math.pi**2 * exponent)
    spectrum = (rng.standard_normal(transfer.shape) + 1j * rng.standard_normal(transfer.shape)) * transfer
    field = fft.irfftn(spectrum, s=padded)[tuple(slice(0, n) for n in shape)]
    field = field - field.mean()
    return field / max(float(field.std()), 1e-12)


@dataclass(frozen=True)
class _Grid:
    """A coarse regular grid of a smooth field: its origin and step (physical px) and values (C, ...)."""

    origin: np.ndarray
    step: float
    values: np.ndarray

    def at(self, points: np.ndarray, *, order: int = 1) -> np.ndarray:
        """The field's components at `points` (n_axes, P) in physical px: (C, P)."""
        index = (points - self.origin[:, None]) / self.step
        return np.stack(
            [ndi.map_coordinates(c, index, order=order, mode="nearest", prefilter=False) for c in self.values]
        )


@dataclass(frozen=True)
class _Scene:
    """The geometry of a 3-D volume: the seeds' positions per plane across the axis and the smooth fields."""

    rotation: np.ndarray
    """(3, 3) rows: the axis t and two directions v1, v2 across it, in physical (z, y, x)."""
    first_plane: float
    centres: np.ndarray
    """(planes, seeds, 2) seed positions (v1, v2) on each plane."""
    velocity: np.ndarray
    """(planes, seeds, 2) their derivative along t."""
    weights: np.ndarray
    radii: np.ndarray
    width_key: np.ndarray
    dark_key: np.ndarray
    warp: _Grid
    jacobian: _Grid
    along: _Grid
    step: float
    shape: tuple[int, int, int]

    @property
    def axis(self) -> np.ndarray:
        """The neurites' main direction (z, y, x), a unit vector."""
        return self.rotation[0]


def _rotation(tilt: float, azimuth: float) -> np.ndarray:
    """Rows t, v1, v2: t at `tilt` from z (azimuth in the y-x plane), v1 and v2 completing a right frame."""
    t = np.array([math.cos(tilt), math.sin(tilt) * math.cos(azimuth), math.sin(tilt) * math.sin(azimuth)])
    helper = np.array([0.0, -math.sin(azimuth), math.cos(azimuth)])
    v1 = helper - t * float(helper @ t)
    v1 /= np.linalg.norm(v1)
    return np.stack([t, v1, np.cross(t, v1)])


def _scene(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    step: float,
    diameter: float,
    tilt: float,
    wander: float,
) -> _Scene:
    """Draw the seeds, their drift and the smooth fields of a volume of `shape` (sections `step` px apart)."""
    extent = np.array([(shape[0] - 1) * step, shape[1] - 1, shape[2] - 1], dtype=np.float64)
    rotation = _rotation(tilt, rng.uniform(0.0, 2.0 * math.pi))
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]) * extent
    rotated = corners @ rotation.T
    pad = WARP_3D[0] * diameter * 3.0 + wander * diameter * 3.0
    low, high = rotated.min(axis=0) - pad, rotated.max(axis=0) + pad
    seeds, radii = _pack_disks(rng, (high[1] - low[1], high[2] - low[2]), diameter)
    seeds = seeds + low[1:]
    planes = np.arange(low[0], high[0] + PLANE_STEP, PLANE_STEP)
    flow_step = FLOW_STEP * diameter
    flow_shape = tuple(math.ceil((h - lo) / flow_step) + 2 for lo, h in zip(low, high, strict=True))
    sigma = (FLOW_ALONG / FLOW_STEP, FLOW_ACROSS / FLOW_STEP, FLOW_ACROSS / FLOW_STEP)
    flow = _Grid(
        low,
        flow_step,
        np.stack([_spline(wander * diameter * smooth_field_nd(rng, flow_shape, sigma)) for _ in range(2)]),
    )
    points = np.stack(
        [np.repeat(planes, len(seeds)), np.tile(seeds[:, 0], len(planes)), np.tile(seeds[:, 1], len(planes))]
    )
    drift = flow.at(points, order=3).T.reshape(len(planes), len(seeds), 2)
    centres = seeds[None] + drift
    warp_step = WARP_STEP * diameter
    warp_low = -np.full(3, 2 * warp_step)
    warp_shape = tuple(math.ceil(e / warp_step) + 5 for e in extent)
    correlation = WARP_3D[1] / WARP_STEP
    warp = np.stack(
        [WARP_3D[0] * diameter * smooth_field_nd(rng, warp_shape, (correlation,) * 3) for _ in range(3)]
    )
    gradient = np.stack([g for component in warp for g in np.gradient(component, warp_step)])
    along = 1.0 + 0.3 * smooth_field_nd(rng, warp_shape, (0.3 / WARP_STEP,) * 3)
    return _Scene(
        rotation=rotation,
        first_plane=float(planes[0]),
        centres=centres,
        velocity=np.gradient(centres, PLANE_STEP, axis=0),
        weights=radii**2,
        radii=radii,
        width_key=rng.random(len(seeds)),
        dark_key=rng.random(len(seeds)),
        warp=_Grid(warp_low, warp_step, np.stack([_spline(c) for c in warp])),
        jacobian=_Grid(warp_low, warp_step, gradient),
        along=_Grid(warp_low, warp_step, np.clip(along, 0.55, 1.6)[None]),
        step=step,
        shape=shape,
    )


def _spline(values: np.ndarray) -> np.ndarray:
    """Cubic-spline coefficients of a field on a grid: `_Grid.at(order=3)` interpolates them smoothly."""
    return ndi.spline_filter(values, order=3, mode="nearest")


def _tessellate_slice(
    scene: _Scene, k: int, widths: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slice `k`: each pixel's seed, its 3-D distance to the nearest boundary in membrane half-widths, the
    boundary's darkness (0..1) and whether it lies in a gap far from every seed (extracellular space).

    The distance to the power bisector of the pixel's seed i and another seed j is f / |grad f| with
    f = P_j - P_i; the gradient takes in the seeds' drift along the axis (the boundary's lean) and the
    displacement's Jacobian, so it is a distance in physical pixels in 3-D.
    """
    _, height, width = scene.shape
    yy, xx = np.mgrid[0:height, 0:width]
    points = np.stack([np.full(yy.size, k * scene.step), yy.ravel(), xx.ravel()]).astype(np.float64)
    moved = points + scene.warp.at(points, order=3)
    frame = scene.rotation @ moved
    jacobian = scene.jacobian.at(points).T.reshape(-1, 3, 3) + np.eye(3)
    stretch_along = scene.along.at(points)[0]
    plane = np.clip(np.rint((frame[0] - scene.first_plane) / PLANE_STEP), 0, len(scene.centres) - 1)
    plane = plane.astype(np.int64)
    own = np.empty(yy.size, dtype=np.int64)
    boundary = np.empty(yy.size)
    darkness = np.empty(yy.size)
    reach = np.empty(yy.size)
    order = np.argsort(plane, kind="stable")
    cuts = np.flatnonzero(np.diff(plane[order])) + 1
    for part in np.split(order, cuts):
        index = int(plane[part[0]])
        centres, velocity = scene.centres[index], scene.velocity[index]
        v = frame[1:, part].T
        _, near = cKDTree(centres).query(v, k=min(NEIGHBOURS, len(centres)))
        power = np.sum((v[:, None, :] - centres[near]) ** 2, axis=-1) - scene.weights[near]
        ranked = np.argsort(power, axis=1)[:, :3]
        near = np.take_along_axis(near, ranked, axis=1)
        power = np.take_along_axis(power, ranked, axis=1)
        mine, others = near[:, :1], near[:, 1:]
        difference = centres[others] - centres[mine]  # (m, 2, 2)
        grad_v = -2.0 * difference
        grad_t = 2.0 * np.sum((centres[others] - v[:, None]) * velocity[others], axis=-1) - 2.0 * np.sum(
            (centres[mine] - v[:, None]) * velocity[mine], axis=-1
        )
        grad_u = np.concatenate([grad_t[..., None], grad_v], axis=-1)  # (m, 2, 3) over (t, v1, v2)
        grad_p = np.einsum("mnu,uq,mqp->mnp", grad_u, scene.rotation, jacobian[part])
        distance = (power[:, 1:] - power[:, :1]) / np.maximum(np.linalg.norm(grad_p, axis=-1), 1e-9)
        pair = (scene.width_key[mine] + scene.width_key[others]) % 1.0
        full_width = (widths[0] + (widths[1] - widths[0]) * pair) * stretch_along[part, None]
        ratio = distance / (0.5 * np.clip(full_width, widths[0], widths[1]))
        second = ratio[:, 1] < ratio[:, 0]
        neighbour = np.where(second, others[:, 1], others[:, 0])
        own[part] = mine[:, 0]
        boundary[part] = np.where(second, ratio[:, 1], ratio[:, 0])
        darkness[part] = (scene.dark_key[mine[:, 0]] + scene.dark_key[neighbour]) % 1.0
        reach[part] = (
            np.sqrt(np.maximum(power[:, 0] + scene.weights[mine[:, 0]], 0.0)) / scene.radii[mine[:, 0]]
        )
    shape = (height, width)
    return (
        own.reshape(shape),
        boundary.reshape(shape),
        darkness.reshape(shape),
        (reach > GAP_REACH).reshape(shape),
    )


def separate_cells(cells: np.ndarray, *, step: float, min_volume: float) -> np.ndarray:
    """Relabel a (z, y, x) volume of cell ids (0 = membrane) to 1..n, every cell one 6-connected piece.

    Pixels 4-adjacent in a slice to another cell become membrane, and so do voxels z-adjacent to another
    cell where sections are closer than 2 pixels (near-isotropic data, whose membrane sheets are thick enough
    to part every two cells); across thicker sections two cells may meet face to face, as they do in real
    serial sections. Every piece of at least `min_volume` voxels (or MIN_BORDER_PIECE where it touches the
    volume's border) is a cell, numbered in the order it first appears (z, then y, then x): a cell that the
    volume shows in two pieces (it leaves and comes back) is two; smaller pieces become membrane.
    """
    cells = cells.copy()
    axes = (0, 1, 2) if step < 2.0 else (1, 2)
    for axis in axes:
        ahead = np.swapaxes(cells, 0, axis)
        clash = (ahead[1:] != ahead[:-1]) & (ahead[1:] > 0) & (ahead[:-1] > 0)
        ahead[1:][clash] = 0
    pieces = _pieces(cells)
    n_pieces = int(pieces.max())
    sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    on_border = np.zeros(n_pieces + 1, dtype=bool)
    for axis in range(3):
        for end in (0, -1):
            on_border[np.take(pieces, end, axis=axis)] = True
    kept = (sizes >= min_volume) | (on_border & (sizes >= MIN_BORDER_PIECE))
    kept[0] = False
    renumber = np.zeros(n_pieces + 1, dtype=np.int64)
    renumber[kept] = np.arange(1, int(kept.sum()) + 1)
    return renumber[pieces]


def _pieces(cells: np.ndarray) -> np.ndarray:
    """The 6-connected pieces of equal id of a (z, y, x) id volume (0 = none), numbered 1..n.

    Per slice the 4-connected pieces (one id each, since touching cells are parted in-plane), then pieces of
    consecutive slices joined where the same id overlaps: a small graph of 2-D pieces, not of voxels.
    """
    flat = np.zeros(cells.shape, dtype=np.int64)
    total = 0
    for k, plane in enumerate(cells):
        labelled, count = ndi.label(plane > 0, structure=FOUR_CONNECTED)
        flat[k] = np.where(labelled > 0, labelled + total, 0)
        total += count
    if total == 0:
        return flat
    rows, cols = [], []
    for k in range(cells.shape[0] - 1):
        joined = (cells[k] == cells[k + 1]) & (cells[k] > 0)
        pairs = np.unique(np.stack([flat[k][joined], flat[k + 1][joined]]), axis=1)
        rows.append(pairs[0])
        cols.append(pairs[1])
    edges = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    ends = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges)), (edges, ends)), shape=(total + 1, total + 1))
    _, component = connected_components(graph, directed=False)
    # number the components 1..n in order of their first 2-D piece (piece 0 is the background)
    _, first_seen = np.unique(component[1:], return_index=True)
    numbering = np.zeros(component.max() + 1, dtype=np.int64)
    numbering[component[1:][np.sort(first_seen)]] = np.arange(1, len(first_seen) + 1)
    lookup = np.concatenate([[0], numbering[component[1:]]])
    return lookup[flat]


@dataclass
class _Mitochondrion:
    """An ellipsoid (prolate, along `direction`) inside cell `cell`, with its stripes and grey level."""

    centre: np.ndarray
    direction: np.ndarray
    major: float
    minor: float
    cell: int
    offset: float
    period: float
    phase: float


class _Organelles:
    """The 3-D organelles of a volume, drawn once from `rng`; `for_slice(k)` paints their cross-sections.

    Mitochondria are ellipsoids roughly along the neurites' `axis`, striped across it and with a dark rim,
    clipped to their cell; vesicles are hollow spheres (rings where a slice cuts them, dots at their poles),
    more in some cells (boutons) than in others. Their rates make a slice show about as many as a 2-D slice
    of unetflow.data.synthesize.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        labels: np.ndarray,
        step: float,
        diameter: float,
        density: float,
        axis: np.ndarray,
    ) -> None:
        self.labels, self.step, self.scale = labels, step, diameter / 40.0
        self.mitochondria: list[_Mitochondrion] = []
        self.vesicles = np.empty((0, 4))  # z centre (physical), y, x, kind
        if density <= 0 or labels.max() == 0:
            return
        depth, height, width = labels.shape
        per_slice = density * 0.25 * height * width / diameter**2
        count = rng.poisson(per_slice * depth * step / (MITOCHONDRION_LENGTH * self.scale))
        homes = np.sort(rng.integers(0, depth, size=count))
        richness = np.concatenate([[0.0], rng.lognormal(-0.3, 0.9, size=int(labels.max()))])
        thickness = min(1.0, step / (2.0 * MEAN_VESICLE_RADIUS * self.scale))
        found = []
        for k in range(depth):
            inside = labels[k] > 0
            room = ndi.distance_transform_edt(inside)
            for _ in range(int(np.count_nonzero(homes == k))):
                self._add_mitochondrion(rng, k, room, axis)
            rate = density * VESICLE_RATE * richness[labels[k]] / self.scale**2 * thickness
            ys, xs = np.nonzero(rng.random((height, width)) < rate)
            kinds = rng.integers(0, len(VESICLES), size=len(ys))
            centres = (k + rng.uniform(-0.5, 0.5, size=len(ys))) * step
            radius = np.array([r for r, _ in VESICLES])[kinds] * self.scale
            fits = room[ys, xs] >= radius + 1.0
            found.append(np.stack([centres, ys, xs, kinds], axis=1)[fits])
        self.vesicles = np.concatenate(found)

    def _add_mitochondrion(
        self, rng: np.random.Generator, k: int, room: np.ndarray, axis: np.ndarray
    ) -> None:
        candidates = np.flatnonzero(room.ravel() >= 4.0 * self.scale)
        if len(candidates) == 0:
            return
        cy, cx = divmod(int(rng.choice(candidates)), room.shape[1])
        minor = min(rng.uniform(4.5, 9.0) * self.scale, room[cy, cx] + 1.0)
        direction = axis + 0.35 * rng.standard_normal(3)
        self.mitochondria.append(
            _Mitochondrion(
                centre=np.array([k * self.step, cy, cx], dtype=np.float64),
                direction=direction / max(float(np.linalg.norm(direction)), 1e-9),
                major=minor * rng.uniform(1.2, 2.6),
                minor=minor,
                cell=int(self.labels[k, cy, cx]),
                offset=rng.normal(0.0, 8.0),
                period=rng.uniform(5.0, 7.0) * self.scale,
                phase=rng.uniform(0.0, 2.0 * math.pi),
            )
        )

    def for_slice(self, k: int) -> Callable[[np.ndarray], np.ndarray]:
        """What paints slice `k`'s cross-sections of the organelles onto its image."""

        def paint(image: np.ndarray) -> np.ndarray:
            image = image.copy()
            for item in self.mitochondria:
                if abs(k * self.step - item.centre[0]) <= item.major + 1.0:
                    self._paint_mitochondrion(image, k, item)
            return image - np.minimum(self._vesicle_darkening(k, image.shape), 55.0)

        return paint

    def _paint_mitochondrion(self, image: np.ndarray, k: int, item: _Mitochondrion) -> None:
        reach = math.ceil(item.major) + 1
        cy, cx = int(item.centre[1]), int(item.centre[2])
        y0, y1 = max(cy - reach, 0), min(cy + reach + 1, image.shape[0])
        x0, x1 = max(cx - reach, 0), min(cx + reach + 1, image.shape[1])
        dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        offsets = (k * self.step - item.centre[0], dy - item.centre[1], dx - item.centre[2])
        along = sum(d * c for d, c in zip(offsets, item.direction, strict=True))
        across = np.maximum(sum(d * d for d in offsets) - along**2, 0.0)
        radius = np.sqrt((along / item.major) ** 2 + across / item.minor**2)
        inside = (radius <= 1.0) & (self.labels[k, y0:y1, x0:x1] == item.cell)
        if not inside.any():
            return
        cristae = np.cos(2.0 * math.pi * along / item.period + item.phase)
        level = (
            MITOCHONDRION_LEVEL
            + item.offset
            + 20.0 * cristae * (radius < 0.8)
            - 28.0 * np.exp(-(((radius - 0.92) / 0.1) ** 2))
        )
        patch = image[y0:y1, x0:x1]
        patch[inside] = level[inside] + (patch[inside] - patch[inside].mean()) * 0.3

    def _vesicle_darkening(self, k: int, shape: tuple[int, int]) -> np.ndarray:
        """How much the vesicles that slice `k` cuts darken each pixel (rings, or dots near their poles)."""
        darken = np.zeros(shape[0] * shape[1])
        height = k * self.step - self.vesicles[:, 0]
        for kind, (radius, strength) in enumerate(VESICLES):
            radius *= self.scale
            chosen = (self.vesicles[:, 3] == kind) & (np.abs(height) <= radius + 1.5)
            if not chosen.any():
                continue
            reach = math.ceil(radius + 1.5)
            dy, dx = (d.ravel() for d in np.mgrid[-reach : reach + 1, -reach : reach + 1])
            distance = np.sqrt(height[chosen, None] ** 2 + dy**2 + dx**2)
            ring = strength * np.exp(-(((distance - radius) / 0.75) ** 2))
            ty = self.vesicles[chosen, 1, None].astype(np.int64) + dy
            tx = self.vesicles[chosen, 2, None].astype(np.int64) + dx
            valid = (ty >= 0) & (ty < shape[0]) & (tx >= 0) & (tx < shape[1])
            darken += np.bincount(ty[valid] * shape[1] + tx[valid], ring[valid], minlength=darken.size)
        return darken.reshape(shape)
