"""The segment step on small 3-D volumes: block-shape independence, resume after a kill, a sparse volume,
a boundary map brought from elsewhere, bad inputs, the label image's metadata, and the object scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from tests.segment_volumes import voronoi_volume
from unetflow.cli.main import main
from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.evaluate.baseline import compare
from unetflow.evaluate.instances import instance_scores, worst
from unetflow.segment import pipeline, run, store
from unetflow.segment.pipeline import segment_volume
from unetflow.segment.source import ProbabilitySource

OPTIONS = {"halo": (24, 24, 24), "mode": "3d", "boundary": True, "threshold": 0.5}


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 48 x 96 x 96 boundary map of 80 Voronoi cells as a chunked Zarr, and its truth."""
    boundary, truth = voronoi_volume((48, 96, 96), cells=80, noise=0.1, seed=2)
    path = tmp_path_factory.mktemp("segment") / "boundary.zarr"
    array = zarr.create_array(str(path), shape=boundary.shape, chunks=(16, 48, 48), dtype="float32")
    array[:] = boundary
    return path, truth


def _segment(source: Path, target: Path, block: tuple[int, int, int], **extra: object) -> np.ndarray:
    segment_volume(ProbabilitySource(str(source)), target, block=block, groups=2, **{**OPTIONS, **extra})
    return np.asarray(omezarr.open_image(target)[:])


