"""Overlap-tile prediction equals one whole-slice pass, across chunks and shapes, and resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unetflow import omezarr
from unetflow.errors import InputError
from unetflow.geometry import plan_tiles
from unetflow.model import UNet, UNetConfig
from unetflow.predict import (
    PredictionLayout,
    blocks_of,
    check_complete,
    dihedral,
    predict_array,
    predict_volume,
    predict_whole_slice,
    read_context,
)


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(depth=3, base_channels=4)).eval()


def write_volume(path: Path, volume: np.ndarray, chunks: tuple[int, int, int]) -> str:
    omezarr.write_image(path, volume, voxel_size=(50.0, 4.0, 4.0), chunks=chunks)
    return str(path)


def reference(model: UNet, volume: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.stack([predict_whole_slice(model, s, mean=mean, std=std) for s in volume])


@pytest.mark.parametrize(
    ("shape", "stride", "chunks"),
    [
        ((2, 70, 90), 16, (1, 32, 32)),  # tiles and chunks that do not divide the slice
        ((1, 64, 64), 32, (1, 64, 64)),  # tiles that divide it
        ((3, 20, 13), 32, (1, 20, 13)),  # a volume smaller than one tile
        ((1, 100, 40), 48, (1, 25, 17)),  # source chunks misaligned with the blocks
    ],
)
def test_volume_equals_whole_slice_pass(
    model: UNet, tmp_path: Path, shape: tuple[int, int, int], stride: int, chunks: tuple[int, int, int]
) -> None:
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 255, size=shape, dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, chunks)
    mean, std = omezarr.normalization(source)
    predict_volume(model, source, str(tmp_path / "pred.zarr"), stride=stride, device="cpu", progress=False)
    out = omezarr.open_image(tmp_path / "pred.zarr")[:]
    np.testing.assert_allclose(out, reference(model, volume, mean, std), atol=1e-5, rtol=0)
    segmentation = omezarr.open_labels(tmp_path / "pred.zarr", "segmentation")[:]
    assert np.array_equal(segmentation, (out > 0.5).astype(np.uint8))
    assert omezarr.voxel_size(tmp_path / "pred.zarr") == (50.0, 4.0, 4.0)


def test_in_memory_path_matches_for_2d_input(model: UNet) -> None:
    image = np.random.default_rng(2).random((57, 83)).astype(np.float32)
    for stride in (8, 16, 48):
        out = predict_array(model, image, mean=0.0, std=1.0, stride=stride, device="cpu")
        np.testing.assert_allclose(out, predict_whole_slice(model, image), atol=1e-5, rtol=0)


def test_read_context_mirrors_like_numpy() -> None:
    volume = np.arange(2 * 7 * 5).reshape(2, 7, 5)
    padded = np.pad(volume[1], 9, mode="reflect")
    got = read_context(volume, 1, (-9, 7 + 9), (-9, 5 + 9))
    assert np.array_equal(got, padded)


def test_dihedral_inverse_round_trips() -> None:
    tiles = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 4, 4)
    for k in range(8):
        assert torch.equal(dihedral(dihedral(tiles, k), k, inverse=True), tiles)
    assert len({dihedral(tiles, k).flatten().tolist().__str__() for k in range(8)}) == 8


def test_resume_computes_only_missing_blocks(model: UNet, tmp_path: Path) -> None:
    volume = np.random.default_rng(3).integers(0, 255, size=(2, 64, 64), dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, 64, 64))
    full = str(tmp_path / "full.zarr")
    counts = predict_volume(model, source, full, stride=16, block=32, device="cpu", progress=False)
    assert counts["computed"] == counts["total"] > 2

    partial = str(tmp_path / "partial.zarr")
    predict_volume(model, source, partial, stride=16, block=32, device="cpu", progress=False)
    layout = PredictionLayout(Path(partial))
    markers = sorted(layout.markers.iterdir())
    lost = markers[::2]
    for marker in lost:  # as if killed before these blocks finished: their markers never got written
        marker.unlink()
    probability = omezarr.open_image(partial, mode="r+")
    probability[:] = 0
    with pytest.raises(InputError, match="incomplete"):
        check_complete(partial, model=model)
    again = predict_volume(model, source, partial, stride=16, block=32, device="cpu", progress=False)
    assert again == {"computed": len(lost), "skipped": len(markers) - len(lost), "total": len(markers)}
    recomputed = omezarr.open_image(partial)[:]
    expected = omezarr.open_image(full)[:]
    tile_plan = omezarr.read_attrs(partial)["tile_plan"]
    plan = plan_tiles(model.config.geometry, 64, 64, stride=tile_plan["stride"], block=tile_plan["block"])
    lost_keys = {m.name for m in lost}
    for block in blocks_of(volume.shape, plan):
        height, width = plan.block_extent(block.y, block.x)
        region = (block.z, slice(block.y, block.y + height), slice(block.x, block.x + width))
        if block.key in lost_keys:
            assert np.array_equal(recomputed[region], expected[region])
        else:
            assert np.all(recomputed[region] == 0)  # finished blocks were not redone
    assert check_complete(partial, model=model)["blocks"] == len(markers)


def test_block_groups_write_disjoint_parts_of_one_array(model: UNet, tmp_path: Path) -> None:
    volume = np.random.default_rng(4).integers(0, 255, size=(3, 48, 48), dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, 48, 48))
    target = str(tmp_path / "pred.zarr")
    done = [
        predict_volume(
            model, source, target, stride=16, block=32, device="cpu", group=g, groups=3, progress=False
        )
        for g in range(3)
    ]
    assert sum(d["computed"] for d in done) == check_complete(target, model=model)["blocks"]
    mean, std = omezarr.normalization(source)
    np.testing.assert_allclose(
        omezarr.open_image(target)[:], reference(model, volume, mean, std), atol=1e-5, rtol=0
    )


def test_tta_averages_the_eight_transforms(model: UNet) -> None:
    image = np.random.default_rng(5).random((40, 40)).astype(np.float32)
    plain = predict_array(model, image, mean=0.0, std=1.0, device="cpu")
    averaged = predict_array(model, image, mean=0.0, std=1.0, device="cpu", tta=True)
    assert averaged.shape == plain.shape and not np.allclose(averaged, plain)
    assert np.all((averaged >= 0) & (averaged <= 1))


def test_bad_options_are_clear_errors(model: UNet, tmp_path: Path) -> None:
    source = write_volume(tmp_path / "raw.zarr", np.zeros((1, 32, 32), np.uint8) + 3, (1, 32, 32))
    for budget in (0, 1e-6):
        with pytest.raises(InputError, match="memory_gb"):
            predict_volume(
                model, source, str(tmp_path / "p.zarr"), memory_gb=budget, device="cpu", progress=False
            )
    with pytest.raises(InputError, match="dtype"):
        predict_volume(model, source, str(tmp_path / "q.zarr"), dtype="int8", device="cpu", progress=False)
    with pytest.raises(InputError, match="group"):
        predict_volume(
            model, source, str(tmp_path / "r.zarr"), group=2, groups=2, device="cpu", progress=False
        )
