"""The data steps: the embedded synthetic volume, downloads, the import into OME-Zarr, the class balance over
the training sources and the border weight maps."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import tifffile
from tqdm.dask import TqdmCallback

from unetflow.atomic import atomic_path, protect_inputs
from unetflow.config.ctc import CTCConfig
from unetflow.config.model import (
    UNSTATED_VOXEL_SIZE,
    ModelConfig,
    SyntheticConfig,
    VolumeConfig,
    WeightsConfig,
)
from unetflow.config.slices import select_slices
from unetflow.config.split import Split, split_entries, split_keys
from unetflow.data import omezarr
from unetflow.data.download import fetch, verify_file
from unetflow.data.importer import import_volume, invert_binary_labels
from unetflow.data.synthesize import synthesize_volume
from unetflow.data.synthesize3d import synthesize_volume_3d
from unetflow.errors import InputError
from unetflow.logs import bar_options, setup_logging
from unetflow.steps.common import write_json
from unetflow.train.sources import check_training_data, count_classes, pooled_class_weights, resolve_sources
from unetflow.train.weights import weight_map_volume, weight_map_volume_3d

log = logging.getLogger(__name__)


def run_synthesize(
    *, raw: str, labels: str, options: SyntheticConfig, voxel_size: Sequence[float] | None = None
) -> None:
    """Generate the embedded EM-like volume and write raw and instance labels as multi-page TIFFs.

    In 3d mode `voxel_size` (z, y, x; the volume's, null: isotropic) says how far apart the sections lie.
    """
    setup_logging()
    if Path(raw).resolve() == Path(labels).resolve():
        raise InputError(
            f"{raw}: both raw and labels would be written to this one file (the labels replacing the raw); "
            "give them two paths"
        )
    if options.mode == "3d":
        image, cells = synthesize_volume_3d(
            shape=tuple(options.shape),
            seed=options.seed,
            voxel_size=tuple(voxel_size or UNSTATED_VOXEL_SIZE),
            cell_diameter=options.cell_diameter,
            membrane_contrast=options.membrane_contrast,
            tilt=options.tilt,
            wander=options.wander,
        )
    else:
        image, cells = synthesize_volume(
            shape=tuple(options.shape),
            seed=options.seed,
            cell_diameter=options.cell_diameter,
            membrane_contrast=options.membrane_contrast,
        )
    for path, data in ((raw, image), (labels, cells)):
        with atomic_path(path) as tmp:
            # axes ZYX: a stack of 3 or 4 slices is not an RGB(A) image
            tifffile.imwrite(
                tmp, data, compression="zlib", photometric="minisblack", metadata={"axes": "ZYX"}
            )
    log.info(
        "synthesized %s slices of %s x %s (%s, seed %d, %d cells)",
        *options.shape,
        options.mode,
        options.seed,
        cells.max(),
    )


def run_download(*, source: str, target: str, sha256: str | None) -> None:
    """Fetch one source file, verified against its checksum."""
    setup_logging()
    with protect_inputs([_local(source)], outputs=[target]):
        fetch(source, target, sha256=sha256)


def _local(source: str) -> str | None:
    """The local file a download source names (a path or file:// URL), or None for http(s)."""
    if source.startswith(("http://", "https://")):
        return None
    return source.removeprefix("file://")


def run_import(
    *, raw: str, labels: str | None, target: str, volume: VolumeConfig, ctc: CTCConfig | None = None
) -> None:
    """Import a volume (and its labels) into OME-Zarr with voxel size and normalisation statistics.

    `path` sources are checked against their sha256 first (url sources were checked when downloaded);
    labels with `invert` are imported inverted, instance labels with `separate` get the background forced
    between touching cells (unetflow.data.instances). A sequence of the `ctc` dataset (`raw`: its fetched
    folder) is imported by unetflow.steps.ctc.run_ctc_import.
    """
    if volume.ctc is not None:
        if ctc is None:
            raise ValueError(f"{target}: a sequence of a ctc dataset needs the config's ctc section")
        from unetflow.steps.ctc import run_ctc_import

        run_ctc_import(dataset=raw, target=target, volume=volume, ctc=ctc)
        return
    setup_logging()
    entry = volume
    with protect_inputs([raw, labels], outputs=[target]):
        for role, path, source in (("raw", raw, entry.raw), ("labels", labels, entry.labels)):
            if path is not None and source is not None and source.path is not None:
                verify_file(path, source.sha256, what=f"{role} path source")
        label_data: str | da.Array | None = labels
        ignore = entry.labels.ignore if entry.labels is not None else None
        if labels is not None and entry.labels is not None and entry.labels.invert:
            label_data = invert_binary_labels(
                labels, fmt=entry.labels.format, member=entry.labels.member, ignore=ignore
            )
            log.info("labels of %s inverted: 0 (membrane) where they were non-zero", labels)
        import_volume(
            raw,
            target,
            labels=label_data,
            raw_format=entry.raw.format if entry.raw else None,
            raw_member=entry.raw.member if entry.raw else None,
            labels_format=entry.labels.format if entry.labels else None,
            labels_member=entry.labels.member if entry.labels else None,
            labels_ignore=ignore,
            labels_separate=entry.labels.separate if entry.labels else None,
            labels_separate_in=entry.labels.separate_in if entry.labels else "slice",
            separate_key=f"volumes.{Path(target).stem}.labels.separate",
            voxel_size=tuple(entry.voxel_size or UNSTATED_VOXEL_SIZE),
            unit=entry.unit,
        )
    log.info("imported %s -> %s", raw, target)


def run_class_balance(*, data: Mapping[str, str], split: Split, target: str) -> dict[str, Any]:
    """The class weights w_c over the annotated training pixels of every split source (`data`: the imported
    volumes by name), checked (one class only, no annotation), written as JSON with each source's counts."""
    setup_logging()
    entries = split_entries(split)
    with protect_inputs(list(data.values()), outputs=[target]):
        sources = resolve_sources(entries, data, keys=split_keys(split))
        counts = {
            source.name: count_classes(source.data, source.train, rows=source.rows, columns=source.columns)
            for source in sources
            if source.train
        }
        check_training_data(counts)
        class_weights = pooled_class_weights(counts)
        payload = {
            "class_weights": list(class_weights),
            "sources": {
                name: {
                    "background": count.background,
                    "foreground": count.foreground,
                    "unannotated": count.unannotated,
                }
                for name, count in counts.items()
            },
        }
        write_json(target, payload)
    log.info(
        "class weights (background, foreground) over %d training sources: %s", len(counts), class_weights
    )
    return payload


def run_weights(
    *,
    data: str,
    target: str,
    options: WeightsConfig,
    train_slices: str | list[int] | None = None,
    class_balance: str | None = None,
    workers: int = 2,
    model: ModelConfig | None = None,
) -> None:
    """The paper's weight map for every slice; w_c from `class_balance` (the JSON of run_class_balance,
    shared by every training volume), else balanced over this volume's `train_slices`. For a 3-D net
    (`model.dims` 3) the map of the whole volume in 3-D, its distances in physical units (the voxel size)."""
    setup_logging()
    with protect_inputs([data, class_balance], outputs=[target]):
        labels = omezarr.open_labels(data)
        if labels is None:
            raise InputError(f"{data} has no labels: the weight map needs labels (config volumes.*.labels)")
        ignore = omezarr.label_ignore(data)
        if class_balance is not None:
            class_weights = tuple(json.loads(Path(class_balance).read_text())["class_weights"])
            log.info("class weights (background, foreground) from %s: %s", class_balance, class_weights)
        else:
            chosen = select_slices(train_slices, labels.shape[0], what="split.train")
            counts = {str(data): count_classes(data, chosen)}
            check_training_data(counts)
            class_weights = pooled_class_weights(counts)
            log.info(
                "class weights (background, foreground) over %d training slices: %s",
                len(chosen),
                class_weights,
            )
        kind = omezarr.read_attrs(data).get("labels", {}).get(omezarr.DEFAULT_LABELS)
        settings = {
            "w0": options.w0,
            "sigma": options.sigma,
            "class_weights": class_weights,
            "binary": None if kind is None else kind == "binary",
            "connectivity": options.connectivity,
            "ignore": ignore,
        }
        if model is not None and model.dims == 3:
            voxel = np.asarray(omezarr.voxel_size(data))
            log.info(
                "3-D weight map: distances with voxels %s apart (finest axis = 1 px)", voxel / voxel.min()
            )
            maps = da.from_array(weight_map_volume_3d(labels[:], sampling=voxel / voxel.min(), **settings))
        else:
            stack = da.from_zarr(labels).rechunk((1, *labels.shape[1:]))
            maps = stack.map_blocks(weight_map_volume, dtype=np.float32, **settings)
        with (
            dask.config.set(scheduler="threads", num_workers=workers),
            TqdmCallback(desc="weights", unit="task", **bar_options()),
        ):
            omezarr.write_image(
                target,
                maps,
                voxel_size=omezarr.voxel_size(data),
                attrs={
                    "class_weights": list(class_weights),
                    "w0": options.w0,
                    "sigma": options.sigma,
                    "source": str(data),
                },
            )
