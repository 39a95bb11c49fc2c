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

from unetflow.config.model import Config, ModelConfig, SourceConfig, VolumeConfig
from unetflow.config.split import check_entries
from unetflow.data import zarrmeta
from unetflow.errors import InputError
from unetflow.layout import prediction_summary
from unetflow.readers.registry import detect_format, format_from_suffix, reader_for
from unetflow.stores import Location, StoreOptions, is_url

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")


def read_in_place(volume: VolumeConfig) -> bool:
    """Whether a configured volume is predicted where it lies: an unlabelled source whose format is chunked
    (Zarr, N5, HDF5). Labelled volumes are imported: they train or are evaluated, and are small."""
    if volume.raw is None or volume.labelled:
        return False
    if volume.raw.in_place:
        return True
    name = volume.raw.format
    if name is None:
        path = Path(volume.raw.path) if volume.raw.path is not None else Path(volume.raw.local_name)
        name = detect_format(path) if path.exists() else format_from_suffix(path)
    return name is not None and reader_for(name).chunked


def shape_of(
    path: str | Path | None,
    *,
    format: str | None = None,
    member: str | None = None,
    level: int | str | None = None,
    anon: bool = False,
    endpoint_url: str | None = None,
    profile: str | None = None,
) -> tuple[int, ...] | None:
    """The (z, y, x) shape of a volume from its header (Zarr and TIFF without importing much, any other
    format through its reader, a URL through its store: metadata only); None where it does not exist yet."""
    if path is None:
        return None
    if is_url(path) and not Location(path).is_local:
        from unetflow.readers import open_input

        options = StoreOptions(anon=anon, endpoint_url=endpoint_url, profile=profile)
        with open_input(path, format=format, member=member, level=level, options=options) as volume:
            return tuple(volume.shape)
    target = Path(path)
    if not target.exists():
        return None
    shape = None
    if member is None and level is None:
        if target.is_dir():
            shape = zarrmeta.image_shape(target)
        elif target.suffix.lower() in TIFF_SUFFIXES:
            shape = _tiff_shape(target)
    if shape is None:
        from unetflow.readers import open_input

        with open_input(target, format=format, member=member, level=level) as volume:
            return tuple(volume.shape)
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
    """The shape of a path source, or a url read in place, from its header (a URL's store is reached
    before any job: access, bucket and key are checked); a missing or unreadable one is an error."""
    if source is not None and source.in_place:
        options = source.store_options
        try:
            return shape_of(
                source.url,
                format=source.format,
                member=source.member,
                level=source.level,
                **options.to_dict(),
            )
        except InputError as error:
            raise InputError(f"config {key}: {error}") from None
    if source is None or source.path is None:
        return None
    if not Path(source.path).exists():
        raise InputError(f"config {key}.path: {source.path} does not exist; fix the path")
    try:
        return shape_of(source.path, format=source.format, member=source.member, level=source.level)
    except InputError as error:
        raise InputError(f"config {key}: {error}") from None


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
    files = {name: str(volume.raw.path) for name, volume in config.volumes.items() if volume.raw is not None}
    check_entries(config.split_entries(), config.split_keys(), shapes, files=files)
    if config.ctc is not None:
        for key, source in (("archive", config.ctc.archive), ("test_archive", config.ctc.test_archive)):
            local = None if source is None or source.startswith(("http://", "https://")) else source
            if local is not None and not Path(local.removeprefix("file://")).exists():
                raise InputError(
                    f"config ctc.{key}: {local} does not exist; give the dataset's .zip or unpacked folder, "
                    "or its URL"
                )
    if config.pretrained is not None and config.pretrained.path is not None:
        check_model(config.pretrained.path, config.pretrained.sha256)
    init = config.train.init_from
    if init is not None and init.path is not None:
        check_init(init.path, init.sha256, config.model)


def check_model(path: str, sha256: str | None) -> None:
    """A pretrained model file: present, of the configured checksum, a unetflow checkpoint of a known net."""
    from unetflow.data.download import verify_file
    from unetflow.model.checkpoint import load_model

    if not Path(path).is_file():
        raise InputError(f"config pretrained.path: {path} does not exist; give the trained model's file")
    verify_file(path, sha256, what="pretrained model")
    load_model(path)


def check_init(path: str, sha256: str | None, section: ModelConfig) -> None:
    """A model to fine-tune: present, of the configured checksum, a unetflow net the config's `model:`
    section does not contradict (unetflow.model.checkpoint.init_architecture)."""
    from unetflow.data.download import verify_file
    from unetflow.model.checkpoint import init_architecture, load_checkpoint

    if not Path(path).exists():
        raise InputError(f"config train.init_from.path: {path} does not exist; give the trained model's file")
    if Path(path).is_file():
        verify_file(path, sha256, what="train.init_from model")
    init_architecture(load_checkpoint(path), section, source=path)


def invalidate_incomplete_groups(
    target: str | Path | Location, flags: list[str], *, summary: str | None = None
) -> list[int]:
    """Remove the flag of each finished block group whose shards changed on disk, and the prediction's
    summary with them; returns the groups' numbers.

    The summary goes too because Snakemake does not make a missing intermediate file (a flag) again while
    the outputs after it (the summary that rule all asks for) are present: without it the next run would
    report nothing to be done and leave the shards missing.
    """
    from unetflow.predict.progress import incomplete_groups

    summary_file = Path(summary if summary is not None else prediction_summary(str(target)))
    finished = summary_file.exists() or any(Path(flag).exists() for flag in flags)
    if not finished or zarrmeta.group_attrs(target) is None:
        return []
    try:
        stale = sorted(incomplete_groups(target))
    except InputError:
        return []
    redo = [g for g in stale if g < len(flags) and (summary_file.exists() or Path(flags[g]).exists())]
    for group in redo:
        log.warning("%s: block group %d has shards missing or changed on disk: it runs again", target, group)
        Path(flags[group]).unlink(missing_ok=True)
    if redo:
        summary_file.unlink(missing_ok=True)
    return redo
