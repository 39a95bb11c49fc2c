"""bioimage.io packages: a tiny trained net exported, validated and tested by bioimageio.core, loaded back.

One module-scoped export of a depth-2, 4-channel U-Net trained for a few steps on a synthetic volume; the
tests check the package against bioimageio.core (format validation, test_model), against unetflow's own
prediction, and the package read back as a checkpoint; broken packages are InputErrors naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

bioimageio_core = pytest.importorskip("bioimageio.core")
bioimageio_spec = pytest.importorskip("bioimageio.spec")

from unetflow.cli.main import main  # noqa: E402
from unetflow.data import omezarr  # noqa: E402
from unetflow.data.importer import import_volume  # noqa: E402
from unetflow.data.synthesize import synthesize_volume  # noqa: E402
from unetflow.errors import InputError  # noqa: E402
from unetflow.export.bioimageio import (  # noqa: E402
    ARCHITECTURE_FILE,
    FOREGROUND_CHANNEL,
    check_package,
    context_tile,
    export_model,
)
from unetflow.model.checkpoint import (  # noqa: E402
    decision_threshold_of,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from unetflow.model.package import is_package  # noqa: E402
from unetflow.model.unet import UNet, UNetConfig  # noqa: E402
from unetflow.predict import predict_array  # noqa: E402
from unetflow.train.loop import TrainConfig, train  # noqa: E402

TEST_SLICE = 3
METRICS = {
    "overall": {"iou": 0.81, "dice": 0.895, "pixel_error": 0.12},
    "slices_evaluated": 1,
    "threshold": 0.3,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A depth-2 U-Net with batch norm (running statistics travel as buffers) trained 4 steps on a synthetic
    volume, exported (with metrics) to a package."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bioimageio")
    raw, cells = synthesize_volume(shape=(4, 64, 80), seed=0)
    data = Path(import_volume(raw, root / "data.zarr", labels=cells, voxel_size=(50.0, 4.0, 4.0)))
    checkpoint = root / "model.pt"
    train(
        data=data,
        weights=None,
        train_slices=[0, 1],
        val_slices=[],
        model_config=UNetConfig(depth=2, base_channels=4, norm="batch"),
        config=TrainConfig(steps=4, tile=36, device="cpu", loss_weights="none", seed=2),
        workdir=root / "work",
        output=checkpoint,
        step_log=root / "steps.csv",
        val_log=root / "val.csv",
        progress=False,
    )
    metrics = root / "metrics.json"
    metrics.write_text(json.dumps({"iou": 0.81, **METRICS}))
    package = root / "bioimageio.zip"
    export_model(
        checkpoint,
        package,
        image=data,
        image_slice=TEST_SLICE,
        metrics=metrics,
        authors=["A. Tester"],
        training_data="Slices 0-1 of a synthetic volume.",
        training_data_license="CC0-1.0",
        test=False,
    )
    return {"root": root, "data": data, "checkpoint": checkpoint, "package": package}


def rdf_of(package: Path) -> dict[str, Any]:
    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


def test_package_passes_bioimageio_validation_and_test_model(trained: dict[str, Path]) -> None:
    descr = bioimageio_spec.load_description(trained["package"])
    assert descr.validation_summary.status == "valid-format", descr.validation_summary.format()
    summary = check_package(trained["package"])
    assert summary.status == "passed"
    tested = {detail.name for detail in summary.details if detail.status == "passed"}
    for weights in ("pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({weights})" in tested


def test_package_states_sizes_normalisation_output_and_provenance(trained: dict[str, Path]) -> None:
    rdf = rdf_of(trained["package"])
    geometry = UNetConfig(depth=2, base_channels=4).geometry
    [tensor_in], [tensor_out] = rdf["inputs"], rdf["outputs"]
    assert [axis["type"] for axis in tensor_in["axes"]] == ["batch", "channel", "space", "space"]
    y_in, y_out = tensor_in["axes"][2], tensor_out["axes"][2]
    assert y_in["size"] == {"min": geometry.valid_input(1), "step": 4} == {"min": 44, "step": 4}
    assert y_out["size"] == {"tensor_id": "raw", "axis_id": "y", "offset": -2 * geometry.margin}
    assert (y_in["unit"], y_in["scale"]) == ("nanometer", 4.0)
    assert {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["channel", "y", "x"]}} in tensor_in[
        "preprocessing"
    ]
    assert tensor_out["postprocessing"][0] == {"id": "softmax", "kwargs": {"axis": "channel"}}
    assert tensor_out["axes"][1]["channel_names"][FOREGROUND_CHANNEL] == "foreground"
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (architecture["source"], architecture["callable"]) == (ARCHITECTURE_FILE, "UNet")
    assert architecture["kwargs"]["depth"] == 2 and architecture["kwargs"]["base_channels"] == 4
    assert rdf["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    assert rdf["authors"] == [{"name": "A. Tester"}] and rdf["license"] == "MIT"
    assert rdf["training_data"]["license"] == "CC0-1.0"
    assert rdf["config"]["unetflow"]["metrics"] == METRICS
    with zipfile.ZipFile(trained["package"]) as archive:
        readme = archive.read("README.md").decode()
        cover = archive.read(rdf["covers"][0]["source"])
    assert "## Validation" in readme and "| iou | 0.81 |" in readme
    assert cover.startswith(b"\x89PNG")


def test_checkpoint_normalisation_record_goes_into_the_package(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    state = load_checkpoint(trained["checkpoint"])
    record = {"policy": "zscore-volume", "mean": 120.5, "std": 30.25}
    save_checkpoint(tmp_path / "z.pt", {**state, "normalization": record})
    rdf = rdf_of(export_model(tmp_path / "z.pt", tmp_path / "z.zip", test=False))
    assert "(the training volume's: mean 120.5, std 30.25)" in rdf["description"]
    assert rdf["config"]["unetflow"]["normalization"] == record
    assert "description" in rdf["training_data"] and rdf["training_data"]["license"] is None
    save_checkpoint(tmp_path / "f.pt", {**state, "normalization": {**record, "policy": "fixed"}})
    with pytest.raises(InputError, match=r"f\.pt: normalization policy 'fixed' has no bioimage\.io"):
        export_model(tmp_path / "f.pt", tmp_path / "f.zip", test=False)


def test_test_output_is_unetflows_own_prediction_of_the_test_region(trained: dict[str, Path]) -> None:
    """The test input is the overlap-tile context of an aligned block; its expected output is what
    unetflow's tiled prediction gives there (with the test input's own mean and std)."""
    with zipfile.ZipFile(trained["package"]) as archive:
        tile = np.load(archive.open("test_input.npy"))[0, 0]
        expected = np.load(archive.open("test_output.npy"))[0]
    np.testing.assert_allclose(expected.sum(axis=0), 1.0, atol=1e-6)
    model = load_model(trained["checkpoint"])
    image = omezarr.open_image(trained["data"])[TEST_SLICE]
    again, (y, x) = context_tile(image, model.config.geometry, expected.shape[-1])
    np.testing.assert_array_equal(again, tile)
    prediction = predict_array(
        model, image, mean=float(tile.mean()), std=float(tile.std()), device="cpu", stride=8
    )
    region = prediction[y : y + expected.shape[-2], x : x + expected.shape[-1]]
    np.testing.assert_allclose(expected[FOREGROUND_CHANNEL], region, atol=1e-5)


def test_bioimageio_core_prediction_matches_the_test_output(trained: dict[str, Path]) -> None:
    with zipfile.ZipFile(trained["package"]) as archive:
        tile = np.load(archive.open("test_input.npy"))
        expected = np.load(archive.open("test_output.npy"))
    sample = bioimageio_core.predict(model=trained["package"], inputs=tile)
    output = sample.members["probability"].data.to_numpy()
    np.testing.assert_allclose(output, expected, atol=1e-5)


def test_package_loads_back_and_predicts_identically(trained: dict[str, Path]) -> None:
    image = omezarr.open_image(trained["data"])[:]
    original = predict_array(load_model(trained["checkpoint"]), image, device="cpu")
    packaged = predict_array(load_model(trained["package"]), image, device="cpu")
    np.testing.assert_array_equal(packaged, original)
    assert decision_threshold_of(trained["package"]) == decision_threshold_of(trained["checkpoint"])
    state = load_checkpoint(trained["package"])
    assert state["metrics"] == METRICS and state["tile"] == load_checkpoint(trained["checkpoint"])["tile"]


def test_a_label_offset_travels_with_the_package_and_its_readme_says_so(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    state = load_checkpoint(trained["checkpoint"])
    save_checkpoint(tmp_path / "moved.pt", {**state, "label_offset": [-0.6, 0.2]})
    package = export_model(tmp_path / "moved.pt", tmp_path / "moved.zip", image=trained["data"], test=False)
    assert load_model(package).label_offset == (-0.6, 0.2)
    with zipfile.ZipFile(package) as archive:
        assert "moves the input image by (dy, dx) = (-0.60, +0.20) px" in archive.read("README.md").decode()
    image = omezarr.open_image(trained["data"])[:]
    original = predict_array(load_model(tmp_path / "moved.pt"), image, device="cpu")
    np.testing.assert_array_equal(predict_array(load_model(package), image, device="cpu"), original)
    assert not np.allclose(original, predict_array(load_model(trained["checkpoint"]), image, device="cpu"))


def test_unpacked_package_loads_from_its_rdf_yaml(trained: dict[str, Path], tmp_path: Path) -> None:
    with zipfile.ZipFile(trained["package"]) as archive:
        archive.extractall(tmp_path)
    assert is_package(tmp_path / "rdf.yaml") and not is_package(trained["checkpoint"])
    reference = load_model(trained["checkpoint"]).state_dict()
    loaded = load_model(tmp_path / "rdf.yaml").state_dict()
    assert all(torch.equal(loaded[key], reference[key]) for key in reference)


def test_architecture_source_runs_without_unetflow(
    trained: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packaged model.py imports nothing of unetflow: a colleague's bioimageio.core builds it alone."""
    for name in [name for name in sys.modules if name == "unetflow" or name.startswith("unetflow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with zipfile.ZipFile(trained["package"]) as archive:
        source = archive.read(ARCHITECTURE_FILE).decode()
    module = types.ModuleType("packaged_unet")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, ARCHITECTURE_FILE, "exec"), module.__dict__)
    kwargs = rdf_of(trained["package"])["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]
    net = module.UNet(**kwargs)
    assert type(net).__module__ == "packaged_unet" and net.config.depth == 2
    with pytest.raises(TypeError, match="not both"):
        UNet(UNetConfig(depth=4, base_channels=8), depth=2)


def rewrite(trained: dict[str, Path], folder: Path, change: Any) -> Path:
    """The package unpacked to `folder` with its rdf.yaml changed by `change(rdf)`."""
    with zipfile.ZipFile(trained["package"]) as archive:
        archive.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    change(rdf)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return folder / "rdf.yaml"


def test_package_without_pytorch_weights_is_an_input_error(trained: dict[str, Path], tmp_path: Path) -> None:
    def torchscript_only(rdf: dict[str, Any]) -> None:
        del rdf["weights"]["pytorch_state_dict"]
        del rdf["weights"]["torchscript"]["parent"]

    rdf = rewrite(trained, tmp_path, torchscript_only)
    with pytest.raises(InputError, match=r"rdf\.yaml has torchscript weights but no PyTorch state dict"):
        load_model(rdf)


def test_package_that_is_not_a_2d_image_model_is_an_input_error(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    def time_axis(rdf: dict[str, Any]) -> None:
        """Make y a time axis: a valid description of a (batch, channel, time, x) model."""
        for tensor in (*rdf["inputs"], *rdf["outputs"]):
            axis = tensor["axes"][2]
            axis.update(type="time", id="time")
            del axis["unit"], axis["scale"]
        rdf["outputs"][0]["axes"][2]["size"]["axis_id"] = "time"
        rdf["inputs"][0]["preprocessing"][1]["kwargs"]["axes"] = ["channel", "time", "x"]

    rdf = rewrite(trained, tmp_path, time_axis)
    with pytest.raises(InputError, match=r"rdf\.yaml is not a 2-D image model.*'time'"):
        load_model(rdf)


def test_package_whose_test_output_is_not_reproduced_fails_the_check(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    with zipfile.ZipFile(trained["package"]) as archive:
        archive.extractall(tmp_path)
    expected = np.load(tmp_path / "test_output.npy")
    np.save(tmp_path / "test_output.npy", expected[:, ::-1].copy())
    digest = hashlib.sha256((tmp_path / "test_output.npy").read_bytes()).hexdigest()
    rdf = yaml.safe_load((tmp_path / "rdf.yaml").read_text())
    rdf["outputs"][0]["test_tensor"]["sha256"] = digest
    (tmp_path / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(RuntimeError, match=r"failed bioimageio\.core's test_model"):
        check_package(tmp_path / "rdf.yaml", weight_format="torchscript")


def test_missing_package_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.zip does not exist"):
        load_model(tmp_path / "nowhere.zip")


@pytest.fixture
def own_logging() -> Iterator[None]:
    """Undo the CLI's logging set-up (handlers on pytest's captured stderr, warnings sent to logging)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("own_logging")
def test_export_command_writes_a_package(trained: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "cli.zip"
    code = main(
        [
            "export",
            str(trained["checkpoint"]),
            str(output),
            "--test-size",
            "20",
            "--name",
            "tiny unetflow net",
            "--author",
            "B. One",
            "--author",
            "C. Two",
            "--no-test",
        ]
    )
    assert code == 0
    rdf = rdf_of(output)
    assert rdf["name"] == "tiny unetflow net" and [a["name"] for a in rdf["authors"]] == ["B. One", "C. Two"]
    with zipfile.ZipFile(output) as archive:
        assert np.load(archive.open("test_output.npy")).shape == (1, 2, 20, 20)
    bad = tmp_path / "bad.zip"
    assert main(["export", str(tmp_path / "missing.pt"), str(bad)]) == 2
    with pytest.raises(InputError, match="licence 'Apache' is not an SPDX licence identifier"):
        export_model(trained["checkpoint"], bad, license="Apache")
    with pytest.raises(InputError, match=r"(?s)model\.pt cannot be described for bioimage\.io .*'net/v2'"):
        export_model(trained["checkpoint"], bad, name="net/v2", test=False)
    assert not bad.exists() and not list(tmp_path.glob(".bad.zip*"))
