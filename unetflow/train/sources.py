"""Training data: the split's sources resolved against their imported volumes, read into memory, checked.

A source is one entry of the split, a labelled volume or a region of it (an annotated crop), with its
training and validation slices. Each is read with its own normalisation (the volume's mean and std, the
policy the checkpoint records), its labels split into cell interior and unannotated pixels, and the loss
weights of every pixel from `unetflow.model.loss`. Before any step a source whose training slices hold only
one class, or fewer annotated pixels than one training tile, is named in a warning, and training data with no
annotated pixel, or only one class over all sources, is an error: a net cannot learn a boundary from it
(it would train silently with class weights (1, 1)).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetflow.config.model import ModelConfig
from unetflow.config.split import SplitConfig, check_entries, source_names
from unetflow.data import omezarr
from unetflow.data.labels import foreground
from unetflow.errors import InputError
from unetflow.geometry import NetGeometry
from unetflow.model import loss
from unetflow.predict.plan import check_depth
from unetflow.train.weights import class_counts

log = logging.getLogger(__name__)

Span = tuple[int, int]


@dataclass(frozen=True)
class TrainingSource:
    """One source of training data: an imported volume (and its weight maps), slices and region."""

    name: str
    data: Path
    weights: Path | None
    train: list[int]
    val: list[int]
    rows: Span | None = None
    columns: Span | None = None

    def identity(self) -> list[Any]:
        """What makes this source's data (for the run's fingerprint; the name is only a label)."""
        mean, std = omezarr.normalization(self.data)
        return [self.train, self.val, self.rows, self.columns, mean, std]


@dataclass
class TrainingData:
    """The slices of one role of a source, in memory: normalised raw, binary labels (0/1), the loss
    weights (0 where unannotated) and the mask of unannotated pixels (None: every pixel is annotated).

    For a net that sees along z, one run of consecutive slices; a validation run's raw holds the volume's
    slices around it as context, and `z_range` says which of its slices the labels are of (None: all).
    """

    raw: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    unannotated: np.ndarray | None = None
    name: str = ""
    z_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class ClassCounts:
    """Annotated pixels of each class in a source's training slices, and the unannotated ones."""

    background: int
    foreground: int
    unannotated: int = 0

    @property
    def annotated(self) -> int:
        """Pixels with a label."""
        return self.background + self.foreground

    def __add__(self, other: ClassCounts) -> ClassCounts:
        return ClassCounts(
            self.background + other.background,
            self.foreground + other.foreground,
            self.unannotated + other.unannotated,
        )


def resolve_sources(
    split: SplitConfig | Sequence[SplitConfig],
    data: Mapping[str, str | Path],
    weights: Mapping[str, str | Path | None] | None = None,
    *,
    keys: Sequence[str] | None = None,
) -> list[TrainingSource]:
    """The entries of `split` that train or validate, as sources of the imported volumes `data` (by volume
    name; `weights` their weight maps). Slices and regions are checked against the volumes' shapes."""
    entries = [split] if isinstance(split, SplitConfig) else list(split)
    keys = (
        list(keys)
        if keys is not None
        else ["split"]
        if len(entries) == 1
        else [f"split[{i}]" for i in range(len(entries))]
    )
    missing = sorted({entry.volume for entry in entries if _reads(entry) and entry.volume not in data})
    if missing:
        raise InputError(f"split names volume(s) {missing} that training was given no imported data of")
    shapes = {name: tuple(omezarr.open_image(path).shape) for name, path in data.items()}
    chosen = check_entries(entries, keys, shapes)
    sources = []
    for entry, name, slices in zip(entries, source_names(entries), chosen, strict=True):
        if slices is None or not (slices["train"] or slices["val"]):
            continue
        _, rows, columns = entry.box(shapes[entry.volume])
        full = shapes[entry.volume][1:]
        sources.append(
            TrainingSource(
                name=name,
                data=Path(data[entry.volume]),
                weights=None
                if weights is None or weights.get(entry.volume) is None
                else Path(str(weights[entry.volume])),
                train=slices["train"],
                val=slices["val"],
                rows=None if rows == (0, full[0]) else rows,
                columns=None if columns == (0, full[1]) else columns,
            )
        )
    if not any(source.train for source in sources):
        raise InputError('split names no training slices; give some, e.g. train: "0-9"')
    return sources


