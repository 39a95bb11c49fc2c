"""Object metrics from one contingency table: SEG exactly as the Cell Tracking Challenge computes it (checked
against its own Python implementation, py-ctcmetrics, on the same folders), detection F1 and the IoU/Dice
of matched cells, on hand-made cases with a known answer (a split, a merge, a missed cell, an extra one)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unetflow.evaluate.metrics import evaluate_objects, evaluate_objects_frames
from unetflow.evaluate.objects import Contingency, object_errors, seg
from unetflow.evaluate.registry import OBJECT_METRICS, build_registry, metric_info


def frame() -> np.ndarray:
    """Three square cells of 100, 100 and 64 pixels."""
    truth = np.zeros((30, 40), dtype=np.uint16)
    truth[2:12, 2:12] = 1
    truth[2:12, 12:22] = 2  # touches cell 1
    truth[20:28, 30:38] = 3
    return truth


def test_a_perfect_prediction_with_other_ids_scores_one() -> None:
    truth = frame()
    prediction = np.where(truth > 0, truth.astype(np.int32) * 7 + 100, 0)
    scores = evaluate_objects(truth, prediction)
    assert list(scores) == list(OBJECT_METRICS)
    perfect = {key: 1.0 if metric.higher_is_better else 0.0 for key, metric in OBJECT_METRICS.items()}
    assert scores == perfect


def test_a_split_cell() -> None:
    """Cell 1 (100 px) cut into 60 + 40 px: SEG keeps J = 60/100 for it; detection matches the larger piece
    (IoU 0.6) and counts the other as a false positive."""
    truth = frame()
    prediction = truth.astype(np.int32).copy()
    prediction[2:12, 8:12] = 9
    scores = evaluate_objects(truth, prediction)
    assert scores["seg"] == pytest.approx((0.6 + 1 + 1) / 3)
    assert scores["precision"] == pytest.approx(3 / 4) and scores["recall"] == 1.0
    assert scores["detection_f1"] == pytest.approx(6 / 7)
    assert scores["matched_iou"] == pytest.approx((0.6 + 1 + 1) / 3)
    assert scores["matched_dice"] == pytest.approx((2 * 60 / 160 + 1 + 1) / 3)
    errors = object_errors(Contingency.of(truth, prediction))
    assert errors.split == [1] and errors.counts() == {"missed": 0, "split": 1, "merged": 0, "extra": 0}


def test_a_merge() -> None:
    """Cells 1 and 2 predicted as one object of 200 px: each matches it under SEG's rule with J = 1/2;
    at IoU 0.5 neither is matched one to one."""
    truth = frame()
    prediction = truth.copy()
    prediction[truth == 2] = 1
    scores = evaluate_objects(truth, prediction)
    assert scores["seg"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert scores["recall"] == pytest.approx(1 / 3) and scores["precision"] == pytest.approx(1 / 2)
    assert scores["detection_f1"] == pytest.approx(2 / 5)
    errors = object_errors(Contingency.of(truth, prediction))
    assert errors.merged == [1] and errors.split == [] and errors.missed == []


def test_a_missed_cell_and_an_extra_detection() -> None:
    truth = frame()
    missed = np.where(truth == 3, 0, truth)
    scores = evaluate_objects(truth, missed)
    assert scores["seg"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["precision"] == 1.0 and scores["matched_iou"] == 1.0
    assert object_errors(Contingency.of(truth, missed)).missed == [3]
    extra = truth.copy()
    extra[20:26, 2:8] = 50
    scores = evaluate_objects(truth, extra)
    assert scores["seg"] == 1.0  # false positives do not count in SEG
    assert scores["precision"] == pytest.approx(3 / 4) and scores["detection_f1"] == pytest.approx(6 / 7)
    assert object_errors(Contingency.of(truth, extra)).extra == [50]


def test_seg_needs_more_than_half_and_uses_the_whole_predicted_object() -> None:
    truth = np.zeros((4, 8), dtype=np.uint8)
    truth[:, :4] = 1  # 16 px
    half = truth.copy()
    half[:, 2:4] = 0  # exactly half covered: no match
    assert seg(Contingency.of(truth, half)) == 0.0
    grown = np.ones_like(truth)  # covers all 16 px of the cell, 32 px in all: J = 1/2
    assert seg(Contingency.of(truth, grown)) == 0.5
    assert math.isnan(seg(Contingency.of(np.zeros_like(truth), grown)))


def test_unannotated_pixels_excuse_false_positives_there_only() -> None:
    truth = frame()
    prediction = truth.copy()
    prediction[20:28, 2:10] = 60  # a cell nobody traced
    unannotated = np.zeros(truth.shape, dtype=bool)
    unannotated[18:30, 0:12] = True
    assert evaluate_objects(truth, prediction)["precision"] == pytest.approx(3 / 4)
    assert evaluate_objects(truth, prediction, ignore=unannotated)["precision"] == 1.0
    assert object_errors(Contingency.of(truth, prediction, ignore=unannotated)).extra == []


def test_frames_pool_every_object_once() -> None:
    truth = np.stack([frame(), frame(), np.zeros_like(frame())])
    prediction = truth.copy()
    prediction[0][truth[0] == 3] = 0  # frame 0 misses a cell: J = 0 for one of 3 objects
    prediction[1][2:12, 8:12] = 9  # frame 1 splits one: J = 0.6
    per_frame, aggregate, tables = evaluate_objects_frames(truth, prediction)
    assert [round(f["seg"], 6) for f in per_frame[:2]] == [round(2 / 3, 6), round(2.6 / 3, 6)]
    assert math.isnan(per_frame[2]["seg"])
    assert aggregate["seg_pooled"] == pytest.approx(4.6 / 6)
    assert aggregate["seg"] == pytest.approx((2 / 3 + 2.6 / 3) / 2)
    assert Contingency.join(tables).objects == (6, 6)
    assert metric_info("seg_pooled").pooled and "every frame" in metric_info("seg_pooled").description


def test_keys_of_two_families_never_collide() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        build_registry(OBJECT_METRICS["seg"], taken=("seg",))


def random_cells(rng: np.random.Generator, shape: tuple[int, int], count: int) -> np.ndarray:
    """Cells of random sizes and shapes: Voronoi regions of random points, cut to a random radius."""
    points = np.zeros(shape, dtype=np.int32)
    for number, where in enumerate(rng.integers(0, shape, size=(count, 2)), start=1):
        points[tuple(where)] = number
    distance, nearest = ndimage.distance_transform_edt(points == 0, return_indices=True)
    cells = points[tuple(nearest)]
    return np.where(distance < rng.uniform(4, 14, size=count + 1)[cells], cells, 0)


def test_seg_equals_the_challenges_own_implementation(tmp_path: Path) -> None:
    """py-ctcmetrics (the challenge's Python implementation) on a GT and a RES folder in the challenge's
    layout against SEG pooled over the same frames: equal to float precision."""
    evaluate = pytest.importorskip("ctc_metrics.scripts.evaluate")
    rng = np.random.default_rng(7)
    gt, res = tmp_path / "01_GT", tmp_path / "01_RES"
    for folder in (gt / "SEG", gt / "TRA", res):
        folder.mkdir(parents=True)
    truths, predictions = [], []
    for index in range(6):
        truth = random_cells(rng, (96, 128), 14).astype(np.uint16)
        prediction = ndimage.grey_dilation(truth, size=int(rng.integers(1, 4)))  # grown, merged where close
        prediction = np.where(rng.random(truth.shape) < 0.02, 0, prediction)  # and holes
        prediction[rng.integers(0, 90) :][:6, :6] = 999  # and a stray object
        keep = np.isin(truth, rng.choice(np.arange(1, 15), size=11, replace=False)) | (truth == 0)
        truth = np.where(keep, truth, 0)  # some cells gold does not trace
        tifffile.imwrite(res / f"mask{index:03d}.tif", prediction.astype(np.uint16))
        tifffile.imwrite(gt / "TRA" / f"man_track{index:03d}.tif", truth)
        if index % 2 == 0:  # gold on every other frame
            tifffile.imwrite(gt / "SEG" / f"man_seg{index:03d}.tif", truth)
            truths.append(truth)
            predictions.append(prediction)
    theirs = evaluate.evaluate_sequence(str(res), str(gt), ["SEG"], threads=1)["SEG"]
    _, ours, _ = evaluate_objects_frames(np.stack(truths), np.stack(predictions))
    assert 0.3 < theirs < 0.95
    assert ours["seg_pooled"] == pytest.approx(theirs, rel=0, abs=1e-12)
