"""unetflow.model.loss: every mode's pixel weights, the decision threshold against a hand-computed one, and
the modes the config accepts equal to the modes the loss knows."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from unetflow.config.model import LossMode
from unetflow.model.loss import (
    EVEN_ODDS,
    LOSS_MODES,
    decision_threshold,
    loss_threshold,
    pixel_weights,
    probability_loss,
    uses_class_weights,
    uses_weight_map,
)


def test_the_config_accepts_exactly_the_modes_the_loss_knows() -> None:
    assert set(typing.get_args(LossMode)) == set(LOSS_MODES)
    assert [m for m in LOSS_MODES if uses_weight_map(m)] == ["border"]
    assert [m for m in LOSS_MODES if not uses_class_weights(m)] == ["none"]


def test_pixel_weights_of_each_mode() -> None:
    foreground = np.array([[0, 1], [1, 1]], dtype=np.uint8)
    unannotated = np.array([[False, False], [False, True]])
    border = np.array([[11.0, 1.5], [2.0, 3.0]], dtype=np.float32)
    assert pixel_weights("none", foreground).tolist() == [[1, 1], [1, 1]]
    assert pixel_weights("class", foreground, class_weights=(3.0, 0.5)).tolist() == [[3.0, 0.5], [0.5, 0.5]]
    weights = pixel_weights("border", foreground, weight_map=border, unannotated=unannotated)
    assert weights.tolist() == [[11.0, 1.5], [2.0, 0.0]]
    with pytest.raises(ValueError, match="needs the weight map"):
        pixel_weights("border", foreground)
    with pytest.raises(ValueError, match="one of border, class, none"):
        pixel_weights("focal", foreground)


def test_threshold_undoes_the_class_weights() -> None:
    # w_bg = 1.2, w_fg = 0.4: p_w(fg) = 0.4 p / (0.4 p + 1.2 (1 - p)); at p = 1/2 that is 0.4 / 1.6 = 0.25
    assert decision_threshold((1.2, 0.4)) == pytest.approx(0.25)
    assert loss_threshold("none", (1.2, 0.4)) == EVEN_ODDS == 0.5
    assert loss_threshold("class", None) == EVEN_ODDS
    assert loss_threshold("border", (1.2, 0.4)) == pytest.approx(0.25)


def test_probability_loss_by_hand() -> None:
    probability = np.array([0.9, 0.2])
    foreground = np.array([1, 0])
    weights = np.array([2.0, 1.0])
    expected = (-2.0 * np.log(0.9) - 1.0 * np.log(0.8)) / 2
    assert probability_loss(probability, foreground, weights) == pytest.approx(expected)
