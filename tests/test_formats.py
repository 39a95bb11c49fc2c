"""Volume readers: TIFF stacks, slice folders, HDF5, Zarr / OME-Zarr, and the errors for bad input."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

from unetflow.data import formats, omezarr
from unetflow.errors import InputError


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=(4, 20, 30), dtype=np.uint8)


def test_isbi_multipage_tiff(isbi_dir: Path) -> None:
    path = isbi_dir / "train-volume.tif"
    volume = formats.read_volume(path)
    assert volume.shape == (25, 512, 512) and volume.dtype == np.uint8
    np.testing.assert_array_equal(volume, tifffile.imread(path))
    lazy = formats.open_volume(path)
    assert isinstance(lazy, da.Array) and lazy.shape == volume.shape
    np.testing.assert_array_equal(lazy[3:5].compute(), volume[3:5])
    assert formats.infer_format(path) == "tiff"


def test_tiff_shapes(tmp_path: Path, stack: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "one.tif", stack[0])
    assert formats.read_volume(tmp_path / "one.tif").shape == (1, 20, 30)
    tifffile.imwrite(tmp_path / "zipped.tiff", stack, compression="zlib", photometric="minisblack")
    np.testing.assert_array_equal(formats.open_volume(tmp_path / "zipped.tiff").compute(), stack)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((20, 30, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif: a colour .*greyscale"):
        formats.read_volume(tmp_path / "rgb.tif")
    tifffile.imwrite(tmp_path / "4d.tif", np.zeros((2, 5, 20, 30), np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match=r"4d\.tif: a 4-D array .* \(z, y, x\)"):
        formats.read_volume(tmp_path / "4d.tif")


@pytest.mark.parametrize("content", [b"", b"this is not a tiff at all" * 20])
def test_empty_or_corrupt_tiff(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.tif"
    path.write_bytes(content)
    for reader in (formats.read_volume, formats.open_volume):
        with pytest.raises(InputError, match=r"x\.tif: cannot be read as a TIFF .*empty, corrupt"):
            reader(path)


def test_unknown_and_missing(tmp_path: Path) -> None:
    (tmp_path / "data.mrc").write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match=r"data\.mrc: unknown format .*supported"):
        formats.read_volume(tmp_path / "data.mrc")
    with pytest.raises(InputError, match="unknown format 'nifti'"):
        formats.read_volume(tmp_path / "data.mrc", format="nifti")
    with pytest.raises(InputError, match=r"nothere\.tif: no such file"):
        formats.read_volume(tmp_path / "nothere.tif")


def test_folder_of_png_slices_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    for i in range(1, 12):
        iio.imwrite(folder / f"slice{i}.png", np.full((8, 9), i * 10, dtype=np.uint8))
    (folder / "notes.txt").write_text("ignored")
    volume = formats.read_volume(folder)
    assert volume.shape == (11, 8, 9)
    assert volume[:, 0, 0].tolist() == [i * 10 for i in range(1, 12)]
    lazy = formats.open_volume(folder)
    np.testing.assert_array_equal(lazy.compute(), volume)
    assert formats.infer_format(folder) == "slices"
    single = formats.read_volume(folder / "slice3.png")
    assert single.shape == (1, 8, 9) and single[0, 0, 0] == 30


def test_slice_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: the folder holds no image slices"):
        formats.read_volume(empty)
    odd = tmp_path / "odd"
    odd.mkdir()
    tifffile.imwrite(odd / "a01.tif", np.zeros((8, 9), np.uint16))
    tifffile.imwrite(odd / "a02.tif", np.zeros((8, 10), np.uint16))
    with pytest.raises(InputError, match=r"a02\.tif: slice of shape \(8, 10\) differs"):
        formats.read_volume(odd)
    with pytest.raises(InputError, match=r"a02\.tif: slice of shape"):
        formats.open_volume(odd).compute()
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    iio.imwrite(rgb / "s0.png", np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(InputError, match=r"s0\.png: a colour"):
        formats.read_volume(rgb)


def test_hdf5_members(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("volumes/raw", data=stack, chunks=(1, 20, 30))
        h5.create_dataset("volumes/labels", data=stack > 100)
    np.testing.assert_array_equal(formats.read_volume(path, member="volumes/raw"), stack)
    lazy = formats.open_volume(path, member="volumes/raw")
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy[1].compute(), stack[1])
    with pytest.raises(InputError, match=r"vol\.h5: no HDF5 dataset 'raw'.*volumes/labels, volumes/raw"):
        formats.read_volume(path, member="raw")
    with pytest.raises(InputError, match=r"holds 2 datasets .*member"):
        formats.read_volume(path)
    single = tmp_path / "single.hdf5"
    with h5py.File(single, "w") as h5:
        h5["data"] = stack[0]
    assert formats.read_volume(single).shape == (1, 20, 30)
    (tmp_path / "bad.h5").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"bad\.h5: cannot be read as an HDF5 file"):
        formats.read_volume(tmp_path / "bad.h5")


def test_zarr_inputs(tmp_path: Path, stack: np.ndarray) -> None:
    store = tmp_path / "in.zarr"
    omezarr.write_image(store, stack, voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(formats.read_volume(store), stack)
    np.testing.assert_array_equal(formats.read_volume(store / "0"), stack)
    lazy = formats.open_volume(store)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), stack)
    omezarr.write_labels(store, "cells", stack > 50, kind="binary")
    labels = formats.read_volume(store, member="labels/cells/0")
    np.testing.assert_array_equal(labels, (stack > 50).astype(np.uint8))
    with pytest.raises(InputError, match=r"in\.zarr: no Zarr array 'raw'; .*0, labels/cells/0"):
        formats.read_volume(store, member="raw")
    # a foreign 5-D (t, c, z, y, x) array with single t and c reads as (z, y, x)
    five = zarr.create_array(str(tmp_path / "tczyx.zarr"), shape=(1, 1, 4, 20, 30), dtype="uint8")
    five[:] = stack[None, None]
    np.testing.assert_array_equal(formats.read_volume(tmp_path / "tczyx.zarr"), stack)
    two_channels = zarr.create_array(str(tmp_path / "czyx.zarr"), shape=(2, 4, 20, 30), dtype="uint8")
    with pytest.raises(InputError, match="4-D"):
        formats.read_volume(tmp_path / "czyx.zarr")
    assert two_channels.shape[0] == 2


def test_foreign_ome_zarr_v05_group(tmp_path: Path, stack: np.ndarray) -> None:
    group = zarr.open_group(str(tmp_path / "v05.zarr"), mode="w", zarr_format=3)
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [{"name": n, "type": "space"} for n in "zyx"],
                "datasets": [
                    {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [9, 2, 2]}]}
                ],
            }
        ],
    }
    group.create_array("s0", shape=stack.shape, dtype=stack.dtype)[:] = stack
    group.create_array("s1", shape=(4, 10, 15), dtype=stack.dtype)
    np.testing.assert_array_equal(formats.read_volume(tmp_path / "v05.zarr"), stack)
    np.testing.assert_array_equal(omezarr.open_image(tmp_path / "v05.zarr")[:], stack)
    assert omezarr.voxel_size(tmp_path / "v05.zarr") == (9.0, 2.0, 2.0)


def test_member_only_for_containers(tmp_path: Path, stack: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    with pytest.raises(InputError, match="member 'raw' only applies to HDF5, Zarr and N5 containers"):
        formats.read_volume(tmp_path / "s.tif", member="raw")
    np.testing.assert_array_equal(formats.read_volume(tmp_path / "s.tif", format="TIF"), stack)
