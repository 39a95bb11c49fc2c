"""The dataset store: OME-NGFF 0.4 / Zarr 2 layout, metadata, atomic writes, reading back with ome-zarr-py."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Labels, Multiscales, Reader

from unetflow.data import omezarr
from unetflow.errors import InputError


def leftovers(folder: Path, name: str) -> list[str]:
    """Temporary siblings of `name` left in `folder`."""
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}")]


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=(3, 70, 90), dtype=np.uint8)


def test_write_image_layout_metadata_and_values(tmp_path: Path, volume: np.ndarray) -> None:
    path = tmp_path / "img.zarr"
    group = omezarr.write_image(path, volume, voxel_size=(50, 4, 4), attrs={"origin": "test"})
    assert isinstance(group, zarr.Group)
    array = omezarr.open_image(path)
    np.testing.assert_array_equal(array[:], volume)
    assert array.chunks == (1, 70, 90)
    meta = json.loads((path / "0" / ".zarray").read_text())
    assert meta["zarr_format"] == 2 and meta["dimension_separator"] == "/"
    assert meta["compressor"]["id"] == "blosc" and meta["compressor"]["cname"] == "zstd"
    zattrs = json.loads((path / ".zattrs").read_text())
    multiscales = zattrs["multiscales"][0]
    assert multiscales["version"] == "0.4"
    assert [a["name"] for a in multiscales["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in multiscales["axes"]} == {"nanometer"}
    assert multiscales["datasets"] == [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [50.0, 4.0, 4.0]}]}
    ]
    attrs = omezarr.read_attrs(path)
    assert attrs["voxel_size"] == [50.0, 4.0, 4.0] and attrs["unit"] == "nanometer"
    assert attrs["origin"] == "test" and attrs["labels"] == {}
    assert omezarr.voxel_size(path) == (50.0, 4.0, 4.0)
    mean, std = omezarr.normalization(path)
    assert mean == pytest.approx(volume.mean(dtype=np.float64))
    assert std == pytest.approx(volume.std(dtype=np.float64))
    assert leftovers(tmp_path, "img.zarr") == []


def test_two_d_becomes_one_slice_and_given_normalization_is_kept(tmp_path: Path) -> None:
    image = np.arange(12 * 7, dtype=np.float32).reshape(12, 7)
    path = tmp_path / "flat.zarr"
    omezarr.write_image(path, image, voxel_size=(1, 2, 2), attrs={"normalization": {"mean": 1.5, "std": 2.0}})
    array = omezarr.open_image(path)
    assert array.shape == (1, 12, 7) and array.dtype == np.float32
    np.testing.assert_array_equal(array[0], image)
    assert omezarr.normalization(path) == (1.5, 2.0)


def test_dask_input_written_blockwise(tmp_path: Path, volume: np.ndarray) -> None:
    lazy = da.from_array(volume, chunks=(2, 33, 41))
    path = tmp_path / "lazy.zarr"
    omezarr.write_image(path, lazy, voxel_size=(1, 1, 1), chunks=(1, 32, 32))
    array = omezarr.open_image(path)
    assert array.chunks == (1, 32, 32)
    np.testing.assert_array_equal(array[:], volume)


def test_iter_blocks_cover_volume_once_aligned_and_bounded() -> None:
    shape, chunks = (5, 100, 60), (1, 16, 60)
    seen = np.zeros(shape, dtype=np.int32)
    for block in omezarr.iter_blocks(shape, chunks, max_elements=4000):
        seen[block] += 1
        z, y, _ = block
        assert z.start % chunks[0] == 0 and y.start % chunks[1] == 0
        assert (z.stop - z.start) * (y.stop - y.start) * 60 <= 4000 or y.stop - y.start == 16
    assert (seen == 1).all()
    whole = list(omezarr.iter_blocks(shape, chunks))
    assert whole == [(slice(0, 5), slice(0, 100), slice(0, 60))]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def broken(block: np.ndarray) -> np.ndarray:
        if block.mean() > 1.5:
            raise RuntimeError("disk on fire")
        return block

    data = da.from_array(
        np.repeat(np.arange(4, dtype=np.uint8), 64 * 64).reshape(4, 64, 64), chunks=(1, 64, 64)
    )
    path = tmp_path / "broken.zarr"
    with pytest.raises(RuntimeError, match="disk on fire"), dask.config.set(scheduler="synchronous"):
        omezarr.write_image(path, data.map_blocks(broken), voxel_size=(1, 1, 1), chunks=(1, 64, 64))
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_running_stats_combine_blocks_like_numpy() -> None:
    values = np.random.default_rng(1).normal(1000.0, 3.0, size=10_000).astype(np.float32)
    values[17] = np.nan
    values[99] = np.inf
    stats = omezarr.RunningStats()
    for part in np.array_split(values, 7):
        stats.add(part)
    finite = values[np.isfinite(values)].astype(np.float64)
    assert stats.nonfinite == 2 and stats.count == finite.size
    assert stats.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert stats.std == pytest.approx(finite.std(), rel=1e-9)


def test_labels_written_read_by_ome_zarr_py(tmp_path: Path, volume: np.ndarray) -> None:
    path = tmp_path / "img.zarr"
    omezarr.write_image(path, volume, voxel_size=(50, 4, 4), chunks=(1, 32, 32))
    binary = np.where(volume > 128, 255, 0).astype(np.uint8)
    labels = omezarr.write_labels(path, "cells", binary, kind="binary")
    assert labels.dtype == np.uint8 and labels.chunks == (1, 32, 32)
    np.testing.assert_array_equal(labels[:], (volume > 128).astype(np.uint8))
    # rewriting replaces the labels and keeps a single entry in the OME label list
    instance = (volume // 64).astype(np.int64)
    omezarr.write_labels(path, "cells", instance, kind="instance")
    stored = omezarr.open_labels(path)
    assert stored is not None and stored.dtype == np.uint32
    np.testing.assert_array_equal(stored[:], instance)
    assert json.loads((path / "labels" / ".zattrs").read_text())["labels"] == ["cells"]
    label_attrs = json.loads((path / "labels" / "cells" / ".zattrs").read_text())
    assert label_attrs["image-label"]["version"] == "0.4"
    assert label_attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [50, 4, 4]
    assert omezarr.read_attrs(path)["labels"] == {"cells": "instance"}
    assert leftovers(path / "labels", "cells") == []

    nodes = list(Reader(parse_url(str(path)))())
    image = nodes[0]
    assert any(isinstance(spec, Multiscales) for spec in image.specs)
    np.testing.assert_array_equal(np.asarray(image.data[0]), volume)
    assert any(isinstance(spec, Labels) for node in nodes for spec in node.specs)
    label_nodes = [node for node in nodes if any(isinstance(spec, Label) for spec in node.specs)]
    assert len(label_nodes) == 1
    np.testing.assert_array_equal(np.asarray(label_nodes[0].data[0]), instance)


def test_write_labels_checks(tmp_path: Path, volume: np.ndarray) -> None:
    path = tmp_path / "img.zarr"
    omezarr.write_image(path, volume, voxel_size=(1, 1, 1))
    with pytest.raises(ValueError, match="do not match"):
        omezarr.write_labels(path, "cells", volume[:2], kind="binary")
    with pytest.raises(ValueError, match="kind"):
        omezarr.write_labels(path, "cells", volume, kind="semantic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"0\.\."):
        omezarr.write_labels(path, "cells", volume.astype(np.int16) - 10, kind="instance")
    assert omezarr.open_labels(path) is None
    assert leftovers(path / "labels", "cells") == []
    with pytest.raises(InputError, match=r"missing\.zarr: no such Zarr image"):
        omezarr.write_labels(tmp_path / "missing.zarr", "cells", volume, kind="binary")


def test_create_image_and_labels_for_blockwise_outputs(tmp_path: Path) -> None:
    path = tmp_path / "pred.zarr"
    array = omezarr.create_image(
        path,
        shape=(2, 40, 50),
        dtype="float32",
        chunks=(1, 16, 16),
        voxel_size=(50, 4, 4),
        fill_value=np.nan,
        attrs={"model": "m1"},
    )
    assert array.shape == (2, 40, 50) and array.chunks == (1, 16, 16) and array.dtype == np.float32
    assert np.isnan(omezarr.open_image(path)[:]).all()
    array[0, :16, :16] = 0.5
    reopened = omezarr.open_image(path, mode="r+")
    assert reopened[0, 0, 0] == 0.5
    assert omezarr.read_attrs(path)["model"] == "m1"
    assert omezarr.voxel_size(path) == (50.0, 4.0, 4.0)
    with pytest.raises(InputError, match="normalization"):
        omezarr.normalization(path)
    with pytest.raises(FileExistsError, match="overwrite"):
        omezarr.create_image(path, shape=(1, 4, 4), dtype="uint8", chunks=None, voxel_size=(1, 1, 1))
    again = omezarr.create_image(
        path, shape=(4, 4), dtype="uint8", chunks=None, voxel_size=(1, 1, 1), overwrite=True
    )
    assert again.shape == (1, 4, 4) and again.chunks == (1, 4, 4)

    seg = omezarr.create_labels(path, "segmentation", chunks=(1, 2, 2))
    assert seg.dtype == np.uint32 and seg.shape == (1, 4, 4) and (seg[:] == 0).all()
    seg[0, 1, 1] = 7
    stored = omezarr.open_labels(path, "segmentation")
    assert stored is not None and stored[0, 1, 1] == 7
    assert omezarr.read_attrs(path)["labels"] == {"segmentation": "instance"}
    with pytest.raises(FileExistsError):
        omezarr.create_labels(path, "segmentation")
    with pytest.raises(ValueError, match="integer"):
        omezarr.create_labels(path, "prob", dtype="float32")
    nodes = list(Reader(parse_url(str(path)))())
    assert any(isinstance(spec, Label) for node in nodes for spec in node.specs)


def test_open_image_accepts_plain_array_and_reports_missing(tmp_path: Path) -> None:
    plain = zarr.create_array(str(tmp_path / "plain.zarr"), shape=(2, 5, 5), dtype="uint16", chunks=(1, 5, 5))
    plain[:] = 3
    array = omezarr.open_image(tmp_path / "plain.zarr")
    assert array.shape == (2, 5, 5) and (array[:] == 3).all()
    assert omezarr.read_attrs(tmp_path / "plain.zarr") == {}
    assert omezarr.voxel_size(tmp_path / "plain.zarr") == (1.0, 1.0, 1.0)
    with pytest.raises(InputError, match=r"missing\.zarr: no such Zarr image"):
        omezarr.open_image(tmp_path / "missing.zarr")
    (tmp_path / "notzarr").mkdir()
    with pytest.raises(InputError, match="notzarr"):
        omezarr.open_image(tmp_path / "notzarr")


def test_normalize_and_default_chunks() -> None:
    block = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    out = omezarr.normalize(block, 15.0, 5.0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[-3, -1], [1, 3]])
    with pytest.raises(ValueError, match="std"):
        omezarr.normalize(block, 0.0, 0.0)
    assert omezarr.default_chunks((30, 512, 512)) == (1, 512, 512)
    assert omezarr.default_chunks((3, 4000, 100)) == (1, 512, 100)
    assert omezarr.default_chunks((1, 1, 9000)) == (1, 1, 512)
    assert omezarr.default_chunks((70, 90)) == (70, 90)


def test_argument_checks(tmp_path: Path, volume: np.ndarray) -> None:
    with pytest.raises(ValueError, match="voxel_size"):
        omezarr.write_image(tmp_path / "a.zarr", volume, voxel_size=(0, 1, 1))
    with pytest.raises(ValueError, match="chunks"):
        omezarr.write_image(tmp_path / "a.zarr", volume, voxel_size=(1, 1, 1), chunks=(1, 0, 4))
    with pytest.raises(ValueError, match="2-D image or a 3-D"):
        omezarr.write_image(tmp_path / "a.zarr", volume[None, None], voxel_size=(1, 1, 1))
    assert list(tmp_path.iterdir()) == []
