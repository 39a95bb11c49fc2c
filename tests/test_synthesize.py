"""The synthetic EM generator: reproducible, exact labels and ISBI-2012-like images."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from unetflow.data.synthesize import interior_mask, synthesize_volume

SHAPE = (2, 256, 256)
FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)


@pytest.fixture(scope="module")
def volume() -> tuple[np.ndarray, np.ndarray]:
    """Two default 256 x 256 slices."""
    return synthesize_volume(shape=SHAPE, seed=0)


def distinct_ids_nearby(labels: np.ndarray, radius: int) -> np.ndarray:
    """Per pixel of a 2-D label image: whether two different cell ids lie within a (2 radius + 1)^2 window."""
    ids = labels.astype(np.int64)
    none = ids.max() + 1
    window = np.ones((2 * radius + 1, 2 * radius + 1), dtype=bool)
    largest = ndi.maximum_filter(ids, footprint=window)
    smallest = ndi.minimum_filter(np.where(ids > 0, ids, none), footprint=window)
    return (largest > 0) & (smallest < none) & (largest != smallest)


def ridge_half_widths(membrane: np.ndarray) -> np.ndarray:
    """Distances to the nearest interior pixel along the middle of the membranes (about half their width)."""
    distance = ndi.distance_transform_edt(membrane)
    return distance[(distance >= ndi.maximum_filter(distance, size=3)) & (distance > 0)]


def test_shapes_and_dtypes(volume: tuple[np.ndarray, np.ndarray]) -> None:
    raw, labels = volume
    assert raw.shape == SHAPE and raw.dtype == np.uint8
    assert labels.shape == SHAPE and labels.dtype == np.uint32
    assert raw.min() < 60 and raw.max() > 200  # uses the grey range like EM, not a narrow band
    mask = interior_mask(labels)
    assert mask.dtype == bool and np.array_equal(mask, labels > 0)


def test_same_seed_is_bit_identical_and_other_seeds_differ() -> None:
    raw_a, labels_a = synthesize_volume(shape=(2, 96, 96), seed=3)
    raw_b, labels_b = synthesize_volume(shape=(2, 96, 96), seed=3)
    raw_c, labels_c = synthesize_volume(shape=(2, 96, 96), seed=4)
    assert np.array_equal(raw_a, raw_b) and np.array_equal(labels_a, labels_b)
    assert np.mean(raw_a != raw_c) > 0.5
    assert np.mean(interior_mask(labels_a) != interior_mask(labels_c)) > 0.1


def test_slice_k_does_not_depend_on_the_number_of_slices() -> None:
    raw_2, labels_2 = synthesize_volume(shape=(2, 64, 96), seed=11)
    raw_4, labels_4 = synthesize_volume(shape=(4, 64, 96), seed=11)
    assert np.array_equal(raw_4[:2], raw_2) and np.array_equal(labels_4[:2], labels_2)
    assert not np.array_equal(raw_4[2], raw_4[0])


def test_cell_ids_run_one_to_n_over_the_volume(volume: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = volume
    per_slice = [set(np.unique(z).tolist()) - {0} for z in labels]
    assert per_slice[0].isdisjoint(per_slice[1])
    everything = per_slice[0] | per_slice[1]
    assert everything == set(range(1, len(everything) + 1))
    assert max(per_slice[0]) < min(per_slice[1])


def test_membrane_fraction_is_plausible(volume: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = volume
    fraction = np.mean(labels == 0)
    assert 0.1 < fraction < 0.35  # ISBI 2012: about 0.22


def test_each_cell_is_one_four_connected_component(volume: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = volume
    for z in labels:
        components, count = ndi.label(z > 0, structure=FOUR_CONNECTED)
        cells = np.unique(z[z > 0])
        assert count == len(cells) > 20
        index = np.arange(1, count + 1)
        low, high = ndi.minimum(z, components, index), ndi.maximum(z, components, index)
        assert np.array_equal(low, high)  # one id per component
        assert len(np.unique(low)) == count  # and one component per id


def test_cells_touch_across_membranes(volume: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = volume
    for z in labels:
        membrane = z == 0
        assert distinct_ids_nearby(z, radius=5)[membrane].mean() > 0.6
        # the thinnest membranes are two pixels wide: there a membrane pixel has both cells as neighbours
        assert distinct_ids_nearby(z, radius=1)[membrane].mean() > 0.005


def test_membrane_thickness_varies(volume: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = volume
    half_widths = ridge_half_widths(labels[0] == 0)
    low, median, high = np.percentile(half_widths, [10, 50, 90])
    assert 1.0 <= median <= 3.0
    assert high >= 2.0 * low


def test_membranes_are_darker_than_cell_interiors(volume: tuple[np.ndarray, np.ndarray]) -> None:
    raw, labels = volume
    membrane = labels == 0
    assert raw[~membrane].mean() - raw[membrane].mean() > 40.0
    # per slice too, and most membrane pixels are darker than the typical interior pixel
    for image, z in zip(raw, labels, strict=True):
        assert np.mean(image[z == 0] < np.median(image[z > 0])) > 0.85


def test_organelles_are_dark_parts_of_the_interior() -> None:
    raw, labels = synthesize_volume(shape=(2, 192, 192), seed=5)
    raw_bare, labels_bare = synthesize_volume(shape=(2, 192, 192), seed=5, organelles=0.0)
    assert np.array_equal(labels, labels_bare)  # organelles do not change the labels
    membrane = labels == 0

    def dark_interior(image: np.ndarray) -> float:
        return float(np.mean(image[~membrane] < image[membrane].mean()))

    assert dark_interior(raw) > 0.003
    assert dark_interior(raw) > 4.0 * dark_interior(raw_bare)


def test_organelles_darken_cell_interiors_only() -> None:
    options = {"shape": (1, 192, 192), "seed": 5, "noise": 0.0, "blur": 0.0}
    raw, labels = synthesize_volume(**options)
    raw_bare, _ = synthesize_volume(**options, organelles=0.0)
    change = raw.astype(np.int16) - raw_bare.astype(np.int16)
    darkened = change < -10
    assert 0.02 < darkened[labels > 0].mean() < 0.3  # present, but cytoplasm stays the bulk
    assert labels[darkened].astype(bool).mean() > 0.95  # inside cells, hardly ever on membranes
    assert np.mean(change > 10) < 0.2 * np.mean(darkened)  # they darken, not brighten


def test_labels_are_the_truth_before_blur_and_noise() -> None:
    raw_clean, labels_clean = synthesize_volume(shape=(1, 128, 128), seed=2, noise=0.0, blur=0.0)
    raw_noisy, labels_noisy = synthesize_volume(shape=(1, 128, 128), seed=2, noise=20.0, blur=2.0)
    assert np.array_equal(labels_clean, labels_noisy)
    assert not np.array_equal(raw_clean, raw_noisy)


def test_noise_and_blur_knobs_act_on_the_image() -> None:
    def high_frequency(image: np.ndarray) -> float:
        values = image[0].astype(np.float64)
        return float((values - ndi.gaussian_filter(values, 1.0)).std())

    quiet, _ = synthesize_volume(shape=(1, 128, 128), seed=6, noise=0.0, blur=1.0)
    noisy, _ = synthesize_volume(shape=(1, 128, 128), seed=6, noise=20.0, blur=1.0)
    sharp, _ = synthesize_volume(shape=(1, 128, 128), seed=6, noise=0.0, blur=0.0)
    blurred, _ = synthesize_volume(shape=(1, 128, 128), seed=6, noise=0.0, blur=3.0)
    assert high_frequency(noisy) > 2.0 * high_frequency(quiet)
    assert high_frequency(sharp) > 2.0 * high_frequency(blurred)


def test_cell_diameter_sets_the_cell_size() -> None:
    _, small = synthesize_volume(shape=(1, 256, 256), seed=8, cell_diameter=25.0)
    _, large = synthesize_volume(shape=(1, 256, 256), seed=8, cell_diameter=50.0)
    cells_small, cells_large = len(np.unique(small)) - 1, len(np.unique(large)) - 1
    assert 2.5 < cells_small / cells_large < 6.0  # about (50 / 25)**2 = 4 cells for one


def test_statistics_resemble_isbi_2012(isbi_dir, volume: tuple[np.ndarray, np.ndarray]) -> None:
    isbi_raw = tifffile.imread(isbi_dir / "train-volume.tif", key=range(2))
    isbi_membrane = tifffile.imread(isbi_dir / "train-labels.tif", key=range(2)) == 0
    raw, labels = volume
    membrane = labels == 0
    assert abs(membrane.mean() - isbi_membrane.mean()) < 0.08
    assert abs(raw[membrane].mean() - isbi_raw[isbi_membrane].mean()) < 25.0
    assert abs(raw[~membrane].mean() - isbi_raw[~isbi_membrane].mean()) < 25.0
    ours = np.median(ridge_half_widths(membrane[0]))
    theirs = np.median(ridge_half_widths(isbi_membrane[0]))
    assert 0.5 * theirs <= ours <= 1.5 * theirs
    ours_area = np.median(np.bincount(ndi.label(~membrane[0], structure=FOUR_CONNECTED)[0].ravel())[1:])
    theirs_area = np.median(
        np.bincount(ndi.label(~isbi_membrane[0], structure=FOUR_CONNECTED)[0].ravel())[1:]
    )
    assert 0.5 < ours_area / theirs_area < 2.0


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"shape": (2, 64)}, "shape"),
        ({"shape": (2, 64.0, 64)}, "shape"),
        ({"shape": (0, 64, 64)}, r"shape\[0\]"),
        ({"shape": (1, 8, 64)}, r"shape\[1\] and shape\[2\]"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"cell_diameter": 0.0}, "cell_diameter"),
        ({"cell_diameter": 6.0}, "cell_diameter"),
        ({"membrane_width": (5.0, 2.0)}, "membrane_width"),
        ({"membrane_width": (0.0, 2.0)}, r"membrane_width\[0\]"),
        ({"membrane_width": 3.0}, "membrane_width"),
        ({"noise": -1.0}, "noise"),
        ({"blur": float("nan")}, "blur"),
        ({"organelles": -0.5}, "organelles"),
    ],
)
def test_rejects_bad_arguments_naming_them(arguments: dict, named: str) -> None:
    options = {"shape": (1, 32, 32), "seed": 0} | arguments
    with pytest.raises(ValueError, match=named):
        synthesize_volume(**options)


def test_membrane_contrast_makes_membranes_paler_and_leaves_the_rest() -> None:
    """membrane_contrast 1 is the default image; below 1 the membranes lie closer to the cytoplasm, the
    labels and the cell interiors stay as they were (another stain, the same tissue)."""
    default = synthesize_volume(shape=(1, 96, 96), seed=4, noise=0.0, blur=0.0)
    same = synthesize_volume(shape=(1, 96, 96), seed=4, noise=0.0, blur=0.0, membrane_contrast=1.0)
    pale = synthesize_volume(shape=(1, 96, 96), seed=4, noise=0.0, blur=0.0, membrane_contrast=0.4)
    np.testing.assert_array_equal(default[0], same[0])
    np.testing.assert_array_equal(default[1], pale[1])
    membrane = default[1] == 0
    np.testing.assert_array_equal(default[0][~membrane], pale[0][~membrane])
    gap = lambda raw: raw[~membrane].mean() - raw[membrane].mean()  # noqa: E731
    assert gap(pale[0].astype(float)) == pytest.approx(0.4 * gap(default[0].astype(float)), rel=0.1)
    with pytest.raises(ValueError, match=r"membrane_contrast must be >= 0\.0"):
        synthesize_volume(shape=(1, 32, 32), seed=0, membrane_contrast=-1.0)
