"""Data-parallel training (unetflow.train.distributed) as CPU processes over gloo, the code path of several
GPUs: one step of 2 processes equals one process training both tiles; a 2-process run killed (SIGKILL of the
launcher, as a cancelled job) and run again ends bit-identical to an uninterrupted one; its checkpoint loads
in a one-process prediction; the errors come before anything is written. A tiny synthetic volume and a
depth-2, 4-channel U-Net, as tests/test_train.py."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers import write_training_volume

from unetflow.config.model import AugmentConfig
from unetflow.errors import InputError
from unetflow.model.checkpoint import load_checkpoint, load_model
from unetflow.model.unet import UNet, UNetConfig
from unetflow.train import distributed
from unetflow.train.augment import TileSampler
from unetflow.train.loop import TrainConfig, TrainingSource, load_slices, train, validate

ROOT = Path(__file__).resolve().parents[1]
MODEL = UNetConfig(depth=2, base_channels=4)  # drop-out 0.5: every process has a stream of its own
TRAIN_SLICES, VAL_SLICES = [0, 1, 2], [3]
CONFIG = TrainConfig(
    steps=18,
    tile=36,
    batch_size=2,
    optimizer="sgd",
    lr=0.01,
    schedule="constant",
    checkpoint_every=3,
    val_every=6,
    device="cpu",
    seed=1,
    cpu_processes=2,
)


def changed(config: TrainConfig, **changes: Any) -> TrainConfig:
    """`config` with some options changed, checked like a config file."""
    return TrainConfig.from_dict({**config.dump(), **changes})


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread here (the workers get threads // processes, at least one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4-slice synthetic volume (OME-Zarr with labels) and its border weight maps."""
    root = tmp_path_factory.mktemp("parallel-data")
    return write_training_volume(root, TRAIN_SLICES)


def run(
    dataset: tuple[Path, Path],
    folder: Path,
    config: TrainConfig = CONFIG,
    model: UNetConfig = MODEL,
    **options: Any,
) -> dict[str, Any]:
    """Train into `folder` (workdir, model.pt and the two CSV logs)."""
    data, weights = dataset
    return train(
        data=data,
        weights=weights,
        train_slices=TRAIN_SLICES,
        val_slices=VAL_SLICES,
        model_config=model,
        config=config,
        workdir=folder / "checkpoints",
        output=folder / "model.pt",
        step_log=folder / "train_log.csv",
        val_log=folder / "val_log.csv",
        progress=False,
        **options,
    )


