"""The third dimension: 3-D geometry (per-axis sizes, nnU-Net's anisotropy rule), the 3-D net and the 2-D
net with context slices, and overlap-tile prediction that equals one whole-volume pass whatever the tiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unetflow.config.model import ModelConfig, PredictConfig
from unetflow.data import omezarr
from unetflow.data.synthesize3d import synthesize_volume_3d
from unetflow.errors import InputError
from unetflow.geometry import (
    NetGeometry,
    UNetGeometry,
    anisotropic_layout,
    largest_volume_tile,
    plan_volume_tiles,
    reflect_indices,
    volume_activation_bytes,
)
from unetflow.model.unet import UNet, UNetConfig, count_conv_layers
from unetflow.predict import predict_array, predict_volume, read_plan, read_window

CPU = PredictConfig(device="cpu")
ANISOTROPIC = anisotropic_layout((40.0, 8.0, 8.0), 2)


def whole_pass(model: UNet, volume: np.ndarray) -> np.ndarray:
    """Reference: one forward pass over the whole mirror-padded volume (z, y, x) (2-D nets: slice by slice
    with their context slices as channels)."""
    geometry = model.config.net_geometry
    plane = geometry.plane
    out_y, out_x = (plane.valid_output(n) for n in volume.shape[1:])
    rows = reflect_indices(-plane.margin, out_y + plane.margin, volume.shape[1])
    cols = reflect_indices(-plane.margin, out_x + plane.margin, volume.shape[2])
    with torch.inference_mode():
        if geometry.dims == 3:
            z = geometry.z
            out_z = z.valid_output(volume.shape[0])
            depth = reflect_indices(-z.margin, out_z + z.margin, volume.shape[0])
            padded = volume[np.ix_(depth, rows, cols)].astype(np.float32)
            logits = model.eval()(torch.from_numpy(padded)[None, None])
            return torch.softmax(logits, 1)[
                0, 1, : volume.shape[0], : volume.shape[1], : volume.shape[2]
            ].numpy()
        k = geometry.context
        slices = []
        for index in range(volume.shape[0]):
            depth = reflect_indices(index - k, index + k + 1, volume.shape[0])
            padded = volume[np.ix_(depth, rows, cols)].astype(np.float32)
            logits = model.eval()(torch.from_numpy(padded)[None])
            slices.append(torch.softmax(logits, 1)[0, 1, : volume.shape[1], : volume.shape[2]].numpy())
        return np.stack(slices)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """A small isotropic EM-like volume, z-scored."""
    raw, _ = synthesize_volume_3d(shape=(20, 26, 22), seed=0, cell_diameter=16.0, membrane_width=(1.5, 3.0))
    raw = raw.astype(np.float32)
    return (raw - raw.mean()) / raw.std()


def net(depth: int = 2, **fields: object) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(depth=depth, base_channels=2, **fields)).eval()


NETS = {
    "isotropic, depth 1": {"depth": 1, "dims": 3},
    "anisotropic, depth 2": {"dims": 3, "kernels": ANISOTROPIC[0], "pools": ANISOTROPIC[1]},
}


def test_nnunet_rule_picks_in_plane_levels_until_z_is_within_twice_the_finest() -> None:
    kernels, pools = anisotropic_layout((50.0, 4.0, 4.0), 4)  # ISBI: 4 x 4 x 50 nm
    assert kernels == ((1, 3, 3),) * 3 + ((3, 3, 3),) * 2
    assert pools == ((1, 2, 2),) * 3 + ((2, 2, 2),)
    assert anisotropic_layout((8.0, 8.0, 8.0), 3) == (((3, 3, 3),) * 4, ((2, 2, 2),) * 3)
    # exactly twice as coarse does not join (nnU-Net: spacing / finest < 2), it does one level later
    assert anisotropic_layout((8.0, 4.0, 4.0), 2)[0] == ((1, 3, 3), (3, 3, 3), (3, 3, 3))
    assert anisotropic_layout((7.9, 4.0, 4.0), 2)[0] == ((3, 3, 3),) * 3
    with pytest.raises(ValueError, match="voxel_size"):
        anisotropic_layout((4.0, 4.0), 2)


def test_per_axis_geometry_of_an_anisotropic_net() -> None:
    geometry = NetGeometry(4, 3, 0, *anisotropic_layout((50.0, 4.0, 4.0), 4))
    z, plane = geometry.z, geometry.plane
    assert plane == UNetGeometry(4, kernels=(3,) * 5, pools=(2,) * 4)
    assert (plane.margin, plane.alignment) == (92, 16)  # in-plane: the paper's sizes
    assert (z.margin, z.alignment) == (8, 2)  # two 3-wide levels along z, one pooling
    valid = [n for n in range(1, 80) if z.is_valid_input(n)]
    assert set(np.diff(valid)) == {2} and geometry.min_slices == valid[0] == 18
    for size in valid:
        assert size - z.output_size(size) == 2 * z.margin
    with pytest.raises(ValueError, match="y = x"):
        NetGeometry(2, 3, 0, ((1, 3, 1),) * 3, ((1, 2, 2),) * 2)
    with pytest.raises(ValueError, match="3 \\(z, y, x\\) triples"):
        NetGeometry(2, 3, 0, ((1, 3, 3),), ((1, 2, 2),) * 2)


@pytest.mark.parametrize("layout", [(None, None), ANISOTROPIC])
def test_the_3d_net_maps_each_valid_input_to_the_geometrys_output(layout: tuple) -> None:
    model = net(dims=3, kernels=layout[0], pools=layout[1])
    geometry = model.config.net_geometry
    z, plane = geometry.z, geometry.plane
    for extra in (0, 1):
        shape = (z.valid_input(1) + extra * z.alignment, plane.valid_input(1) + extra * plane.alignment)
        with torch.inference_mode():
            out = model(torch.zeros(1, 1, shape[0], shape[1], shape[1] + plane.alignment))
        assert tuple(out.shape) == (
            1,
            2,
            z.output_size(shape[0]),
            plane.output_size(shape[1]),
            plane.output_size(shape[1] + plane.alignment),
        )
    assert count_conv_layers(model) == 4 * 2 + 2 + 2 + 1  # the paper's count for depth 2


def test_he_init_counts_every_incoming_voxel_and_the_isotropic_layout_has_one_form() -> None:
    model = UNet(UNetConfig(depth=2, base_channels=16, dims=3))
    weight = model.down[1][0].weight  # (32, 16, 3, 3, 3)
    assert float(weight.detach().std()) == pytest.approx((2.0 / (16 * 27)) ** 0.5, rel=0.05)
    explicit = UNetConfig(depth=2, base_channels=16, dims=3, kernels=[[3, 3, 3]] * 3, pools=[[2, 2, 2]] * 2)
    assert explicit == UNetConfig(depth=2, base_channels=16, dims=3) and explicit.kernels is None
    assert UNetConfig(depth=2, base_channels=4).to_dict() == {
        "depth": 2,
        "base_channels": 4,
        "in_channels": 1,
        "num_classes": 2,
        "dropout": 0.5,
        "norm": "none",
    }  # a 2-D net's record as it always was


def test_config_model_section_chooses_the_layout_or_says_what_is_missing() -> None:
    section = ModelConfig.from_dict({"dims": 3, "depth": 2, "base_channels": 2})
    assert UNetConfig.from_section(section, voxel_size=(40.0, 8.0, 8.0)).kernels == ANISOTROPIC[0]
    with pytest.raises(InputError, match="voxel_size"):
        UNetConfig.from_section(section)
    chosen = ModelConfig.from_dict(
        {"dims": 3, "depth": 2, "kernels": [[1, 3, 3]] * 3, "pools": [[1, 2, 2]] * 2}
    )
    assert UNetConfig.from_section(chosen).pools == ((1, 2, 2),) * 2  # the override needs no voxel size
    for bad, message in (
        ({"context_slices": 1, "dims": 3}, "context_slices are for 2-D nets"),
        ({"kernels": [[1, 3, 3]] * 5, "pools": [[1, 2, 2]] * 4}, "for 3-D nets"),
        ({"dims": 3, "kernels": [[1, 3, 3]] * 5}, "together"),
    ):
        with pytest.raises(InputError, match=message):
            ModelConfig.from_dict(bad)


def test_volume_tile_plan_covers_each_voxel_once_and_fits_the_memory_budget() -> None:
    geometry = NetGeometry(2, 3, 0, *ANISOTROPIC)
    plan = plan_volume_tiles(geometry, (23, 50, 37), stride=8, stride_z=2, block=16, block_z=4)
    covered = np.zeros((23, 50, 37), int)
    for z in plan.slices.starts():
        for y, x in plan.block_starts():
            height, width = plan.block_extent(y, x)
            covered[z : z + plan.slices.extent(z), y : y + height, x : x + width] += 1
    assert np.all(covered == 1)
    budget = 2**26
    depth, stride = largest_volume_tile(geometry, budget, 8, shape=(400, 400, 400))
    assert depth == stride // 4  # z grows with its alignment: 1 pooling of 2 against 2 poolings in-plane

    def inputs(d: int, s: int) -> int:
        z, p = geometry.z, geometry.plane
        return volume_activation_bytes(
            [(z, z.input_for_output(z.output_for_stride(d)))]
            + [(p, p.input_for_output(p.output_for_stride(s)))] * 2,
            8,
        )

    assert inputs(depth, stride) <= budget < inputs(depth + 1, stride + 4)
    assert largest_volume_tile(geometry, 2**40, 8, shape=(5, 30, 30)) == (5, 32)  # no more than it needs


@pytest.mark.parametrize("fields", NETS.values(), ids=NETS.keys())
def test_3d_prediction_equals_one_whole_volume_pass_whatever_the_tiling(volume: np.ndarray, fields) -> None:
    model = net(**fields)
    reference = whole_pass(model, volume)
    z_align, align = model.config.net_geometry.z.alignment, model.config.net_geometry.plane.alignment
    for stride_z, stride in ((3 * z_align, 3 * align), (20, 28)):
        tiled = predict_array(
            model, volume, mean=0.0, std=1.0, stride=stride, stride_z=stride_z, device="cpu"
        )
        np.testing.assert_allclose(tiled, reference, atol=2e-5, rtol=0)
    part = predict_array(
        model, volume, mean=0.0, std=1.0, stride=8, stride_z=4, device="cpu", z_range=(5, 13)
    )
    np.testing.assert_allclose(part, reference[5:13], atol=2e-5, rtol=0)


def test_2d_net_with_context_slices_reads_its_neighbours_mirrored_at_the_ends(volume: np.ndarray) -> None:
    model = net(context_slices=2)
    assert model.down[0][0].in_channels == 5
    reference = whole_pass(model, volume[:5])
    for stride in (12, 28):
        tiled = predict_array(model, volume[:5], mean=0.0, std=1.0, stride=stride, device="cpu")
        np.testing.assert_allclose(tiled, reference, atol=2e-5, rtol=0)
    # the channels are the slices: the net's view of slice 0 is (2, 1, 0, 1, 2)
    assert np.array_equal(
        read_window(volume, (-2, 3), (0, 4), (0, 4))[:, 0, 0], volume[[2, 1, 0, 1, 2], 0, 0]
    )


def write_volume(path: Path, data: np.ndarray, chunks: tuple[int, int, int]) -> str:
    omezarr.write_image(path, data, voxel_size=(8.0, 8.0, 8.0), chunks=chunks)
    return str(path)


def test_3d_zarr_prediction_is_independent_of_blocks_groups_and_skips_empty_regions(
    volume: np.ndarray, tmp_path: Path
) -> None:
    model = net(dims=3, kernels=ANISOTROPIC[0], pools=ANISOTROPIC[1])
    raw = np.clip(volume * 40 + 128, 0, 255).astype(np.uint8)
    source = write_volume(tmp_path / "raw.zarr", raw, (8, 14, 12))
    mean, std = omezarr.normalization(source)
    reference = whole_pass(model, (raw.astype(np.float32) - mean) / std)
    results = []
    for name, tiling in (
        ("a", {"stride": 8, "stride_z": 2, "block": 16}),
        ("b", {"stride": 28, "stride_z": 7}),
    ):
        target = str(tmp_path / f"{name}.zarr")
        predict_volume(model, source, target, options=CPU, groups=2, show_progress=False, **tiling)
        results.append(omezarr.open_image(target)[:])
        plan = read_plan(target)
        assert (
            plan.dims == 3
            and plan.chunk[0] == min(plan.block_z, 20) > 1
            and plan.net == model.config.net_geometry
        )
    np.testing.assert_allclose(results[0], reference, atol=2e-5, rtol=0)
    np.testing.assert_allclose(results[1], reference, atol=2e-5, rtol=0)
    # a volume with data in one source chunk: only the blocks that touch it are predicted
    sparse = tmp_path / "sparse.zarr"
    omezarr.create_image(
        sparse, shape=raw.shape, dtype="uint8", chunks=(8, 14, 12), voxel_size=(8.0, 8.0, 8.0)
    )
    omezarr.open_image(sparse, mode="r+")[8:16, 14:26, 0:12] = raw[8:16, 14:26, 0:12]
    counts = predict_volume(
        model,
        str(sparse),
        str(tmp_path / "s.zarr"),
        options=CPU,
        stride=8,
        stride_z=2,
        block=16,
        show_progress=False,
    )
    assert 0 < counts["computed"] < counts["total"] and counts["empty"] > 0


def test_a_3d_net_on_a_volume_thinner_than_its_input_is_one_clear_error(tmp_path: Path) -> None:
    model = net(dims=3)  # isotropic depth 2: its smallest input reads 44 slices
    source = write_volume(tmp_path / "thin.zarr", np.zeros((40, 48, 48), np.uint8) + 9, (8, 48, 48))
    with pytest.raises(InputError, match=r"thin\.zarr has 40 slice\(s\), fewer than the 44"):
        predict_volume(model, source, str(tmp_path / "p.zarr"), options=CPU, show_progress=False)
    assert not (tmp_path / "p.zarr").exists()
    with pytest.raises(InputError, match=r"model\.dims: 2"):
        predict_array(model, np.zeros((40, 48, 48), np.float32), device="cpu")
