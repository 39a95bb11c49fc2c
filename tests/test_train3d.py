"""Training in the third dimension: the 3-D border weight map against its definition, 3-D tiles with the
paper's augmentation carried to 3-D (respecting anisotropy), context slices as channels, training and
resuming a tiny 3-D net on several sources, fine-tuning it, and the clear errors of 3-D configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unetflow.config.model import AugmentConfig, Config, ModelConfig, WeightsConfig
from unetflow.data import omezarr
from unetflow.data.importer import import_volume
from unetflow.data.synthesize3d import synthesize_volume_3d
from unetflow.errors import InputError
from unetflow.model.checkpoint import load_checkpoint, load_model
from unetflow.model.unet import UNetConfig
from unetflow.predict import predict_array
from unetflow.steps.data import run_weights
from unetflow.train.augment import TileSampler
from unetflow.train.augment3d import VolumeTileSampler, volume_matrices
from unetflow.train.loop import TrainConfig, train, validate
from unetflow.train.sources import TrainingSource, load_role
from unetflow.train.weights import (
    border_weight_map_3d,
    border_weight_map_3d_reference,
    weight_map_volume_3d,
)

VOXEL = (16.0, 8.0, 8.0)  # sections 2 px apart: in-plane only at the first level of a depth-2 net
MODEL_SECTION = ModelConfig.from_dict({"dims": 3, "depth": 2, "base_channels": 2})
MODEL = UNetConfig.from_section(MODEL_SECTION, voxel_size=VOXEL)
CONFIG = TrainConfig.from_dict(
    {"steps": 4, "tile": 12, "checkpoint_every": 2, "val_every": 2, "device": "cpu", "seed": 3, "lr": 0.01}
)
NO_AUGMENTATION = AugmentConfig(enabled=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One torch thread: results are exact either way, and the shared cores stay calmer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def labelled(shape: tuple[int, int, int], seed: int, voxel: tuple[float, float, float] = VOXEL) -> np.ndarray:
    return synthesize_volume_3d(
        shape=shape, seed=seed, voxel_size=voxel, cell_diameter=14.0, membrane_width=(1.5, 3.0)
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[TrainingSource]:
    """Two anisotropic 3-D volumes imported with their 3-D weight maps (by the workflow's weights step)."""
    root = tmp_path_factory.mktemp("train3d")
    found = []
    for index, depth in enumerate((22, 20)):
        raw, cells = labelled((depth, 40, 36), seed=index)
        data = import_volume(raw, root / f"v{index}.zarr", labels=cells, voxel_size=VOXEL)
        balance = root / f"balance{index}.json"
        balance.write_text('{"class_weights": [2.0, 0.7]}')
        weights = root / f"w{index}.zarr"
        run_weights(
            data=str(data),
            target=str(weights),
            options=WeightsConfig(),
            class_balance=str(balance),
            model=MODEL_SECTION,
        )
        found.append(
            TrainingSource(
                name=f"v{index}",
                data=Path(data),
                weights=weights,
                train=[0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14],
                val=[10, 11],
            )
        )
    return found


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (10.0, 2.0, 2.0)])
def test_3d_weight_map_equals_the_direct_definition(voxel: tuple[float, float, float]) -> None:
    _, cells = labelled((10, 32, 30), seed=4, voxel=voxel)
    sampling = np.array(voxel) / min(voxel)
    fast = border_weight_map_3d(cells, sampling=sampling)
    np.testing.assert_allclose(
        fast, border_weight_map_3d_reference(cells, sampling=sampling), atol=1e-4, rtol=0
    )
    assert fast.max() > 5.0  # the border term is there
    sparse = np.where(np.arange(32)[None, :, None] < 8, 99, cells)  # rows 0-7 of every slice unannotated
    np.testing.assert_allclose(
        border_weight_map_3d(sparse, ignore=99, sampling=sampling),
        border_weight_map_3d_reference(sparse, ignore=99, sampling=sampling),
        atol=1e-4,
        rtol=0,
    )
    binary = (cells > 0).astype(np.uint8)  # cells are its 3-D components
    np.testing.assert_allclose(
        border_weight_map_3d(binary, sampling=sampling, class_weights=(1.0, 1.0)),
        border_weight_map_3d_reference(binary, sampling=sampling, class_weights=(1.0, 1.0)),
        atol=1e-4,
        rtol=0,
    )
    blocks = weight_map_volume_3d(sparse, ignore=99, sampling=sampling, block=3, class_weights=(2.0, 0.7))
    whole = border_weight_map_3d(sparse, ignore=99, sampling=sampling, class_weights=(2.0, 0.7))
    np.testing.assert_array_equal(blocks, whole)