def training_voxel_size(
    sources: Sequence[TrainingSource], model: ModelConfig
) -> tuple[float, float, float] | None:
    """The voxel size (z, y, x) a 3-D net's layout is chosen from: the training volumes' (as imported), which
    must give one layout; None where the net needs none (a 2-D net, or kernels and pools given)."""
    if model.dims == 2 or model.kernels != "auto":
        return None
    found = {str(source.data): omezarr.voxel_size(source.data) for source in sources}
    layouts = {model.layout(size) for size in found.values()}
    if len(layouts) > 1:
        raise InputError(
            f"the training volumes' voxel sizes {found} give 3-D nets of different layouts (model.kernels: "
            "auto); train on volumes of one voxel size, or set model.kernels and model.pools"
        )
    return next(iter(found.values()))


def _reads(entry: SplitConfig) -> bool:
    return entry.train not in ("", []) or entry.val not in ("", [])


def load_slices(
    data: str | Path,
    weights: str | Path | None,
    slices: list[int],
    *,
    loss_weights: str = "border",
    rows: Span | None = None,
    columns: Span | None = None,
    name: str = "",
) -> TrainingData:
    """Read the chosen slices (rows, columns) of an imported dataset and its weight maps into memory."""
    labels_array = omezarr.open_labels(data)
    if labels_array is None:
        raise InputError(
            f"{data} has no labels: training needs a volume with labels (config volumes.*.labels)"
        )
    if not slices:
        raise InputError(f"no slices selected for training/validation from {data}: check config split")
    window = (slice(*rows) if rows else slice(None), slice(*columns) if columns else slice(None))
    labels, unannotated = foreground(
        np.stack([labels_array[(i, *window)] for i in slices]), omezarr.label_ignore(data)
    )
    if unannotated is not None:  # a slice without an annotated pixel (a frame without gold) teaches nothing
        kept = [n for n, mask in enumerate(unannotated) if not mask.all()]
        if not kept:
            raise InputError(f"{data}: slices {slices[:5]} hold no annotated pixel; choose annotated slices")
        if len(kept) < len(slices):
            log.info(
                "%s: %d of %d slices hold no annotated pixel and are left out",
                data,
                len(slices) - len(kept),
                len(slices),
            )
            slices, labels, unannotated = [slices[n] for n in kept], labels[kept], unannotated[kept]
    raw = read_raw(data, slices, rows=rows, columns=columns)
    if loss.uses_class_weights(loss_weights) and weights is None:
        raise InputError(f"train.loss_weights {loss_weights} needs the weight maps: give the weights Zarr")
    weight_map = None
    if loss.uses_weight_map(loss_weights) and weights is not None:
        weight_array = omezarr.open_image(weights)
        weight_map = np.stack([weight_array[(i, *window)] for i in slices])
    pixel_weights = loss.pixel_weights(
        loss_weights,
        labels,
        unannotated=unannotated,
        weight_map=weight_map,
        class_weights=loss.class_weights_of(weights) if loss.uses_class_weights(loss_weights) else None,
    )
    return TrainingData(raw=raw, labels=labels, weights=pixel_weights, unannotated=unannotated, name=name)


def read_raw(
    data: str | Path, slices: Sequence[int], *, rows: Span | None = None, columns: Span | None = None
) -> np.ndarray:
    """The chosen slices (rows, columns) of an imported volume's raw image, z-scored with its statistics."""
    raw_array = omezarr.open_image(data)
    window = (slice(*rows) if rows else slice(None), slice(*columns) if columns else slice(None))
    mean, std = omezarr.normalization(data)
    return omezarr.normalize(np.stack([raw_array[(i, *window)] for i in slices]), mean, std)


def runs_of(slices: Sequence[int]) -> list[Span]:
    """Sorted slice indices as runs of consecutive slices, [start, stop) each."""
    runs: list[list[int]] = []
    for index in sorted(set(slices)):
        if runs and index == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([index, index + 1])
    return [(start, stop) for start, stop in runs]


def context_range(start: int, stop: int, depth: int, *, margin: int, minimum: int) -> Span:
    """The slices [low, high) of a volume of `depth` slices read around the run [start, stop): `margin` on
    each side, more where the run and its margins hold fewer than `minimum` slices, within the volume."""
    low, high = max(0, start - margin), min(depth, stop + margin)
    while high - low < minimum and (low > 0 or high < depth):
        low, high = max(0, low - 1), min(depth, high + 1)
    return low, high


