"""The Cell Tracking Challenge's data: its archives fetched and checked, its sequences read as time-lapses.

A challenge dataset (e.g. `DIC-C2DH-HeLa.zip`, `PhC-C2DH-U373.zip`) unpacks to one folder holding, for each
sequence `01`, `02`: the frames `01/tNNN.tif` (8- or 16-bit, one 2-D image each), and in the training
archives the gold segmentation `01_GT/SEG/man_segNNN.tif` (16-bit instance ids) on some frames only, the
tracking marks `01_GT/TRA/man_trackNNN.tif` (one marker per cell on every frame) and silver truth `01_ST/`
(not used). Results go to `01_RES/maskNNN.tif`, one 16-bit label image per frame (`write_results`).

`fetch_dataset` brings a dataset from a URL (http(s) or file://), a local zip or a local folder of that
layout to one folder, atomically: the archive is downloaded (retried, kept when complete), checked as a zip
(a truncated or foreign file is one line of error), unpacked beside its target and checked by its structure
(`scan_dataset`: the sequences, every frame present, readable and of one shape, the gold masks present,
readable, integer and of the frames' shape, the frame size when the config states it) before it is renamed
to its target. A re-run finds the complete folder and does nothing; an interrupted one starts again clean.
The sha256 of what was fetched is recorded beside it, for a lab to pin.

`read_sequence` gives a sequence as a (t, y, x) time-lapse and its labels: gold ids on the gold frames, every
pixel of the other frames unannotated (only gold frames train) and, with `partial: tra`, the cells a gold
frame leaves untraced unannotated too: a tracking marker of that frame that overlaps no gold cell marks a
cell nobody traced, and its pixels, grown by `margin` px but not into a gold cell, are unannotated rather
than background.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage

from unetflow.atomic import atomic_path, remove, remove_stale_temporaries, temporary_sibling
from unetflow.data.download import fetch, sha256_of
from unetflow.errors import InputError

log = logging.getLogger(__name__)

FRAME = re.compile(r"^t(\d+)\.tiff?$")
GOLD = re.compile(r"^man_seg(\d+)\.tiff?$")
TRACK = re.compile(r"^man_track(\d+)\.tiff?$")
MASK = re.compile(r"^mask(\d+)\.tiff?$")
UNANNOTATED = 2**16
"""The value unannotated pixels hold in the labels `read_sequence` returns (above every 16-bit id)."""
RECORD = "unetflow-ctc.json"
"""The record written into a fetched dataset's folder: source, sha256, sequences, frames and gold frames."""


@dataclass(frozen=True)
class SequenceFiles:
    """One sequence of a dataset: its frames by number (0..n-1), gold masks and tracking marks by frame."""

    name: str
    frames: list[Path]
    gold: dict[int, Path] = field(default_factory=dict)
    tracks: dict[int, Path] = field(default_factory=dict)
    shape: tuple[int, int] = (0, 0)
    dtype: str = "uint8"

    def describe(self) -> dict[str, Any]:
        """What the record says of the sequence."""
        return {
            "frames": len(self.frames),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "gold_frames": sorted(self.gold),
            "tracking": bool(self.tracks),
        }


def dataset_root(folder: str | Path) -> Path:
    """The folder holding the sequences: `folder` itself, or its one sub-folder that does (an archive's
    top folder, e.g. DIC-C2DH-HeLa/)."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{path}: no such folder of a Cell Tracking Challenge dataset")
    if any(child.is_dir() and re.fullmatch(r"\d{2}", child.name) for child in path.iterdir()):
        return path
    inner = [child for child in path.iterdir() if child.is_dir() and not child.name.startswith(".")]
    if len(inner) == 1:
        return dataset_root(inner[0])
    raise InputError(
        f"{path}: holds no sequence folder (01/, 02/ of frames tNNN.tif); point ctc.archive at a dataset "
        "of the Cell Tracking Challenge's layout"
    )


def _numbered(folder: Path, pattern: re.Pattern[str]) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = pattern.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def _image_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a TIFF's first page; an unreadable file is an InputError naming it."""
    try:
        with tifffile.TiffFile(path) as handle:
            page = handle.pages[0]
            return tuple(int(s) for s in page.shape), np.dtype(page.dtype)
    except Exception as error:
        raise InputError(
            f"{path}: cannot be read as a TIFF image ({error}); the dataset is damaged"
        ) from None


