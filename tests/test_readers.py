"""Readers read in place: every format against the array it was written from, stored chunks, the errors."""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr
from helpers import write_n5
from ome_zarr.format import FormatV04, FormatV05

from unetflow import readers
from unetflow.cli.main import build_parser
from unetflow.config.model import SyntheticConfig
from unetflow.data.importer import import_volume
from unetflow.errors import InputError
from unetflow.readers import open_input
from unetflow.steps.data import run_synthesize

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from ome_zarr.writer import write_multiscale

SHAPE = (5, 37, 53)
CHUNKS = (2, 16, 16)
DTYPES = ("uint8", "uint16", "float32")


def volume_of(dtype: str, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Distinct values per voxel (so a transposed or shifted read cannot match), in `dtype`'s range."""
    values = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    if dtype == "float32":
        return (values / 7.0 - 300.5).astype(np.float32)
    return (values % np.iinfo(dtype).max).astype(dtype)


def zarr_writer(**options: Any) -> Callable[[Path, np.ndarray], tuple[Path, dict[str, Any]]]:
    def write(folder: Path, data: np.ndarray) -> tuple[Path, dict[str, Any]]:
        path = folder / "vol.zarr"
        zarr.create_array(str(path), data=data, chunks=CHUNKS, **options)
        return path, {}

    return write


def hdf5_writer(
    chunks: tuple[int, int, int] | None,
) -> Callable[[Path, np.ndarray], tuple[Path, dict[str, Any]]]:
    def write(folder: Path, data: np.ndarray) -> tuple[Path, dict[str, Any]]:
        path = folder / "vol.h5"
        with h5py.File(path, "w") as h5:
            h5.create_dataset("volumes/raw", data=data, chunks=chunks, compression="gzip" if chunks else None)
            h5.create_dataset("volumes/other", data=np.zeros((2, 2), np.uint8))
        return path, {"member": "volumes/raw"}

    return write


def n5_writer(compression: str) -> Callable[[Path, np.ndarray], tuple[Path, dict[str, Any]]]:
    def write(folder: Path, data: np.ndarray) -> tuple[Path, dict[str, Any]]:
        write_n5(folder / "c.n5" / "raw", data, CHUNKS, compression=compression)
        (folder / "c.n5" / "attributes.json").write_text(json.dumps({"n5": "4.0.0"}))
        return folder / "c.n5", {"member": "raw"}

    return write


def tiff_writer(**options: Any) -> Callable[[Path, np.ndarray], tuple[Path, dict[str, Any]]]:
    def write(folder: Path, data: np.ndarray) -> tuple[Path, dict[str, Any]]:
        tifffile.imwrite(folder / "vol.tif", data, **options)
        return folder / "vol.tif", {}

    return write


def slices_writer(folder: Path, data: np.ndarray) -> tuple[Path, dict[str, Any]]:
    target = folder / "slices"
    target.mkdir()
    for z, plane in enumerate(data):
        tifffile.imwrite(target / f"s{z}.tif", plane)
    return target, {}


ZARR_LAYOUTS: dict[str, dict[str, Any]] = {
    "zarr-v2-dot": {"zarr_format": 2},
    "zarr-v2-slash": {"zarr_format": 2, "chunk_key_encoding": {"name": "v2", "separator": "/"}},
    "zarr-v3": {},
    "zarr-v3-dot": {"chunk_key_encoding": {"name": "default", "separator": "."}},
    "zarr-v3-v2keys": {"chunk_key_encoding": {"name": "v2", "separator": "."}},
    "zarr-v3-sharded": {"shards": (4, 32, 32)},
}
IN_PLACE = {
    **{
        kind: (zarr_writer(**options), options.get("shards", CHUNKS))
        for kind, options in ZARR_LAYOUTS.items()
    },
    "hdf5-chunked": (hdf5_writer(CHUNKS), CHUNKS),
    "hdf5-contiguous": (hdf5_writer(None), None),
    "n5-gzip": (n5_writer("gzip"), CHUNKS),
    "n5-raw": (n5_writer("raw"), CHUNKS),
}
IMPORTED = {
    "tiff-zlib": tiff_writer(compression="zlib"),
    "tiff-raw": tiff_writer(),
    "tiff-imagej": tiff_writer(imagej=True),
    "tiff-big": tiff_writer(bigtiff=True, compression="zlib"),
    "slices-tif": slices_writer,
}


def check_reads(volume: readers.Volume, data: np.ndarray) -> None:
    assert volume.shape == data.shape and volume.dtype == data.dtype
    np.testing.assert_array_equal(volume.read(), data)
    np.testing.assert_array_equal(volume[1:4, 10:35, 3:50], data[1:4, 10:35, 3:50])
    np.testing.assert_array_equal(volume[2], data[2])
    np.testing.assert_array_equal(volume[..., 7], data[..., 7])
    np.testing.assert_array_equal(volume.to_dask().compute(), data)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(volume))[3, 5:9], data[3, 5:9])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(IN_PLACE))
