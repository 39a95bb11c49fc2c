"""The separating background between touching instance ids (the paper's Fig. 3): exact widths, only where
two ids meet, per slice or in 3-D, the border weight map it feeds, and the import's check of dense ids."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unetflow.config.model import VolumeConfig
from unetflow.data import omezarr
from unetflow.data.importer import import_volume
from unetflow.data.instances import Contacts, check_contacts, contacts, separate_touching
from unetflow.errors import InputError
from unetflow.steps.data import run_import
from unetflow.train.sources import count_classes
from unetflow.train.weights import border_weight_map


def two_cells(height: int = 8, width: int = 12) -> np.ndarray:
    """Two rectangles meeting along a vertical line (columns 1-5 and 6-10), background around them."""
    ids = np.zeros((height, width), dtype=np.uint16)
    ids[1:-1, 1:6] = 3
    ids[1:-1, 6:-1] = 7
    return ids


def voronoi(shape: tuple[int, ...], seeds: int, *, seed: int = 0) -> np.ndarray:
    """Dense ids: every pixel belongs to its nearest of `seeds` random points (no background at all)."""
    rng = np.random.default_rng(seed)
    points = np.zeros(shape, dtype=np.int32)
    for number, where in enumerate(rng.integers(0, shape, size=(seeds, len(shape))), start=1):
        points[tuple(where)] = number
    _, nearest = ndimage.distance_transform_edt(points == 0, return_indices=True)
    return points[tuple(nearest)].astype(np.uint32)


@pytest.mark.parametrize("width", [0, 1, 2, 3, 4, 5])
def test_a_straight_contact_gets_a_gap_of_exactly_the_width(width: int) -> None:
    separated = separate_touching(two_cells(), width=width)
    row = separated[4]
    gap = np.flatnonzero(row[1:11] == 0)
    assert gap.size == width
    if width:  # one run of background, between what is left of the two cells
        assert np.all(np.diff(gap) == 1)
        left, right = row[1 : 1 + gap[0]], row[1 + gap[-1] + 1 : 11]
        assert set(left.tolist()) == {3} and set(right.tolist()) == {7}
    assert separated.dtype == np.uint16
    # only where the ids meet: the cells' borders with the background stay where they were
    np.testing.assert_array_equal(separated[[0, -1]], 0)
    np.testing.assert_array_equal(separated[1:-1, 1], 3)
    np.testing.assert_array_equal(separated[1:-1, 10], 7)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_what_is_left_of_two_cells_lies_more_than_half_the_width_apart(width: int) -> None:
    ids = voronoi((64, 64), 12, seed=width)
    separated = separate_touching(ids, width=width)
    for cell in np.unique(separated[separated > 0]):
        others = (separated > 0) & (separated != cell)
        distance = ndimage.distance_transform_edt(~others)
        assert distance[separated == cell].min() > width / 2
    # every pixel removed was next to another cell, and no cell lost a pixel elsewhere
    removed = (ids > 0) & (separated == 0)
    assert removed.any()
    np.testing.assert_array_equal(separated[~removed], ids[~removed])


def test_a_cell_beside_unannotated_space_or_the_image_border_keeps_its_pixels() -> None:
    ids = two_cells()
    ids[1:-1, 6:-1] = 9  # the right cell's pixels are unannotated
    separated = separate_touching(ids, width=2, ignore=9)
    np.testing.assert_array_equal(separated, ids)
    full = np.full((6, 6), 4, dtype=np.int32)
    full[:, 3:] = 5  # two cells filling the image up to its border
    separated = separate_touching(full, width=2)
    np.testing.assert_array_equal(separated[:, [0, 1, 4, 5]], full[:, [0, 1, 4, 5]])
    np.testing.assert_array_equal(separated[:, 2:4], 0)


def test_per_slice_or_in_3d() -> None:
    stack = np.zeros((4, 10, 10), dtype=np.uint32)
    stack[:2, 2:8, 2:8] = 1  # two cells on top of each other: they touch across slices only
    stack[2:, 2:8, 2:8] = 2
    np.testing.assert_array_equal(separate_touching(stack, width=2, per_slice=True), stack)
    in_3d = separate_touching(stack, width=2, per_slice=False)
    np.testing.assert_array_equal(in_3d[[1, 2]], 0)
    np.testing.assert_array_equal(in_3d[[0, 3]], stack[[0, 3]])
    slices = np.stack([two_cells(), two_cells()[:, ::-1]])
    np.testing.assert_array_equal(
        separate_touching(slices, width=3), [separate_touching(s, width=3) for s in slices]
    )


def test_bad_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="integer instance labels"):
        separate_touching(np.zeros((4, 4), dtype=np.float32), width=1)
    with pytest.raises(ValueError, match=">= 0"):
        separate_touching(-np.ones((4, 4), dtype=np.int32), width=1)
    with pytest.raises(ValueError, match="whole number"):
        separate_touching(two_cells(), width=-1)
    with pytest.raises(ValueError, match="2-D"):
        separate_touching(np.zeros(4, dtype=np.int32), width=1)


def test_the_gap_is_what_the_border_weight_map_weighs() -> None:
    """The existing weight map on the separated ids: the paper's w0 = 10, sigma = 5 term fills the gap,
    while on the touching ids as given there is no background between the cells to weigh."""
    ids = two_cells(16, 24)
    ids[1:-1, 1:12], ids[1:-1, 12:-1] = 3, 7
    touching = border_weight_map(ids, class_weights=(1.0, 1.0), binary=False)
    separated = separate_touching(ids, width=2)
    weights = border_weight_map(separated, class_weights=(1.0, 1.0), binary=False)
    gap = (separated == 0) & (ids > 0)
    # a gap pixel is 1 px from one cell and 2 px from the other: 1 + 10 exp(-9 / 50)
    np.testing.assert_allclose(weights[gap], 1 + 10 * np.exp(-9 / 50), rtol=1e-4)
    assert touching[8, 11:13].max() == 1.0  # cell pixels: w_c only, nothing between them


def test_contacts_and_the_check_of_dense_ids(caplog: pytest.LogCaptureFixture) -> None:
    dense = voronoi((32, 32), 6)
    found = contacts(dense)
    assert found.background == 0 and found.touching > 0 and found.dense
    with pytest.raises(InputError, match=r"dense instance ids.*set volumes.em.labels.separate: 1"):
        check_contacts(found, name="em.tif", separate=None, key="volumes.em.labels.separate")
    with pytest.raises(InputError, match="dense"):  # 0 (none, on purpose) does not make them trainable
        check_contacts(found, name="em.tif", separate=0, key="k")
    check_contacts(found, name="em.tif", separate=1, key="k")
    touching = contacts(two_cells())
    assert touching == Contacts(annotated=96, background=36, touching=12) and not touching.dense
    with caplog.at_level(logging.WARNING):
        check_contacts(touching, name="cells.tif", separate=None, key="volumes.x.labels.separate")
        check_contacts(touching, name="quiet.tif", separate=0, key="k")
        check_contacts(
            contacts(separate_touching(two_cells(), width=1)), name="apart.tif", separate=None, key="k"
        )
    assert "cells.tif: cells of different ids touch along 12 pixels" in caplog.text
    assert "volumes.x.labels.separate: 2" in caplog.text
    assert "quiet.tif" not in caplog.text and "apart.tif" not in caplog.text
    unannotated = two_cells()
    assert contacts(unannotated, ignore=7).touching == 0


def test_the_import_refuses_dense_ids_and_separates_with_the_config_key(tmp_path: Path) -> None:
    raw = np.random.default_rng(1).integers(0, 255, size=(2, 40, 40), dtype=np.uint8)
    dense = np.stack([voronoi((40, 40), 8, seed=z) for z in range(2)])
    target = tmp_path / "dense.zarr"
    with pytest.raises(InputError, match=r"dense instance ids.*labels_separate: 1"):
        import_volume(raw, target, labels=dense)
    assert not target.exists()
    tifffile.imwrite(tmp_path / "raw.tif", raw)
    tifffile.imwrite(tmp_path / "ids.tif", dense)
    volume = VolumeConfig.model_validate(
        {
            "raw": {"path": str(tmp_path / "raw.tif")},
            "labels": {"path": str(tmp_path / "ids.tif"), "separate": 2},
        }
    )
    target = tmp_path / "em.zarr"
    run_import(
        raw=str(tmp_path / "raw.tif"), labels=str(tmp_path / "ids.tif"), target=str(target), volume=volume
    )
    cells, ids = omezarr.open_labels(target), omezarr.open_instances(target)
    assert cells is not None and ids is not None
    np.testing.assert_array_equal(ids[:], dense)
    np.testing.assert_array_equal(cells[:], separate_touching(dense, width=2))
    assert omezarr.read_attrs(target)["separate"] == {"width": 2, "in": "slice", "ids": "ids"}
    counts = count_classes(target, [0, 1])  # the class balance sees the gaps as background
    assert 0.05 < counts.background / counts.annotated < 0.5
    without = VolumeConfig.model_validate(
        {"raw": {"path": str(tmp_path / "raw.tif")}, "labels": {"path": str(tmp_path / "ids.tif")}}
    )
    with pytest.raises(InputError, match=r"set volumes.plain.labels.separate: 1"):
        run_import(
            raw=str(tmp_path / "raw.tif"),
            labels=str(tmp_path / "ids.tif"),
            target=str(tmp_path / "plain.zarr"),
            volume=without,
        )


def test_separation_in_3d_and_with_unannotated_pixels_at_import(tmp_path: Path) -> None:
    raw = np.random.default_rng(2).integers(0, 255, size=(6, 24, 24), dtype=np.uint8)
    ids = np.zeros((6, 24, 24), dtype=np.uint16)
    ids[:3, 4:20, 4:20], ids[3:, 4:20, 4:20] = 1, 2
    ids[:, 20:, :] = 500  # unannotated
    target = import_volume(
        raw,
        tmp_path / "iso.zarr",
        labels=ids,
        labels_ignore=500,
        labels_separate=2,
        labels_separate_in="volume",
        chunks=(1, 24, 24),
    )
    cells = omezarr.open_labels(target)[:]
    stored = omezarr.label_ignore(target)
    assert stored == omezarr.label_ignore(target, omezarr.INSTANCE_IDS) == 2**32 - 1
    np.testing.assert_array_equal(cells[[2, 3]][:, 4:20, 4:20], 0)
    np.testing.assert_array_equal(cells[:, 20:], stored)
    np.testing.assert_array_equal(cells[0, 4:20, 4:20], 1)
    with pytest.raises(InputError, match="binary"):
        import_volume(raw, tmp_path / "binary.zarr", labels=(ids == 1).astype(np.uint8), labels_separate=1)