@pytest.fixture(scope="module")
def reference(dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-process run of CONFIG."""
    folder = tmp_path_factory.mktemp("two-processes")
    result = run(dataset, folder)
    assert result["finished"] and result["step"] == CONFIG.steps
    return folder


def rows(path: Path) -> list[dict[str, str]]:
    """CSV rows without the wall-time columns."""
    with path.open(newline="") as handle:
        return [
            {k: v for k, v in row.items() if k not in ("step_time", "data_time")}
            for row in csv.DictReader(handle)
        ]


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Every tensor bit-identical."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders ended identically: checkpoints (weights, optimizer, every process's random state)
    and logs."""
    for name in ("model.pt", "checkpoints/latest.pt", "checkpoints/best.pt"):
        first, second = load_checkpoint(a / name), load_checkpoint(b / name)
        assert first["step"] == second["step"], name
        assert_same_tensors(first["model_state_dict"], second["model_state_dict"])
    latest = [load_checkpoint(run / "checkpoints/latest.pt") for run in (a, b)]
    for state_a, state_b in zip(*(s["optimizer_state_dict"]["state"].values() for s in latest), strict=True):
        assert_same_tensors(state_a, state_b)
    assert torch.equal(latest[0]["rng"]["sampler"], latest[1]["rng"]["sampler"])
    for process_a, process_b in zip(*(s["rng"]["processes"] for s in latest), strict=True):
        assert torch.equal(process_a["torch"], process_b["torch"])
    for name in ("train_log.csv", "val_log.csv"):
        assert rows(a / name) and rows(a / name) == rows(b / name), name


def test_one_step_of_two_processes_equals_one_process_training_both_tiles(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    """(a) A tile each on 2 processes, gradients averaged by DDP, is the step of one process on both tiles
    (the batch's mean loss). No drop-out: its masks are drawn per process."""
    plain = UNetConfig(depth=2, base_channels=4, dropout=0.0)
    one_step = changed(CONFIG, steps=1, lr=0.1, val_every=10)
    run(dataset, tmp_path / "two", one_step, plain)
    run(dataset, tmp_path / "one", changed(one_step, cpu_processes=1), plain)
    two, one = (load_checkpoint(tmp_path / name / "model.pt") for name in ("two", "one"))
    assert (two["processes"], one["processes"]) == (2, 1)
    torch.manual_seed(CONFIG.seed)
    before = UNet(plain).state_dict()  # the initial weights of both runs
    apart = moved = 0.0
    for key, initial in before.items():
        torch.testing.assert_close(
            two["model_state_dict"][key], one["model_state_dict"][key], rtol=0, atol=1e-6
        )
        apart = max(apart, float((two["model_state_dict"][key] - one["model_state_dict"][key]).abs().max()))
        moved = max(moved, float((one["model_state_dict"][key] - initial).abs().max()))
    assert moved > 1000 * max(apart, 1e-9)  # the step moved the weights far more than the runs differ
    losses = [float(rows(tmp_path / name / "train_log.csv")[0]["loss"]) for name in ("two", "one")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_each_process_renders_its_own_share_of_the_batch_the_seed_drew() -> None:
    raw = np.random.default_rng(0).random((3, 40, 40), dtype=np.float32)
    labels = (raw > 0.5).astype(np.int64)
    sampler = TileSampler(
        raw, labels, np.ones_like(raw), input_size=30, output_size=10, config=AugmentConfig(), batch_size=4
    )
    whole = sampler.sample(torch.Generator().manual_seed(5))
    parts = [
        distributed.ShardSampler(sampler, distributed.Parallel(rank, 2)).draw(
            torch.Generator().manual_seed(5)
        )
        for rank in (0, 1)
    ]
    assert [part.batch_size for part in parts] == [2, 2]
    rendered = [sampler.render(part) for part in parts]
    torch.testing.assert_close(torch.cat([r.raw for r in rendered]), whole.raw, rtol=0, atol=1e-6)
    assert torch.equal(torch.cat([r.labels for r in rendered]), whole.labels)
    assert not torch.equal(rendered[0].raw, rendered[1].raw)  # different tiles


def test_two_process_run_writes_one_checkpoint_with_every_process_state(reference: Path) -> None:
    log = rows(reference / "train_log.csv")
    assert [int(row["step"]) for row in log] == list(range(1, CONFIG.steps + 1))
    assert {row["processes"] for row in log} == {"2"}
    assert [int(row["step"]) for row in rows(reference / "val_log.csv")] == [6, 12, 18]
    latest = load_checkpoint(reference / "checkpoints/latest.pt")
    assert latest["processes"] == 2 and latest["train_config"]["cpu_processes"] == 2
    states = latest["rng"]["processes"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])
    assert torch.equal(states[0]["torch"], latest["rng"]["torch"])
    assert not any(key.startswith("module.") for key in latest["model_state_dict"])
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == ["best.pt", "latest.pt"]


def test_checkpoint_loads_in_a_one_process_prediction(dataset: tuple[Path, Path], reference: Path) -> None:
    """(c) model.pt of 2 processes is a plain checkpoint: one process predicts with it, and scores the
    validation slice exactly as process 0 did when it chose that checkpoint."""
    final = load_checkpoint(reference / "model.pt")
    model = load_model(reference / "model.pt")
    data = load_slices(dataset[0], dataset[1], VAL_SLICES)
    scores = validate(model, data, device=torch.device("cpu"), threshold=final["threshold"])
    assert scores["val_iou"] == pytest.approx(final["metrics"]["val_iou"], abs=1e-12)
    assert 0.0 < scores["val_iou"] <= 1.0


def _workers_of(launcher: int) -> list[int]:
    """Worker processes started by the launcher `launcher` (their command line names its pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"unetflow.train.distributed" in command and command[-2:-1] == [str(launcher).encode()]:
            found.append(int(entry.name))
    return found


def _cli_train(dataset: tuple[Path, Path], folder: Path, config: Path) -> subprocess.Popen[bytes]:
    data, weights = dataset
    command = [
        sys.executable,
        "-m",
        "unetflow.cli",
        "train",
        str(data),
        str(weights),
        str(folder / "model.pt"),
    ]
    command += ["--config", str(config), "--threads", "1"]
    with (folder / "output.log").open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=output, cwd=ROOT, start_new_session=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_two_process_run_resumes_bit_identical(
    dataset: tuple[Path, Path], reference: Path, tmp_path: Path
) -> None:
    """(b) `unetflow train` with 2 processes, its launcher SIGKILLed after the first checkpoint (the workers
    die with it, as in a cancelled job), then the same command again: the same end as the reference."""
    config = tmp_path / "config.yaml"
    options = {key: value for key, value in CONFIG.dump().items() if key != "augment"}
    model = {"depth": MODEL.depth, "base_channels": MODEL.base_channels}
    config.write_text(
        yaml.safe_dump({"model": model, "train": options, "split": {"train": "0-2", "val": "3"}})
    )
    killed = tmp_path / "killed"
    killed.mkdir()
    victim = _cli_train(dataset, killed, config)
    try:
        deadline = time.monotonic() + 120
        while not (killed / "checkpoints" / "latest.pt").exists():
            assert victim.poll() is None, (killed / "output.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.005)
        assert len(_workers_of(victim.pid)) == 2
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
    deadline = time.monotonic() + 30
    while _workers_of(victim.pid):  # the kernel ends the workers with their launcher
        assert time.monotonic() < deadline, "the workers outlived their launcher"
        time.sleep(0.05)
    assert not (killed / "model.pt").exists(), "the run finished before the kill: make it longer"
    stopped = load_checkpoint(killed / "checkpoints/latest.pt")["step"]
    assert 0 < stopped < CONFIG.steps
    before = (killed / "output.log").read_text()
    rerun = _cli_train(dataset, killed, config)
    assert rerun.wait(timeout=300) == 0, (killed / "output.log").read_text()
    after = (killed / "output.log").read_text()[len(before) :]
    assert after.count("training with 2 processes (CPU, gloo, 1 torch thread each)") == 1, after
    assert after.count(f"at step {stopped} of {CONFIG.steps}") == 1, after  # process 0 alone logs
    assert load_checkpoint(killed / "model.pt")["run_id"] == load_checkpoint(reference / "model.pt")["run_id"]
    assert_same_run(reference, killed)


def test_two_processes_resume_a_one_process_run_of_the_same_recipe(
    dataset: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """How a run is spread is not part of its identity: 2 processes continue 1's checkpoint (the same
    tiles; the drop-out streams of the new process start afresh, and the log says so)."""
    single = changed(CONFIG, cpu_processes=1, steps=6)
    assert run(dataset, tmp_path, single, stop_after=3) == {"step": 3, "finished": False}
    first = load_checkpoint(tmp_path / "checkpoints/latest.pt")
    result = run(dataset, tmp_path, changed(CONFIG, steps=6))
    assert result["finished"] and result["step"] == 6
    final = load_checkpoint(tmp_path / "checkpoints/latest.pt")
    assert final["run_id"] == first["run_id"] and final["processes"] == 2
    assert [row["processes"] for row in rows(tmp_path / "train_log.csv")] == ["1"] * 3 + ["2"] * 3


def test_batch_that_does_not_split_is_refused_before_anything_is_written(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(
        InputError, match=r"train\.batch_size 3 does not split over 2 processes.*multiple of 2"
    ):
        run(dataset, tmp_path / "run", changed(CONFIG, batch_size=3))
    assert not (tmp_path / "run").exists()


def test_taken_port_is_refused_before_anything_is_written(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=rf"train\.port {port} is taken on this node.*auto"):
            run(dataset, tmp_path / "run", changed(CONFIG, port=port))
    assert not (tmp_path / "run").exists()


def test_more_gpus_than_the_job_has_are_refused_before_anything_is_written(
    dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    gpus = changed(CONFIG, device="auto", gpus=4, batch_size=4)
    with pytest.raises(
        InputError, match=r"train\.gpus is 4 but this job sees 2 GPUs \(CUDA_VISIBLE_DEVICES=0,1\)"
    ):
        run(dataset, tmp_path / "run", gpus)
    with pytest.raises(InputError, match=r"train\.device cuda:1 names one GPU"):
        run(dataset, tmp_path / "run", changed(gpus, device="cuda:1", gpus=2))
    assert distributed.process_count(changed(gpus, gpus="auto", cpu_processes=1)) == 2
    assert not (tmp_path / "run").exists()


def test_gpus_on_a_node_without_gpus_are_refused_before_anything_is_written(
    dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"train\.gpus is 2 but PyTorch sees no GPU on this node"):
        run(dataset, tmp_path / "run", changed(CONFIG, device="auto", gpus=2, cpu_processes=1))
    with pytest.raises(InputError, match=r"train\.gpus is 2 but train\.device is cpu"):
        run(dataset, tmp_path / "run", changed(CONFIG, gpus=2, cpu_processes=1))
    assert not (tmp_path / "run").exists()
    # auto takes every GPU present: none, so the CPU processes of cpu_processes
    assert distributed.process_count(changed(CONFIG, device="auto", gpus="auto")) == 2


def test_an_error_in_the_processes_is_raised_by_the_launcher_as_it_was(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    source = TrainingSource(name="empty", data=dataset[0], weights=dataset[1], train=[], val=[3])
    with pytest.raises(InputError, match="no training slices"):
        train(
            sources=[source],
            model_config=MODEL,
            config=CONFIG,
            workdir=tmp_path / "checkpoints",
            output=tmp_path / "model.pt",
            step_log=tmp_path / "train_log.csv",
            val_log=tmp_path / "val_log.csv",
            progress=False,
        )
    assert not (tmp_path / "model.pt").exists()
