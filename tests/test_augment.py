"""Augmented tile sampling: exact mirrored crops without augmentation, the paper's elastic statistics, and
the geometric transforms against independent NumPy / SciPy references."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.nn import functional

from unetflow.geometry import UNetGeometry
from unetflow.train.augment import (
    AugmentConfig,
    TileParams,
    TileSampler,
    adjust_gray_values,
    affine_matrices,
    elastic_displacement,
    upsample_displacement,
    warp,
)

OFF = AugmentConfig(enabled=False)
GEOMETRIC = AugmentConfig(contrast=[1.0, 1.0], brightness=[0.0, 0.0], gamma=[1.0, 1.0])


def make_slices(count: int, height: int, width: int, *, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random raw, blocky binary labels (8 px squares) and positive weights."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(count, height, width)).astype(np.float32)
    blocks = rng.integers(0, 2, size=(count, height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    labels = np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)[:, :height, :width].copy()
    weights = rng.uniform(0.5, 10.0, size=(count, height, width)).astype(np.float32)
    return raw, labels, weights


def sizes(depth: int, at_least: int) -> tuple[int, int]:
    """(input, output) tile sizes of a depth-`depth` U-Net."""
    geometry = UNetGeometry(depth)
    output = geometry.valid_output(at_least)
    return geometry.input_for_output(output), output


def reference_crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """The crop of np.pad(image, mode='reflect') whose top-left is (top, left) in image coordinates."""
    pad = size + abs(top) + abs(left)
    padded = np.pad(image, pad, mode="reflect")
    return padded[top + pad : top + pad + size, left + pad : left + pad + size]


@pytest.mark.parametrize(
    ("shape", "depth", "at_least"),
    [
        ((3, 64, 80), 2, 30),  # input tile passes the borders of a larger slice
        ((2, 256, 256), 4, 196),  # the brief's case: 256x256 slices, 380 input
        ((2, 24, 31), 3, 40),  # slices smaller than even the output: repeated mirroring, mirror unweighted
    ],
)
def test_without_augmentation_tiles_are_mirrored_crops(
    shape: tuple[int, int, int], depth: int, at_least: int
):
    raw, labels, weights = make_slices(*shape)
    inp, out = sizes(depth, at_least)
    margin = (inp - out) // 2
    sampler = TileSampler(raw, labels, weights, input_size=inp, output_size=out, config=OFF, batch_size=4)
    generator = torch.Generator().manual_seed(1)
    passed_border = 0
    for _ in range(5):
        batch = sampler.sample(generator)
        assert batch.raw.shape == (4, 1, inp, inp) and batch.raw.dtype == torch.float32
        assert batch.labels.shape == (4, out, out) and batch.labels.dtype == torch.int64
        assert batch.weights.shape == (4, out, out) and batch.weights.dtype == torch.float32
        params = batch.params
        for tile in range(4):
            index, top, left = (int(v[tile]) for v in (params.slice_index, params.top, params.left))
            passed_border += top < 0 or left < 0 or top + inp > shape[1] or left + inp > shape[2]
            np.testing.assert_array_equal(
                batch.raw[tile, 0].numpy(), reference_crop(raw[index], top, left, inp)
            )
            expected_weights = reference_crop(weights[index], top + margin, left + margin, out)
            if min(shape[1:]) < out:  # a slice smaller than the output tile: its mirrored part weighs 0
                rows = np.arange(top + margin, top + margin + out)
                cols = np.arange(left + margin, left + margin + out)
                inside = ((rows >= 0) & (rows < shape[1]))[:, None] & ((cols >= 0) & (cols < shape[2]))
                assert not inside.all()
                expected_weights = expected_weights * inside
            np.testing.assert_array_equal(batch.weights[tile].numpy(), expected_weights)
            np.testing.assert_array_equal(
                batch.labels[tile].numpy(), reference_crop(labels[index], top + margin, left + margin, out)
            )
            # the output crop stays inside the slice wherever the slice is large enough
            if shape[1] >= out:
                assert 0 <= top + margin <= shape[1] - out
    assert passed_border > 0


def test_same_seed_same_batch_and_other_seed_differs():
    raw, labels, weights = make_slices(3, 96, 96)
    inp, out = sizes(2, 40)
    sampler = TileSampler(raw, labels, weights, input_size=inp, output_size=out, batch_size=2)
    first = sampler.sample(torch.Generator().manual_seed(7))
    again = sampler.sample(torch.Generator().manual_seed(7))
    other = sampler.sample(torch.Generator().manual_seed(8))
    for name in ("raw", "labels", "weights"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert not torch.equal(first.raw, other.raw)
    # consecutive draws from one generator differ too
    generator = torch.Generator().manual_seed(7)
    assert not torch.equal(sampler.sample(generator).raw, sampler.sample(generator).raw)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_full_augmentation_keeps_labels_binary_and_weights_in_range(interpolation: str):
    raw, labels, weights = make_slices(2, 48, 56)
    inp, out = sizes(2, 60)  # tiles larger than the slices
    config = AugmentConfig(interpolation=interpolation, elastic_std=6.0)
    sampler = TileSampler(raw, labels, weights, input_size=inp, output_size=out, config=config, batch_size=3)
    generator = torch.Generator().manual_seed(3)
    for _ in range(4):
        batch = sampler.sample(generator)
        assert set(batch.labels.unique().tolist()) <= {0, 1}
        trained = batch.weights > 0  # the slices are smaller than a tile: their mirrored part weighs 0
        assert 0 < int(trained.sum()) < trained.numel() and batch.weights.min() == 0
        assert batch.weights[trained].min() >= weights.min() - 1e-6
        assert batch.weights.max() <= weights.max() + 1e-6
        assert torch.isfinite(batch.raw).all()
        assert not batch.params.integral


def numpy_coordinates(params: TileParams, tile: int, size: int) -> np.ndarray:
    """Independent float64 slice coordinates (2, size, size) of a tile: centre + M offsets + bicubic field."""
    centre = (size - 1) / 2
    offsets = np.arange(size) - centre
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    matrix = params.matrix[tile].numpy()
    coords = np.stack(
        [
            int(params.top[tile]) + centre + matrix[0, 0] * dy + matrix[0, 1] * dx,
            int(params.left[tile]) + centre + matrix[1, 0] * dy + matrix[1, 1] * dx,
        ]
    )
    if params.coarse is not None:
        coarse = params.coarse[tile : tile + 1].to(torch.float64)
        field = functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
        coords = coords + field[0].numpy()
    return coords


def test_warped_tiles_match_scipy_map_coordinates_on_the_mirrored_slice():
    raw, labels, weights = make_slices(2, 64, 72)
    inp, out = sizes(2, 40)
    margin = (inp - out) // 2
    sampler = TileSampler(
        raw, labels, weights, input_size=inp, output_size=out, config=GEOMETRIC, batch_size=3
    )
    batch = sampler.sample(torch.Generator().manual_seed(11))
    params = batch.params
    pad = 3 * inp
    for tile in range(3):
        index = int(params.slice_index[tile])
        coords = numpy_coordinates(params, tile, inp) + pad
        np.testing.assert_allclose(
            sampler.coordinates(params)[tile].permute(2, 0, 1).numpy(), coords - pad, atol=2e-3
        )
        expected_raw = ndimage.map_coordinates(np.pad(raw[index], pad, mode="reflect"), coords, order=1)
        np.testing.assert_allclose(batch.raw[tile, 0].numpy(), expected_raw, atol=2e-3)
        centre = (slice(None), slice(margin, margin + out), slice(margin, margin + out))
        expected_weights = ndimage.map_coordinates(
            np.pad(weights[index], pad, mode="reflect"), coords[centre], order=1
        )
        np.testing.assert_allclose(batch.weights[tile].numpy(), expected_weights, rtol=1e-3, atol=2e-3)
        expected_labels = ndimage.map_coordinates(
            np.pad(labels[index], pad, mode="reflect"), coords[centre], order=0
        )
        assert (batch.labels[tile].numpy() != expected_labels).mean() < 1e-3


@pytest.mark.parametrize(("angle", "turns"), [(math.pi / 2, -1), (math.pi, 2), (3 * math.pi / 2, 1)])
def test_right_angle_rotation_reproduces_rot90(angle: float, turns: int):
    raw, labels, weights = make_slices(1, 70, 70)
    inp, out = sizes(2, 30)
    margin = (inp - out) // 2
    sampler = TileSampler(raw, labels, weights, input_size=inp, output_size=out, config=OFF)
    top, left = -5, 9
    matrix = affine_matrices(torch.tensor([angle]), torch.zeros(1, 3, dtype=torch.int64))
    exact = TileParams(torch.tensor([0]), torch.tensor([top]), torch.tensor([left]), matrix)
    # a zero elastic field forces the interpolating path: one grid_sample at (almost) integer points
    interpolated = replace(exact, coarse=torch.zeros(1, 2, 3, 3))
    assert exact.integral and not interpolated.integral
    expected_raw = np.rot90(reference_crop(raw[0], top, left, inp), turns)
    expected_labels = np.rot90(reference_crop(labels[0], top, left, inp), turns)[
        margin:-margin, margin:-margin
    ]
    for params, tolerance in ((exact, 0.0), (interpolated, 1e-4)):
        batch = sampler.render(params)
        np.testing.assert_allclose(batch.raw[0, 0].numpy(), expected_raw, atol=tolerance, rtol=0)
        np.testing.assert_array_equal(batch.labels[0].numpy(), expected_labels)


def test_flips_give_the_dihedral_images_of_the_crop():
    raw, labels, weights = make_slices(1, 50, 50)
    inp, out = sizes(1, 20)
    crop = reference_crop(raw[0], 3, 4, inp)
    flips = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    expected = [crop[:, ::-1], crop[::-1, :], crop.T, crop.T[::-1, ::-1]]
    sampler = TileSampler(raw, labels, weights, input_size=inp, output_size=out, config=OFF, batch_size=4)
    params = TileParams(
        torch.zeros(4, dtype=torch.int64),
        torch.full((4,), 3),
        torch.full((4,), 4),
        affine_matrices(torch.zeros(4), flips),
    )
    batch = sampler.render(params)
    for tile in range(4):
        np.testing.assert_array_equal(batch.raw[tile, 0].numpy(), expected[tile])


def test_geometric_augmentation_keeps_raw_and_labels_aligned():
    _, labels, weights = make_slices(2, 120, 100)
    inp, out = sizes(2, 60)
    raw = labels.astype(np.float32)  # a raw image equal to the labels
    sampler = TileSampler(
        raw, labels, weights, input_size=inp, output_size=out, config=GEOMETRIC, batch_size=4
    )
    generator = torch.Generator().manual_seed(5)
    margin = (inp - out) // 2
    mismatch = []
    for _ in range(5):
        batch = sampler.sample(generator)
        centre = batch.raw[:, 0, margin : margin + out, margin : margin + out]
        mismatch.append(((centre > 0.5).long() != batch.labels).float().mean().item())
    assert max(mismatch) < 0.02
    # and the labels really moved: rotation by any angle and elastic displacement were applied
    assert not batch.params.integral


def test_elastic_field_has_the_configured_std_at_the_coarse_points_and_is_smooth():
    generator = torch.Generator().manual_seed(0)
    fields = torch.stack(
        [elastic_displacement((9, 9), grid=3, std=10.0, generator=generator) for _ in range(600)]
    )
    assert fields.shape == (600, 2, 9, 9)
    at_points = fields[:, :, ::4, ::4]  # the 3x3 coarse points of a 9x9 field: rows/columns 0, 4, 8
    assert abs(at_points.std().item() - 10.0) < 0.5
    assert abs(at_points.mean().item()) < 0.5
    between = fields[:, :, 2, 2]  # between coarse points the field averages its neighbours: less spread
    assert between.std() < 0.9 * at_points.std()

    field = elastic_displacement((300, 300), grid=3, std=10.0, generator=generator)
    first = field.diff(dim=-1).abs().max()
    second = field.diff(dim=-1).diff(dim=-1).abs().max()
    assert first < 1.0 and second < 0.01 and field.abs().max() > 1.0


def test_upsampled_field_is_pytorch_bicubic_through_the_coarse_points():
    coarse = torch.randn(4, 2, 3, 3, generator=torch.Generator().manual_seed(2)) * 10
    field = upsample_displacement(coarse, (41, 57))
    reference = functional.interpolate(coarse, size=(41, 57), mode="bicubic", align_corners=True)
    torch.testing.assert_close(field, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(field[..., ::20, ::28], coarse, atol=1e-5, rtol=0)


def test_sampled_elastic_grid_is_identity_plus_displacement():
    raw, labels, weights = make_slices(1, 80, 80)
    inp, out = sizes(2, 20)
    config = AugmentConfig(rotate=False, flip=False, elastic_std=10.0)
    sampler = TileSampler(raw, labels, weights, input_size=inp, output_size=out, config=config)
    params = sampler.draw(torch.Generator().manual_seed(4))
    assert params.coarse is not None and params.coarse.shape == (1, 2, 3, 3)
    field = upsample_displacement(params.coarse, (inp, inp))[0]
    rows, cols = torch.meshgrid(torch.arange(inp), torch.arange(inp), indexing="ij")
    identity = torch.stack([rows + int(params.top[0]), cols + int(params.left[0])]).float()
    torch.testing.assert_close(
        sampler.coordinates(params)[0].permute(2, 0, 1), identity + field, atol=2e-3, rtol=0
    )


def test_warp_mirrors_like_numpy_reflect_far_outside():
    image = torch.arange(20.0).reshape(1, 1, 4, 5)
    rows, cols = torch.meshgrid(torch.arange(-9, 13), torch.arange(-11, 16), indexing="ij")
    grid = torch.stack([rows, cols], dim=-1)[None].float()
    expected = reference_crop(image[0, 0].numpy(), -9, -11, 27)[:22]
    for mode in ("nearest", "bilinear", "bicubic"):
        np.testing.assert_allclose(warp(image, grid, mode)[0, 0].numpy(), expected, atol=1e-4)
    # half-way between pixels, bilinear averages the mirrored neighbours
    half = warp(image, torch.tensor([[[[-0.5, 0.0]]]]), "bilinear")
    assert half.item() == pytest.approx((image[0, 0, 1, 0] + image[0, 0, 0, 0]).item() / 2)


def test_gray_values_shift_and_scale_raw_as_configured():
    raw, labels, weights = make_slices(2, 64, 64)
    inp, out = sizes(1, 30)
    plain = AugmentConfig(
        rotate=False, flip=False, elastic_std=0.0, contrast=[1, 1], brightness=[0, 0], gamma=[1, 1]
    )

    def batch_with(**changes: object) -> torch.Tensor:
        options = {**plain.__dict__, **changes}
        sampler = TileSampler(
            raw,
            labels,
            weights,
            input_size=inp,
            output_size=out,
            config=AugmentConfig(**options),
            batch_size=4,
        )
        return sampler.sample(torch.Generator().manual_seed(9)).raw

    base = batch_with()
    torch.testing.assert_close(batch_with(brightness=[0.3, 0.3]), base + 0.3)
    contrasted = batch_with(contrast=[1.5, 1.5])
    torch.testing.assert_close(contrasted.mean(dim=(1, 2, 3)), base.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(contrasted.std(dim=(1, 2, 3)), 1.5 * base.std(dim=(1, 2, 3)))
    random_shift = batch_with(brightness=[-0.1, 0.1]) - base
    per_tile = random_shift.mean(dim=(1, 2, 3))
    assert (per_tile.abs() <= 0.1 + 1e-6).all() and per_tile.unique().numel() == 4
    torch.testing.assert_close(random_shift, per_tile[:, None, None, None].expand_as(random_shift))
    # gamma keeps each tile's range and the order of its values
    gammaed = adjust_gray_values(base, gamma=torch.tensor([0.5, 2.0, 1.0, 1.25]))
    torch.testing.assert_close(gammaed.amin(dim=(1, 2, 3)), base.amin(dim=(1, 2, 3)))
    torch.testing.assert_close(gammaed.amax(dim=(1, 2, 3)), base.amax(dim=(1, 2, 3)))
    assert torch.equal(gammaed[0].flatten().argsort(), base[0].flatten().argsort())
    assert gammaed[0].mean() > base[0].mean() and gammaed[1].mean() < base[1].mean()
    torch.testing.assert_close(gammaed[2], base[2])


def test_switching_one_augmentation_off_keeps_the_other_draws():
    raw, labels, weights = make_slices(3, 64, 64)
    inp, out = sizes(1, 30)

    def draw(config: AugmentConfig) -> TileParams:
        sampler = TileSampler(
            raw, labels, weights, input_size=inp, output_size=out, config=config, batch_size=2
        )
        return sampler.draw(torch.Generator().manual_seed(12))

    full, no_rotation = draw(AugmentConfig()), draw(AugmentConfig(rotate=False, flip=False))
    assert torch.equal(full.top, no_rotation.top) and torch.equal(full.coarse, no_rotation.coarse)
    assert torch.equal(full.contrast, no_rotation.contrast)
    assert torch.equal(no_rotation.matrix, torch.eye(2, dtype=torch.float64).expand(2, 2, 2))
    disabled = draw(OFF)
    assert disabled.coarse is None and disabled.contrast is None and disabled.integral


def test_real_isbi_slices_keep_membranes_dark_under_augmentation(isbi_dir):
    tifffile = pytest.importorskip("tifffile")
    volume = tifffile.imread(isbi_dir / "train-volume.tif")[:2].astype(np.float32) / 255
    labels = (tifffile.imread(isbi_dir / "train-labels.tif")[:2] > 127).astype(np.uint8)
    geometry = UNetGeometry(4)
    out = geometry.valid_output(300)
    inp = geometry.input_for_output(out)
    weights = np.ones_like(volume)
    generator = torch.Generator().manual_seed(0)
    sampler = TileSampler(volume, labels, weights, input_size=inp, output_size=out, config=GEOMETRIC)
    aligned = TileSampler(
        labels.astype(np.float32), labels, weights, input_size=inp, output_size=out, config=GEOMETRIC
    )
    for _ in range(2):
        state = generator.get_state()
        batch = sampler.sample(generator)
        generator.set_state(state)
        mirror = aligned.sample(generator)
        margin = (inp - out) // 2
        raw = batch.raw[0, 0, margin : margin + out, margin : margin + out]
        cell, membrane = raw[batch.labels[0] == 1].mean(), raw[batch.labels[0] == 0].mean()
        assert cell > membrane + 0.1
        thresholded = mirror.raw[0, 0, margin : margin + out, margin : margin + out] > 0.5
        assert (thresholded.long() != batch.labels[0]).float().mean() < 0.05


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"contrast": [1.2, 0.8]}, "low must not exceed high"),
        ({"gamma": [0.0, 1.0]}, "must be > 0"),
        ({"brightness": [0.1]}, "brightness: List should have at least 2 items"),
        ({"elastic_grid": 1}, "elastic_grid"),
        ({"elastic_std": -1.0}, "elastic_std"),
        ({"interpolation": "lanczos"}, "interpolation"),
    ],
)
def test_bad_config_values_are_named(changes: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        AugmentConfig.from_dict(changes)


def test_config_from_dict_takes_yaml_lists_and_rejects_unknown_keys():
    config = AugmentConfig.from_dict({"contrast": [0.9, 1.1], "elastic_std": 5})
    assert config.contrast == [0.9, 1.1] and config.elastic_std == 5
    with pytest.raises(ValueError, match=r"train\.augment\.elastik_std: unknown key"):
        AugmentConfig.from_dict({"elastik_std": 5})


def test_sampler_rejects_mismatched_inputs():
    raw, labels, weights = make_slices(2, 32, 32)
    with pytest.raises(ValueError, match="one shape"):
        TileSampler(raw, labels[:1], weights, input_size=40, output_size=20)
    with pytest.raises(ValueError, match="inconsistent"):
        TileSampler(raw, labels, weights, input_size=41, output_size=20)
    with pytest.raises(ValueError, match="class indices"):
        TileSampler(raw, labels * 0.5, weights, input_size=40, output_size=20)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batch_matches_cpu_batch():
    raw, labels, weights = make_slices(2, 128, 128)
    inp, out = sizes(3, 60)
    batches = []
    for device in ("cpu", "cuda"):
        sampler = TileSampler(
            raw, labels, weights, input_size=inp, output_size=out, device=device, batch_size=2
        )
        batches.append(sampler.sample(torch.Generator().manual_seed(21)))
    cpu, cuda = batches
    assert cuda.raw.device.type == "cuda" and cuda.labels.device.type == "cuda"
    torch.testing.assert_close(cuda.raw.cpu(), cpu.raw, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(cuda.weights.cpu(), cpu.weights, atol=1e-3, rtol=1e-3)
    assert (cuda.labels.cpu() != cpu.labels).float().mean() < 1e-3


def test_several_sources_are_drawn_by_labelled_area_and_cut_from_their_own_slices():
    """Sources of different shapes: slices drawn in proportion to their pixels of non-zero weight, each
    tile's crop inside its own slice, and each tile what a sampler of its source alone renders."""
    first, second = make_slices(2, 40, 48, seed=1), make_slices(3, 64, 56, seed=2)
    second[2][1, :, :28] = 0.0  # half of slice 1 of the second source unlabelled
    inp, out = sizes(2, 30)
    margin = (inp - out) // 2
    sampler = TileSampler(
        [first[0], second[0]],
        [first[1], second[1]],
        [first[2], second[2]],
        input_size=inp,
        output_size=out,
        batch_size=8,
    )
    generator = torch.Generator().manual_seed(11)
    draws = [sampler.draw(generator) for _ in range(300)]
    counts = np.bincount(torch.cat([d.slice_index for d in draws]).numpy(), minlength=5)
    areas = np.array([40 * 48, 40 * 48, 64 * 56, 64 * 28, 64 * 56], dtype=float)
    expected = counts.sum() * areas / areas.sum()
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected)), (counts, expected)
    shapes = [(40, 48)] * 2 + [(64, 56)] * 3
    for params in draws[:20]:
        for index, top, left in zip(params.slice_index, params.top, params.left, strict=True):
            height, width = shapes[int(index)]
            assert 0 <= int(top) + margin <= height - out and 0 <= int(left) + margin <= width - out
    params = draws[0]
    batch = sampler.render(params)
    assert len(set(params.slice_index.tolist()) & {0, 1}) and len(
        set(params.slice_index.tolist()) & {2, 3, 4}
    )
    for arrays, first_slice in ((first, 0), (second, 2)):
        alone = TileSampler(*arrays, input_size=inp, output_size=out)
        within = (params.slice_index >= first_slice) & (params.slice_index < first_slice + len(arrays[0]))
        for tile in torch.nonzero(within).flatten():
            single = TileParams(
                slice_index=params.slice_index[tile : tile + 1] - first_slice,
                top=params.top[tile : tile + 1],
                left=params.left[tile : tile + 1],
                matrix=params.matrix[tile : tile + 1],
                coarse=params.coarse[tile : tile + 1],
                contrast=params.contrast[tile : tile + 1],
                brightness=params.brightness[tile : tile + 1],
                gamma=params.gamma[tile : tile + 1],
            )
            expected_tile = alone.render(single)
            for name in ("raw", "labels", "weights"):
                torch.testing.assert_close(
                    getattr(batch, name)[tile], getattr(expected_tile, name)[0], rtol=1e-4, atol=1e-4
                )
