"""Training on a lab's own annotations: several sources, sparse labels, checks of the training data, and
fine-tuning a trained model. Tiny synthetic volumes and a depth-2, 4-channel U-Net: seconds per test."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from unetflow.config.model import AugmentConfig, ModelConfig, TrainConfig, WeightsConfig
from unetflow.config.split import SplitConfig
from unetflow.data import omezarr
from unetflow.data.importer import import_volume
from unetflow.data.labels import IGNORE_STORED
from unetflow.data.synthesize import synthesize_volume
from unetflow.errors import InputError
from unetflow.model.checkpoint import init_architecture, load_checkpoint
from unetflow.model.loss import pixel_weights
from unetflow.model.unet import UNetConfig
from unetflow.steps.data import run_class_balance, run_weights
from unetflow.train.loop import train, weighted_cross_entropy
from unetflow.train.sources import (
    ClassCounts,
    TrainingSource,
    check_training_data,
    load_source,
    resolve_sources,
)

MODEL = UNetConfig(depth=2, base_channels=4)
IGNORE = 999_999
"""The label value of unannotated pixels in the test's label volumes."""
MARGIN = (MODEL.geometry.input_for_output(36) - 36) // 2
FAR = 3 * MARGIN
"""Pixels farther than this from every annotated pixel are beyond the net's context of all of them, even in
a tile rotated by any angle (sqrt 2), read by bilinear interpolation and convolved by blocks (Winograd)."""
STILL = AugmentConfig(elastic_std=0.0, contrast=[1.0, 1.0], brightness=[0.0, 0.0], gamma=[1.0, 1.0])
"""Rotation and flips only: gray-value changes and elastic warps would mix distant pixels into a tile."""
CONFIG = TrainConfig(
    steps=8,
    tile=36,
    batch_size=2,
    optimizer="sgd",
    lr=0.01,
    schedule="constant",
    checkpoint_every=4,
    val_every=4,
    device="cpu",
    seed=1,
    augment=STILL,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One torch thread: the runs compared bit for bit reduce in one order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def half_annotated(cells: np.ndarray) -> np.ndarray:
    """Instance labels where the cells right of each slice's middle (and the membrane nearest to them) are
    unannotated (IGNORE): a lab that traced half of the cells of a crop."""
    labels = cells.astype(np.int64)
    for z, plane in enumerate(cells):
        ids = np.unique(plane[plane > 0])
        centres = ndi.center_of_mass(np.ones_like(plane), plane, ids)
        traced_not = {cell for cell, (_, x) in zip(ids, centres, strict=True) if x > plane.shape[1] / 2}
        nearest = ndi.distance_transform_edt(plane == 0, return_distances=False, return_indices=True)
        owner = plane[tuple(nearest)]
        labels[z][np.isin(owner, list(traced_not))] = IGNORE
    return labels


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two imported sources: `half` (3 x 96 x 192, half of the cells unannotated) and `dense` (2 x 64 x
    80, another shape, every pixel annotated), their weight maps from one class balance, and `far`: `half`
    whose raw differs on unannotated pixels beyond the net's context of every annotated one."""
    root = tmp_path_factory.mktemp("sources")
    raw, cells = synthesize_volume(shape=(3, 96, 192), seed=2, cell_diameter=24.0)
    half = import_volume(raw, root / "half.zarr", labels=half_annotated(cells), labels_ignore=IGNORE)
    raw, cells = synthesize_volume(shape=(2, 64, 80), seed=5, cell_diameter=24.0)
    dense = import_volume(raw, root / "dense.zarr", labels=cells)
    data = {"half": str(half), "dense": str(dense)}
    run_class_balance(
        data=data, split=[SplitConfig.from_dict(e) for e in SPLIT], target=str(root / "balance.json")
    )
    paths = {name: Path(path) for name, path in data.items()}
    for name, path in data.items():
        paths[f"{name}-weights"] = root / f"{name}-weights.zarr"
        run_weights(
            data=path,
            target=str(paths[f"{name}-weights"]),
            options=WeightsConfig(),
            class_balance=str(root / "balance.json"),
        )
    for name, region in (("far", "far"), ("near", "near")):
        paths[name] = root / f"{name}.zarr"
        shutil.copytree(half, paths[name])
        repaint(paths[name], region)
    return paths


SPLIT = [
    {"volume": "half", "train": "0-1", "val": "2"},
    {"volume": "dense", "train": "0", "val": "1"},
]


def repaint(data: Path, region: str) -> None:
    """New random raw on unannotated pixels of an imported volume, keeping its normalisation attributes:
    `far` beyond the context of every annotated pixel, `near` within it."""
    labels = omezarr.open_labels(data)[:]
    raw = omezarr.open_image(data, mode="r+")
    rng = np.random.default_rng(0)
    for z in range(labels.shape[0]):
        unannotated = labels[z] == IGNORE_STORED["instance"]
        distance = ndi.distance_transform_edt(unannotated)
        chosen = distance > FAR if region == "far" else unannotated & (distance <= FAR)
        assert chosen.sum() > 1000
        plane = raw[z]
        plane[chosen] = rng.integers(0, 256, int(chosen.sum()), dtype=np.uint8)
        raw[z] = plane


def training_run(sources: dict[str, Path], half: str, folder: Path, **options: Any) -> dict[str, Any]:
    """Train on `half` (the volume under that key) and `dense`; the run's logs and final model."""
    data = {"half": sources[half], "dense": sources["dense"]}
    weights = {"half": sources["half-weights"], "dense": sources["dense-weights"]}
    entries = [SplitConfig.from_dict(entry) for entry in SPLIT]
    result = train(
        sources=resolve_sources(entries, data, weights),
        model_config=MODEL,
        config=options.pop("config", CONFIG),
        workdir=folder / "checkpoints",
        output=folder / "model.pt",
        step_log=folder / "train_log.csv",
        val_log=folder / "val_log.csv",
        progress=False,
        **options,
    )
    assert result["finished"]
    with (folder / "train_log.csv").open() as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    with (folder / "val_log.csv").open() as handle:
        val = list(csv.DictReader(handle))
    return {"losses": losses, "val": val, "model": load_checkpoint(folder / "model.pt")}


def test_unannotated_pixels_change_neither_the_loss_nor_the_metrics(sources: dict[str, Path], tmp_path: Path):
    """Two sources, half the cells of one unannotated: new image content on the unannotated pixels beyond
    the net's context gives the same loss at every step, the same validation scores per source and pooled,
    and the same net, up to float32 rounding (oneDNN's convolutions round a pixel's sum with its
    neighbours'); new content near annotated pixels, their context, changes the run by far more."""
    reference = training_run(sources, "half", tmp_path / "reference")
    repainted = training_run(sources, "far", tmp_path / "far")
    near = training_run(sources, "near", tmp_path / "near")

    def differences(run: dict[str, Any]) -> tuple[float, float, float]:
        losses = max(
            abs(a - b) / max(b, 1e-3) for a, b in zip(run["losses"], reference["losses"], strict=True)
        )
        scores = max(
            abs(float(row[key]) - float(other[key]))
            for row, other in zip(run["val"], reference["val"], strict=True)
            for key in row
        )
        weights = max(
            float((value - run["model"]["model_state_dict"][key]).abs().max())
            for key, value in reference["model"]["model_state_dict"].items()
        )
        return losses, scores, weights

    assert max(differences(repainted)) < 1e-5
    assert min(differences(near)) > 1e-4  # the control: the context of annotated pixels does matter
    assert [row["step"] for row in reference["val"]] == ["4", "8"]
    columns = set(reference["val"][0])
    assert {"val_iou", "val_iou:half", "val_iou:dense", "val_loss:half", "val_pixel_error:dense"} <= columns
    row = reference["val"][-1]
    pooled = (float(row["val_iou:half"]) + float(row["val_iou:dense"])) / 2  # one validation slice each
    assert float(row["val_iou"]) == pytest.approx(pooled)


def test_sources_are_weighted_and_recorded(sources: dict[str, Path], tmp_path: Path):
    """Unannotated pixels weigh 0 in the loss, and nothing else does; the checkpoint names both sources."""
    data = {"half": sources["half"], "dense": sources["dense"]}
    weights = {"half": sources["half-weights"], "dense": sources["dense-weights"]}
    found = resolve_sources([SplitConfig.from_dict(entry) for entry in SPLIT], data, weights)
    assert [source.name for source in found] == ["half", "dense"]
    half = load_source(found[0], "train", loss_weights="border")
    assert half.unannotated is not None and 0.3 < half.unannotated.mean() < 0.7
    np.testing.assert_array_equal(half.weights == 0, half.unannotated)
    assert load_source(found[1], "train", loss_weights="none").unannotated is None
    model = training_run(
        sources, "half", tmp_path, config=TrainConfig.from_dict({**CONFIG.dump(), "steps": 2})
    )
    recorded = model["model"]["training_sources"]
    assert [(s["name"], s["train"], s["val"]) for s in recorded] == [
        ("half", [0, 1], [2]),
        ("dense", [0], [1]),
    ]


def test_the_loss_ignores_logits_and_labels_of_unannotated_pixels():
    """The weighted cross-entropy and its gradient do not see what the net or the labels say there."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (1, 8, 8), generator=generator)
    unannotated = torch.rand((1, 8, 8), generator=generator) < 0.4
    weights = torch.as_tensor(pixel_weights("none", labels.numpy(), unannotated=unannotated.numpy()))
    logits = torch.randn((1, 2, 8, 8), generator=generator, requires_grad=True)
    other = torch.where(unannotated[:, None], torch.randn((1, 2, 8, 8), generator=generator) * 50, logits)
    other = other.detach().requires_grad_(True)
    flipped = torch.where(unannotated, 1 - labels, labels)
    first = weighted_cross_entropy(logits, labels, weights)
    second = weighted_cross_entropy(other, flipped, weights)
    assert first.item() == second.item() > 0
    first.backward()
    second.backward()
    annotated = ~unannotated[:, None].expand(-1, 2, -1, -1)
    assert torch.equal(logits.grad[annotated], other.grad[annotated])
    assert torch.all(other.grad[~annotated] == 0)


def test_overlapping_entries_of_one_volume_are_an_error(sources: dict[str, Path]):
    entries = [
        SplitConfig.from_dict({"volume": "dense", "region": {"x": [0, 40]}, "train": "0-1"}),
        SplitConfig.from_dict({"volume": "dense", "region": {"x": [30, 80]}, "test": "1"}),
    ]
    with pytest.raises(
        InputError, match=r"split\[0\]\.train and split\[1\]\.test share pixels of slices \[1\]"
    ):
        resolve_sources(entries, {"dense": sources["dense"]})
    disjoint = [
        entries[0],
        SplitConfig.from_dict({"volume": "dense", "region": {"x": [40, 80]}, "test": "1"}),
    ]
    (found,) = resolve_sources(disjoint, {"dense": sources["dense"]})
    assert (found.name, found.columns, found.rows) == ("dense-1", (0, 40), None)
    with pytest.raises(
        InputError, match=r"config split\.region\.y \[0, 99\] reaches past the volume's 64 rows"
    ):
        resolve_sources(
            [SplitConfig.from_dict({"volume": "dense", "region": {"y": [0, 99]}, "train": "0"})],
            {"dense": sources["dense"]},
        )


def test_training_data_checks_name_the_source(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="unetflow.train.sources"):
        check_training_data({"crop": ClassCounts(0, 500, 10), "stack": ClassCounts(9000, 3000)}, tile=36)
    assert "split source 'crop': its training slices hold only cell interior" in caplog.text
    assert (
        "split source 'crop': 500 annotated pixels in its training slices, fewer than one 36 x 36"
        in caplog.text
    )
    assert "'stack'" not in caplog.text
    with pytest.raises(InputError, match=r"every split source \(a, b\) hold only membrane / background"):
        check_training_data({"a": ClassCounts(100, 0), "b": ClassCounts(50, 0)})
    with pytest.raises(InputError, match="split source 'a': its training slices hold no annotated pixel"):
        check_training_data({"a": ClassCounts(0, 0, 400)})


def test_a_crop_smaller_than_a_tile_trains_with_its_padding_unweighted(tmp_path: Path):
    """A 20 x 24 crop (the output tile is 36 x 36): training runs, and its tiles weigh only its own pixels."""
    raw, cells = synthesize_volume(shape=(2, 20, 24), seed=1, cell_diameter=12.0)
    data = import_volume(raw, tmp_path / "crop.zarr", labels=cells)
    source = TrainingSource(name="crop", data=data, weights=None, train=[0, 1], val=[])
    config = TrainConfig.from_dict({**CONFIG.dump(), "steps": 3, "loss_weights": "none"})
    folder = tmp_path / "run"
    assert train(
        sources=[source],
        model_config=MODEL,
        config=config,
        workdir=folder,
        output=folder / "model.pt",
        step_log=folder / "steps.csv",
        val_log=folder / "val.csv",
        progress=False,
    )["finished"]
    from unetflow.train.augment import TileSampler

    loaded = load_source(source, "train", loss_weights="none")
    sampler = TileSampler(
        loaded.raw, loaded.labels, loaded.weights, input_size=76, output_size=36, config=STILL, batch_size=8
    )
    batch = sampler.sample(torch.Generator().manual_seed(0))
    # every tile holds the whole crop (any angle: its area, up to the pixels its rotated border cuts)
    assert torch.all((batch.weights.sum(dim=(1, 2)) - 20 * 24).abs() < 0.15 * 20 * 24)
    assert batch.weights.shape == (8, 36, 36)


def test_fine_tuning_starts_from_the_model_with_a_fresh_optimizer(sources: dict[str, Path], tmp_path: Path):
    """init: the run's first step starts from the given net's weights (step 1 of the fine-tuning run equals
    a step of that net); the checkpoint records what it started from; another architecture is an error."""
    first = training_run(
        sources, "half", tmp_path / "first", config=TrainConfig.from_dict({**CONFIG.dump(), "steps": 4})
    )
    start = tmp_path / "first" / "model.pt"
    tuned = training_run(
        sources,
        "half",
        tmp_path / "tuned",
        init=start,
        config=TrainConfig.from_dict({**CONFIG.dump(), "steps": 2, "seed": 3}),
    )
    scratch = training_run(
        sources,
        "half",
        tmp_path / "scratch",
        config=TrainConfig.from_dict({**CONFIG.dump(), "steps": 2, "seed": 3}),
    )
    assert tuned["losses"][0] != scratch["losses"][0]
    recorded = tuned["model"]["init_from"]
    assert recorded["path"] == str(start) and recorded["step"] == first["model"]["step"]
    assert len(recorded["sha256"]) == 64 and recorded["run_id"] == first["model"]["run_id"]
    assert "optimizer_state_dict" not in load_checkpoint(start)  # the best checkpoint: no optimizer to take
    # the step-1 loss of the fine-tuning run is that of the initial net on the same first batch
    from unetflow.train.loop import setup

    run = setup(
        sources=resolve_sources(
            [SplitConfig.from_dict(e) for e in SPLIT],
            {"half": sources["half"], "dense": sources["dense"]},
            {"half": sources["half-weights"], "dense": sources["dense-weights"]},
        ),
        model_config=MODEL,
        config=TrainConfig.from_dict({**CONFIG.dump(), "steps": 2, "seed": 3}),
        workdir=tmp_path / "probe",
        output=tmp_path / "probe" / "model.pt",
        step_log=tmp_path / "probe" / "steps.csv",
        val_log=tmp_path / "probe" / "val.csv",
        init=start,
    )
    initial = load_checkpoint(start)["model_state_dict"]
    assert all(torch.equal(value, initial[key]) for key, value in run.model.state_dict().items())
    assert run.optimizer.state == {}
    # the architecture: the model's own unless the config's model section says otherwise
    state = load_checkpoint(start)
    assert init_architecture(state, ModelConfig(), source="m.pt") == MODEL
    assert init_architecture(state, ModelConfig(depth=2, base_channels=4), source="m.pt") == MODEL
    with pytest.raises(
        InputError,
        match=r"init_from m.pt is a net of another architecture .*model.depth is 3 there, 2 in the model",
    ):
        init_architecture(state, ModelConfig(depth=3, base_channels=4), source="m.pt")


def test_the_class_balance_of_several_volumes_by_hand(sources: dict[str, Path], tmp_path: Path):
    """`unetflow class-balance`, then `unetflow weights --class-balance`: the two workflow steps by hand."""
    import json

    import yaml

    from unetflow.cli.main import main

    volumes = {
        name: {"raw": {"path": f"{name}.tif"}, "labels": {"path": f"{name}-labels.tif"}}
        for name in ("half", "dense")
    }
    config = tmp_path / "config.yaml"
    split = [
        {"volume": "half", "train": "0-1"},
        SPLIT[1],
        {"volume": "half", "name": "held-out", "test": "2"},
    ]
    config.write_text(yaml.safe_dump({"volumes": volumes, "split": split}))
    balance = tmp_path / "balance.json"
    data = [f"--data=half={sources['half']}", f"--data=dense={sources['dense']}"]
    assert main(["class-balance", str(balance), *data, "--config", str(config)]) == 0
    written = json.loads(balance.read_text())
    workflow = json.loads((sources["half"].parent / "balance.json").read_text())
    assert written["class_weights"] == workflow["class_weights"]
    counts = written["sources"]  # half has two entries here: its unnamed one is half-1
    assert counts == {"half-1": workflow["sources"]["half"], "dense": workflow["sources"]["dense"]}
    assert counts["half-1"]["unannotated"] > 0 and counts["dense"]["unannotated"] == 0
    target = tmp_path / "weights.zarr"
    assert main(["weights", str(sources["dense"]), str(target), "--class-balance", str(balance)]) == 0
    assert omezarr.read_attrs(target)["class_weights"] == written["class_weights"]
    assert main(["class-balance", str(balance), "--data=half", "--config", str(config)]) == 2
