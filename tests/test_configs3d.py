"""The third dimension's configs: dry runs of the FIB-SEM 3-D configs and the serial-section context config,
and a small 3-D run through the workflow (synthesize, import, 3-D weight map, train, predict)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import copy_workflow

from unetflow.config.load import load_config_files
from unetflow.data import omezarr
from unetflow.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.parametrize("name", ["fibsem-3d", "fibsem-3d-cpu", "isbi2012-context-cpu"])
def test_the_configs_are_valid_and_say_which_net(name: str) -> None:
    config = load_config_files([ROOT / "config.yaml", ROOT / "configs" / f"{name}.yaml"])
    assert (config.model.dims, config.model.context_slices) == ((2, 1) if name.startswith("isbi") else (3, 0))
    if config.model.dims == 3:
        volume = config.volumes["fibsem"]
        assert (
            volume.synthetic is not None and volume.synthetic.mode == "3d" and volume.voxel_size is not None
        )


def test_the_cpu_3d_config_plans_the_whole_chain() -> None:
    result = snakemake("-n", "--forceall", "--nolock", "--configfile", "configs/fibsem-3d-cpu.yaml")
    assert result.returncode == 0, result.stderr + result.stdout
    rules = collections.Counter(
        line.split()[-1].rstrip(":")
        for line in result.stdout.splitlines()
        if line.startswith(("rule ", "localrule "))
    )
    for rule in (
        "synthesize",
        "import_volume",
        "weights",
        "train",
        "predict",
        "evaluate",
        "report",
        "export",
    ):
        assert rules[rule] == 1, rule


def test_a_small_3d_run_through_the_workflow(tmp_path: Path) -> None:
    """configs/fibsem-3d-cpu.yaml shrunk: the volume is synthesized in 3-D, its weight map is 3-D, a 3-D net
    trains on it and predicts it in 3-D blocks."""
    copy_workflow(tmp_path)
    small = {
        "volumes": {
            "fibsem": {
                "synthetic": {"shape": [48, 48, 48], "cell_diameter": 20.0, "mode": "3d", "tilt": 45.0},
                "voxel_size": [8.0, 8.0, 8.0],
            }
        },
        "split": {"volume": "fibsem", "train": "0-31", "val": "32-35", "test": "36-47"},
        "model": {"dims": 3, "depth": 2, "base_channels": 2},
        "train": {"steps": 2, "tile": 12, "checkpoint_every": 2, "val_every": 2, "device": "cpu"},
        "predict": {"memory_gb": 0.25, "device": "cpu"},
    }
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small))
    (tmp_path / "fibsem.yaml").write_text((ROOT / "configs" / "fibsem-3d-cpu.yaml").read_text())
    targets = ["results/models/main/model.pt", "results/predict/main/fibsem.json"]
    result = snakemake(*targets, "--cores", "2", "--configfile", "fibsem.yaml", "small.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_checkpoint(tmp_path / targets[0])
    assert state["model_config"]["dims"] == 3 and state["tile"]["output_z"] >= 1
    weights = omezarr.open_image(tmp_path / "results" / "weights" / "fibsem.zarr")
    labels = omezarr.open_labels(tmp_path / "results" / "data" / "fibsem.zarr")[:]
    from unetflow.train.weights import border_weight_map_3d

    balance = json.loads((tmp_path / "results" / "weights" / "class_balance.json").read_text())[
        "class_weights"
    ]
    expected = border_weight_map_3d(labels, class_weights=tuple(balance))
    assert abs(weights[:] - expected).max() < 1e-5
    prediction = tmp_path / "results" / "predict" / "main" / "fibsem.zarr"
    assert omezarr.open_image(prediction).shape == (48, 48, 48)
    assert omezarr.read_attrs(prediction)["plan"]["dims"] == 3
