"""Importing volumes into the dataset store: exact pixels, label conversion, validation before writing."""

from __future__ import annotations

from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Reader

from unetflow.config.slices import select_slices
from unetflow.data import omezarr
from unetflow.data.importer import import_volume
from unetflow.errors import InputError


@pytest.fixture
def raw() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=(3, 24, 32), dtype=np.uint8)


def write_tif(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def assert_nothing_written(target: Path) -> None:
    """Neither the store nor any temporary sibling of it exists."""
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}")] == []


def test_isbi_import(isbi_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "isbi.zarr"
    out = import_volume(
        isbi_dir / "train-volume.tif",
        target,
        labels=isbi_dir / "train-labels.tif",
        voxel_size=(50.0, 4.0, 4.0),
    )
    assert out == target
    volume = tifffile.imread(isbi_dir / "train-volume.tif")
    labels = tifffile.imread(isbi_dir / "train-labels.tif")
    image = omezarr.open_image(target)
    assert image.dtype == np.uint8 and image.shape == (25, 512, 512)
    np.testing.assert_array_equal(image[:], volume)
    cells = omezarr.open_labels(target, "cells")
    assert cells is not None and cells.dtype == np.uint8
    np.testing.assert_array_equal(cells[:], (labels == 255).astype(np.uint8))
    attrs = omezarr.read_attrs(target)
    assert attrs["voxel_size"] == [50.0, 4.0, 4.0] and attrs["unit"] == "nanometer"
    assert attrs["labels"] == {"cells": "binary"}
    mean, std = omezarr.normalization(target)
    assert mean == pytest.approx(volume.mean(dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(volume.std(dtype=np.float64), rel=1e-12)
    nodes = list(Reader(parse_url(str(target)))())
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0][:2]), volume[:2])
    assert nodes[0].metadata["coordinateTransformations"][0][0]["scale"] == [50.0, 4.0, 4.0]
    assert any(isinstance(spec, Label) for node in nodes for spec in node.specs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isbi.zarr"]


def test_instance_labels_float_raw_and_reimport(tmp_path: Path, raw: np.ndarray) -> None:
    target = tmp_path / "vol.zarr"
    cells = (raw // 60).astype(np.int32)
    data = raw.astype(np.float32) / 7.0
    import_volume(data, target, labels=cells, voxel_size=(40, 5, 5), unit="micrometer", chunks=(1, 8, 16))
    image = omezarr.open_image(target)
    assert image.dtype == np.float32 and image.chunks == (1, 8, 16)
    np.testing.assert_array_equal(image[:], data)
    stored = omezarr.open_labels(target)
    assert stored is not None and stored.dtype == np.uint32
    np.testing.assert_array_equal(stored[:], cells)
    assert omezarr.read_attrs(target)["labels"] == {"cells": "instance"}
    assert omezarr.read_attrs(target)["unit"] == "micrometer"
    # a second import replaces the store as a whole
    import_volume(raw, target, voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(omezarr.open_image(target)[:], raw)
    assert omezarr.open_labels(target) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.zarr"]


def test_binary_kind_explicit_and_auto_for_zero_one(tmp_path: Path, raw: np.ndarray) -> None:
    target = tmp_path / "b.zarr"
    import_volume(raw, target, labels=(raw > 100).astype(bool))
    assert omezarr.read_attrs(target)["labels"] == {"cells": "binary"}
    labels = omezarr.open_labels(target)
    assert labels is not None
    np.testing.assert_array_equal(labels[:], (raw > 100).astype(np.uint8))
    with pytest.raises(InputError, match=r"labels_kind is binary but the labels hold several non-zero"):
        import_volume(raw, tmp_path / "c.zarr", labels=(raw // 60), labels_kind="binary")
    assert_nothing_written(tmp_path / "c.zarr")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "shape",
            r"labels\.tif: labels of shape \(2, 24, 32\) \(z, y, x\) do not match the raw volume .*raw\.tif",
        ),
        ("empty_labels", r"labels\.tif: the labels hold no foreground"),
        ("constant", r"raw\.tif: the raw volume is constant \(every voxel is 7\)"),
        ("nan", r"raw\.tif: the raw volume holds 2 non-finite values"),
        ("corrupt", r"raw\.tif: cannot be read as a TIFF .*corrupt"),
        ("empty_file", r"raw\.tif: cannot be read as a TIFF .*empty"),
        ("fractional", r"labels\.tif: labels hold fractional"),
        ("negative", r"labels\.tif: labels hold negative values"),
        ("complex", r"raw\.tif: pixel type complex64 is not supported"),
    ],
)
def test_bad_input_is_refused_before_writing(
    tmp_path: Path, raw: np.ndarray, case: str, message: str
) -> None:
    labels = (raw > 100).astype(np.uint8) * 255
    raw_path, labels_path = tmp_path / "raw.tif", tmp_path / "labels.tif"
    if case == "shape":
        labels = labels[:2]
    elif case == "empty_labels":
        labels = np.zeros_like(labels)
    elif case == "fractional":
        labels = labels.astype(np.float32) / 2.0
    elif case == "negative":
        labels = labels.astype(np.int16) - 1
    if case == "constant":
        write_tif(raw_path, np.full_like(raw, 7))
    elif case == "nan":
        floats = raw.astype(np.float32)
        floats[1, 2, 3] = np.nan
        floats[2, 0, 0] = -np.inf
        write_tif(raw_path, floats)
    elif case == "corrupt":
        raw_path.write_bytes(b"\x00garbage, not a TIFF" * 50)
    elif case == "empty_file":
        raw_path.write_bytes(b"")
    elif case == "complex":
        write_tif(raw_path, raw.astype(np.complex64))
    else:
        write_tif(raw_path, raw)
    write_tif(labels_path, labels)
    target = tmp_path / "out.zarr"
    with pytest.raises(InputError, match=message):
        import_volume(raw_path, target, labels=labels_path)
    assert_nothing_written(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif", "raw.tif"]


def test_failed_import_keeps_previous_store(tmp_path: Path, raw: np.ndarray) -> None:
    target = tmp_path / "keep.zarr"
    import_volume(raw, target)
    with pytest.raises(InputError, match="constant"):
        import_volume(np.zeros_like(raw), target)
    np.testing.assert_array_equal(omezarr.open_image(target)[:], raw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.zarr"]


def test_option_checks(tmp_path: Path, raw: np.ndarray) -> None:
    with pytest.raises(InputError, match="voxel_size is"):
        import_volume(raw, tmp_path / "a.zarr", voxel_size=(1, -4, 4))
    with pytest.raises(InputError, match="chunks is"):
        import_volume(raw, tmp_path / "a.zarr", chunks=(1, 0, 4))
    with pytest.raises(InputError, match="labels_kind is 'semantic'"):
        import_volume(raw, tmp_path / "a.zarr", labels=raw, labels_kind="semantic")
    with pytest.raises(InputError, match="raw array: a 4-D array"):
        import_volume(np.stack([raw, raw]), tmp_path / "a.zarr")
    assert list(tmp_path.iterdir()) == []


def test_png_slices_hdf5_and_zarr_inputs(tmp_path: Path, raw: np.ndarray) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    for i, plane in enumerate(raw):
        iio.imwrite(folder / f"z{i}.png", plane)
    h5 = tmp_path / "labels.h5"
    labels = (raw > 100).astype(np.uint8)
    with h5py.File(h5, "w") as f:
        f["seg/cells"] = labels
        f["seg/other"] = labels * 3
    target = tmp_path / "png.zarr"
    import_volume(folder, target, labels=h5, labels_member="seg/cells", voxel_size=(30, 3, 3))
    np.testing.assert_array_equal(omezarr.open_image(target)[:], raw)
    stored = omezarr.open_labels(target)
    assert stored is not None
    np.testing.assert_array_equal(stored[:], labels)
    with pytest.raises(InputError, match=r"labels\.h5: no HDF5 dataset 'seg/missing'.*seg/cells, seg/other"):
        import_volume(folder, tmp_path / "bad.zarr", labels=h5, labels_member="seg/missing")
    assert_nothing_written(tmp_path / "bad.zarr")
    # an existing (OME-)Zarr store as input: its level 0, or a labels array inside it
    again = tmp_path / "again.zarr"
    import_volume(target, again, labels=target, labels_member="labels/cells/0", voxel_size=(30, 3, 3))
    np.testing.assert_array_equal(omezarr.open_image(again)[:], raw)
    stored = omezarr.open_labels(again)
    assert stored is not None
    np.testing.assert_array_equal(stored[:], labels)
    assert omezarr.normalization(again) == omezarr.normalization(target)


def test_select_slices() -> None:
    assert select_slices("0-19", 25, what="split.train") == list(range(20))
    assert select_slices("20-24", 25, what="split.val") == [20, 21, 22, 23, 24]
    assert select_slices("0,3,5-7", 10, what="split.test") == [0, 3, 5, 6, 7]
    assert select_slices(" 7 , 2-3 ,2", 10, what="x") == [2, 3, 7]
    assert select_slices([4, 1, np.int64(2)], 5, what="x") == [1, 2, 4]
    assert select_slices(3, 5, what="x") == [3]
    assert select_slices(None, 3, what="x") == [0, 1, 2]
    assert select_slices("all", 2, what="x") == [0, 1]
    with pytest.raises(InputError, match=r"split\.train: slice 25 is out of range; the volume has 25 slices"):
        select_slices("0-25", 25, what="split.train")
    with pytest.raises(InputError, match=r"split\.val: slice 30 is out of range"):
        select_slices([1, 30], 25, what="split.val")
    with pytest.raises(InputError, match="cannot read '0-3,x'"):
        select_slices("0-3,x", 25, what="split.test")
    with pytest.raises(InputError, match="runs backwards"):
        select_slices("5-2", 25, what="split.test")
    with pytest.raises(InputError, match="not a slice index"):
        select_slices([True], 25, what="split.test")


def test_sparse_labels_store_the_ignore_value_as_the_types_largest(tmp_path: Path, raw: np.ndarray) -> None:
    """Unannotated pixels (labels_ignore) are kept apart from every label: 255 in binary labels, 2**32 - 1
    in instance labels, recorded in the attributes; they are no label value and no foreground."""
    binary = np.where(raw > 100, 255, 0).astype(np.uint16)
    binary[:, :, :8] = 7  # a 0/255 mask with its first 8 columns unannotated
    target = import_volume(raw, tmp_path / "b.zarr", labels=binary, labels_ignore=7)
    stored = omezarr.open_labels(target)[:]
    assert omezarr.read_attrs(target)["labels"] == {"cells": "binary"}  # 7 is not a second label value
    assert omezarr.label_ignore(target) == 255
    np.testing.assert_array_equal(stored[:, :, :8], 255)
    np.testing.assert_array_equal(stored[:, :, 8:], (raw[:, :, 8:] > 100).astype(np.uint8))
    ids = np.arange(raw.size, dtype=np.uint32).reshape(raw.shape) % 5  # instance ids 1-4 and 0
    ids[0] = 40000
    target = import_volume(raw, tmp_path / "i.zarr", labels=ids, labels_ignore=40000)
    assert omezarr.read_attrs(target)["labels"] == {"cells": "instance"}
    assert omezarr.label_ignore(target) == 2**32 - 1
    np.testing.assert_array_equal(omezarr.open_labels(target)[0], 2**32 - 1)
    np.testing.assert_array_equal(omezarr.open_labels(target)[1:], ids[1:])
    assert omezarr.label_ignore(import_volume(raw, tmp_path / "d.zarr", labels=ids)) is None
    with pytest.raises(InputError, match=r"no foreground \(every voxel is 0 or the ignore value 3\)"):
        import_volume(raw, tmp_path / "e.zarr", labels=np.where(raw > 100, 3, 0), labels_ignore=3)
    with pytest.raises(InputError, match=r"labels_ignore is 0; give the label value \(>= 1"):
        import_volume(raw, tmp_path / "f.zarr", labels=ids, labels_ignore=0)


def test_inverted_labels_keep_their_unannotated_pixels(tmp_path: Path, raw: np.ndarray) -> None:
    from unetflow.data.importer import invert_binary_labels

    membranes = np.where(raw > 200, 255, 0).astype(np.uint8)
    membranes[:, :4] = 9
    inverted = invert_binary_labels(write_tif(tmp_path / "m.tif", membranes), fmt=None, member=None, ignore=9)
    target = import_volume(raw, tmp_path / "v.zarr", labels=inverted.compute(), labels_ignore=9)
    stored = omezarr.open_labels(target)[:]
    np.testing.assert_array_equal(stored[:, :4], 255)
    np.testing.assert_array_equal(stored[:, 4:], (raw[:, 4:] <= 200).astype(np.uint8))
