"""Checks that run before any job: the config against the real data, and finished work against the disk.

The config model checks what a config alone can tell; here every volume that exists already is read from
its header (shape, never the pixels): raw and labels of one shape, split slices and regions within the
volume, a pretrained model that is a unetflow checkpoint with the configured checksum, and a model to
fine-tune (`train.init_from`) whose net the config does not contradict. A group of a prediction whose
shards were deleted or truncated since it finished loses its completion flag, so the workflow redoes it.
Light imports only: the workflow runs this while parsing the Snakefile.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unetflow import zarrmeta
from unetflow.config import Config, ModelConfig, SourceConfig, check_entries
from unetflow.errors import InputError

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")


def shape_of(path: str | Path | None) -> tuple[int, ...] | None:
    """The (z, y, x) shape of a Zarr/OME-Zarr or TIFF volume from its header; None where it does not exist
    yet or cannot be told without reading pixels."""
    if path is None:
        return None
    target = Path(path)
    if not target.exists():
        return None
    if target.is_dir():
        shape = zarrmeta.image_shape(target)
    elif target.suffix.lower() in TIFF_SUFFIXES:
        shape = _tiff_shape(target)
    else:
        return None
    if shape is None:
        return None
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    return (1, *shape) if len(shape) == 2 else shape


def _tiff_shape(path: Path) -> tuple[int, ...] | None:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape) if tif.series else None
    except Exception as error:
        raise InputError(f"{path}: cannot be read as a TIFF ({error}); export or download it again") from None


def _source_shape(source: SourceConfig | None, key: str) -> tuple[int, ...] | None:
    """The shape of a path source that names a whole file or store (members are read by the import)."""
    if source is None or source.path is None:
        return None
    if not Path(source.path).exists():
        raise InputError(f"config {key}.path: {source.path} does not exist; fix the path")
    if source.member is not None:
        return None
    return shape_of(source.path)


def check_data(config: Config) -> None:
    """Check the config against every volume and model that exists already (headers only)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, volume in config.volumes.items():
        raw = _source_shape(volume.raw, f"volumes.{name}.raw")
        labels = _source_shape(volume.labels, f"volumes.{name}.labels")
        if raw is not None and labels is not None and raw != labels:
            raise InputError(
                f"config volumes.{name}: labels {volume.labels.path} of shape {labels} do not match the raw "
                f"volume {volume.raw.path} of shape {raw}; use the labels made for this volume"
            )
        if raw is not None and len(raw) == 3:
            shapes[name] = raw
    check_entries(config.split_entries(), config.split_keys(), shapes)
    if config.pretrained is not None and config.pretrained.path is not None:
        check_model(config.pretrained.path, config.pretrained.sha256)
    init = config.train.init_from
    if init is not None and init.path is not None:
        check_init(init.path, init.sha256, config.model)


def check_model(path: str, sha256: str | None) -> None:
    """A pretrained model file: present, of the configured checksum, a unetflow checkpoint of a known net."""
    from unetflow.checkpoint import load_model
    from unetflow.download import verify_file

    if not Path(path).is_file():
        raise InputError(f"config pretrained.path: {path} does not exist; give the trained model's file")
    verify_file(path, sha256, what="pretrained model")
    load_model(path)


def check_init(path: str, sha256: str | None, section: ModelConfig) -> None:
    """A model to fine-tune: present, of the configured checksum, a unetflow net the config's `model:`
    section does not contradict (unetflow.checkpoint.init_architecture)."""
    from unetflow.checkpoint import init_architecture, load_checkpoint
    from unetflow.download import verify_file

    if not Path(path).exists():
        raise InputError(f"config train.init_from.path: {path} does not exist; give the trained model's file")
    if Path(path).is_file():
        verify_file(path, sha256, what="train.init_from model")
    init_architecture(load_checkpoint(path), section, source=path)


def invalidate_incomplete_groups(target: str | Path, flags: list[str]) -> list[int]:
    """Remove the flag of each finished block group whose shards changed on disk; returns their numbers."""
    from unetflow.predict.progress import incomplete_groups

    if not any(Path(flag).exists() for flag in flags) or zarrmeta.group_attrs(target) is None:
        return []
    try:
        stale = sorted(incomplete_groups(target))
    except InputError:
        return []
    redo = [group for group in stale if group < len(flags) and Path(flags[group]).exists()]
    for group in redo:
        log.warning("%s: block group %d has shards missing or changed on disk: it runs again", target, group)
        Path(flags[group]).unlink()
    return redo