def test_chunked_formats_read_in_place(tmp_path: Path, kind: str, dtype: str) -> None:
    data = volume_of(dtype)
    writer, storage_chunks = IN_PLACE[kind]
    path, options = writer(tmp_path, data)
    with open_input(path, **options) as volume:
        assert volume.chunked and volume.chunks == storage_chunks
        assert volume.name == readers.detect_format(path)
        check_reads(volume, data)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(IMPORTED))
def test_unchunked_formats(tmp_path: Path, kind: str, dtype: str) -> None:
    data = volume_of(dtype)
    path, options = IMPORTED[kind](tmp_path, data)
    with open_input(path, **options) as volume:
        assert not volume.chunked and volume.chunks is None and volume.stored_chunks() is None
        check_reads(volume, data)


def test_single_images(tmp_path: Path) -> None:
    plane = volume_of("uint16", (37, 53))
    iio.imwrite(tmp_path / "one.png", plane)
    volume = open_input(tmp_path / "one.png")
    assert volume.name == "image" and volume.shape == (1, 37, 53) and volume.dtype == np.uint16
    np.testing.assert_array_equal(volume[0, 3:9], plane[3:9])
    tifffile.imwrite(tmp_path / "one.tif", plane)
    np.testing.assert_array_equal(open_input(tmp_path / "one.tif", format="image").read()[0], plane)


def corrupt(path: Path) -> None:
    path.write_bytes(b"\x01garbage that no codec accepts" * 8)


def test_reads_touch_only_the_chunks_they_need(tmp_path: Path) -> None:
    """Every chunk outside the region read is destroyed: the region still reads, the whole does not."""
    data = volume_of("uint16")
    zarr_path, _ = zarr_writer()(tmp_path, data)
    n5_path, _ = n5_writer("gzip")(tmp_path, data)
    for key in (zarr_path / "c" / "2").rglob("*"):
        if key.is_file():
            corrupt(key)
    for key in n5_path.joinpath("raw").rglob("*"):
        if key.is_file() and key.name == "2" and key.parent.parent.parent.name == "raw":
            corrupt(key)
    for path, options in ((zarr_path, {}), (n5_path, {"member": "raw"})):
        volume = open_input(path, **options)
        np.testing.assert_array_equal(volume[0:4, 20:37, 0:40], data[0:4, 20:37, 0:40])
        with pytest.raises(Exception):  # noqa: B017 - each library names the broken chunk its own way
            volume.read()
    h5_path, options = hdf5_writer(CHUNKS)(tmp_path, data)
    with h5py.File(h5_path, "r+") as h5:
        dsid = h5["volumes/raw"].id
        offsets = [dsid.get_chunk_info(i) for i in range(dsid.get_num_chunks())]
    with h5_path.open("r+b") as raw:
        for info in offsets:
            if info.chunk_offset[0] == 4:
                raw.seek(info.byte_offset)
                raw.write(b"\xff" * info.size)
    volume = open_input(h5_path, **options)
    np.testing.assert_array_equal(volume[0:4], data[0:4])
    with pytest.raises(Exception):  # noqa: B017
        volume[4]