def scan_sequence(
    root: Path, name: str, *, gold: bool, frame_shape: Sequence[int] | None = None
) -> SequenceFiles:
    """Check one sequence's files (module docstring) and list them; every problem is one InputError."""
    folder = root / name
    frames = _numbered(folder, FRAME)
    if not frames:
        raise InputError(f"{root}: sequence {name}/ is missing or holds no frame tNNN.tif")
    missing = sorted(set(range(max(frames) + 1)) - set(frames))
    if missing:
        raise InputError(
            f"{folder}: frame t{missing[0]:03d}.tif is missing ({len(missing)} frame(s) missing between "
            f"t000 and t{max(frames):03d}): the time-lapse has a hole; fetch the dataset again"
        )
    shapes = {number: _image_header(path) for number, path in frames.items()}
    shape, dtype = shapes[0]
    for number, (other, other_dtype) in shapes.items():
        if other != shape or other_dtype != dtype:
            raise InputError(
                f"{frames[number]}: {other} {other_dtype}, but t000 is {shape} {dtype}: every frame of a "
                "sequence must have one size and type"
            )
    if len(shape) != 2 or dtype.kind not in "uif":
        raise InputError(f"{frames[0]}: frames must be 2-D grey images, got shape {shape} {dtype}")
    if frame_shape is not None and tuple(frame_shape) != shape:
        raise InputError(
            f"{folder}: frames of {shape[0]} x {shape[1]} px, the config states {list(frame_shape)} "
            "(ctc.frame_shape): another dataset than the config names"
        )
    golds = _numbered(root / f"{name}_GT" / "SEG", GOLD)
    if gold and not golds:
        raise InputError(
            f"{root}: sequence {name} has no gold segmentation ({name}_GT/SEG/man_segNNN.tif): training "
            "needs a training archive of the challenge, not a test archive"
        )
    for number, path in golds.items():
        if number not in frames:
            raise InputError(f"{path}: gold of frame {number}, but {name}/ has no t{number:03d}.tif")
        gold_shape, gold_dtype = _image_header(path)
        if gold_shape != shape:
            raise InputError(f"{path}: gold mask of {gold_shape}, its frame is {shape}: they must match")
        if gold_dtype.kind not in "iu":
            raise InputError(
                f"{path}: gold mask of type {gold_dtype}: instance ids must be an integer image (16-bit)"
            )
    tracks = _numbered(root / f"{name}_GT" / "TRA", TRACK)
    return SequenceFiles(name, [frames[n] for n in sorted(frames)], golds, tracks, shape, str(dtype))


def scan_dataset(
    root: str | Path,
    sequences: Sequence[str],
    *,
    gold: bool = True,
    frame_shape: Sequence[int] | None = None,
) -> dict[str, SequenceFiles]:
    """Every named sequence of a dataset folder, checked (`scan_sequence`)."""
    folder = dataset_root(root)
    return {name: scan_sequence(folder, name, gold=gold, frame_shape=frame_shape) for name in sequences}


def _unzip(archive: Path, folder: Path) -> None:
    """Extract a zip into `folder`; a file that is no complete zip, or names paths outside, is refused."""
    if not zipfile.is_zipfile(archive):
        raise InputError(
            f"{archive}: not a zip archive (a truncated download or another file?): delete it and run again, "
            "or point ctc.archive at the dataset's .zip or its unpacked folder"
        )
    try:
        with zipfile.ZipFile(archive) as handle:
            for member in handle.namelist():
                parts = PurePosixPath(member).parts
                if member.startswith(("/", "\\")) or ".." in parts:
                    raise InputError(f"{archive}: member {member!r} points outside the archive; not unpacked")
            broken = handle.testzip()
            if broken is not None:
                raise InputError(f"{archive}: member {broken} is damaged (a truncated download?): delete it")
            handle.extractall(folder)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InputError(f"{archive}: cannot be unpacked ({error}); delete it and fetch it again") from None


