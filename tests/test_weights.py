"""The U-Net border weight map (eq. 2): hand-computed values, the fast map against the direct definition on
random and real ISBI slices, input handling and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from unetflow.model.loss import decision_threshold
from unetflow.train import weights
from unetflow.train.weights import (
    border_weight_map,
    border_weight_map_reference,
    class_balance_weights,
    weight_map_volume,
)

TOLERANCE = 1e-4


def voronoi_cells(shape: tuple[int, int], n_seeds: int, seed: int) -> np.ndarray:
    """Voronoi-like instance image: cells of the nearest random seed, parted by thin background membranes."""
    rng = np.random.default_rng(seed)
    seeds = np.ones(shape, dtype=bool)
    seeds[rng.integers(0, shape[0], n_seeds), rng.integers(0, shape[1], n_seeds)] = False
    ids = np.cumsum(~seeds).reshape(shape) * ~seeds
    _, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
    cells = ids[iy, ix]
    membrane = np.zeros(shape, dtype=bool)
    membrane[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    membrane[1:, :] |= cells[1:, :] != cells[:-1, :]
    if seed % 2:  # thicker membranes on every other image
        membrane = ndi.binary_dilation(membrane)
    return np.where(membrane, 0, cells).astype(np.int32)


def blob_cells(shape: tuple[int, int], seed: int, smooth: float = 3.0, level: float = 0.55) -> np.ndarray:
    """Random blobs: smoothed noise above a threshold, one cell per connected component."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random(shape), smooth)
    field = (field - field.min()) / (field.max() - field.min())
    cells, _ = ndi.label(field > level)
    return cells


def assert_matches_reference(labels: np.ndarray, **options: object) -> np.ndarray:
    """The fast map is float32, has the input's shape and is within TOLERANCE of the direct definition."""
    fast = border_weight_map(labels, **options)
    reference = border_weight_map_reference(labels, **options)
    assert fast.dtype == np.float32
    assert fast.shape == labels.shape
    np.testing.assert_allclose(fast, reference, rtol=0, atol=TOLERANCE)
    return fast


def test_one_pixel_gap_matches_the_formula() -> None:
    labels = np.zeros((5, 9), dtype=np.int32)
    labels[:, :4] = 1
    labels[:, 5:] = 2
    # 45 pixels, 5 background, 40 foreground: w_c = 45 / (2 * 5) and 45 / (2 * 40)
    background, foreground = 4.5, 0.5625
    expected_gap = background + 10.0 * math.exp(-((1 + 1) ** 2) / (2 * 5.0**2))
    for method in (border_weight_map, border_weight_map_reference):
        result = method(labels)
        np.testing.assert_allclose(result[:, 4], expected_gap, rtol=1e-6)
        np.testing.assert_allclose(result[:, :4], foreground, rtol=1e-6)
        np.testing.assert_allclose(result[:, 5:], foreground, rtol=1e-6)


def test_three_pixel_gap_matches_the_formula_with_given_class_weights() -> None:
    labels = np.zeros((4, 11), dtype=np.uint8)
    labels[:, :4] = 3
    labels[:, 7:] = 9
    result = border_weight_map(labels, w0=7.0, sigma=2.0, class_weights=(0.25, 2.0), binary=False)
    # every gap pixel has d1 + d2 = 4 (1 + 3 at the sides, 2 + 2 in the middle)
    np.testing.assert_allclose(result[:, 4:7], 0.25 + 7.0 * math.exp(-16 / 8), rtol=1e-6)
    np.testing.assert_allclose(result[:, :4], 2.0)
    np.testing.assert_allclose(result[:, 7:], 2.0)


def test_single_cell_has_no_border_term_and_cells_get_only_their_class_weight() -> None:
    labels = np.zeros((20, 30), dtype=np.int32)
    labels[5:12, 8:20] = 4
    for method in (border_weight_map, border_weight_map_reference):
        result = method(labels, class_weights=(1.5, 3.0))
        assert set(np.unique(result[labels == 0]).tolist()) == {1.5}
        assert set(np.unique(result[labels > 0]).tolist()) == {3.0}


