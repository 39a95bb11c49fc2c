"""bioimage.io packages of nets that see along z: a 3-D net's with a z axis, a 2-D net's with its context
slices as channels; validated by bioimageio.core, and taken back (pretrained:, train.init_from) as the net
they came from."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("bioimageio.core")

from unetflow.data import omezarr
from unetflow.data.synthesize3d import synthesize_volume_3d
from unetflow.export.bioimageio import export_model
from unetflow.geometry import anisotropic_layout
from unetflow.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import predict_array

KERNELS, POOLS = anisotropic_layout((40.0, 8.0, 8.0), 2)
NETS = {
    "3-D": UNetConfig(depth=2, base_channels=2, dims=3, kernels=KERNELS, pools=POOLS),
    "context": UNetConfig(depth=2, base_channels=2, context_slices=1),
}


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    raw, _ = synthesize_volume_3d(shape=(12, 40, 40), seed=0, voxel_size=(40.0, 8.0, 8.0), cell_diameter=14.0)
    return raw


@pytest.fixture(scope="module", params=list(NETS), ids=list(NETS))
def package(
    request: pytest.FixtureRequest, volume: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    config = NETS[request.param]
    torch.manual_seed(0)
    net = UNet(config)
    folder = tmp_path_factory.mktemp("export3d")
    state = {
        "model_state_dict": net.state_dict(),
        "model_config": config.to_dict(),
        "tile": {"input": 40, "output": 12},
        "threshold": 0.3,
        "normalization": {"policy": "zscore-volume", "mean": 120.0, "std": 30.0},
    }
    save_checkpoint(folder / "model.pt", state)
    image = folder / "image.zarr"
    omezarr.write_image(image, volume, voxel_size=(40.0, 8.0, 8.0))
    export_model(folder / "model.pt", folder / "model.zip", image=image, image_slice=4, test=True)
    with zipfile.ZipFile(folder / "model.zip") as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        readme = archive.read("README.md").decode()
    return {
        "config": config,
        "checkpoint": folder / "model.pt",
        "zip": folder / "model.zip",
        "rdf": rdf,
        "readme": readme,
    }


def test_the_package_describes_the_third_dimension(package: dict) -> None:
    """A 3-D net's tensors have a z axis whose sizes follow its geometry; a context net's input has one
    channel per slice. bioimageio.core's test_model passed on it (export_model(test=True))."""
    config, rdf = package["config"], package["rdf"]
    inputs, outputs = rdf["inputs"][0], rdf["outputs"][0]
    ids = [axis.get("id", axis["type"]) for axis in inputs["axes"]]
    if config.dims == 3:
        z = config.net_geometry.z
        assert ids == ["batch", "channel", "z", "y", "x"] and "3d" in rdf["tags"]
        assert inputs["axes"][2]["size"] == {"min": z.valid_input(1), "step": z.alignment}
        assert outputs["axes"][2]["size"]["offset"] == -2 * z.margin
        assert inputs["axes"][2]["scale"] == 40.0 and inputs["axes"][3]["scale"] == 8.0
        assert "A 3-D net" in package["readme"]
    else:
        assert ids == ["batch", "channel", "y", "x"]
        assert inputs["axes"][1]["channel_names"] == ["raw_zm1", "raw_z0", "raw_zp1"]
        assert "slices z - 1 .. z + 1" in package["readme"]


def test_the_package_is_taken_back_as_the_net_it_came_from(package: dict, volume: np.ndarray) -> None:
    original, packaged = load_model(package["checkpoint"]), load_model(package["zip"])
    assert packaged.config == original.config == package["config"]
    data = volume.astype(np.float32)
    np.testing.assert_array_equal(
        predict_array(packaged, data, device="cpu"), predict_array(original, data, device="cpu")
    )
    state = load_checkpoint(package["zip"])
    assert state["threshold"] == 0.3 and state["normalization"]["mean"] == 120.0
