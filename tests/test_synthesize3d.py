"""The 3-D mode of the synthetic EM generator: neurites through the volume, exact 3-D instance labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from unetflow.config.model import VolumeConfig
from unetflow.data.synthesize3d import separate_cells, synthesize_volume_3d
from unetflow.errors import InputError
from unetflow.steps.data import run_synthesize

SIX_CONNECTED = ndi.generate_binary_structure(3, 1)
OPTIONS = {"cell_diameter": 20.0, "membrane_width": (1.5, 3.0)}


@pytest.fixture(scope="module")
def isotropic() -> tuple[np.ndarray, np.ndarray]:
    """A small isotropic (FIB-SEM-like) volume."""
    return synthesize_volume_3d(shape=(24, 64, 64), seed=1, **OPTIONS)


@pytest.fixture(scope="module")
def sections() -> tuple[np.ndarray, np.ndarray]:
    """Serial sections 5 pixels apart (e.g. 20 nm sections of 4 nm pixels)."""
    return synthesize_volume_3d(shape=(10, 64, 64), seed=1, voxel_size=(20.0, 4.0, 4.0), **OPTIONS)


def continuity(labels: np.ndarray) -> float:
    """The share of cell voxels whose neighbour in the next slice belongs to the same cell."""
    same = (labels[1:] == labels[:-1]) & (labels[1:] > 0)
    return float(same.sum() / max(1, np.count_nonzero(labels[1:])))


def test_shapes_dtypes_and_the_look_of_em(isotropic: tuple[np.ndarray, np.ndarray]) -> None:
    raw, labels = isotropic
    assert raw.shape == labels.shape == (24, 64, 64)
    assert raw.dtype == np.uint8 and labels.dtype == np.uint32
    membrane = labels == 0
    assert 0.12 < membrane.mean() < 0.4
    assert raw[~membrane].mean() - raw[membrane].mean() > 40.0


def test_same_seed_is_bit_identical_and_other_seeds_differ() -> None:
    first = synthesize_volume_3d(shape=(6, 40, 40), seed=3, **OPTIONS)
    again = synthesize_volume_3d(shape=(6, 40, 40), seed=3, **OPTIONS)
    other = synthesize_volume_3d(shape=(6, 40, 40), seed=4, **OPTIONS)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert np.mean(first[0] != other[0]) > 0.5
    assert np.mean((first[1] > 0) != (other[1] > 0)) > 0.1


@pytest.mark.parametrize("volume", ["isotropic", "sections"])
def test_ids_run_one_to_n_and_each_cell_is_one_six_connected_piece(volume: str, request) -> None:
    _, labels = request.getfixturevalue(volume)
    ids = np.unique(labels[labels > 0])
    assert np.array_equal(ids, np.arange(1, len(ids) + 1)) and len(ids) > 10
    for cell, box in enumerate(ndi.find_objects(labels.astype(np.int64)), start=1):
        _, pieces = ndi.label(labels[box] == cell, structure=SIX_CONNECTED)
        assert pieces == 1, cell


def test_cells_run_through_the_volume(
    isotropic: tuple[np.ndarray, np.ndarray], sections: tuple[np.ndarray, np.ndarray]
) -> None:
    """A neurite keeps its id from slice to slice: most of a cell's voxels have the cell above them too,
    fewer across thicker sections, and a cell spans many slices (not one tessellation per slice)."""
    assert continuity(isotropic[1]) > 0.85
    assert 0.4 < continuity(sections[1]) < continuity(isotropic[1])
    spans = [box[0].stop - box[0].start for box in ndi.find_objects(isotropic[1].astype(np.int64))]
    assert np.median(spans) >= 12


def drift_per_slice(labels: np.ndarray) -> float:
    """The mean in-plane move (px) of a cell's centroid from one slice to the next (cells inside the
    volume's sides only: the sides crop the others)."""
    moves = []
    for cell in range(1, int(labels.max()) + 1):
        mask = labels == cell
        if mask[:, [0, -1], :].any() or mask[:, :, [0, -1]].any():
            continue
        present = [k for k in range(len(labels)) if mask[k].any()]
        centres = np.array([ndi.center_of_mass(mask[k]) for k in present])
        moves.extend(np.hypot(*np.diff(centres, axis=0).T)[np.diff(present) == 1])
    return float(np.mean(moves))