def test_cell_pixels_get_only_the_foreground_weight_among_many_cells() -> None:
    labels = voronoi_cells((64, 80), 25, seed=0)
    result = border_weight_map(labels, class_weights=(1.0, 2.5))
    assert np.all(result[labels > 0] == np.float32(2.5))
    assert result[labels == 0].min() > 1.0


@pytest.mark.parametrize("seed", range(6))
def test_voronoi_membranes_match_reference(seed: int) -> None:
    labels = voronoi_cells((96 + 8 * seed, 128 - 5 * seed), 20 + 6 * seed, seed)
    fast = assert_matches_reference(labels)
    assert fast.max() > 5.0  # the thin membranes carry a real border term


@pytest.mark.parametrize(("seed", "smooth"), [(0, 1.5), (1, 2.0), (2, 3.0), (3, 1.5), (4, 2.5)])
def test_random_blobs_match_reference(seed: int, smooth: float) -> None:
    labels = blob_cells((90 + 10 * seed, 110), seed, smooth=smooth)
    assert labels.max() >= 10
    assert_matches_reference(labels)


@pytest.mark.parametrize(
    ("w0", "sigma"),
    [(5.0, 3.0), (10.0, 1.0), (0.5, 0.5), (1e-6, 5.0), (20.0, 12.0), (10.0, 30.0), (10.0, 500.0)],
)
def test_other_w0_and_sigma_match_reference(w0: float, sigma: float) -> None:
    assert_matches_reference(voronoi_cells((72, 90), 30, seed=3), w0=w0, sigma=sigma)


def test_distances_are_exact_within_the_cutoff() -> None:
    labels = voronoi_cells((80, 100), 40, seed=5)
    cutoff = 5.0 * math.sqrt(2 * math.log(10.0 / weights.BORDER_TOLERANCE))
    d1_sq, d2_sq = weights._two_nearest_cells_sq(labels, cutoff)
    per_cell = np.stack([ndi.distance_transform_edt(labels != cell) for cell in range(1, labels.max() + 1)])
    true_d1, true_d2 = np.partition(per_cell, 1, axis=0)[:2]
    within = true_d1 + true_d2 <= cutoff
    assert within.mean() > 0.5
    np.testing.assert_array_equal(d1_sq[within], np.rint(true_d1[within] ** 2))
    np.testing.assert_array_equal(d2_sq[within], np.rint(true_d2[within] ** 2))
    assert np.all(np.sqrt(d1_sq[~within]) + np.sqrt(d2_sq[~within]) > cutoff)


def test_isbi_slice_matches_reference(isbi_dir) -> None:
    masks = tifffile.imread(isbi_dir / "train-labels.tif")
    assert masks.shape[1:] == (512, 512)
    fast = assert_matches_reference(masks[0])
    assert fast[masks[0] == 0].max() > 5.0
    corner = masks[7, :200, 300:]
    assert_matches_reference(corner, connectivity=2)


def test_binary_masks_are_split_into_connected_components() -> None:
    labels = voronoi_cells((60, 70), 15, seed=2)
    expected = border_weight_map(labels)
    for mask in (labels > 0, (labels > 0).astype(np.uint8), (labels > 0).astype(np.uint8) * 255):
        np.testing.assert_array_equal(border_weight_map(mask), expected)


def test_binary_keyword_overrides_auto_detection() -> None:
    labels = np.zeros((10, 12), dtype=np.int32)
    labels[:, :5] = 1
    labels[:, 6:] = 1  # one cell id in two pieces
    auto = border_weight_map(labels, class_weights=(1.0, 1.0))
    as_instances = border_weight_map(labels, class_weights=(1.0, 1.0), binary=False)
    assert np.all(as_instances == 1.0)  # a single cell: no border term
    np.testing.assert_allclose(auto[:, 5], 1.0 + 10.0 * math.exp(-4 / 50), rtol=1e-6)
    np.testing.assert_array_equal(auto, border_weight_map(labels, class_weights=(1.0, 1.0), binary=True))


def test_connectivity_decides_whether_diagonal_neighbours_are_one_cell() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:4, 1:4] = True
    mask[4:7, 4:7] = True
    four = border_weight_map(mask, class_weights=(1.0, 1.0), connectivity=1)
    eight = border_weight_map(mask, class_weights=(1.0, 1.0), connectivity=2)
    assert four[3, 4] > 1.5
    assert np.all(eight == 1.0)


