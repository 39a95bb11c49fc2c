"""unetflow.evaluate: hand-made cases with written-out values, agreement with scikit-image, ISBI slices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.measure import label
from skimage.metrics import adapted_rand_error, contingency_table, variation_of_information
from skimage.segmentation import watershed

from unetflow.evaluate import inputs, metrics, partition, registry, warping

CROSS = ndimage.generate_binary_structure(2, 1)


def unique_zeros(labels: np.ndarray) -> np.ndarray:
    """The labels with every 0 pixel given an id of its own (the challenge's singletons, for skimage)."""
    out = labels.astype(np.int64).copy()
    zeros = out == 0
    out[zeros] = out.max() + 1 + np.arange(np.count_nonzero(zeros))
    return out


def skimage_information_fscore(truth_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """2 I / (H(A) + H(B)) from skimage's conditional entropies (VI = H(A|B) + H(B|A))."""
    split, merge = variation_of_information(truth_labels, unique_zeros(pred_labels), ignore_labels=(0,))
    h_truth = variation_of_information(truth_labels, np.zeros_like(truth_labels), ignore_labels=(0,))[1]
    mutual = h_truth - merge
    h_pred = split + mutual
    return 2 * mutual / (h_truth + h_pred)


def skimage_rand_n2(truth_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Fiji's V_rand (N^2 normalisation) from skimage's contingency table with singletons."""
    table = contingency_table(truth_labels, unique_zeros(pred_labels), ignore_labels=(0,)).toarray()
    return 2 * (table**2).sum() / ((table.sum(axis=1) ** 2).sum() + (table.sum(axis=0) ** 2).sum())


@pytest.fixture(scope="module")
def isbi_labels(isbi_dir: Path) -> np.ndarray:
    """The first three ISBI 2012 training label slices (255 = interior, 0 = membrane)."""
    return tifffile.imread(isbi_dir / "train-labels.tif")[:3]


@pytest.fixture(scope="module")
def noisy_probability(isbi_labels: np.ndarray) -> np.ndarray:
    """A smoothed noisy foreground probability made from the first slice's labels."""
    rng = np.random.default_rng(7)
    noisy = isbi_labels[0] / 255.0 + rng.normal(0.0, 0.8, isbi_labels[0].shape)
    return np.clip(ndimage.gaussian_filter(noisy, 1.5), 0.0, 1.0)


# ------------------------------------------------------------------------------------------ pixel measures


def test_one_wrong_pixel_of_sixteen() -> None:
    truth = np.zeros((4, 4), dtype=np.uint8)
    truth[:, :2] = 255
    prediction = truth > 0
    prediction[0, 2] = True  # tp 8, fp 1, fn 0, tn 7
    result = metrics.evaluate(prediction, truth)
    assert result["pixel_error"] == 1 / 16
    assert result["iou"] == pytest.approx(8 / 9)
    assert result["iou_background"] == pytest.approx(7 / 8)
    assert result["mean_iou"] == pytest.approx((8 / 9 + 7 / 8) / 2)
    assert result["dice"] == pytest.approx(16 / 17)
    assert result["isbi_pixel_error"] == pytest.approx(1 / 17)  # binary: the mask itself, 1 - Dice


def test_isbi_pixel_error_takes_the_best_threshold() -> None:
    truth = np.zeros((4, 4), dtype=bool)
    truth[:, :2] = True
    probability = np.where(truth, 0.9, 0.2)
    probability[0, 2] = 0.7  # wrong at 0.5, right above 0.7
    result = metrics.evaluate(probability, truth)
    assert result["pixel_error"] == 1 / 16
    assert result["isbi_pixel_error"] == 0.0
    assert metrics.evaluate(probability, truth, threshold=0.8)["pixel_error"] == 0.0


def test_empty_masks_score_perfectly() -> None:
    empty = np.zeros((3, 3), dtype=bool)
    result = metrics.evaluate(empty, empty)
    pixel_scores = {key: result[key] for key in ("iou", "iou_background", "mean_iou", "dice", "pixel_error")}
    assert pixel_scores == {
        "iou": 1.0,
        "iou_background": 1.0,
        "mean_iou": 1.0,
        "dice": 1.0,
        "pixel_error": 0.0,
    }
    assert math.isnan(result["rand_error"]) and math.isnan(result["v_rand"])  # no truth foreground
    assert result["warping_error"] == 0.0


# ------------------------------------------------------------------------------------ Rand and information


def two_cells(width: int = 7) -> np.ndarray:
    """A 7 x width truth: two cells of 21 pixels left and right of a membrane column 3."""
    truth = np.ones((7, width), dtype=bool)
    truth[:, 3] = False
    return truth


def test_rand_error_of_a_merger() -> None:
    truth = two_cells()
    prediction = truth.copy()
    prediction[3, 3] = True  # a one-pixel bridge: one predicted cell over both truth cells of 21 pixels
    # pairs of distinct pixels: within the truth cells 2 * 21 * 20 = 840, within the predicted cell 42 * 41
    result = metrics.evaluate(prediction, truth)
    assert result["rand_error"] == pytest.approx(1 - 2 * 840 / (840 + 42 * 41))
    assert result["v_rand"] == pytest.approx(2 * (2 * 21**2) / (2 * 21**2 + 42**2))  # N^2: 2/3
    assert result["v_info"] == 0.0  # the prediction carries no information about the truth
    are, _, _ = adapted_rand_error(label(truth, connectivity=1), label(prediction, connectivity=1))
    assert result["rand_error"] == pytest.approx(are, rel=1e-12)


def test_predicted_boundary_pixels_are_singletons() -> None:
    truth = np.array([[1, 1, 1, 1]])
    prediction = np.array([[1, 1, 0, 0]])  # two pixels of the cell fall in the predicted boundary
    # pairs: truth 4 * 3 = 12, predicted 2 * 1 = 2, shared 2 -> F = 4 / 14
    assert partition.rand_fscore(truth, prediction) == pytest.approx(4 / 14)
    # Fiji's N^2: shared 4 + 2, truth 16, predicted 4 + 2 -> F = 12 / 22
    assert partition.rand_fscore(truth, prediction, self_pairs=True) == pytest.approx(12 / 22)
    # entropies (nats): H(truth) = 0, H(pred) = -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) -> I = 0 -> F = 0
    assert partition.information_fscore(truth, prediction) == 0.0


def test_information_fscore_written_out() -> None:
    truth = np.array([[1, 1, 1, 1, 2, 2, 2, 2]])
    prediction = np.array([[5, 5, 5, 5, 5, 5, 9, 9]])  # joint (4, 2, 2) / 8, prediction (6, 2) / 8
    h_truth = math.log(2)
    h_pred = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h_joint = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    mutual = h_truth + h_pred - h_joint
    assert partition.information_fscore(truth, prediction) == pytest.approx(2 * mutual / (h_truth + h_pred))
    result = metrics.evaluate(prediction, truth, prediction_instances=True, truth_instances=True)
    assert result["v_info"] == pytest.approx(2 * mutual / (h_truth + h_pred))
    assert result["v_rand"] == pytest.approx(2 * (16 + 4 + 4) / (32 + 40))  # 2/3
    assert result["rand_error"] == pytest.approx(1 - 2 * (12 + 2 + 2) / (24 + 30 + 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rand_and_information_agree_with_skimage_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 6, size=(40, 50))
    prediction = rng.integers(0, 9, size=(40, 50))
    are, _, _ = adapted_rand_error(truth, unique_zeros(prediction))
    assert partition.rand_fscore(truth, prediction) == pytest.approx(1 - are, rel=1e-12)
    assert partition.rand_fscore(truth, prediction, self_pairs=True) == pytest.approx(
        skimage_rand_n2(truth, prediction), rel=1e-12
    )
    assert partition.information_fscore(truth, prediction) == pytest.approx(
        skimage_information_fscore(truth, prediction), rel=1e-9
    )


def test_rand_error_sweeps_thresholds_like_skimage(
    isbi_labels: np.ndarray, noisy_probability: np.ndarray
) -> None:
    truth = isbi_labels[0]
    truth_cells = label(truth > 0, connectivity=1)
    errors = [
        adapted_rand_error(truth_cells, unique_zeros(label(noisy_probability > t, connectivity=1)))[0]
        for t in metrics.DEFAULT_THRESHOLDS[:-1]  # at 1.0 nothing is foreground: F = 0, skimage divides by 0
    ]
    result = metrics.evaluate(noisy_probability, truth, include_warping=False)
    assert result["rand_error"] == pytest.approx(min(errors), rel=1e-12)
    assert errors.index(min(errors)) not in (0, len(errors) - 1)  # the sweep found an inner optimum
    thinned = [
        partition.thin_boundaries(label(noisy_probability > t, connectivity=1)) for t in (0.4, 0.5, 0.6)
    ]
    assert result["v_rand"] >= max(skimage_rand_n2(truth_cells, t) for t in thinned) - 1e-12
    assert result["v_info"] >= max(skimage_information_fscore(truth_cells, t) for t in thinned) - 1e-12


# ----------------------------------------------------------------------------------------------- thinning


def test_thinning_leaves_one_pixel_lines() -> None:
    odd = np.zeros((5, 9), dtype=int)
    odd[:, :3], odd[:, 6:] = 1, 2  # a boundary three pixels wide: both cells reach column 4 together
    expected = np.zeros_like(odd)
    expected[:, :4], expected[:, 5:] = 1, 2
    np.testing.assert_array_equal(partition.thin_boundaries(odd), expected)

    even = np.zeros((5, 9), dtype=int)
    even[:, :3], even[:, 5:] = 1, 2  # two pixels wide: columns 3 and 4 are reached in the same step
    expected = np.zeros_like(even)
    expected[:, :4], expected[:, 5:] = 1, 2
    np.testing.assert_array_equal(partition.thin_boundaries(even), expected)


def test_thinning_absorbs_dangling_boundary() -> None:
    labels = np.ones((7, 7), dtype=int)
    labels[:4, 3] = 0  # a membrane spur from the top edge that separates nothing
    np.testing.assert_array_equal(partition.thin_boundaries(labels), np.ones((7, 7)))
    nothing = np.zeros((4, 4), dtype=int)
    np.testing.assert_array_equal(partition.thin_boundaries(nothing), nothing)


def test_thinning_matches_skimage_watershed_lines(
    isbi_labels: np.ndarray, noisy_probability: np.ndarray
) -> None:
    truth_cells = label(isbi_labels[0] > 0, connectivity=1)
    for threshold in (0.5, 0.8):
        cells = label(noisy_probability > threshold, connectivity=1)
        ours = partition.thin_boundaries(cells)
        theirs = watershed(np.zeros(cells.shape), markers=cells, connectivity=1, watershed_line=True)
        assert np.mean(ours != theirs) < 0.03  # where two fronts meet, one pixel either way
        assert skimage_rand_n2(truth_cells, ours) == pytest.approx(
            skimage_rand_n2(truth_cells, theirs), abs=1e-3
        )
        assert skimage_information_fscore(truth_cells, ours) == pytest.approx(
            skimage_information_fscore(truth_cells, theirs), abs=1e-3
        )


# ----------------------------------------------------------------------------------------------- warping


def test_simple_point_table_cases() -> None:
    table = warping.simple_point_table(1)
    assert table.shape == (256,) and not table.flags.writeable
    assert not table[0]  # an isolated pixel: deleting it deletes an object
    assert not table[255]  # an interior pixel: deleting it makes a hole
    assert table[1 << 7]  # the end of a line (left neighbour only)
    assert not table[(1 << 3) | (1 << 7)]  # the middle of a horizontal line
    assert not table[1 << 0]  # only a diagonal neighbour: not 4-connected to it
    assert warping.simple_point_table(2)[1 << 0]  # ... but 8-connected under (8, 4)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_simple_flips_keep_the_topology(connectivity: int) -> None:
    rng = np.random.default_rng(connectivity)
    table = warping.simple_point_table(connectivity)
    fg = ndimage.generate_binary_structure(2, connectivity)
    bg = ndimage.generate_binary_structure(2, 3 - connectivity)

    def numbers(image: np.ndarray) -> tuple[int, int]:
        padded = np.pad(image, 1)  # the outside is background
        return ndimage.label(padded, fg)[1], ndimage.label(~padded, bg)[1]

    checked = 0
    for _ in range(300):
        image = rng.random((8, 8)) < 0.55
        y, x = rng.integers(1, 7, size=2)
        code = sum(int(image[y + dy, x + dx]) << bit for bit, (dy, dx) in enumerate(warping.NEIGHBOURS_8))
        if table[code]:
            flipped = image.copy()
            flipped[y, x] = not flipped[y, x]
            assert numbers(flipped) == numbers(image)
            checked += 1
    assert checked > 50


def test_warping_error_of_a_one_pixel_bridge_is_one_pixel() -> None:
    truth = two_cells()
    bridge = truth.copy()
    bridge[3, 3] = True
    assert warping.warping_error(bridge, truth) == 1 / 49
    assert metrics.evaluate(bridge, truth)["warping_error"] == 1 / 49


def test_warping_error_ignores_a_shifted_boundary() -> None:
    truth = two_cells()
    shifted = truth.copy()
    shifted[:, 3], shifted[:, 4] = True, False  # 14 pixels differ, the topology does not
    assert metrics.evaluate(shifted, truth)["pixel_error"] == 14 / 49
    assert warping.warping_error(shifted, truth) == 0.0


def test_warping_error_counts_one_pixel_per_topological_error() -> None:
    cell = np.zeros((6, 6), dtype=bool)
    cell[2:4, 2:4] = True
    assert warping.warping_error(np.zeros_like(cell), cell) == 1 / 36  # a missed cell shrinks to one pixel
    whole = np.ones((5, 7), dtype=bool)
    split = whole.copy()
    split[:, 3] = False
    assert warping.warping_error(split, whole) == 1 / 35  # a split: the cut keeps one pixel
    holed = np.ones((5, 5), dtype=bool)
    holed[2, 2] = False
    assert warping.warping_error(holed, np.ones((5, 5), dtype=bool)) == 1 / 25  # a hole


def test_warping_leaves_the_error_where_the_prediction_is_least_sure() -> None:
    truth = np.ones((7, 7), dtype=bool)
    truth[:, 2:5] = False  # a membrane three pixels wide
    probability = np.where(truth, 0.9, 0.1)
    probability[3, 2:5] = [0.95, 0.6, 0.95]  # a bridge across it, least sure in the middle
    warped = warping.warp(truth, probability > 0.5, np.abs(probability - 0.5), 1)
    errors = np.argwhere(warped != (probability > 0.5))
    np.testing.assert_array_equal(errors, [[3, 3]])  # one pixel, the 0.6 one
    binary = warping.warp(truth, probability > 0.5, None, 1)  # a binary prediction: no confidence
    np.testing.assert_array_equal(np.argwhere(binary != (probability > 0.5)), [[3, 4]])  # column order
    assert warping.warping_error(probability, truth) == 1 / 49
    assert warping.warping_error(probability, truth, threshold=0.7) == 0.0  # above 0.7 the bridge is cut


def fiji_warp(probability: np.ndarray, truth: np.ndarray, threshold: float, connectivity: int) -> np.ndarray:
    """Fiji's WarpingError order, naively: sorted passes over all disagreeing pixels until none flips."""
    current = np.pad(truth, 1).astype(np.uint8)
    target = np.pad(probability > threshold, 1).astype(np.uint8)
    confidence = np.pad(np.abs(probability - threshold), 1)
    table = warping.simple_point_table(connectivity)
    while True:
        ys, xs = np.nonzero(current != target)
        flips = 0
        for k in np.lexsort((ys, xs, -confidence[ys, xs])):  # by confidence, ties column by column
            y, x = ys[k], xs[k]
            code = sum(int(current[y + dy, x + dx]) << b for b, (dy, dx) in enumerate(warping.NEIGHBOURS_8))
            if table[code]:
                current[y, x] ^= 1
                flips += 1
        if flips == 0:
            return current[1:-1, 1:-1].astype(bool)


@pytest.mark.parametrize("seed", range(6))
def test_warping_flips_in_fijis_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = ndimage.gaussian_filter(rng.random((40, 48)), 2.0) > 0.5
    probability = np.clip(ndimage.gaussian_filter(rng.random((40, 48)), 1.5) * 2 - 0.5, 0, 1)
    if seed % 2:
        probability = (probability > 0.5).astype(float)  # binary: every pixel ties
    connectivity = 1 + seed % 3 // 2
    expected = fiji_warp(probability, truth, 0.5, connectivity)
    confidence = None if seed % 2 else np.abs(probability - 0.5)
    warped = warping.warp(truth, probability > 0.5, confidence, connectivity)
    np.testing.assert_array_equal(warped, expected)
    assert (
        0 < np.count_nonzero(warped != (probability > 0.5)) < np.count_nonzero(truth != (probability > 0.5))
    )


# ------------------------------------------------------------------------------------------ real ISBI data


def test_truth_against_itself(isbi_labels: np.ndarray) -> None:
    for truth in (isbi_labels[0], isbi_labels[:2]):
        result = metrics.evaluate(truth, truth)
        for key in ("pixel_error", "isbi_pixel_error", "rand_error", "warping_error"):
            assert result[key] == 0.0, key
        for key in ("iou", "iou_background", "mean_iou", "dice", "v_rand"):
            assert result[key] == 1.0, key
        assert result["v_info"] == pytest.approx(1.0, abs=1e-12)


def test_eroded_and_dilated_truth(isbi_labels: np.ndarray) -> None:
    truth = isbi_labels[1]
    interior = truth > 0
    cells = label(interior, connectivity=1)
    eroded = ndimage.binary_erosion(interior, CROSS, border_value=1)
    dilated = ndimage.binary_dilation(interior, CROSS, iterations=2)
    results = {}
    for name, prediction in (("eroded", eroded), ("dilated", dilated)):
        result = metrics.evaluate(prediction.astype(np.uint8), truth)
        results[name] = result
        assert result["pixel_error"] == np.count_nonzero(prediction != interior) / interior.size
        assert result["iou"] == pytest.approx(
            np.count_nonzero(prediction & interior) / np.count_nonzero(prediction | interior)
        )
        are, _, _ = adapted_rand_error(cells, unique_zeros(label(prediction, connectivity=1)))
        assert result["rand_error"] == pytest.approx(are, rel=1e-12)
        thinned = partition.thin_boundaries(label(prediction, connectivity=1))
        assert result["v_rand"] == pytest.approx(skimage_rand_n2(cells, thinned), rel=1e-12)
        assert result["v_info"] == pytest.approx(skimage_information_fscore(cells, thinned), rel=1e-9)
        assert 0 < result["warping_error"] < result["pixel_error"]
    # a thicker boundary costs Rand error but hardly any V_rand once thinned; closing membranes merges cells
    assert results["eroded"]["rand_error"] > 0.02
    assert results["eroded"]["v_rand"] > 0.99
    assert results["dilated"]["v_rand"] < 0.5
    assert results["dilated"]["warping_error"] > results["eroded"]["warping_error"]


def test_probability_prediction_on_real_slice(isbi_labels: np.ndarray, noisy_probability: np.ndarray) -> None:
    result = metrics.evaluate(noisy_probability, isbi_labels[0])
    assert set(tuple(registry.METRICS)) <= set(result)
    assert result["isbi_pixel_error"] <= 1 - result["dice"] + 1e-12  # 0.5 is in the sweep
    assert 0.0 < result["warping_error"] < result["pixel_error"] < 0.2
    assert 0.5 < result["v_rand"] <= 1.0 and 0.5 < result["v_info"] <= 1.0
    assert warping.warping_error(noisy_probability, isbi_labels[0]) == result["warping_error"]


# ------------------------------------------------------------------------------------------ volumes, inputs


def test_volume_is_the_mean_of_its_slices(isbi_labels: np.ndarray) -> None:
    truth = isbi_labels[:2]
    prediction = np.stack([ndimage.binary_erosion(s > 0, CROSS, border_value=1) for s in truth])
    per_slice, aggregate = metrics.evaluate_volume(prediction, truth)
    singles = [metrics.evaluate(p, t) for p, t in zip(prediction, truth, strict=True)]
    assert per_slice == singles
    mean = metrics.evaluate(prediction, truth)
    for key in tuple(registry.METRICS):
        assert mean[key] == pytest.approx((singles[0][key] + singles[1][key]) / 2)
        assert aggregate[key] == mean[key]
    assert aggregate["pixel_error_pooled"] == pytest.approx(mean["pixel_error"])  # equal-sized slices
    inter = np.count_nonzero(prediction & (truth > 0))
    assert aggregate["iou_pooled"] == pytest.approx(inter / np.count_nonzero(prediction | (truth > 0)))
    assert aggregate["warping_error_pooled"] == pytest.approx(mean["warping_error"])
    assert aggregate["v_rand_pooled"] == pytest.approx(mean["v_rand"])  # binary: a single "threshold"
    for key in ("rand_error", "isbi_pixel_error"):  # pooled sums weigh the slices
        low, high = sorted(d[key] for d in singles)
        assert low <= aggregate[f"{key}_pooled"] <= high


def test_pooled_scores_take_one_threshold_for_the_stack(isbi_labels: np.ndarray) -> None:
    truth = isbi_labels[:2, :160, :160]
    rng = np.random.default_rng(3)
    probability = np.clip(
        ndimage.gaussian_filter(truth / 255.0 + rng.normal(0, 0.8, truth.shape), (0, 1.5, 1.5)), 0, 1
    )
    per_slice, aggregate = metrics.evaluate_volume(probability, truth, include_warping=False)
    assert len(per_slice) == 2 and math.isnan(aggregate["warping_error_pooled"])
    for key in ("v_rand", "v_info"):  # one threshold for both slices can only do worse than each its own
        assert aggregate[f"{key}_pooled"] <= aggregate[key] + 1e-12
    assert aggregate["rand_error_pooled"] >= min(d["rand_error"] for d in per_slice)


def test_truth_and_prediction_encodings_agree() -> None:
    truth = two_cells(9)
    prediction = truth.copy()
    prediction[3, 3] = True
    reference = metrics.evaluate(prediction, truth)
    assert metrics.evaluate(prediction.astype(np.uint8), truth.astype(np.uint8) * 255) == reference
    assert metrics.evaluate(prediction.astype(float), label(truth, connectivity=1)) == reference
    assert metrics.evaluate(prediction, label(truth, connectivity=1), truth_instances=True) == reference
    skipped = metrics.evaluate(prediction, truth, include_warping=False)
    assert math.isnan(skipped["warping_error"]) and skipped["rand_error"] == reference["rand_error"]


def test_connectivity_decides_what_a_diagonal_membrane_separates() -> None:
    truth = ~np.eye(6, dtype=bool)  # a diagonal line of membrane
    assert inputs.cells(truth, connectivity=1).max() == 2
    assert inputs.cells(truth, connectivity=2).max() == 1
    merged = np.ones((6, 6), dtype=bool)
    assert metrics.evaluate(merged, truth)["rand_error"] > 0.3
    assert metrics.evaluate(merged, truth, connectivity=2)["rand_error"] == 0.0


@pytest.mark.parametrize(
    ("prediction", "truth", "kwargs", "message"),
    [
        (np.zeros((4, 4)), np.zeros((4, 5)), {}, "same"),
        (np.full((4, 4), 1.5), np.zeros((4, 4)), {}, r"\[0, 1\]"),
        (np.arange(16).reshape(4, 4), np.zeros((4, 4)), {}, "prediction_instances"),
        (np.full((4, 4), np.nan), np.zeros((4, 4)), {}, "NaN"),
        (np.zeros((4, 4)), np.full((4, 4), 0.5) + np.eye(4) * 0.25, {}, "integer"),
        (np.zeros((4, 4)), np.zeros((4, 4)), {"thresholds": []}, "thresholds"),
        (np.zeros((4, 4)), np.zeros((4, 4)), {"connectivity": 3}, "connectivity"),
        (np.zeros((4, 4)), np.zeros((4, 4)), {"threshold": 2.0}, "threshold"),
        (np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2)), {}, "2-D"),
    ],
)
def test_bad_inputs_are_named(prediction: np.ndarray, truth: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.evaluate(prediction, truth, **kwargs)


def test_unannotated_pixels_count_in_no_measure() -> None:
    """What the prediction says on unannotated pixels changes no measure, whatever it is; the pixel and
    warping errors count annotated pixels only; a slice without annotated pixels scores NaN."""
    rng = np.random.default_rng(4)
    truth = np.zeros((40, 48), dtype=np.uint8)
    truth[2:18, 2:20] = truth[2:18, 24:46] = truth[22:38, 2:46] = 1
    probability = np.clip(truth * 0.8 + rng.normal(0.1, 0.15, truth.shape), 0, 1).astype(np.float32)
    unannotated = np.zeros(truth.shape, dtype=bool)
    unannotated[:, 30:] = True
    reference = metrics.evaluate(probability, truth, ignore=unannotated)
    for other in (rng.random(truth.shape).astype(np.float32), np.ones(truth.shape, dtype=np.float32)):
        changed = np.where(unannotated, other, probability)
        flipped = np.where(unannotated, 1 - truth, truth)  # and whatever the truth holds there
        assert metrics.evaluate(changed, flipped, ignore=unannotated) == reference
    cropped = metrics.evaluate(probability[:, :30], truth[:, :30])
    for key in ("iou", "dice", "pixel_error", "rand_error", "v_rand", "v_info", "warping_error"):
        assert reference[key] == pytest.approx(cropped[key]), key  # = the annotated part on its own
    assert reference != metrics.evaluate(probability, truth)  # the unannotated part would have counted
    empty = metrics.evaluate(probability, truth, ignore=np.ones(truth.shape, dtype=bool))
    assert math.isnan(empty["pixel_error"]) and math.isnan(empty["warping_error"])
