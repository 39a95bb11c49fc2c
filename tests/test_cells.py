"""Cells as objects from a probability: connected components or a seeded watershed, holes and small
fragments by their stated rules."""

from __future__ import annotations

import numpy as np
import pytest

from unetflow.config.model import CellsConfig
from unetflow.errors import InputError
from unetflow.segment.cells import seed_level, segment_cells, segment_frames


def joined_cells(dip: float) -> np.ndarray:
    """Two 16 x 12 px cells side by side (probability 0.95), the column between them at `dip`."""
    probability = np.full((20, 30), 0.02)
    probability[2:18, 2:27] = 0.95
    probability[2:18, 14] = dip
    return probability


def test_a_faint_gap_splits_cells_in_the_watershed_only() -> None:
    probability = joined_cells(0.6)
    components = segment_cells(probability, threshold=0.5, method="components")
    assert components.max() == 1
    cells = segment_cells(probability, threshold=0.5, seeds="level")
    assert cells.max() == 2 and cells.dtype == np.uint32
    assert (cells == 1).sum() + (cells == 2).sum() == (probability > 0.5).sum()  # nothing lost
    assert set(np.unique(cells[:, 2:14])) >= {1} and 2 not in cells[:, :14]
    # a gap the net saw clearly separates in both methods
    assert segment_cells(joined_cells(0.1), threshold=0.5, method="components").max() == 2


@pytest.mark.parametrize(("dip", "count"), [(0.6, 1), (0.4, 2)])
def test_maxima_seeds_split_where_the_dip_is_deeper_than_the_dynamic(dip: float, count: int) -> None:
    """seeds maxima (the default): two maxima of 0.95 seed two cells only where the probability between them
    falls by more than `dynamic` (0.5): a dip to 0.6 is a cell the net saw unevenly, one to 0.4 a gap."""
    probability = joined_cells(dip)
    cells = segment_cells(probability, threshold=0.3)
    assert cells.max() == count and (cells > 0).sum() == (probability > 0.3).sum()
    assert segment_cells(probability, threshold=0.3, dynamic=0.2).max() == 2


def test_foreground_no_seed_reaches_is_a_cell_of_its_own() -> None:
    probability = joined_cells(0.1)
    probability[2:18, 2:14] = 0.7  # above the threshold, below the seeds' level (0.75)
    cells = segment_cells(probability, threshold=0.5, seeds="level")
    assert cells.max() == 2 and np.all(cells[2:18, 2:14] > 0)


def test_holes_of_one_cell_are_filled_not_the_space_between_cells() -> None:
    probability = np.full((30, 30), 0.02)
    probability[2:12, 2:12] = 0.95
    probability[6, 6] = 0.1  # a hole inside one cell
    probability[14:28, 14:28] = 0.95  # a ring of four cells around background
    probability[18:24, 18:24] = 0.02
    probability[14:28, 20] = 0.02
    probability[20, 14:28] = 0.02
    cells = segment_cells(probability, threshold=0.5, min_size=0)
    assert cells[6, 6] == cells[3, 3] > 0
    assert (cells[18:24, 18:24] == 0).sum() > 20  # the background in the ring stays background
    assert cells.max() == 5


def test_small_fragments_join_their_neighbour_or_go() -> None:
    probability = joined_cells(0.02)  # two cells apart
    probability[2:4, 14] = 0.95  # a 2-px bridge between them
    probability[0, 28:30] = 0.95  # an isolated 2-px speck
    cells = segment_cells(probability, threshold=0.5, method="components", min_size=30)
    assert cells[0, 28] == 0 and cells.max() == 1  # the bridge makes the two cells one component
    probability[2:4, 14] = 0.02
    cells = segment_cells(probability, threshold=0.5, method="watershed", min_size=30)
    assert cells.max() == 2 and cells[0, 28] == 0
    sizes = np.bincount(cells.ravel())[1:]
    assert sizes.min() >= 30
    pieces = segment_cells(probability, threshold=0.5, method="components", min_size=0)
    assert pieces.max() == 3  # without the rule the speck is a cell


def test_small_cell_joins_the_neighbour_it_borders_most() -> None:
    probability = np.full((12, 24), 0.02)
    probability[1:11, 1:11] = 0.95  # cell A
    probability[1:11, 13:23] = 0.95  # cell B
    probability[3:7, 11:13] = 0.6  # a 4 x 2 px piece between them, bordering A along 4 px, B along 4 px
    probability[7:9, 11] = 0.6  # and A along 2 more
    cells = segment_cells(probability, threshold=0.5, seeds="level", seed_threshold=0.9, min_size=20)
    assert cells.max() == 2
    assert cells[4, 11] == cells[4, 5]


def test_options_and_bad_input() -> None:
    assert seed_level(0.2) == pytest.approx(0.6)
    assert seed_level(0.2, 0.9) == 0.9
    with pytest.raises(ValueError, match="below"):
        seed_level(0.5, 0.4)
    with pytest.raises(ValueError, match="2-D"):
        segment_cells(np.zeros((2, 4, 4)), threshold=0.5)
    with pytest.raises(ValueError, match="method"):
        segment_cells(np.zeros((4, 4)), threshold=0.5, method="magic")
    with pytest.raises(ValueError, match="seeds must be one of maxima, level"):
        segment_cells(np.zeros((4, 4)), threshold=0.5, seeds="peaks")
    with pytest.raises(InputError, match="seed_threshold"):
        CellsConfig.from_dict({"threshold": 0.6, "seed_threshold": 0.5})
    stack = segment_frames(
        np.stack([joined_cells(0.1), joined_cells(0.6)]), threshold=0.5, method="components"
    )
    assert stack.shape == (2, 20, 30) and [frame.max() for frame in stack] == [2, 1]


def test_cells_grow_back_the_gap_they_were_trained_to_leave() -> None:
    probability = joined_cells(0.02)  # two cells 1 px apart, their outer border at columns 2 and 26
    cells = segment_cells(probability, threshold=0.5, grow=1)
    assert cells.max() == 2
    row = cells[10]
    assert row[14] > 0 and row[1] > 0 and row[27] > 0  # the gap filled, each cell 1 px wider outside
    assert row[0] == 0 and row[28] == 0 and cells[0, 10] == 0
    assert (segment_cells(probability, threshold=0.5, grow=0)[10, 14]) == 0