def fetch_dataset(
    source: str,
    target: str | Path,
    *,
    sequences: Sequence[str],
    gold: bool = True,
    sha256: str | None = None,
    frame_shape: Sequence[int] | None = None,
    archive: str | Path | None = None,
) -> dict[str, Any]:
    """Bring the dataset at `source` (URL, file:// URL, local zip or folder) to the folder `target`, checked
    (module docstring); the downloaded zip is kept at `archive` (default: `target` + ".zip"). Returns the
    record (also written into the folder)."""
    destination = Path(target)
    remove_stale_temporaries(destination)
    local = Path(source.removeprefix("file://")) if not source.startswith(("http://", "https://")) else None
    if local is not None and local.is_dir():
        staging = None
        root = dataset_root(local)
        checksum = None
    else:
        zipped = Path(archive) if archive is not None else destination.with_name(destination.name + ".zip")
        fetched = fetch(source, zipped, sha256=sha256, copy_local=False)
        checksum = sha256_of(fetched)
        staging = temporary_sibling(destination.with_name(destination.name + ".unpack"))
        remove_stale_temporaries(staging.with_name(destination.name + ".unpack"))
        _unzip(fetched, staging)
        root = dataset_root(staging)
    try:
        found = scan_dataset(root, sequences, gold=gold, frame_shape=frame_shape)
        record = {
            "source": source,
            "sha256": checksum,
            "sequences": {name: files.describe() for name, files in found.items()},
        }
        with atomic_path(destination) as tmp:
            shutil.copytree(root, tmp) if staging is None else shutil.move(root, tmp)
            (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    finally:
        if staging is not None:
            remove(staging)
    log.info(
        "%s: %s", destination, ", ".join(f"{n} ({f.describe()['frames']} frames)" for n, f in found.items())
    )
    return record


def _read(path: Path) -> np.ndarray:
    try:
        return np.asarray(tifffile.imread(path))
    except Exception as error:
        raise InputError(
            f"{path}: cannot be read as a TIFF image ({error}); the dataset is damaged"
        ) from None


def untraced(gold: np.ndarray, tracks: np.ndarray, *, margin: int) -> np.ndarray:
    """The pixels of cells a gold frame leaves untraced: each tracking marker that overlaps no gold cell,
    grown by `margin` px (Euclidean), never into a gold cell."""
    markers = np.isin(tracks, np.unique(tracks[(gold > 0) & (tracks > 0)]), invert=True) & (tracks > 0)
    if not markers.any():
        return markers
    if margin > 0:
        markers = ndimage.distance_transform_edt(~markers) <= margin
    return markers & (gold == 0)


def read_sequence(
    root: str | Path, files: SequenceFiles, *, partial: str = "tra", margin: int = 15
) -> tuple[np.ndarray, np.ndarray]:
    """The (t, y, x) frames and labels of a sequence: gold ids on gold frames, `UNANNOTATED` on every other
    frame and (`partial` "tra") on the cells a gold frame leaves untraced (`untraced`)."""
    if partial not in ("tra", "none"):
        raise ValueError(f"partial must be tra or none, got {partial!r}")
    frames = np.stack([_read(path) for path in files.frames])
    labels = np.full(frames.shape, UNANNOTATED, dtype=np.uint32)
    for number, path in files.gold.items():
        gold = _read(path).astype(np.uint32)
        if gold.shape != frames.shape[1:]:
            raise InputError(f"{path}: gold mask of {gold.shape}, its frame is {frames.shape[1:]}")
        labels[number] = gold
        if partial == "tra" and number in files.tracks:
            labels[number][untraced(gold, _read(files.tracks[number]), margin=margin)] = UNANNOTATED
    return frames, labels


def write_sequence(
    root: str | Path,
    name: str,
    frames: np.ndarray,
    *,
    gold: Mapping[int, np.ndarray] | None = None,
    tracks: np.ndarray | None = None,
) -> Path:
    """Write a sequence in the challenge's layout under `root` (frames, gold and tracking marks); for tests,
    benchmarks and labs converting their own time-lapses."""
    folder = Path(root)
    width = max(3, len(str(len(frames) - 1)))
    (folder / name).mkdir(parents=True, exist_ok=True)
    for number, image in enumerate(frames):
        tifffile.imwrite(folder / name / f"t{number:0{width}d}.tif", image)
    if gold:
        (folder / f"{name}_GT" / "SEG").mkdir(parents=True, exist_ok=True)
        for number, ids in gold.items():
            tifffile.imwrite(
                folder / f"{name}_GT" / "SEG" / f"man_seg{number:0{width}d}.tif", ids.astype(np.uint16)
            )
    if tracks is not None:
        (folder / f"{name}_GT" / "TRA").mkdir(parents=True, exist_ok=True)
        for number, marks in enumerate(tracks):
            tifffile.imwrite(
                folder / f"{name}_GT" / "TRA" / f"man_track{number:0{width}d}.tif", marks.astype(np.uint16)
            )
    return folder


def result_masks(folder: str | Path) -> dict[int, Path]:
    """The masks of a result folder (`NN_RES/maskNNN.tif`) by frame number."""
    return _numbered(Path(folder), MASK)


def read_record(folder: str | Path) -> dict[str, Any]:
    """What `fetch_dataset` recorded of a fetched dataset (source, sha256, sequences); {} for a folder it
    did not fetch."""
    path = Path(folder) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def write_results(folder: str | Path, cells: np.ndarray) -> Path:
    """The challenge's result folder (`NN_RES`): `maskNNN.tif`, 16-bit ids, one per frame, written
    atomically (the whole folder appears at once); more than 65535 cells in a frame is an error."""
    stack = np.asarray(cells)
    if stack.ndim != 3:
        raise ValueError(f"cells must be a (t, y, x) stack, got shape {stack.shape}")
    if stack.size and int(stack.max()) > np.iinfo(np.uint16).max:
        raise InputError(f"{folder}: a frame holds ids above 65535, which 16-bit result masks cannot store")
    width = max(3, len(str(len(stack) - 1)))
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for number, frame in enumerate(stack):
            tifffile.imwrite(tmp / f"mask{number:0{width}d}.tif", frame.astype(np.uint16), compression="zlib")
    return Path(folder)