def test_the_weights_step_writes_the_3d_map_of_a_3d_net(sources: list[TrainingSource]) -> None:
    cells = omezarr.open_labels(sources[0].data)[:]
    expected = border_weight_map_3d(cells, class_weights=(2.0, 0.7), sampling=(2.0, 1.0, 1.0))
    np.testing.assert_allclose(omezarr.open_image(sources[0].weights)[:], expected, atol=1e-6)


def test_3d_tiles_without_augmentation_are_the_mirrored_crops_of_their_run() -> None:
    rng = np.random.default_rng(0)
    raw = rng.random((5, 12, 10)).astype(np.float32)
    labels = (rng.random((5, 12, 10)) > 0.5).astype(np.int64)
    weights = rng.random((5, 12, 10)).astype(np.float32) + 0.5
    sampler = VolumeTileSampler(
        [raw], [labels], [weights], input_size=(9, 16), output_size=(3, 6), config=NO_AUGMENTATION
    )
    batch = sampler.sample(torch.Generator().manual_seed(1))
    z, y, x = (int(v) for v in batch.params.start[0])
    padded = np.pad(raw, 40, mode="reflect")
    expected = padded[40 + z : 40 + z + 9, 40 + y : 40 + y + 16, 40 + x : 40 + x + 16]
    np.testing.assert_allclose(batch.raw[0, 0].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(
        batch.labels[0].numpy(), labels[z + 3 : z + 6, y + 5 : y + 11, x + 5 : x + 11]
    )
    np.testing.assert_allclose(
        batch.weights[0].numpy(), weights[z + 3 : z + 6, y + 5 : y + 11, x + 5 : x + 11], atol=1e-5
    )


def test_rotations_and_flips_respect_anisotropy() -> None:
    """Serial sections: z stays z (flipped at most), y and x turn by any angle; isotropic data: any of the
    cube's symmetries; a right-angle draw is an exact signed permutation."""
    rng = np.random.default_rng(0)
    data = [rng.random((6, 20, 20)).astype(np.float32)] * 3
    for isotropic in (False, True):
        sampler = VolumeTileSampler(
            [data[0]],
            [np.ones((6, 20, 20), np.int64)],
            [data[2]],
            input_size=(5, 8),
            output_size=(5, 8),
            batch_size=64,
            isotropic=isotropic,
        )
        matrices = sampler.draw(torch.Generator().manual_seed(2)).matrix
        z_stays = torch.all(matrices[:, 0].abs() == torch.tensor([1.0, 0.0, 0.0]), dim=1)
        assert bool(z_stays.all()) != isotropic
    right = volume_matrices(
        torch.tensor([np.pi / 2]), torch.tensor([[1, 0, 1]]), torch.tensor([3]), torch.tensor([1])
    )
    assert set(right.abs().flatten().tolist()) == {0.0, 1.0}
    assert torch.equal(right[0].abs().sum(0), torch.ones(3, dtype=torch.float64))


def test_elastic_displacement_along_z_is_the_same_physical_size() -> None:
    config = AugmentConfig(elastic_std=8.0, rotate=False, flip=False)
    data = np.zeros((6, 20, 20), np.float32)
    sampler = VolumeTileSampler(
        [data],
        [data.astype(np.int64)],
        [data + 1],
        input_size=(5, 8),
        output_size=(5, 8),
        config=config,
        batch_size=512,
        step=4.0,
    )
    coarse = sampler.draw(torch.Generator().manual_seed(0)).coarse
    assert float(coarse[:, 1:].std()) == pytest.approx(8.0, rel=0.05)
    assert float(coarse[:, 0].std()) == pytest.approx(2.0, rel=0.05)  # 8 px in-plane = 2 sections of 4 px


def test_context_tiles_hold_the_neighbouring_slices_mirrored_at_the_run_ends() -> None:
    raw = np.stack([np.full((12, 12), float(k)) for k in range(4)]).astype(np.float32)
    sampler = TileSampler(
        raw,
        np.ones_like(raw, dtype=np.int64),
        np.ones_like(raw),
        input_size=6,
        output_size=6,
        config=NO_AUGMENTATION,
        batch_size=32,
        context=1,
    )
    batch = sampler.sample(torch.Generator().manual_seed(0))
    for tile, index in zip(batch.raw, batch.params.slice_index, strict=True):
        expected = {0: [1, 0, 1], 3: [2, 3, 2]}.get(int(index), [int(index) - 1, int(index), int(index) + 1])
        assert tile[:, 0, 0].tolist() == expected
    flipping = TileSampler(
        raw,
        np.ones_like(raw, dtype=np.int64),
        np.ones_like(raw),
        input_size=6,
        output_size=6,
        config=AugmentConfig(rotate=False, elastic_std=0.0),
        batch_size=32,
        context=1,
    )
    reversed_ = flipping.sample(torch.Generator().manual_seed(0))
    assert 0 < int(reversed_.params.reverse.sum()) < 32
    for tile, index, back in zip(
        reversed_.raw, reversed_.params.slice_index, reversed_.params.reverse, strict=True
    ):
        middle = tile[:, tile.shape[1] // 2, tile.shape[2] // 2]
        assert (middle[0] > middle[2]) == bool(back) or int(index) in (0, 3)


def run(sources: list[TrainingSource], folder: Path, **options: Any) -> dict[str, Any]:
    return train(
        sources=sources,
        model_config=options.pop("model", MODEL),
        config=options.pop("config", CONFIG),
        workdir=folder / "checkpoints",
        output=folder / "model.pt",
        step_log=folder / "train_log.csv",
        val_log=folder / "val_log.csv",
        progress=False,
        **options,
    )


def test_a_tiny_3d_net_trains_on_two_sources_and_resumes_bit_identically(
    sources: list[TrainingSource], tmp_path: Path
) -> None:
    whole = run(sources, tmp_path / "whole")
    assert whole["finished"] and np.isfinite(whole["val_iou"])
    assert run(sources, tmp_path / "cut", stop_after=3) == {"step": 3, "finished": False}
    assert run(sources, tmp_path / "cut")["finished"]
    first, second = (load_checkpoint(tmp_path / name / "checkpoints/latest.pt") for name in ("whole", "cut"))
    for key, value in first["model_state_dict"].items():
        assert torch.equal(value, second["model_state_dict"][key]), key
    final = load_checkpoint(tmp_path / "whole" / "model.pt")
    assert final["model_config"]["dims"] == 3 and final["model_config"]["kernels"][0] == [1, 3, 3]
    assert final["tile"]["output_z"] >= 1 and final["tile"]["input_z"] > final["tile"]["output_z"]
    assert "val_iou:v0" in (tmp_path / "whole" / "val_log.csv").read_text()
    # fine-tuning starts from that net (its weights, a fresh optimizer)
    tuned = run(sources[:1], tmp_path / "tuned", init=tmp_path / "whole" / "model.pt")
    assert (
        tuned["finished"]
        and load_checkpoint(tmp_path / "tuned" / "model.pt")["init_from"]["step"] == final["step"]
    )


def test_validation_reads_the_volumes_slices_around_a_run(sources: list[TrainingSource]) -> None:
    """A validation run is predicted with its neighbours as context, exactly as the whole volume is."""
    torch.manual_seed(0)
    from unetflow.model.unet import UNet

    model = UNet(MODEL).eval()
    runs = load_role(sources[0], "val", loss_weights="border", net=MODEL.net_geometry)
    assert len(runs) == 1 and runs[0].z_range == (8, 10) and runs[0].raw.shape[0] == 18  # slices 2-19
    volume = omezarr.normalize(
        omezarr.open_image(sources[0].data)[:], *omezarr.normalization(sources[0].data)
    )
    options = {"mean": 0.0, "std": 1.0, "device": "cpu", "stride": 40, "stride_z": 2}
    whole = predict_array(model, volume, z_range=(10, 12), **options)
    part = predict_array(model, runs[0].raw, z_range=runs[0].z_range, **options)
    np.testing.assert_allclose(part, whole, atol=2e-5)  # the same context, the same pooling grid along z
    scores = validate(model, runs, device=torch.device("cpu"))
    assert 0.0 <= scores["val_iou"] <= 1.0 and np.isfinite(scores["val_loss"])
    train_runs = load_role(sources[0], "train", loss_weights="border", net=MODEL.net_geometry)
    assert [run.raw.shape[0] for run in train_runs] == [8, 3]  # runs 0-7 and 12-14, each on its own


def test_a_2d_net_with_context_slices_trains_and_predicts(
    sources: list[TrainingSource], tmp_path: Path
) -> None:
    model = UNetConfig(depth=2, base_channels=2, context_slices=1)
    assert run(sources, tmp_path, model=model)["finished"]
    net = load_model(tmp_path / "model.pt")
    assert net.config.context_slices == 1 and net.down[0][0].in_channels == 3
    volume = omezarr.open_image(sources[1].data)[:].astype(np.float32)
    assert predict_array(net, volume, device="cpu").shape == volume.shape


def test_a_3d_net_on_a_volume_thinner_than_its_input_cannot_train(
    sources: list[TrainingSource], tmp_path: Path
) -> None:
    isotropic = UNetConfig(depth=2, base_channels=2, dims=3)  # its smallest input reads 44 slices
    with pytest.raises(
        InputError, match=r"split source 'v0' \(volume .*v0\.zarr\) has 22 slice\(s\), fewer than the 44"
    ):
        run(sources[:1], tmp_path, model=isotropic)


def test_3d_configurations_fail_early_with_one_clear_error() -> None:
    volumes = {"em": {"raw": {"path": "/data/em.zarr"}, "labels": {"path": "/data/labels.tif"}}}
    split = {"volume": "em", "train": "0-9", "val": "10-11", "test": "12-15"}
    with pytest.raises(InputError, match=r"volumes\.em states none: give its voxel_size"):
        Config.from_dict({"volumes": volumes, "split": split, "model": {"dims": 3}})
    stated = {"em": {**volumes["em"], "voxel_size": [30.0, 6.0, 6.0]}}
    config = Config.from_dict({"volumes": stated, "split": split, "model": {"dims": 3}})
    assert config.model.layout((30.0, 6.0, 6.0))[0][0] == (1, 3, 3)
    chosen = {"dims": 3, "depth": 1, "kernels": [[1, 3, 3], [3, 3, 3]], "pools": [[1, 2, 2]]}
    assert Config.from_dict({"volumes": volumes, "split": split, "model": chosen}).model.dims == 3
    with pytest.raises(InputError, match="bicubic is for 2-D tiles"):
        Config.from_dict(
            {
                "volumes": stated,
                "split": split,
                "model": {"dims": 3},
                "train": {"augment": {"interpolation": "bicubic"}},
            }
        )
    two = {**stated, "b": {**volumes["em"], "voxel_size": [6.0, 6.0, 6.0]}}
    both = [split, {"volume": "b", "train": "0-3", "test": "4"}]
    with pytest.raises(InputError, match="different layouts"):
        Config.from_dict({"volumes": two, "split": both, "model": {"dims": 3}})
