"""Overlap-tile prediction equals one whole-slice pass, across chunks and shapes, and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetflow import omezarr
from unetflow.errors import InputError
from unetflow.geometry import plan_tiles
from unetflow.model import UNet, UNetConfig
from unetflow.predict import (
    INSTANCES,
    SEGMENTATION,
    PredictionLayout,
    blocks_of,
    check_complete,
    dihedral,
    finalize_prediction,
    inference_model,
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


def test_cpu_prediction_leaves_the_callers_model_and_threads_as_they_were(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(depth=3, base_channels=4)).train()
    weight = net.down[1][0].weight  # (8, 4, 3, 3): its two layouts differ
    threads = torch.get_num_threads()
    source = write_volume(tmp_path / "raw.zarr", np.zeros((2, 40, 40), np.uint8) + 7, (1, 40, 40))
    predict_volume(net, source, str(tmp_path / "p.zarr"), stride=16, block=16, workers=2, device="cpu")
    assert net.training and net.down[1][0].weight is weight and weight.is_contiguous()
    assert not weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.get_num_threads() == threads
    inference = inference_model(net, torch.device("cpu"))
    assert not inference.training
    assert inference.down[1][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(inference.down[1][0].weight, weight)


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


def predicted_target(model: UNet, tmp_path: Path, shape: tuple[int, int, int]) -> str:
    """A complete prediction (stride 16, blocks of 32: several chunks per slice) to finalize."""
    volume = np.random.default_rng(6).integers(0, 255, size=shape, dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, *shape[1:]))
    target = str(tmp_path / "pred.zarr")
    predict_volume(model, source, target, stride=16, block=32, device="cpu", progress=False)
    return target


def test_finalize_labels_separate_blobs_with_ids_unique_across_slices(model: UNet, tmp_path: Path) -> None:
    target = predicted_target(model, tmp_path, (3, 48, 64))
    blobs = np.zeros((3, 48, 64), dtype=np.uint8)
    blobs[0, 2:20, 5:40] = 1  # spans the chunks on both sides of x = 32: still one blob, one id
    blobs[0, 30:45, 10:20] = 1  # spans y = 32; separate from the first
    blobs[1, 10:12, 50:52] = 1
    blobs[2, 0:10, 0:10] = 1
    blobs[2, 10:20, 10:20] = 1  # touches the previous one only diagonally
    omezarr.open_labels(target, SEGMENTATION, mode="r+")[:] = blobs

    summary = finalize_prediction(target, model=model, instances=True)
    labels = omezarr.open_labels(target, INSTANCES)
    assert labels.dtype == np.uint32
    assert labels.chunks == omezarr.open_image(target).chunks == (1, 32, 32)
    ids = labels[:]
    assert summary["instances"] == 5 and summary["blocks"] == 3 * 2 * 2
    assert np.array_equal(ids > 0, blobs > 0)
    per_slice = [set(np.unique(ids[z])) - {0} for z in range(3)]
    assert [len(found) for found in per_slice] == [2, 1, 2]
    assert set.union(*per_slice) == {1, 2, 3, 4, 5}  # unique across slices, numbered consecutively
    assert len(np.unique(ids[0, 2:20, 5:40])) == 1 and len(np.unique(ids[0, 30:45, 10:20])) == 1
    assert ids[0, 2, 5] != ids[0, 30, 10]
    assert ids[2, 0, 0] != ids[2, 19, 19]

    attrs = omezarr.read_attrs(target)
    assert attrs["labels"][INSTANCES] == "instance"
    label_attrs = json.loads((Path(target) / "labels" / INSTANCES / ".zattrs").read_text())
    assert "image-label" in label_attrs and label_attrs["multiscales"]
    group_labels = json.loads((Path(target) / "labels" / ".zattrs").read_text())["labels"]
    assert set(group_labels) >= {SEGMENTATION, INSTANCES}

    eight = finalize_prediction(target, model=model, instances=True, connectivity=2)
    assert eight["instances"] == 4  # the diagonal neighbours join with 8-connectivity
    joined = omezarr.open_labels(target, INSTANCES)[2]
    assert joined[0, 0] == joined[19, 19] > 0


def test_finalize_instances_follow_a_real_prediction(model: UNet, tmp_path: Path) -> None:
    target = predicted_target(model, tmp_path, (2, 40, 50))
    assert INSTANCES not in finalize_prediction(target, model=model)
    assert omezarr.open_labels(target, INSTANCES) is None
    summary = finalize_prediction(target, model=model, instances=True)
    segmentation = omezarr.open_labels(target, SEGMENTATION)[:]
    ids = omezarr.open_labels(target, INSTANCES)[:]
    assert np.array_equal(ids > 0, segmentation > 0)
    assert summary["instances"] == len(np.unique(ids)) - 1 == int(ids.max()) > 10
    assert not (set(np.unique(ids[0])) - {0}) & (set(np.unique(ids[1])) - {0})


def test_finalize_refuses_incomplete_predictions_and_bad_connectivity(model: UNet, tmp_path: Path) -> None:
    target = predicted_target(model, tmp_path, (1, 32, 32))
    with pytest.raises(InputError, match="connectivity"):
        finalize_prediction(target, model=model, instances=True, connectivity=3)
    next(PredictionLayout(Path(target)).markers.iterdir()).unlink()
    with pytest.raises(InputError, match="incomplete"):
        finalize_prediction(target, model=model, instances=True)
    assert omezarr.open_labels(target, INSTANCES) is None