SPARSE = {(0, 0, 0), (1, 2, 1), (2, 1, 3)}
SPARSE_SHAPE = (6, 48, 64)


@pytest.mark.parametrize("kind", [*ZARR_LAYOUTS, "hdf5", "n5"])
def test_stored_chunks_of_sparse_stores(tmp_path: Path, kind: str) -> None:
    data = volume_of("uint8", SPARSE_SHAPE) | 1
    options: dict[str, Any] = {}
    if kind == "n5":
        path = write_n5(tmp_path / "s.n5", data, CHUNKS, only=SPARSE)
    elif kind == "hdf5":
        path = tmp_path / "s.h5"
        with h5py.File(path, "w") as h5:
            dataset = h5.create_dataset("raw", shape=SPARSE_SHAPE, dtype="uint8", chunks=CHUNKS)
            for z, y, x in SPARSE:
                box = tuple(slice(i * c, (i + 1) * c) for i, c in zip((z, y, x), CHUNKS, strict=True))
                dataset[box] = data[box]
    else:
        path = tmp_path / "s.zarr"
        layout = ZARR_LAYOUTS[kind]
        array = zarr.create_array(str(path), shape=SPARSE_SHAPE, dtype="uint8", chunks=CHUNKS, **layout)
        for z, y, x in SPARSE:
            box = tuple(slice(i * c, (i + 1) * c) for i, c in zip((z, y, x), CHUNKS, strict=True))
            array[box] = data[box]
    volume = open_input(path, **options)
    expected = SPARSE
    if kind == "zarr-v3-sharded":
        expected = {(z // 2, y // 2, x // 2) for z, y, x in SPARSE}
    assert volume.stored_chunks() == expected
    z_rows = {z for z, _, _ in expected if z * volume.chunks[0] < 3 and (z + 1) * volume.chunks[0] > 2}
    assert volume.stored_chunks(z_range=(2, 3)) == {c for c in expected if c[0] in z_rows}
    assert volume.stored_chunks(z_range=(5, 5)) == set()
    z, y, x = (i * c for i, c in zip((1, 2, 1), CHUNKS, strict=True))
    np.testing.assert_array_equal(
        volume[z : z + 2, y : y + 16, x : x + 16], data[z : z + 2, y : y + 16, x : x + 16]
    )
    assert not volume[4:6, 0:16, 0:16].any() and volume.fill_value == 0


def test_stored_chunks_of_leading_axes_and_2d(tmp_path: Path) -> None:
    five = zarr.create_array(
        str(tmp_path / "t.zarr"), shape=(1, 1, 4, 32, 32), chunks=(1, 1, 2, 16, 16), dtype="u1"
    )
    five[0, 0, 2:4, 16:32, 0:16] = 9
    volume = open_input(tmp_path / "t.zarr")
    assert volume.shape == (4, 32, 32) and volume.chunks == (2, 16, 16)
    assert volume.stored_chunks() == {(1, 1, 0)} and volume.stored_chunks(z_range=(0, 2)) == set()
    flat = zarr.create_array(
        str(tmp_path / "p.zarr"), shape=(32, 32), chunks=(16, 16), dtype="u1", zarr_format=2
    )
    flat[16:, 16:] = 3
    plane = open_input(tmp_path / "p.zarr")
    assert plane.shape == (1, 32, 32) and plane.stored_chunks() == {(0, 1, 1)}
    assert plane[0, 31, 31] == 3


def write_pyramid(path: Path, fmt: Any, levels: list[np.ndarray]) -> None:
    group = zarr.open_group(str(path), mode="w", zarr_format=3 if isinstance(fmt, FormatV05) else 2)
    transforms = [[{"type": "scale", "scale": [50.0, 4.0 * 2**i, 4.0 * 2**i]}] for i in range(len(levels))]
    write_multiscale(
        levels,
        group,
        fmt=fmt,
        axes="zyx",
        coordinate_transformations=transforms,
        storage_options={"chunks": CHUNKS},
    )


@pytest.mark.filterwarnings("ignore:The 'coordinate_transformations' argument is deprecated")
@pytest.mark.parametrize("fmt", [FormatV04(), FormatV05()], ids=["ngff-0.4", "ngff-0.5"])
def test_ome_zarr_levels(tmp_path: Path, fmt: Any) -> None:
    full = volume_of("uint16")
    half = full[:, ::2, ::2].copy()
    write_pyramid(tmp_path / "img.zarr", fmt, [full, half])
    default = open_input(tmp_path / "img.zarr")
    np.testing.assert_array_equal(default.read(), full)
    assert default.voxel_size == (50.0, 4.0, 4.0) and default.source.endswith("img.zarr/s0")
    for level in (1, "1", "s1"):
        coarse = open_input(tmp_path / "img.zarr", level=level)
        np.testing.assert_array_equal(coarse.read(), half)
        assert coarse.voxel_size == (50.0, 8.0, 8.0)
    assert open_input(tmp_path / "img.zarr", member="s1").voxel_size == (50.0, 8.0, 8.0)
    with pytest.raises(InputError, match=r"img\.zarr: no multiscale level 2; the levels are 0: s0, 1: s1"):
        open_input(tmp_path / "img.zarr", level=2)


def test_n5_axes_voxel_size_and_levels(tmp_path: Path) -> None:
    full = volume_of("uint16", (4, 20, 30))
    root = tmp_path / "data.n5"
    write_n5(root / "em" / "s0", full, (2, 8, 8), attributes={"downsamplingFactors": [1, 1, 1]})
    write_n5(
        root / "em" / "s1", full[:, ::2, ::2].copy(), (2, 8, 8), attributes={"downsamplingFactors": [2, 2, 1]}
    )
    (root / "em" / "attributes.json").write_text(
        json.dumps({"pixelResolution": {"dimensions": [4, 5, 40], "unit": "nm"}})
    )
    write_n5(root / "mask", full[0], (8, 8), attributes={"resolution": [3.0, 4.0]})
    (root / "attributes.json").write_text(json.dumps({"n5": "4.0.0"}))
    volume = open_input(root, member="em")
    assert volume.shape == (4, 20, 30) and volume.voxel_size == (40.0, 5.0, 4.0)
    assert volume[1, 2, 3] == full[1, 2, 3]
    coarse = open_input(root, member="em", level=1)
    np.testing.assert_array_equal(coarse.read(), full[:, ::2, ::2])
    assert coarse.voxel_size == (40.0, 10.0, 8.0)
    plane = open_input(root / "mask")
    assert plane.shape == (1, 20, 30) and plane.voxel_size is None
    np.testing.assert_array_equal(plane.read()[0], full[0])
    assert plane.stored_chunks() == {(0, y, x) for y in range(3) for x in range(4)}
    with pytest.raises(InputError, match=r"data\.n5: member 'raw': no such dataset; .* em/s0, em/s1, mask"):
        open_input(root, member="raw")
    with pytest.raises(InputError, match=r"em: no multiscale level 's3'; the levels are s0, s1"):
        open_input(root, member="em", level="s3")


def test_hdf5_voxel_size_and_fill_value(tmp_path: Path) -> None:
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as h5:
        dataset = h5.create_dataset("raw", shape=(4, 8, 8), dtype="float32", chunks=(1, 8, 8), fillvalue=-1.0)
        dataset.attrs["element_size_um"] = [0.05, 0.004, 0.004]
        dataset[1] = 2.0
    volume = open_input(path)
    assert volume.voxel_size == (0.05, 0.004, 0.004) and volume.fill_value == -1.0
    assert volume.stored_chunks() == {(1, 0, 0)} and volume[0, 0, 0] == -1.0 and volume[1, 0, 0] == 2.0


@pytest.mark.parametrize(
    "options", [{"compression": "zlib"}, {}, {"imagej": True}, {"bigtiff": True}], ids=str
)
@pytest.mark.parametrize("fraction", [0.34, 0.5, 2 / 3, 0.9, 0.999])
def test_truncated_tiff_is_refused(tmp_path: Path, options: dict[str, Any], fraction: float) -> None:
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, volume_of("uint8", (5, 64, 64)), **options)
    content = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(InputError, match=r"cut\.tif: the file is truncated .*download or export it again"):
        open_input(cut)


def test_truncated_synthesized_tiff_is_not_imported(tmp_path: Path) -> None:
    """The issue: a cut zlib TIFF as `unetflow synthesize` writes it imported as one slice with exit 0."""
    raw, labels = tmp_path / "raw.tif", tmp_path / "labels.tif"
    run_synthesize(raw=str(raw), labels=str(labels), options=SyntheticConfig(shape=[5, 64, 64], seed=1))
    content = raw.read_bytes()
    raw.write_bytes(content[: len(content) * 2 // 3])
    with pytest.raises(InputError, match=r"raw\.tif: the file is truncated"):
        import_volume(raw, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_slice_folder_with_a_truncated_file(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "stack"
    folder.mkdir()
    data = volume_of("uint8", (4, 32, 32))
    for z, plane in enumerate(data):
        iio.imwrite(folder / f"s{z}{suffix}", plane)
    broken = folder / f"s2{suffix}"
    content = broken.read_bytes()
    broken.write_bytes(content[: len(content) * 2 // 3])
    volume = open_input(folder)
    np.testing.assert_array_equal(volume[0:2], data[0:2])
    with pytest.raises(
        InputError, match=rf"s2\{suffix}: (the file is truncated|cannot be read).*export it again"
    ):
        volume.read()


def test_errors_name_what_exists(tmp_path: Path) -> None:
    with pytest.raises(
        InputError,
        match=r"unknown format 'nifti'; use one of hdf5, zarr, n5, precomputed, tiff, image, slices",
    ):
        open_input(tmp_path, format="nifti")
    (tmp_path / "data.mrc").write_bytes(b"\0" * 8)
    with pytest.raises(InputError, match=r"(?s)data\.mrc: unknown format .*\nzarr .*\nn5: "):
        open_input(tmp_path / "data.mrc")
    store = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    store.create_array("raw/s0", shape=(2, 4, 4), dtype="u1")
    store.create_array("mask", shape=(2, 4, 4), dtype="u1")
    with pytest.raises(InputError, match=r"g\.zarr: no Zarr array 'labels'; the arrays .*: mask, raw/s0"):
        open_input(tmp_path / "g.zarr", member="labels")
    with pytest.raises(InputError, match=r"has no OME-Zarr multiscales metadata; level 1 does not apply"):
        open_input(tmp_path / "g.zarr", level=1)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif: a colour"):
        open_input(tmp_path / "rgb.tif")
    with pytest.raises(
        InputError,
        match=r"level 0 only applies to Zarr, N5 and neuroglancer precomputed multiscale images, this is TIF",
    ):
        open_input(tmp_path / "rgb.tif", level=0)
    four = zarr.create_array(str(tmp_path / "czyx.zarr"), shape=(2, 3, 4, 4), dtype="u1")
    with pytest.raises(InputError, match=r"czyx\.zarr: a 4-D array of shape \(2, 3, 4, 4\)"):
        open_input(tmp_path / "czyx.zarr")
    assert four.shape[0] == 2
    write_n5(tmp_path / "four.n5", np.zeros((2, 3, 4, 4), np.uint8), (1, 1, 4, 4))
    with pytest.raises(InputError, match=r"four\.n5: a 4-D array"):
        open_input(tmp_path / "four.n5")


def test_registry_is_the_one_list(capsys: pytest.CaptureFixture[str]) -> None:
    names = readers.format_names()
    assert names == tuple(reader.name for reader in readers.READERS)
    assert {"tif", "h5", "folder", "zarr", "n5"} <= set(readers.format_names(aliases=True))
    described = readers.describe_formats().splitlines()
    assert [line.split(" ")[0].rstrip(":") for line in described] == list(names)
    assert readers.reader_for("TIF") is readers.TiffReader and readers.reader_for("h5") is readers.Hdf5Reader
    with pytest.raises(SystemExit):
        build_parser().parse_args(["import", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(f"{name}" in help_text for name in names) and "read in place" in help_text
