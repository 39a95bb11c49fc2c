"""The second prediction engine: dask.distributed workers give the same arrays as the thread pool."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unetflow.cli.main import main as cli_main
from unetflow.config.model import PredictConfig
from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.model.checkpoint import save_checkpoint
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import SEGMENTATION, ShardWriter, predict_volume, predict_whole_slice, read_plan
from unetflow.predict.cluster import ClusterConfig, open_client, slurm_cluster_options
from unetflow.predict.progress import ShardFiles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(depth=3, base_channels=4)).eval()


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with open_client(ClusterConfig(kind="local", workers=2, memory="2GB")) as running:
        yield running


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, np.ndarray]:
    volume = np.random.default_rng(7).integers(0, 255, size=(3, 90, 70), dtype=np.uint8)
    path = tmp_path / "raw.zarr"
    omezarr.write_image(path, volume, voxel_size=(50.0, 4.0, 4.0), chunks=(1, 40, 40))
    return str(path), volume


def run(model: UNet, source: str, target: Path, **engine: object) -> dict[str, int]:
    """Blocks of 32 px in shards of one 32 px block each (NGFF 0.4), so that nine shards share a slice."""
    options = PredictConfig(device="cpu", ngff="0.4")
    return predict_volume(
        model,
        source,
        str(target),
        options=options,
        stride=16,
        block=32,
        threshold=0.4,
        show_progress=False,
        **engine,
    )


def test_distributed_equals_threads_and_the_whole_slice_pass(
    model: UNet, client: object, source: tuple[str, np.ndarray], tmp_path: Path
) -> None:
    path, volume = source
    threads = run(model, path, tmp_path / "threads.zarr")
    spread = run(model, path, tmp_path / "distributed.zarr", scheduler="distributed", client=client)
    assert spread == threads
    assert spread["computed"] == spread["total"] == 3 * 3 * 3  # 3 slices of 3 x 3 blocks of 32 px
    expected = omezarr.open_image(tmp_path / "threads.zarr")[:]
    got = omezarr.open_image(tmp_path / "distributed.zarr")[:]
    np.testing.assert_array_equal(got, expected)
    mean, std = omezarr.normalization(path)
    whole = np.stack([predict_whole_slice(model, s, mean=mean, std=std) for s in volume])
    np.testing.assert_allclose(got, whole, atol=1e-5, rtol=0)
    segmentation = omezarr.open_labels(tmp_path / "distributed.zarr", SEGMENTATION)[:]
    np.testing.assert_array_equal(segmentation, (got > 0.4).astype(np.uint8))
    workers = client.scheduler_info()["workers"]  # type: ignore[attr-defined]
    assert len(workers) == 2


def test_distributed_resume_computes_only_unfinished_blocks(
    model: UNet, client: object, source: tuple[str, np.ndarray], tmp_path: Path
) -> None:
    path, _ = source
    target = tmp_path / "pred.zarr"
    run(model, path, target, scheduler="distributed", client=client)
    full = omezarr.open_image(target)[:]
    plan = read_plan(target)
    files = ShardFiles(target)
    lost = [files.path(0, plan.grid.index(n)) for n in (0, 4, 9, 13, 26)]
    for path_of_shard in lost:
        path_of_shard.unlink()
    kept = {p: p.stat().st_mtime_ns for p in (target / "0").rglob("*") if p.is_file() and p.name[0] != "."}
    again = run(model, path, target, scheduler="distributed", client=client)
    assert again == {"computed": 5, "done": 22, "empty": 0, "total": 27}
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items() if p not in lost)  # the rest untouched
    np.testing.assert_array_equal(omezarr.open_image(target)[:], full)


def test_shard_writer_pickles_without_its_open_handles(
    model: UNet, source: tuple[str, np.ndarray], tmp_path: Path
) -> None:
    path, _ = source
    run(model, path, tmp_path / "pred.zarr")
    writer = ShardWriter(
        model,
        path,
        str(tmp_path / "pred.zarr"),
        read_plan(tmp_path / "pred.zarr"),
        normalization={"mean": 0.0, "std": 1.0},
        threshold=0.5,
        options=PredictConfig(device="cpu"),
    )
    writer.open()
    clone = pickle.loads(pickle.dumps(writer))
    assert clone._opened is None and clone.threshold == 0.5
    pairs = zip(clone.model.state_dict().values(), model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_cli_predict_with_a_distributed_config(
    model: UNet, source: tuple[str, np.ndarray], tmp_path: Path
) -> None:
    """The workflow's path: `predict.scheduler: distributed` starts a LocalCluster in the predict step."""
    path, _ = source
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(
        checkpoint,
        {"model_state_dict": model.state_dict(), "model_config": model.config.to_dict(), "threshold": 0.4},
    )
    predict = {"memory_gb": 0.05, "device": "cpu", "threshold": "auto"}
    configs = {
        "threads": {"predict": predict},
        "distributed": {
            "predict": {
                **predict,
                "scheduler": "distributed",
                "cluster": {"kind": "local", "workers": 2, "memory": "2GB"},
            }
        },
    }
    outputs = {}
    for name, config in configs.items():
        config_path = tmp_path / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        target = tmp_path / f"{name}.zarr"
        assert cli_main(["predict", str(checkpoint), path, str(target), "--config", str(config_path)]) == 0
        outputs[name] = omezarr.open_image(target)[:]
        assert omezarr.read_attrs(target)["threshold"] == 0.4
    np.testing.assert_array_equal(outputs["distributed"], outputs["threads"])


