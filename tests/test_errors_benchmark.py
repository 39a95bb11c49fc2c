"""benchmarks/errors.py: the label offset and error bands it reports, on arrays with a known answer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "errors.py"
spec = importlib.util.spec_from_file_location("errors_benchmark", SCRIPT)
errors = importlib.util.module_from_spec(spec)
spec.loader.exec_module(errors)


def test_subpixel_minimum_of_a_parabola() -> None:
    values = {(dy, dx): (dy - 0.3) ** 2 + 2 * (dx + 0.4) ** 2 for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    assert errors.subpixel_minimum(values) == pytest.approx((0.3, -0.4))


def test_labels_drawn_half_a_pixel_above_the_dark_membranes_are_found_there() -> None:
    lines = np.zeros((2, 40, 40))
    lines[:, 10::10, :] = 1.0  # membranes: rows 10, 20, 30 and columns 15, 25, blurred like EM
    lines[:, :, 15::10] = 1.0
    image = 200.0 - 180.0 * ndi.gaussian_filter(lines, (0, 1.5, 1.5))
    truth = np.ones((2, 40, 40), bool)
    truth[:, 9::10, :] = truth[:, 10::10, :] = False  # two rows labelled, centred half a row above
    truth[:, :, 14::10] = truth[:, :, 15::10] = truth[:, :, 16::10] = False  # three columns, centred
    base = errors.shifted(image, 0, 0)
    darkness = {
        (dy, dx): float(base[errors.shifted(~truth, dy, dx)].mean())
        for dy in errors.SHIFTS
        for dx in errors.SHIFTS
    }
    dy, dx = errors.subpixel_minimum(darkness)
    assert dy == pytest.approx(0.5, abs=0.1)
    assert dx == pytest.approx(0.0, abs=0.05)


def test_error_bands_split_the_pixel_error_by_distance_to_the_boundary() -> None:
    truth = np.ones((1, 20, 20), bool)
    truth[0, :, 10:] = False
    segmentation = truth.copy()
    segmentation[0, :, 10] = True  # one column moved: every error is 1 px from the boundary
    rows = errors.error_bands(segmentation, truth)
    assert rows[0][3] == pytest.approx(np.mean(segmentation != truth))
    assert rows[0][2] == pytest.approx(0.5)  # columns 9 and 10 are 1 px from it, one of them wrong
    assert all(part == 0 for *_, part in rows[1:])
