"""Overlap-tile prediction equals one whole-slice pass, across chunks and shapes, and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetflow.config.model import PredictConfig
from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import (
    INSTANCES,
    SEGMENTATION,
    check_complete,
    dihedral,
    finalize_prediction,
    incomplete_groups,
    inference_model,
    instance_labels,
    predict_array,
    predict_volume,
    predict_whole_slice,
    read_context,
    read_plan,
)
from unetflow.predict.progress import ShardFiles, journal_path

CPU = PredictConfig(device="cpu")


def options(**changes: object) -> PredictConfig:
    """The CPU prediction options with some changed, checked like a config file."""
    return PredictConfig.from_dict({**CPU.dump(), **changes})


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
    predict_volume(
        model, source, str(tmp_path / "pred.zarr"), options=CPU, stride=stride, show_progress=False
    )
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
    predict_volume(net, source, str(tmp_path / "p.zarr"), options=options(workers=2), stride=16, block=16)
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


def shard_file(target: str, number: int) -> Path:
    """The probability file of shard `number` of a prediction."""
    plan = read_plan(target)
    return ShardFiles(target).path(0, plan.grid.index(number))


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_a_deleted_or_truncated_shard_is_redone_and_nothing_else(
    model: UNet, tmp_path: Path, ngff: str
) -> None:
    volume = np.random.default_rng(3).integers(0, 255, size=(4, 64, 64), dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, 64, 64))
    run = options(ngff=ngff)
    full = str(tmp_path / "full.zarr")
    counts = predict_volume(
        model, source, full, options=run, groups=2, stride=16, block=32, show_progress=False
    )
    assert counts == {"computed": 16, "done": 0, "empty": 0, "total": 16}
    shards = len(read_plan(full).grid)
    assert shards == (2 if ngff == "0.5" else 16)  # 0.5: one shard per group (2 slices each); 0.4: per block

    deleted, truncated = shard_file(full, 0), shard_file(full, shards - 1)
    kept = {path: path.stat().st_mtime_ns for path in (shard_file(full, n) for n in range(1, shards - 1))}
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:100])
    assert incomplete_groups(full) == {0: 1, 1: 1}
    with pytest.raises(InputError, match=r"incomplete \(group 0: 1 shard\(s\), group 1: 1 shard\(s\)"):
        check_complete(full)
    again = predict_volume(model, source, full, options=run, show_progress=False)
    per_shard = 16 // shards
    assert again == {"computed": 2 * per_shard, "done": 16 - 2 * per_shard, "empty": 0, "total": 16}
    assert {path: path.stat().st_mtime_ns for path in kept} == kept  # finished shards were not rewritten
    assert check_complete(full)["blocks"] == 16
    mean, std = omezarr.normalization(source)
    np.testing.assert_allclose(
        omezarr.open_image(full)[:], reference(model, volume, mean, std), atol=1e-5, rtol=0
    )


def test_a_killed_run_leaves_a_line_cut_short_which_counts_as_not_done(model: UNet, tmp_path: Path) -> None:
    volume = np.random.default_rng(3).integers(0, 255, size=(2, 32, 32), dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, 32, 32))
    target = str(tmp_path / "p.zarr")
    predict_volume(model, source, target, options=CPU, stride=16, show_progress=False)
    journal = journal_path(target, 0)
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]) + lines[-1][:-3])  # the last write cut off
    assert incomplete_groups(target) == {0: 1}
    assert predict_volume(model, source, target, options=CPU, show_progress=False)["computed"] > 0
    assert incomplete_groups(target) == {}


def test_block_groups_write_disjoint_shards_of_one_array(model: UNet, tmp_path: Path) -> None:
    volume = np.random.default_rng(4).integers(0, 255, size=(3, 48, 48), dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, 48, 48))
    target = str(tmp_path / "pred.zarr")
    done = [
        predict_volume(
            model, source, target, options=CPU, stride=16, block=32, group=g, groups=3, show_progress=False
        )
        for g in range(3)
    ]
    plan = read_plan(target)
    assert plan.groups == 3 and len(plan.grid) == 3  # a shard per group: no two jobs write one file
    assert [set(plan.group_shards(g)) for g in range(3)] == [{0}, {1}, {2}]
    assert sum(d["computed"] for d in done) == check_complete(target)["blocks"] == 12
    mean, std = omezarr.normalization(source)
    np.testing.assert_allclose(
        omezarr.open_image(target)[:], reference(model, volume, mean, std), atol=1e-5, rtol=0
    )


def test_regions_without_data_are_not_predicted(model: UNet, tmp_path: Path) -> None:
    """A sparse source (chunks never written): only the blocks over stored chunks are predicted."""
    import zarr

    path = tmp_path / "sparse.zarr"
    array = zarr.create_array(str(path), shape=(3, 128, 128), chunks=(1, 32, 32), dtype="uint8", fill_value=0)
    data = np.random.default_rng(7).integers(1, 255, size=(32, 32), dtype=np.uint8)
    array[1, 32:64, 96:128] = data  # one chunk of slice 1
    array[2, 0:16, 0:16] = data[:16, :16]  # part of one chunk of slice 2
    target = str(tmp_path / "pred.zarr")
    counts = predict_volume(model, str(path), target, options=CPU, stride=16, block=32, show_progress=False)
    assert counts == {"computed": 2, "done": 0, "empty": 46, "total": 48}
    out = omezarr.open_image(target)[:]
    assert np.all(out[0] == 0) and np.all(out[1, :32] == 0) and np.all(out[1, 32:64, :96] == 0)
    assert np.all(out[1, 32:64, 96:] > 0) and np.all(out[2, :32, :32] > 0)
    stats = omezarr.read_attrs(target)["normalization"]
    assert stats["chunks_stored"] == 2 and stats["mean"] == pytest.approx(
        np.concatenate([data.ravel(), data[:16, :16].ravel(), np.zeros(32 * 32 - 256)]).mean()
    )
    everything = predict_volume(
        model,
        str(path),
        str(tmp_path / "all.zarr"),
        options=options(skip_empty=False),
        stride=16,
        block=32,
        show_progress=False,
    )
    assert everything["computed"] == 48 and everything["empty"] == 0
    assert finalize_prediction(target, pyramid=2, show_progress=False)["blocks_empty"] == 46


@pytest.mark.parametrize("kind", ["hdf5", "n5", "sparse-n5"])
def test_containers_are_predicted_in_place(model: UNet, tmp_path: Path, kind: str) -> None:
    """An HDF5 dataset (uint16) and N5 datasets (float32, one with blocks never written) as inputs."""
    import h5py
    from helpers import write_n5

    from unetflow.predict.sources import SourceSpec

    rng = np.random.default_rng(9)
    if kind == "hdf5":
        volume = rng.integers(0, 60000, size=(2, 70, 50)).astype(np.uint16)
        path = tmp_path / "stack.h5"
        with h5py.File(path, "w") as h5:
            h5.create_dataset("em/raw", data=volume, chunks=(1, 32, 32), compression="gzip")
        spec = SourceSpec(path=str(path), member="em/raw")
    else:
        volume = rng.normal(100.0, 20.0, size=(2, 70, 50)).astype(np.float32)
        only = {(1, 0, 0), (1, 1, 1)} if kind == "sparse-n5" else None
        write_n5(tmp_path / "c.n5" / "raw", volume, (1, 32, 32), only=only)
        (tmp_path / "c.n5" / "attributes.json").write_text(json.dumps({"n5": "4.0.0"}))
        spec = SourceSpec(path=str(tmp_path / "c.n5"), member="raw")
        if only is not None:
            volume = np.zeros_like(volume)
            volume[1, :32, :32], volume[1, 32:64, 32:50] = 1, 1  # which pixels hold data
    target = str(tmp_path / "pred.zarr")
    counts = predict_volume(model, spec, target, options=CPU, stride=16, block=32, show_progress=False)
    out = omezarr.open_image(target)[:]
    stats = omezarr.read_attrs(target)["normalization"]
    if kind == "sparse-n5":
        assert counts["computed"] == 2 and counts["empty"] == 10
        assert np.all(out[0] == 0) and np.all(out[1, :32, :32] > 0) and np.all(out[1, :32, 32:] == 0)
        return
    assert stats["chunks_sampled"] == stats["chunks_stored"] == 12 and counts["computed"] == 12
    expected = reference(model, volume, stats["mean"], stats["std"])
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    assert omezarr.read_attrs(target)["source"] == spec.to_dict()


def test_the_pyramid_opens_in_ome_zarr_py_at_every_level(model: UNet, tmp_path: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    volume = np.random.default_rng(8).integers(0, 255, size=(2, 100, 70), dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, 100, 70))
    target = str(tmp_path / "pred.zarr")
    predict_volume(model, source, target, options=CPU, stride=16, block=32, show_progress=False)
    summary = finalize_prediction(target, pyramid=3, show_progress=False)
    assert summary["levels"] == 3 and summary["ngff"] == "0.5"
    probability = omezarr.open_image(target)[:]
    nodes = list(Reader(parse_url(target))())
    image = nodes[0]
    assert [tuple(level.shape) for level in image.data] == [(2, 100, 70), (2, 50, 35), (2, 25, 18)]
    scales = [t[0]["scale"] for t in image.metadata["coordinateTransformations"]]
    assert scales == [[50.0, 4.0, 4.0], [50.0, 8.0, 8.0], [50.0, 16.0, 16.0]]
    level1 = np.asarray(image.data[1])
    expected = probability.reshape(2, 50, 2, 35, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(level1, expected, rtol=1e-6)
    labels = [node for node in nodes if node.load(Label)]
    assert labels and [tuple(level.shape) for level in labels[0].data][-1] == (2, 25, 18)
    segmentation = omezarr.open_labels(target, SEGMENTATION)[:]
    assert np.array_equal(np.asarray(labels[0].data[1]), segmentation[:, ::2, ::2])


def test_tta_averages_the_eight_transforms(model: UNet) -> None:
    image = np.random.default_rng(5).random((40, 40)).astype(np.float32)
    plain = predict_array(model, image, mean=0.0, std=1.0, device="cpu")
    averaged = predict_array(model, image, mean=0.0, std=1.0, device="cpu", tta=True)
    assert averaged.shape == plain.shape and not np.allclose(averaged, plain)
    assert np.all((averaged >= 0) & (averaged <= 1))


def test_bad_options_are_clear_errors(model: UNet, tmp_path: Path) -> None:
    import zarr

    source = write_volume(
        tmp_path / "raw.zarr", np.arange(32 * 32, dtype=np.uint8).reshape(1, 32, 32), (1, 32, 32)
    )
    constant = tmp_path / "constant.zarr"
    zarr.create_array(str(constant), shape=(1, 32, 32), chunks=(1, 16, 16), dtype="uint8", fill_value=0)[
        :
    ] = 3
    with pytest.raises(InputError, match="memory_gb"):
        predict_volume(model, source, str(tmp_path / "p.zarr"), options=options(memory_gb=1e-6))
    with pytest.raises(InputError, match=r"predict\.dtype"):
        options(dtype="int8")
    with pytest.raises(InputError, match="block group 2 of 2"):
        predict_volume(model, source, str(tmp_path / "r.zarr"), options=CPU, group=2, groups=2)
    with pytest.raises(InputError, match="is constant"):
        predict_volume(model, str(constant), str(tmp_path / "s.zarr"), options=CPU)


def predicted_target(model: UNet, tmp_path: Path, shape: tuple[int, int, int]) -> str:
    """A complete prediction (stride 16, blocks of 32: several chunks per slice) to finalize."""
    volume = np.random.default_rng(6).integers(0, 255, size=shape, dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, *shape[1:]))
    target = str(tmp_path / "pred.zarr")
    predict_volume(model, source, target, options=CPU, stride=16, block=32, show_progress=False)
    return target


def test_instance_labels_separate_blobs_with_ids_unique_across_slices() -> None:
    blobs = np.zeros((3, 48, 64), dtype=np.uint8)
    blobs[0, 2:20, 5:40] = 1  # one blob across what would be two chunks
    blobs[0, 30:45, 10:20] = 1  # separate from the first
    blobs[1, 10:12, 50:52] = 1
    blobs[2, 0:10, 0:10] = 1
    blobs[2, 10:20, 10:20] = 1  # touches the previous one only diagonally
    labels, total = instance_labels(blobs)
    ids = np.asarray(labels)
    assert ids.dtype == np.uint32 and total == 5
    assert np.array_equal(ids > 0, blobs > 0)
    per_slice = [set(np.unique(ids[z])) - {0} for z in range(3)]
    assert [len(found) for found in per_slice] == [2, 1, 2]
    assert set.union(*per_slice) == {1, 2, 3, 4, 5}  # unique across slices, numbered consecutively
    assert len(np.unique(ids[0, 2:20, 5:40])) == 1 and ids[0, 2, 5] != ids[0, 30, 10]
    assert ids[2, 0, 0] != ids[2, 19, 19]
    joined, eight = instance_labels(blobs, connectivity=2)
    assert eight == 4 and np.asarray(joined)[2, 0, 0] == np.asarray(joined)[2, 19, 19] > 0


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_finalize_instances_follow_a_real_prediction(model: UNet, tmp_path: Path, ngff: str) -> None:
    volume = np.random.default_rng(6).integers(0, 255, size=(2, 40, 50), dtype=np.uint8)
    source = write_volume(tmp_path / "raw.zarr", volume, (1, 40, 50))
    target = str(tmp_path / "pred.zarr")
    predict_volume(
        model, source, target, options=options(ngff=ngff), stride=16, block=32, show_progress=False
    )
    assert INSTANCES not in finalize_prediction(target, show_progress=False)
    assert omezarr.open_labels(target, INSTANCES) is None
    summary = finalize_prediction(target, instances=True, show_progress=False)
    segmentation = omezarr.open_labels(target, SEGMENTATION)[:]
    ids = omezarr.open_labels(target, INSTANCES)[:]
    assert np.array_equal(ids > 0, segmentation > 0)
    assert summary["instances"] == len(np.unique(ids)) - 1 == int(ids.max()) > 10
    assert not (set(np.unique(ids[0])) - {0}) & (set(np.unique(ids[1])) - {0})
    assert omezarr.read_attrs(target)["labels"][INSTANCES] == "instance"
    meta = ".zattrs" if ngff == "0.4" else "zarr.json"
    attrs = json.loads((Path(target) / "labels" / INSTANCES / meta).read_text())
    label_meta = attrs if ngff == "0.4" else attrs["attributes"]["ome"]
    assert "image-label" in label_meta and label_meta["multiscales"]


def test_finalize_refuses_incomplete_predictions_and_bad_connectivity(model: UNet, tmp_path: Path) -> None:
    target = predicted_target(model, tmp_path, (1, 32, 32))
    with pytest.raises(InputError, match="connectivity"):
        finalize_prediction(target, instances=True, connectivity=3, show_progress=False)
    shard_file(target, 0).unlink()
    with pytest.raises(InputError, match="incomplete"):
        finalize_prediction(target, instances=True, show_progress=False)
    assert omezarr.open_labels(target, INSTANCES) is None
