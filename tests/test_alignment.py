"""Label alignment (`train.label_offset: auto`): the offset measured on arrays with a known answer, the move
seamless across tiles and blocks, and a training run that records the offset its data was given."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from unetflow.config.model import PredictConfig, TrainConfig
from unetflow.data import alignment, omezarr
from unetflow.data.importer import import_volume
from unetflow.data.synthesize import synthesize_volume
from unetflow.model.checkpoint import load_checkpoint, load_model, provenance
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import predict_array, predict_volume, predict_whole_slice
from unetflow.train.loop import train


def membranes(*, bright: bool = False) -> np.ndarray:
    """Two 48 x 48 slices of blurred membranes at rows 10, 20, 30 and columns 15, 25, 35 (dark, or bright)."""
    lines = np.zeros((2, 48, 48))
    lines[:, 10:31:10, :] = 1.0
    lines[:, :, 15:36:10] = 1.0
    blurred = ndi.gaussian_filter(lines, (0, 1.5, 1.5))
    return 20.0 + 180.0 * blurred if bright else 200.0 - 180.0 * blurred


def labels_around(rows: tuple[int, ...], columns: tuple[int, ...]) -> np.ndarray:
    """0/1 labels whose membranes (0) are the given offsets from every membrane row and column."""
    labels = np.ones((2, 48, 48), np.uint8)
    for move in rows:
        labels[:, 10 + move : 31 + move : 10, :] = 0
    for move in columns:
        labels[:, :, 15 + move : 36 + move : 10] = 0
    return labels


@pytest.mark.parametrize("bright", [False, True])
def test_labels_half_a_pixel_above_the_membranes_measure_there(bright: bool) -> None:
    image = membranes(bright=bright)
    labels = labels_around((-1, 0), (-1, 0, 1))  # rows centred half a row above, columns centred
    dy, dx = alignment.estimate_label_offset([(image, labels, None)])
    assert dy == pytest.approx(-0.5, abs=0.1)
    assert dx == pytest.approx(0.0, abs=0.05)


def test_aligned_labels_measure_no_offset_and_a_moved_raw_lies_on_its_labels() -> None:
    labels = labels_around((-1, 0, 1), (-1, 0, 1))
    assert alignment.estimate_label_offset([(membranes(), labels, None)]) == pytest.approx((0, 0), abs=0.05)
    off = labels_around((0, 1), (-2, -1, 0))  # centred half a row below, a column to the left
    offset = alignment.estimate_label_offset([(membranes(), off, None)])
    assert offset == pytest.approx((0.5, -1.0), abs=0.1)
    moved = alignment.move(membranes(), offset)
    assert alignment.estimate_label_offset([(moved, off, None)]) == pytest.approx((0, 0), abs=0.1)


def test_unannotated_pixels_do_not_count() -> None:
    labels = labels_around((-1, 0), (-1, 0, 1))
    wrong = labels_around((1, 2), (-1, 0, 1))  # the other half, drawn 1.5 rows below, is not annotated
    mixed = np.where(np.arange(48)[None, :, None] < 24, labels, wrong)
    unannotated = np.broadcast_to(np.arange(48)[None, :, None] >= 24, mixed.shape)
    offset = alignment.estimate_label_offset([(membranes(), mixed, unannotated)])
    assert offset[0] == pytest.approx(-0.5, abs=0.15)


def test_nothing_to_measure_is_no_offset_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    flat = np.full((1, 20, 20), 100.0)
    with caplog.at_level(logging.WARNING, logger="unetflow.data.alignment"):
        assert alignment.estimate_label_offset([(flat, np.ones((1, 20, 20), np.uint8), None)]) == (0.0, 0.0)
        assert alignment.estimate_label_offset([(flat, labels_around((0,), (0,))[:1, :20, :20], None)]) == (
            0.0,
            0.0,
        )
    assert "not measured" in caplog.text and "no clear alignment" in caplog.text


def test_a_region_read_with_the_halo_moves_like_the_whole_image() -> None:
    image = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    offset = (-0.64, 1.3)
    whole = alignment.move(image, offset)
    halo = alignment.HALO
    region = alignment.move(image[5 - halo : 20 + halo, 7 - halo : 31 + halo], offset)[halo:-halo, halo:-halo]
    np.testing.assert_array_equal(region, whole[5:20, 7:31])
    assert not np.allclose(whole, image)


@pytest.fixture(scope="module")
def moved_net() -> UNet:
    torch.manual_seed(0)
    net = UNet(UNetConfig(depth=3, base_channels=4)).eval()
    net.label_offset = (-0.64, 0.19)
    return net


def test_tiled_prediction_of_a_moving_net_equals_its_whole_slice_pass(moved_net: UNet) -> None:
    image = np.random.default_rng(2).random((57, 83)).astype(np.float32)
    reference = predict_whole_slice(moved_net, image)
    for stride in (8, 16, 48):
        out = predict_array(moved_net, image, mean=0.0, std=1.0, stride=stride, device="cpu")
        np.testing.assert_allclose(out, reference, atol=1e-5, rtol=0)
    still = UNet(moved_net.config).eval()
    still.load_state_dict(moved_net.state_dict())
    unmoved = predict_whole_slice(still, image)
    assert np.abs(unmoved - reference).max() > 1e-3
    large = np.random.default_rng(4).random((120, 120)).astype(np.float32)
    moved_first = predict_whole_slice(still, alignment.move(large, moved_net.label_offset))
    inner = slice(
        still.config.geometry.margin + alignment.HALO, -still.config.geometry.margin - alignment.HALO
    )
    np.testing.assert_allclose(
        predict_whole_slice(moved_net, large)[inner, inner], moved_first[inner, inner], atol=2e-4, rtol=0
    )


def test_a_zarr_prediction_in_small_blocks_is_seamless(moved_net: UNet, tmp_path: Path) -> None:
    volume = np.random.default_rng(3).integers(0, 255, size=(2, 70, 90), dtype=np.uint8)
    source = tmp_path / "raw.zarr"
    omezarr.write_image(source, volume, voxel_size=(50.0, 4.0, 4.0), chunks=(1, 32, 32))
    mean, std = omezarr.normalization(source)
    target = tmp_path / "pred.zarr"
    options = PredictConfig(device="cpu")
    predict_volume(
        moved_net, str(source), str(target), options=options, stride=16, block=32, show_progress=False
    )
    expected = np.stack([predict_whole_slice(moved_net, s, mean=mean, std=std) for s in volume])
    np.testing.assert_allclose(np.asarray(omezarr.open_image(target)), expected, atol=1e-5, rtol=0)


def test_training_measures_the_offset_records_it_and_prediction_loads_it(tmp_path: Path) -> None:
    raw, cells = synthesize_volume(shape=(3, 64, 64), seed=0)
    moved = np.clip(ndi.shift(raw.astype(np.float32), (0, 0.6, -0.3), order=1, mode="mirror"), 0, 255)
    data = import_volume(moved.round().astype(np.uint8), tmp_path / "data.zarr", labels=cells)
    common = {"steps": 2, "tile": 36, "device": "cpu", "loss_weights": "none", "val_every": 2}
    checkpoints = {}
    for mode in ("auto", "none"):
        checkpoints[mode] = tmp_path / mode / "model.pt"
        train(
            data=Path(data),
            weights=None,
            train_slices=[0, 1],
            val_slices=[2],
            model_config=UNetConfig(depth=2, base_channels=4),
            config=TrainConfig.from_dict({**common, "label_offset": mode}),
            workdir=tmp_path / mode / "work",
            output=checkpoints[mode],
            step_log=tmp_path / mode / "steps.csv",
            val_log=tmp_path / mode / "val.csv",
            progress=False,
        )
    dy, dx = load_checkpoint(checkpoints["auto"])["label_offset"]
    assert (dy, dx) == pytest.approx((-0.6, 0.3), abs=0.15)  # the labels lie where the raw was before
    assert load_model(checkpoints["auto"]).label_offset == (dy, dx)
    assert provenance(checkpoints["auto"])["label_offset"] == [dy, dx]
    assert load_model(checkpoints["none"]).label_offset == (0.0, 0.0)