def load_role(
    source: TrainingSource, role: str, *, loss_weights: str, net: NetGeometry | None = None
) -> list[TrainingData]:
    """The `role` ("train" or "val") slices of a source in memory: as `load_source` for a 2-D net; for a net
    that sees along z (3-D, or 2-D with context slices) one TrainingData per run of consecutive slices.

    A training run stands alone (the samplers mirror it at its ends, so no slice of another role enters
    training); a validation run is read with the volume's slices around it (its margin along z), as the
    prediction of the whole volume reads them. A 3-D net on a volume thinner than its smallest input is an
    InputError naming the source.
    """
    net = net or NetGeometry()
    if net.dims == 2 and net.context == 0:
        found = load_source(source, role, loss_weights=loss_weights)
        return [] if found is None else [found]
    depth = int(omezarr.open_image(source.data).shape[0])
    check_depth(net, depth, name=f"split source {source.name!r} (volume {source.data})")
    found = []
    for start, stop in runs_of(getattr(source, role)):
        run = load_slices(
            source.data,
            source.weights,
            list(range(start, stop)),
            loss_weights=loss_weights,
            rows=source.rows,
            columns=source.columns,
            name=source.name,
        )
        if role == "val":
            low, high = context_range(start, stop, depth, margin=net.z.margin, minimum=net.min_slices)
            run.raw = read_raw(source.data, range(low, high), rows=source.rows, columns=source.columns)
            run.z_range = (start - low, stop - low)
        found.append(run)
    return found


def joined(runs: Sequence[TrainingData]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """The labels, loss weights and per-slice unannotated masks (None: all annotated) of several runs."""
    labels, weights = (np.concatenate([getattr(run, name) for run in runs]) for name in ("labels", "weights"))
    masks = [
        mask
        for run in runs
        for mask in (run.unannotated if run.unannotated is not None else [None] * len(run.labels))
    ]
    return labels, weights, masks


def load_source(source: TrainingSource, role: str, *, loss_weights: str) -> TrainingData | None:
    """The `role` ("train" or "val") slices of a source in memory (None where it has none)."""
    slices = getattr(source, role)
    if not slices:
        return None
    return load_slices(
        source.data,
        source.weights,
        slices,
        loss_weights=loss_weights,
        rows=source.rows,
        columns=source.columns,
        name=source.name,
    )


def count_classes(
    data: str | Path,
    slices: Sequence[int],
    *,
    rows: Span | None = None,
    columns: Span | None = None,
) -> ClassCounts:
    """The class counts of the chosen slices (and rows and columns) of an imported dataset, slice by slice."""
    labels_array = omezarr.open_labels(data)
    if labels_array is None:
        raise InputError(
            f"{data} has no labels: training needs a volume with labels (config volumes.*.labels)"
        )
    ignore = omezarr.label_ignore(data)
    window = (slice(*rows) if rows else slice(None), slice(*columns) if columns else slice(None))
    total = ClassCounts(0, 0)
    for index in slices:
        interior, unannotated = foreground(np.asarray(labels_array[(index, *window)]), ignore)
        background, cells = class_counts(interior, unannotated)
        total = total + ClassCounts(background, cells, 0 if unannotated is None else int(unannotated.sum()))
    return total


def check_training_data(counts: Mapping[str, ClassCounts], *, tile: int | None = None) -> None:
    """Warn of sources whose training slices hold one class only or fewer annotated pixels than one output
    tile (`tile` x `tile`); an error where a source has no annotated pixel or all of them one class."""
    for name, count in counts.items():
        if count.annotated == 0:
            raise InputError(
                f"split source {name!r}: its training slices hold no annotated pixel (all are the ignore "
                "value); check volumes.*.labels.ignore or choose other slices"
            )
        if count.background == 0 or count.foreground == 0:
            only = "cell interior" if count.background == 0 else "membrane / background"
            log.warning(
                "split source %r: its training slices hold only %s (%d pixels); it teaches no boundary",
                name,
                only,
                count.annotated,
            )
        if tile is not None and count.annotated < tile * tile:
            log.warning(
                "split source %r: %d annotated pixels in its training slices, fewer than one %d x %d "
                "training tile; it is drawn in proportion to its area and its padding does not train",
                name,
                count.annotated,
                tile,
                tile,
            )
    pooled = sum(counts.values(), ClassCounts(0, 0))
    if pooled.background == 0 or pooled.foreground == 0:
        only = "cell interior" if pooled.background == 0 else "membrane / background"
        raise InputError(
            f"the training slices of every split source ({', '.join(counts)}) hold only {only}: the net "
            "cannot learn a boundary (class weights would be (1, 1)); check the labels (labels.invert? "
            "labels.ignore?) and the split's train slices"
        )


def pooled_class_weights(counts: Mapping[str, ClassCounts]) -> tuple[float, float]:
    """The class weights (background, foreground) that balance the annotated pixels of every source."""
    from unetflow.train.weights import class_balance_from_counts

    pooled = sum(counts.values(), ClassCounts(0, 0))
    return class_balance_from_counts((pooled.background, pooled.foreground))
