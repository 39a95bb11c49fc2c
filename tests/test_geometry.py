"""The one geometry module: the paper's sizes, valid sizes, margins, tile plans and mirrored indices."""

from __future__ import annotations

import numpy as np
import pytest

from unetflow.geometry import (
    UNetGeometry,
    activation_bytes,
    largest_tile_for_memory,
    plan_tiles,
    reflect_indices,
    tile_starts,
)


def test_paper_sizes() -> None:
    geometry = UNetGeometry(4)
    assert geometry.output_size(572) == 388
    assert geometry.input_for_output(388) == 572
    assert geometry.margin == 92
    assert geometry.alignment == 16


@pytest.mark.parametrize("bottleneck", [1, 2, 17, 28, 100])
def test_closed_form_of_the_design_note(bottleneck: int) -> None:
    geometry = UNetGeometry(4)
    assert geometry.input_for_bottleneck(bottleneck) == 16 * bottleneck + 124
    assert geometry.output_for_bottleneck(bottleneck) == 16 * bottleneck - 60


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_valid_sizes_round_trip(depth: int) -> None:
    geometry = UNetGeometry(depth)
    valid = [n for n in range(8, 700) if geometry.is_valid_input(n)]
    assert valid, "some input sizes must be valid"
    for size in valid:
        out = geometry.output_size(size)
        assert (size - out) // 2 == geometry.margin
        assert geometry.input_for_output(out) == size
    # consecutive valid inputs are exactly one alignment step apart
    assert set(np.diff(valid)) == {geometry.alignment}


def test_invalid_sizes_are_refused_with_the_fix() -> None:
    geometry = UNetGeometry(4)
    with pytest.raises(ValueError, match="valid_input"):
        geometry.output_size(573)
    with pytest.raises(ValueError, match="nearest larger one is 404"):
        geometry.input_for_output(389)
    with pytest.raises(ValueError):
        UNetGeometry(0)


def test_output_sizes_are_never_multiples_of_the_alignment() -> None:
    geometry = UNetGeometry(4)
    assert all(geometry.valid_output(n) % 16 == 4 for n in range(1, 1000, 7))
    assert geometry.output_for_stride(384) == 388
    with pytest.raises(ValueError):
        geometry.output_for_stride(388)


def test_largest_tile_fits_the_budget_and_the_next_does_not() -> None:
    geometry = UNetGeometry(4)
    budget = 2 * 2**30
    stride = largest_tile_for_memory(geometry, budget, 64)
    inside = geometry.input_for_output(geometry.output_for_stride(stride))
    beyond = geometry.input_for_output(geometry.output_for_stride(stride + 16))
    assert activation_bytes(geometry, inside, 64) <= budget < activation_bytes(geometry, beyond, 64)
    with pytest.raises(ValueError, match="memory_gb"):
        largest_tile_for_memory(geometry, 1000, 64)


def test_reflect_indices_match_numpy_pad() -> None:
    for length in (1, 2, 5, 9):
        data = np.arange(length)
        for pad in (0, 3, 12, 30):
            expected = np.pad(data, pad, mode="reflect") if length > 1 else np.zeros(length + 2 * pad, int)
            assert np.array_equal(data[reflect_indices(-pad, length + pad, length)], expected)


def test_tile_plan_covers_each_pixel_once() -> None:
    geometry = UNetGeometry(3)
    plan = plan_tiles(geometry, 100, 37, stride=32, block=64)
    covered = np.zeros((100, 37), int)
    for y, x in plan.block_starts():
        height, width = plan.block_extent(y, x)
        covered[y : y + height, x : x + width] += 1
    assert np.all(covered == 1)
    assert plan.output >= plan.stride and plan.input - plan.output == 2 * geometry.margin
    assert tile_starts(10, 4) == [0, 4, 8]
    with pytest.raises(ValueError):
        plan_tiles(geometry, 100, 37, stride=32, block=48)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_smallest_valid_sizes_give_a_positive_output(depth: int) -> None:
    geometry = UNetGeometry(depth)
    smallest = geometry.valid_input(1)
    assert geometry.output_size(smallest) >= 1
    assert not geometry.is_valid_input(smallest - geometry.alignment)
    assert geometry.valid_output(1) == geometry.output_size(smallest)