@pytest.fixture(scope="module")
def whole(volume: tuple[Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The volume segmented in one block."""
    return _segment(volume[0], tmp_path_factory.mktemp("whole") / "out.zarr", (48, 96, 96))


def test_one_block_finds_the_cells(volume: tuple[Path, np.ndarray], whole: np.ndarray) -> None:
    scores = instance_scores(volume[1], whole)
    assert whole.dtype == np.uint64 and whole.min() >= 1
    assert 70 <= len(np.unique(whole)) <= 90
    assert scores["adapted_rand_error"] < 0.05 and scores["voi"] < 0.5


@pytest.mark.parametrize("block", [(24, 48, 48), (29, 37, 41)])
def test_the_partition_does_not_depend_on_the_blocks(
    volume: tuple[Path, np.ndarray], whole: np.ndarray, block: tuple[int, int, int], tmp_path: Path
) -> None:
    blocked = _segment(volume[0], tmp_path / "out.zarr", block)
    scores = instance_scores(whole, blocked)
    assert scores["voi"] < 0.01 and scores["adapted_rand_error"] < 0.002
    boundary = np.asarray(zarr.open_array(str(volume[0]))[:])
    faces = [np.arange(b, n, b) for b, n in zip(block, whole.shape, strict=True)]
    for axis, positions in enumerate(faces):  # no cut along a face where the probability shows no boundary
        cut = np.take(blocked, positions - 1, axis=axis) != np.take(blocked, positions, axis=axis)
        reference = np.take(whole, positions - 1, axis=axis) != np.take(whole, positions, axis=axis)
        inside = np.maximum(
            np.take(boundary, positions - 1, axis=axis), np.take(boundary, positions, axis=axis)
        )
        assert np.count_nonzero(cut & ~reference) <= 0.02 * cut.size
        assert not np.any(cut & ~reference & (inside < 0.2))


def test_a_killed_run_finishes_with_the_same_ids(
    volume: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.zarr"
    calls = {"n": 0}
    original = run.block_edges

    def dies_on_the_third_block(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "block_edges", dies_on_the_third_block)
    with pytest.raises(KeyboardInterrupt):
        _segment(volume[0], target, (24, 48, 48))
    assert not (store.work_folder(target) / "solve.json").exists()
    monkeypatch.setattr(run, "block_edges", original)
    journal = store.journal_path(target, run.FRAGMENTS, 0).path
    with journal.open("a") as handle:
        handle.write("3\t1")  # a line cut short by the kill
    resumed = _segment(volume[0], target, (24, 48, 48))
    fresh = _segment(volume[0], tmp_path / "fresh.zarr", (24, 48, 48))
    np.testing.assert_array_equal(resumed, fresh)


def test_a_killed_pyramid_goes_on_where_it_stopped(
    volume: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.zarr"
    original = pipeline._level_blocks

    def dies_in_level_two(
        plan: object, with_data: set[int], level: int, shape: tuple[int, int, int]
    ) -> object:
        for index, start in enumerate(original(plan, with_data, level, shape)):  # type: ignore[arg-type]
            if level == 2 and index == 1:
                raise KeyboardInterrupt
            yield start

    monkeypatch.setattr(pipeline, "_level_blocks", dies_in_level_two)
    with pytest.raises(KeyboardInterrupt):
        _segment(volume[0], target, (24, 48, 48))
    monkeypatch.setattr(pipeline, "_level_blocks", original)
    labels = np.asarray(omezarr.open_image(target)[:])
    assert pipeline.finalize_segmentation(target)["levels"] == 4
    for level in (1, 2, 3):
        written = store.journal_path(target, pipeline.PYRAMID, level).path.read_text().splitlines()
        assert sorted(written) == ["0\t1", "1\t1"]  # each of its 2 blocks once: none written twice
        step = 2**level
        np.testing.assert_array_equal(omezarr.open_image(target / str(level))[:], labels[:, ::step, ::step])
    assert pipeline.finalize_segmentation(target, pyramid=2)["levels"] == 2  # other levels: built anew
    assert len(store.journal_path(target, pipeline.PYRAMID, 1).path.read_text().splitlines()) == 2


def test_a_sparse_volume_touches_only_blocks_with_data(tmp_path: Path) -> None:
    boundary, _ = voronoi_volume((16, 64, 64), cells=20, noise=0.05, seed=3)
    path = tmp_path / "sparse.zarr"
    array = zarr.create_array(
        str(path), shape=(64, 256, 256), chunks=(16, 64, 64), dtype="float32", fill_value=0
    )
    array[16:32, 64:128, 128:192] = boundary
    result = segment_volume(
        ProbabilitySource(str(path)), tmp_path / "out.zarr", block=(32, 128, 128), groups=3, **OPTIONS
    )
    labels = np.asarray(omezarr.open_image(tmp_path / "out.zarr")[:])
    assert result["blocks"] == 8 and result["blocks_with_data"] == 1
    assert labels[16:32, 64:128, 128:192].min() > 0
    outside = np.ones(labels.shape, bool)
    outside[16:32, 64:128, 128:192] = False
    assert not labels[outside].any()
    files = list((tmp_path / "out.zarr" / "0").rglob("*"))
    assert sum(f.is_file() and f.name != "zarr.json" for f in files) == 1


def test_the_steps_as_one_job_give_the_ids_of_the_steps_apart(
    volume: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    """The workflow's step `all` (a one-group segmentation as one job) writes what fragments, graph, solve
    and relabel write as four jobs; on a plan of two groups it refuses, naming the steps to run."""
    from unetflow.config.model import SegmentConfig
    from unetflow.steps.segment import STEPS, run_segment_init, run_segment_step

    options = SegmentConfig(block_shape=[24, 48, 48], halo=[24, 24, 24], mode="3d")
    outputs = {}
    for name, steps in (("whole", ["all"]), ("apart", list(STEPS))):
        target = str(tmp_path / f"{name}.zarr")
        run_segment_init(probability=str(volume[0]), target=target, options=options, boundary=True, groups=1)
        for step in steps:
            run_segment_step(step=step, target=target)
        outputs[name] = np.asarray(omezarr.open_image(target)[:])
    np.testing.assert_array_equal(outputs["whole"], outputs["apart"])
    assert outputs["whole"].max() > 50
    two = str(tmp_path / "two.zarr")
    run_segment_init(probability=str(volume[0]), target=two, options=options, boundary=True, groups=2)
    with pytest.raises(ValueError, match="has 2: run fragments, graph, solve, relabel as separate steps"):
        run_segment_step(step="all", target=two)


def test_a_foreground_probability_and_a_boundary_map_give_the_same_objects(
    volume: tuple[Path, np.ndarray], whole: np.ndarray, tmp_path: Path
) -> None:
    boundary = np.asarray(zarr.open_array(str(volume[0]))[:])
    tiff = tmp_path / "foreground.tif"
    tifffile.imwrite(tiff, (1.0 - boundary).astype(np.float32))
    foreground = _segment(tiff, tmp_path / "out.zarr", (48, 96, 96), boundary=False)
    assert instance_scores(whole, foreground)["voi"] < 0.01


def test_the_command_writes_an_ome_ngff_label_image(volume: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    target = tmp_path / "cells.zarr"
    code = main(
        [
            "segment",
            str(volume[0]),
            str(target),
            "--boundary",
            "--mode",
            "3d",
            "--block-shape",
            "48",
            "96",
            "96",
        ]
    )
    assert code == 0
    attrs = json.loads((target / "zarr.json").read_text())["attributes"]
    assert attrs["ome"]["image-label"] and len(attrs["ome"]["multiscales"][0]["datasets"]) == 4
    assert np.asarray(zarr.open_array(str(target / "1"))[:]).shape == (48, 48, 48)
    summary = json.loads((tmp_path / "cells.json").read_text())
    assert summary["objects"] == len(np.unique(np.asarray(omezarr.open_image(target)[:])))
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(target)))())
    assert nodes and len(nodes[0].data) == 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.full((4, 32, 32), 1.5, np.float32), "a probability lies in [0, 1]"),
        (np.full((32, 32), 0.5, np.float32), "2-D array"),
    ],
)
def test_bad_probability_is_one_error_and_writes_nothing(
    values: np.ndarray, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, values, photometric="minisblack")
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        segment_volume(ProbabilitySource(str(path)), tmp_path / "out.zarr", block=(4, 32, 32), **OPTIONS)
    assert not (tmp_path / "out.zarr").exists() and not (tmp_path / "out.work").exists()


def test_a_block_smaller_than_the_halo_is_one_error(volume: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"smaller than the halo \[24, 24, 24\] along z, y, x"):
        _segment(volume[0], tmp_path / "out.zarr", (8, 16, 16))
    assert not (tmp_path / "out.zarr").exists()
    assert (
        main(["segment", str(volume[0]), str(tmp_path / "cli.zarr"), "--block-shape", "8", "16", "16"]) == 2
    )
    assert not (tmp_path / "cli.zarr").exists()


def test_anisotropic_sections_are_segmented_per_slice_and_joined(tmp_path: Path) -> None:
    boundary, truth = voronoi_volume((12, 96, 96), cells=30, voxel_size=(5.0, 1.0, 1.0), noise=0.05, seed=4)
    path = tmp_path / "sections.zarr"
    array = zarr.create_array(str(path), shape=boundary.shape, chunks=(4, 96, 96), dtype="float32")
    array[:] = boundary
    options = {**OPTIONS, "mode": "auto", "voxel_size": (5.0, 1.0, 1.0), "threshold": 0.5}
    result = segment_volume(ProbabilitySource(str(path)), tmp_path / "out.zarr", block=(6, 48, 48), **options)
    labels = np.asarray(omezarr.open_image(tmp_path / "out.zarr")[:])
    assert result["mode"] == "2d"
    assert len(np.unique(labels)) < result["fragments"]  # slices joined through the graph
    assert instance_scores(truth, labels)["adapted_rand_error"] < 0.35


def test_scores_match_the_cremi_definitions() -> None:
    truth = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    split = np.array([[1, 3, 2, 2], [1, 3, 2, 2]])
    merged = np.ones_like(truth)
    assert instance_scores(truth, truth) == {
        "voi_split": 0.0,
        "voi_merge": 0.0,
        "voi": 0.0,
        "adapted_rand_error": 0.0,
    }
    scores = instance_scores(truth, split)
    assert scores["voi_merge"] == 0 and scores["voi_split"] == pytest.approx(0.5)
    assert instance_scores(truth, merged)["voi_merge"] == pytest.approx(1.0)
    # CREMI's adapted_rand counts each voxel's pair with itself: precision 24/24, recall 24/32, F = 6/7
    assert instance_scores(truth, split)["adapted_rand_error"] == pytest.approx(1 / 7)
    assert worst(truth, merged)["merges"][0] == {"id": 1, "pieces": 2, "voxels": 8}
    assert worst(truth, split)["splits"][0] == {"id": 1, "pieces": 2, "voxels": 4}


def test_the_segmentation_beats_connected_components_where_cells_touch() -> None:
    truth = np.zeros((2, 20, 20), np.int64)
    truth[:, :, :10], truth[:, :, 10:] = 1, 2
    probability = np.ones((2, 20, 20), np.float32)
    probability[:, 2:18, 9:11] = 0.2  # a membrane with a gap: connected components merge the two cells
    objects = truth.copy()
    found = compare(truth, objects, probability, 0.5, instances=True)
    assert found["segmentation"]["voi"] == 0 and found["connected_components"]["voi_merge"] > 0.9
    assert found["segmentation"]["v_rand"] == pytest.approx(1.0)


def test_the_work_folder_lies_beside_the_output(tmp_path: Path) -> None:
    assert store.work_folder(tmp_path / "a.zarr").path == tmp_path / "a.work"
    shutil.rmtree(tmp_path)


def test_dense_ids_train_and_score_their_segmentation(
    volume: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    """Dense connectomics ids (no membrane voxel, as CREMI's) import with the membrane derived in 3-D
    where the id changes, so the classes are balanced enough to train; the segmentation is scored against
    the ids as given, beside 3-D connected components of the thresholded mask."""
    from unetflow.config.model import EvaluateConfig
    from unetflow.data.importer import import_volume
    from unetflow.steps.evaluate import run_evaluate

    boundary = np.asarray(zarr.open_array(str(volume[0]))[:])
    data = tmp_path / "dense.zarr"
    raw = (255 * (1 - boundary)).astype(np.uint8)
    import_volume(raw, data, labels=volume[1], labels_separate=2, labels_separate_in="volume")
    cells = np.asarray(omezarr.open_labels(data)[:])
    assert 0.1 < float(np.mean(cells == 0)) < 0.5  # the derived membrane: classes a net can learn from
    np.testing.assert_array_equal(np.asarray(omezarr.open_instances(data)[:]), volume[1])
    prediction = tmp_path / "prediction.zarr"
    omezarr.write_image(prediction, 1 - boundary, voxel_size=(1.0, 1.0, 1.0), attrs={"threshold": 0.5})
    segmentation = tmp_path / "segmentation.zarr"
    segment_volume(
        ProbabilitySource(str(prediction)), segmentation, block=(48, 96, 96), **{**OPTIONS, "boundary": False}
    )
    payload = run_evaluate(
        data=[str(data)],
        predictions=[str(prediction)],
        volumes=["dense"],
        split=None,
        metrics=str(tmp_path / "metrics.json"),
        slices=str(tmp_path / "slices.csv"),
        options=EvaluateConfig(warping=False),
        segmentations=[str(segmentation)],
    )
    ours, baseline = payload["segment"]["segmentation"], payload["segment"]["connected_components"]
    assert ours["adapted_rand_error"] < 0.05 and ours["voi"] < 0.5
    assert baseline["voi_merge"] > ours["voi_merge"]
    assert payload["segment"]["volumes"]["dense"]["worst"]["dense"]["merges"] is not None


def test_the_isbi_submission_cuts_objects_by_one_pixel_lines(tmp_path: Path) -> None:
    from unetflow.segment.submission import boundary_map, write_submission

    labels = np.zeros((2, 6, 6), np.uint64)
    labels[:, :, :3], labels[:, :, 3:] = 5, 9
    labels[1, 0, 0] = 0
    found = boundary_map(labels)
    assert found.dtype == np.float32
    assert (found[:, :, 2] == 0).all() and (found[:, :, 3] == 1).all() and found[1, 0, 0] == 0
    assert found.sum() == 2 * 30 - 1
    image = tmp_path / "seg.zarr"
    omezarr.create_image(image, shape=labels.shape, dtype="uint64", chunks=(1, 6, 6), voxel_size=(1, 1, 1))
    omezarr.open_image(image, mode="r+")[:] = labels
    assert write_submission(image, tmp_path / "sub.tif") == (2, 6, 6)
    written = tifffile.imread(tmp_path / "sub.tif")
    assert written.dtype == np.float32 and written.shape == (2, 6, 6)
    np.testing.assert_array_equal(written, found)


def test_a_graph_too_big_for_one_pass_is_solved_in_two_levels(
    volume: tuple[Path, np.ndarray], whole: np.ndarray, tmp_path: Path
) -> None:
    target = tmp_path / "out.zarr"
    labels = _segment(volume[0], target, (24, 48, 48), max_edges=100)
    solve = json.loads((store.work_folder(target) / "solve.json").read_text())
    assert solve["levels"] >= 2 and solve["largest_job_edges"] < solve["edges"]
    scores = instance_scores(whole, labels)
    assert scores["voi"] < 0.05 and scores["adapted_rand_error"] < 0.01
    assert instance_scores(volume[1], labels)["adapted_rand_error"] < 0.05