def test_cluster_options_are_checked_and_turned_into_slurm_jobs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"predict\.cluster\.nodes: unknown key"):
        ClusterConfig.from_dict({"kind": "local", "nodes": 3})
    with pytest.raises(InputError, match="'local', 'slurm' or 'address'"):
        ClusterConfig.from_dict({"kind": "pbs"})
    with pytest.raises(InputError, match=r"needs address"):
        ClusterConfig.from_dict({"kind": "address"})
    config = ClusterConfig.from_dict(
        {"kind": "slurm", "workers": 4, "threads": 8, "gpus": 1, "queue": "gpu", "job_extra": ["--qos=low"]}
    )
    options = slurm_cluster_options(config, log_directory=tmp_path)
    assert options["job_extra_directives"] == ["--gres=gpu:1", "--qos=low"]
    assert (options["cores"], options["processes"], options["queue"]) == (8, 1, "gpu")
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(**options) as cluster:  # writes the job script; submits nothing until scaled
        script = cluster.job_script()
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH -p gpu" in script
    assert "#SBATCH --cpus-per-task=8" in script and "--nthreads 1" in script


def test_open_client_gives_back_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """distributed's nanny sets OMP_NUM_THREADS=1 in the calling process; open_client undoes it on exit."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = dict(os.environ)
    with open_client(ClusterConfig(kind="local", workers=1, memory="1GB")) as running:
        assert len(running.scheduler_info()["workers"]) == 1
        assert os.environ.get("OMP_NUM_THREADS") == "1"
    assert dict(os.environ) == before


def test_unreachable_scheduler_is_one_clear_error_and_no_output(
    model: UNet, source: tuple[str, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = source
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(
        checkpoint, {"model_state_dict": model.state_dict(), "model_config": model.config.to_dict()}
    )
    cluster = {"kind": "address", "address": "tcp://127.0.0.1:9", "timeout": 2}
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"predict": {"device": "cpu", "scheduler": "distributed", "cluster": cluster}})
    )
    target = tmp_path / "pred.zarr"
    assert cli_main(["predict", str(checkpoint), path, str(target), "--config", str(config)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(
        "unetflow predict: error: cannot reach the dask scheduler at predict.cluster.address"
    )
    assert "tcp://127.0.0.1:9" in error and "dask scheduler" in error
    assert not target.exists()