def test_large_ids_and_many_dtypes_give_the_same_map() -> None:
    labels = voronoi_cells((50, 64), 12, seed=4)
    expected = border_weight_map(labels)
    big = np.where(labels > 0, labels.astype(np.uint64) * 2**40 + 7, 0)
    np.testing.assert_array_equal(border_weight_map(big), expected)
    mid = np.where(labels > 0, labels * 3000 + 40000, 0)  # over int16, within int32
    np.testing.assert_array_equal(border_weight_map(mid), expected)
    np.testing.assert_array_equal(border_weight_map(labels.astype(np.uint16)), expected)


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (2, 3), (1, 1)])
def test_degenerate_shapes(shape: tuple[int, int]) -> None:
    labels = np.zeros(shape, dtype=np.int32)
    flat = labels.reshape(-1)
    flat[: max(flat.size // 3, 1)] = 1
    if flat.size > 2:
        flat[-1] = 2
    assert_matches_reference(labels)


def test_no_cells_or_no_background_give_uniform_weights() -> None:
    empty = border_weight_map(np.zeros((6, 7), dtype=np.uint8))
    assert np.all(empty == 1.0)
    full = np.ones((6, 7), dtype=np.int32)
    full[:, 4:] = 2
    assert np.all(border_weight_map(full) == 1.0)


def test_decision_threshold_is_where_the_weighted_loss_optimum_crosses_even_odds() -> None:
    """Minimise the class-weighted cross-entropy over q for a known p(fg): q* > t exactly when p > 0.5."""
    from scipy.optimize import minimize_scalar

    class_weights = (2.184, 0.648)  # ISBI 2012, slices 0-19: membranes are ~23% of the pixels
    threshold = decision_threshold(class_weights)
    assert threshold == pytest.approx(0.648 / 2.832)
    background, foreground = class_weights

    def optimum(p: float) -> float:
        def loss(q: float) -> float:
            return -foreground * p * math.log(q) - background * (1 - p) * math.log(1 - q)

        return minimize_scalar(loss, bounds=(1e-9, 1 - 1e-9), method="bounded", options={"xatol": 1e-10}).x

    assert optimum(0.5) == pytest.approx(threshold, abs=1e-6)
    for p in (0.3, 0.45, 0.49, 0.51, 0.55, 0.8):
        assert (optimum(p) > threshold) == (p > 0.5)
    assert decision_threshold(None) == 0.5
    assert decision_threshold((1.0, 1.0)) == 0.5
    with pytest.raises(ValueError, match="positive"):
        decision_threshold((0.0, 1.0))


def test_class_balance_weights_average_to_one_over_all_pixels() -> None:
    masks = [blob_cells((40, 50), seed) > 0 for seed in range(3)]
    background, foreground = class_balance_weights(masks)
    stacked = np.stack(masks)
    mean = np.where(stacked, foreground, background).mean()
    assert mean == pytest.approx(1.0)
    assert background * (~stacked).sum() == pytest.approx(foreground * stacked.sum())
    assert class_balance_weights([np.zeros((3, 3))]) == (1.0, 1.0)
    assert class_balance_weights(iter([np.array([[0, 0, 0, 5]])])) == (4 / 6, 2.0)
    with pytest.raises(ValueError, match="no pixels"):
        class_balance_weights([])


def test_default_class_weights_balance_the_slice() -> None:
    labels = voronoi_cells((40, 48), 10, seed=1)
    background, foreground = class_balance_weights([labels])
    result = border_weight_map(labels, w0=0.0)
    np.testing.assert_allclose(result[labels == 0], background, rtol=1e-6)
    np.testing.assert_allclose(result[labels > 0], foreground, rtol=1e-6)
    assert result.mean() == pytest.approx(1.0, rel=1e-5)


def test_volume_is_the_per_slice_map_with_one_binary_decision() -> None:
    first = voronoi_cells((30, 40), 8, seed=0)
    second = np.zeros_like(first)
    second[:, :15] = 1
    second[:, 20:] = 1  # ids {0, 1}: a mask on its own, an instance slice within this stack
    volume = np.stack([first, second])
    result = weight_map_volume(volume, sigma=4.0, class_weights=(1.0, 2.0))
    assert result.shape == volume.shape
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result[0], border_weight_map(first, sigma=4.0, class_weights=(1.0, 2.0)))
    np.testing.assert_array_equal(result[1], np.where(second > 0, 2.0, 1.0))
    masks = weight_map_volume(np.stack([first > 0, second > 0]), class_weights=(1.0, 2.0))
    assert masks[1, 0, 17] > 1.0  # as masks the two pieces of slice 1 are two cells


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: border_weight_map(np.zeros((2, 3, 4), dtype=np.int32)), "2-D"),
        (lambda: border_weight_map(np.zeros(5, dtype=np.int32)), "2-D"),
        (lambda: border_weight_map(np.zeros((3, 3), dtype=np.int32), sigma=0.0), "sigma"),
        (lambda: border_weight_map(np.zeros((3, 3), dtype=np.int32), sigma=-1.0), "sigma"),
        (lambda: border_weight_map(np.zeros((3, 3), dtype=np.int32), w0=-0.5), "w0"),
        (lambda: border_weight_map(np.zeros((3, 3), dtype=np.float32)), "dtype"),
        (lambda: border_weight_map(np.full((3, 3), -1)), ">= 0"),
        (lambda: border_weight_map(np.zeros((3, 3), dtype=np.int32), connectivity=3), "connectivity"),
        (lambda: border_weight_map(np.zeros((3, 3), dtype=np.int32), class_weights=(1.0,)), "pair"),
        (lambda: border_weight_map(np.zeros((3, 3), dtype=np.int32), class_weights=(1.0, -2.0)), ">= 0"),
        (lambda: border_weight_map_reference(np.zeros((3, 3), dtype=np.int32), sigma=0.0), "sigma"),
        (lambda: weight_map_volume(np.zeros((3, 3), dtype=np.int32)), "3-D"),
    ],
)
def test_bad_arguments_raise_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_unannotated_pixels_weigh_nothing_and_make_no_border() -> None:
    """Sparse labels: unannotated pixels (ignore) weigh 0 and count in neither class; they are no cell, so
    a labelled cell beside unlabelled space gets no border term there, whatever the unlabelled cells were."""
    ignore = 99
    cell = np.zeros((24, 40), dtype=np.int32)
    cell[4:20, 3:15] = 1  # one traced cell, a membrane gap, then unannotated space holding another cell
    labels = cell.copy()
    labels[:, 20:] = ignore
    result = border_weight_map(labels, sigma=3.0, class_weights=(1.0, 2.0), ignore=ignore)
    np.testing.assert_array_equal(result[:, 20:], 0.0)
    np.testing.assert_array_equal(result[:, :20], np.where(cell[:, :20] > 0, 2.0, 1.0))  # no border term
    as_cell = np.where(labels == ignore, 2, labels)  # the same space taken for a second cell: a border
    assert border_weight_map(as_cell, sigma=3.0, class_weights=(1.0, 2.0))[10, 17] > 2.0
    # the class balance counts annotated pixels only: 192 cell and 288 membrane pixels of the 480
    balanced = border_weight_map(labels, w0=0.0, ignore=ignore)
    annotated = labels != ignore
    assert balanced[annotated].mean() == pytest.approx(1.0)
    assert weights.class_counts(cell > 0, ~annotated) == (288, 192)
    # instance ids and binary masks alike, and in a stack
    cells = voronoi_cells((40, 50), 9, seed=3)
    sparse = np.where(cells % 3 == 0, ignore, cells)
    expected = border_weight_map(np.where(sparse == ignore, 0, sparse), class_weights=(1.0, 2.0))
    expected[sparse == ignore] = 0
    np.testing.assert_array_equal(
        border_weight_map(sparse, class_weights=(1.0, 2.0), ignore=ignore), expected
    )
    stacked = weight_map_volume(np.stack([sparse, sparse]), class_weights=(1.0, 2.0), ignore=ignore)
    np.testing.assert_array_equal(stacked[1], expected)
    mask = np.where(sparse == ignore, ignore, (cells > 0).astype(np.int32))
    binary = border_weight_map(mask, class_weights=(1.0, 2.0), binary=True, ignore=ignore)
    np.testing.assert_array_equal(binary == 0, sparse == ignore)