def test_neurites_along_z_without_drift_are_straight_tubes_and_tilted_ones_lean() -> None:
    """A neurite at 60 degrees from z moves tan(60) = 1.7 px per slice; one along z only as the wavy
    displacement moves it."""
    _, straight = synthesize_volume_3d(shape=(8, 96, 96), seed=2, tilt=0.0, wander=0.0, **OPTIONS)
    _, tilted = synthesize_volume_3d(shape=(8, 96, 96), seed=2, tilt=60.0, wander=0.0, **OPTIONS)
    assert continuity(straight) > 0.9
    assert drift_per_slice(straight) < 0.5
    assert 1.3 < drift_per_slice(tilted) < 2.3


def test_membranes_are_sheets_that_part_every_two_cells_in_3d(
    isotropic: tuple[np.ndarray, np.ndarray],
) -> None:
    """Isotropic data: no two cells touch along any axis, and the sheets are as thick across z as in-plane."""
    _, labels = isotropic
    for axis in range(3):
        ahead = np.swapaxes(labels, 0, axis)
        assert not np.any((ahead[1:] != ahead[:-1]) & (ahead[1:] > 0) & (ahead[:-1] > 0))
    membrane = labels == 0
    in_plane = np.mean([ndi.distance_transform_edt(m)[m].mean() for m in membrane])
    across = np.mean([ndi.distance_transform_edt(m)[m].mean() for m in np.swapaxes(membrane, 0, 1)])
    assert 0.6 < across / in_plane < 1.6


def test_sections_part_cells_in_plane_and_may_meet_across_the_section(
    sections: tuple[np.ndarray, np.ndarray],
) -> None:
    _, labels = sections
    for axis in (1, 2):
        ahead = np.swapaxes(labels, 0, axis)
        assert not np.any((ahead[1:] != ahead[:-1]) & (ahead[1:] > 0) & (ahead[:-1] > 0))


def test_organelles_darken_cell_interiors_and_leave_the_labels() -> None:
    options = {"shape": (8, 64, 64), "seed": 5, "noise": 0.0, "blur": 0.0, **OPTIONS}
    raw, labels = synthesize_volume_3d(**options)
    bare, labels_bare = synthesize_volume_3d(**options, organelles=0.0)
    assert np.array_equal(labels, labels_bare)
    darkened = (raw.astype(np.int16) - bare.astype(np.int16)) < -10
    assert 0.005 < darkened[labels > 0].mean() < 0.3
    assert (labels[darkened] > 0).mean() > 0.95


def test_separate_cells_parts_touching_cells_and_drops_crumbs() -> None:
    cells = np.zeros((3, 8, 8), dtype=np.int64)
    cells[:, 1:4, 1:7] = 5
    cells[:, 4:7, 1:7] = 9  # touches cell 5 in-plane: a membrane row is carved between them
    cells[1, 0, 7] = 3  # a crumb of one voxel, on the border (kept only with MIN_BORDER_PIECE voxels)
    labels = separate_cells(cells, step=1.0, min_volume=4)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.all(labels[:, 4] == 0) or np.all(labels[:, 3] == 0)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"voxel_size": (50.0, 4.0, 8.0)}, "y = x"),
        ({"voxel_size": (50.0, 4.0)}, "voxel_size"),
        ({"tilt": 120.0}, "tilt"),
        ({"wander": -1.0}, "wander"),
        ({"cell_diameter": 5.0}, "cell_diameter"),
    ],
)
def test_rejects_bad_arguments_naming_them(arguments: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        synthesize_volume_3d(**({"shape": (2, 32, 32), "seed": 0} | arguments))


def test_the_config_chooses_the_mode_and_the_volume_its_section_spacing(tmp_path: Path) -> None:
    volume = VolumeConfig.from_dict(
        {
            "synthetic": {"shape": [4, 48, 48], "mode": "3d", "cell_diameter": 16.0, "tilt": 0.0},
            "voxel_size": [12.0, 4.0, 4.0],
        }
    )
    raw, labels = tmp_path / "raw.tif", tmp_path / "labels.tif"
    run_synthesize(raw=str(raw), labels=str(labels), options=volume.synthetic, voxel_size=volume.voxel_size)
    expected = synthesize_volume_3d(
        shape=(4, 48, 48), seed=0, voxel_size=(12.0, 4.0, 4.0), cell_diameter=16.0, tilt=0.0
    )
    assert np.array_equal(tifffile.imread(raw), expected[0])
    assert np.array_equal(tifffile.imread(labels), expected[1])
    with pytest.raises(InputError, match=r"voxel_size.*y = x"):
        VolumeConfig.from_dict({"synthetic": {"mode": "3d"}, "voxel_size": [40.0, 4.0, 5.0]})
    with pytest.raises(InputError, match="134,217,728"):
        VolumeConfig.from_dict({"synthetic": {"mode": "3d", "shape": [1024, 512, 512]}})
