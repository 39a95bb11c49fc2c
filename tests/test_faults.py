"""Faults (issue 12): a step killed with SIGKILL at chosen points, then run again, ends exactly as a run that
was never interrupted and leaves no temporary file; a full disk is one message naming the path, and
nothing half-written stays behind.

A kill lands at a chosen point through a small wrapper around the CLI (as tests/test_train.py does): the
environment variable UNETFLOW_PAUSE names a function and the call at which the process prints "paused" and
sleeps (every later call sleeps too, so other threads stop as well), and the test SIGKILLs it there. The
points: Zarr's writing of a file (`zarr.storage._local._put`: before the Nth file, or half of it written
under Zarr's temporary name as a kill in the middle of a write leaves it), a training step, a checkpoint
written but not renamed, the prediction between two shards, between a shard and its journal line, and
between the arrays of a new prediction.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import copy_workflow

from unetflow.cli.main import main
from unetflow.data import omezarr
from unetflow.data.download import sha256_of
from unetflow.errors import InputError
from unetflow.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {
    "volumes": {"stack": {"synthetic": {"shape": [6, 64, 64], "seed": 5}}},
    "split": {"volume": "stack", "train": "0-2", "val": "3", "test": "4-5"},
    "model": {"depth": 1, "base_channels": 4},
    "train": {
        "steps": 6,
        "tile": 20,
        "checkpoint_every": 2,
        "val_every": 2,
        "device": "cpu",
        "optimizer": "sgd",
        "lr": 0.01,
        "schedule": "constant",
    },
    "predict": {"device": "cpu", "block_groups": 3, "workers": 2},
}
STEPS = {
    "import": ["import", "raw.tif", "data.zarr", "--labels", "labels.tif"],
    "weights": ["weights", "data.zarr", "weights.zarr", "--config", "cfg.yaml"],
    "train": [
        "train",
        "data.zarr",
        "weights.zarr",
        "model/model.pt",
        "--config",
        "cfg.yaml",
        "--threads",
        "1",
    ],
    "predict": ["predict", "model/model.pt", "data.zarr", "p.zarr", "--config", "cfg.yaml", "--threads", "1"],
}
"""Each long step as a user runs it, in the order of the chain."""
OUTPUTS = {"import": ["data.zarr"], "weights": ["weights.zarr"], "train": ["model"], "predict": ["p.zarr"]}
"""What each step writes (beside `p.progress`, the prediction's journals)."""
PUT = "zarr.storage._local:_put"

SCRIPT = r"""
import importlib, os, sys, threading, time, uuid
from unetflow.cli.main import main

module, attribute, count, mode = os.environ["UNETFLOW_PAUSE"].split(":")
owner = importlib.import_module(module)
*parents, name = attribute.split(".")
for parent in parents:
    owner = getattr(owner, parent)
original = getattr(owner, name)
calls, lock = [], threading.Lock()

def pause():
    print("paused", flush=True)
    time.sleep(600)

def pausing(*args, **kwargs):
    with lock:
        calls.append(None)
        reached = len(calls) >= int(count)
    if reached and mode == "before":
        pause()
    if reached and mode == "partial":  # zarr's _put(path, buffer): half the file under Zarr's temporary name
        path, buffer = args[0], bytes(args[1].as_buffer_like())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(f".{uuid.uuid4().hex}.partial").write_bytes(buffer[: len(buffer) // 2])
        pause()
    result = original(*args, **kwargs)
    if reached and mode == "after":
        pause()
    return result

setattr(owner, name, pausing)
sys.exit(main(sys.argv[1:]))
"""


def run(folder: Path, step: str) -> None:
    """One step of the chain in this process, as the CLI runs it (it must succeed)."""
    threads = torch.get_num_threads()
    try:
        with contextlib.chdir(folder), contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["-q", *STEPS[step]]) == 0, err.getvalue()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole chain, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    shape = [str(size) for size in CONFIG["volumes"]["stack"]["synthetic"]["shape"]]
    with contextlib.chdir(folder):
        assert main(["-q", "synthesize", "raw.tif", "labels.tif", "--shape", *shape, "--seed", "5"]) == 0
    for step in STEPS:
        run(folder, step)
    return folder


def inputs_of(reference: Path, step: str, folder: Path) -> Path:
    """A folder holding what `step` reads: the reference run's files, less this step's and later outputs."""
    later = list(STEPS)[list(STEPS).index(step) :]
    skip = {name for name in later for name in OUTPUTS[name]} | {"p.progress"}
    shutil.copytree(reference, folder, ignore=lambda _, names: [n for n in names if n in skip])
    return folder


def kill_at(folder: Path, step: str, point: str) -> None:
    """Run `step` in a fresh process that pauses at `point` ("module:function:call:mode"), then SIGKILL it."""
    log = folder.parent / "victim.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UNETFLOW_PAUSE": point}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, *STEPS[step]], cwd=folder, env=env, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 240
        while "paused" not in log.read_text():
            assert process.poll() is None, f"{step} ended before {point}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{step} did not reach {point}"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def files(folder: Path) -> dict[str, str]:
    """The sha256 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): sha256_of(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of unetflow (`.<name>.tmp-*`) or Zarr (`*.partial`) under `folder`."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if ".tmp-" in p.name or p.name.endswith(".partial")
    )


def assert_same_training(reference: Path, folder: Path) -> None:
    """The model, the checkpoints and the logs of two training runs are identical (but for timings)."""
    for name in ("model.pt", "checkpoints/latest.pt", "checkpoints/best.pt"):
        first, second = load_checkpoint(reference / name), load_checkpoint(folder / name)
        assert first["step"] == second["step"] and first["run_id"] == second["run_id"], name
        for key, tensor in first["model_state_dict"].items():
            assert torch.equal(tensor, second["model_state_dict"][key]), (name, key)
    for name in ("train_log.csv", "val_log.csv"):
        rows = [
            [row.split(",")[:3] for row in (path / name).read_text().splitlines()]
            for path in (reference, folder)
        ]
        assert rows[0] == rows[1], name  # step, loss, lr (the timing columns differ from run to run)


def finished(folder: Path, step: str) -> bool:
    """Whether a step's output is there and complete."""
    if step == "train":
        return all(
            (folder / "model" / name).exists() for name in ("model.pt", "train_log.csv", "val_log.csv")
        )
    if step == "predict":
        from unetflow.predict import incomplete_groups

        try:
            return not incomplete_groups(folder / "p.zarr")
        except InputError:  # no plan yet
            return False
    return (folder / OUTPUTS[step][0]).exists()


KILLS = [
    ("import", f"{PUT}:3:before", ".data.zarr.tmp-"),
    ("import", f"{PUT}:14:partial", ".partial"),
    ("weights", f"{PUT}:2:before", ".weights.zarr.tmp-"),
    ("weights", f"{PUT}:8:partial", ".partial"),
    ("train", "unetflow.train.loop:weighted_cross_entropy:3:before", ""),
    ("train", "torch:save:3:after", ".pt.tmp-"),
    ("train", "unetflow.train.loop:write_csv:1:before", ""),
    ("predict", "unetflow.data.omezarr:create_labels:1:before", ".p.zarr.tmp-"),
    ("predict", "unetflow.predict.run:ShardWriter.write_shard:2:before", ""),
    ("predict", "unetflow.predict.progress:ShardFiles.sizes:1:after", ""),
    ("predict", f"{PUT}:19:partial", ".partial"),
]
"""Each step, where it is killed, and what the kill leaves behind for the next run to remove."""


@pytest.mark.parametrize(
    ("step", "point", "left"), KILLS, ids=[f"{step}-{point.split(':', 1)[1]}" for step, point, _ in KILLS]
)
def test_killed_step_run_again_ends_as_an_uninterrupted_run(
    reference: Path, tmp_path: Path, step: str, point: str, left: str
) -> None:
    folder = inputs_of(reference, step, tmp_path / "run")
    kill_at(folder, step, point)
    assert not finished(folder, step)
    assert any(left in name for name in leftovers(folder)) if left else leftovers(folder) == []
    run(folder, step)  # the same command again
    assert leftovers(folder) == []
    for name in OUTPUTS[step]:
        if step == "train":
            assert_same_training(reference / name, folder / name)
        else:
            assert files(folder / name) == files(reference / name), name
    if step == "predict":
        from unetflow.predict import check_complete

        check_complete(folder / "p.zarr")  # and the journals agree with the files


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (root only: skipped, saying so, where mounting is refused)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("the disk-full test mounts a 1 MiB tmpfs, which needs root")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        pytest.skip(f"the disk-full test cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill(disk: Path, *, spare: int) -> Path:
    """Fill `disk` with one file until `spare` bytes are free; returns that file."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(bytes(stats.f_bavail * stats.f_frsize - spare))
    return filler


@pytest.mark.parametrize("step", list(STEPS))
def test_full_disk_is_one_message_naming_the_path_and_the_same_command_resumes(
    reference: Path, tmp_path: Path, small_disk: Path, step: str
) -> None:
    """Each step writing to a disk with 24 KiB free: one line naming the output and the full disk, nothing
    under the output's name (a prediction keeps its complete shards), and once there is room the same
    command ends as an uninterrupted run."""
    folder = inputs_of(reference, step, tmp_path / "run")
    output = OUTPUTS[step][0]
    argv = [str(small_disk / item) if item.startswith(output) else item for item in STEPS[step]]
    filler = fill(small_disk, spare=24 * 1024)
    stderr = io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stderr(stderr):
        code = main(["-q", *argv])
    assert code == 2 and "Traceback" not in stderr.getvalue(), stderr.getvalue()
    [line] = [line for line in stderr.getvalue().splitlines() if ": error: " in line]
    assert re.search(
        rf"no space left on the device while writing (the prediction )?{small_disk / output}", line
    )
    assert not finished(small_disk, step)
    if step in ("import", "weights"):
        assert not (small_disk / output).exists()
    filler.unlink()
    with contextlib.chdir(folder), contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["-q", *argv]) == 0, err.getvalue()  # the same command, with room
    assert leftovers(small_disk) == []
    if step == "train":
        assert_same_training(reference / output, small_disk / output)
    else:
        assert files(small_disk / output) == files(reference / output)


SNAKEMAKE = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--cores", "2"]
"""The workflow as the README runs it on one machine."""


def snakemake(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Snakemake in `folder`, to the end."""
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=folder, env=workflow_env(folder), capture_output=True, text=True
    )


def workflow_env(folder: Path) -> dict[str, str]:
    """This package first, and a stand-in `scontrol` that answers at once: the SLURM executor plugin asks
    for MinJobAge when Snakemake starts, which takes 10 s on a machine with SLURM's tools but no controller.
    """
    shim = folder / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (shim / "scontrol").chmod(0o755)
    return {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}


def jobs(output: str) -> list[str]:
    """The jobs a Snakemake run started, as `rule wildcards` (the order they ran in)."""
    started = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)$", output, flags=re.M)
    return [f"{rule} {wildcards}" for rule, wildcards in started]


def test_workflow_survives_a_killed_snakemake_and_redoes_a_deleted_shard(
    reference: Path, tmp_path: Path
) -> None:
    """docs/troubleshooting.md ("When something goes wrong"): Snakemake and its jobs killed mid-prediction
    leave a lock that stops the next run with Snakemake's own message; `snakemake --unlock` and the same
    command finish the work. A shard deleted afterwards is found before any job runs and predicted again,
    alone."""
    folder = copy_workflow(tmp_path / "workflow")
    shutil.copytree(ROOT / "profiles" / "local", folder / "profiles" / "local")
    shutil.copy(reference / "raw.tif", folder / "raw.tif")
    shutil.copy(reference / "model" / "model.pt", folder / "model.pt")
    volume = {"raw": {"path": "raw.tif"}, "voxel_size": [50.0, 4.0, 4.0]}
    config = {
        "volumes": {"stack": volume},
        "split": None,
        "pretrained": {"path": "model.pt"},
        "predict": {"device": "cpu", "block_groups": 2},
        "segment": {"enabled": False},  # the prediction's faults; a killed segmentation: test_segment.py
    }
    (folder / "case.yaml").write_text(yaml.safe_dump(config))
    # Snakemake and its job killed together (a closed terminal, a lost node) once block group 0 is done
    flag = folder / "results" / "predict" / "pretrained" / "stack.blocks" / "0.done"
    victim = subprocess.Popen(
        [*SNAKEMAKE, "--configfile", "case.yaml"],
        cwd=folder,
        env=workflow_env(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, jobs included
    )
    try:
        deadline = time.monotonic() + 300
        while not flag.exists():
            assert victim.poll() is None, "the workflow ended before it was killed"
            assert time.monotonic() < deadline, "block group 0 was not predicted in time"
            time.sleep(0.1)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
    locked = snakemake(folder, "--configfile", "case.yaml")
    assert locked.returncode == 1 and "Traceback" not in locked.stderr
    assert "Directory cannot be locked" in locked.stderr and "--unlock" in locked.stderr
    assert snakemake(folder, "--unlock", "--configfile", "case.yaml").returncode == 0
    resumed = snakemake(folder, "--configfile", "case.yaml")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "predict_finalize" in " ".join(jobs(resumed.stderr))
    prediction = folder / "results" / "predict" / "pretrained" / "stack.zarr"
    for name in ("0", "labels/segmentation/0"):  # the values of the CLI's uninterrupted prediction
        np.testing.assert_array_equal(
            omezarr.open_image(prediction / name)[:], omezarr.open_image(reference / "p.zarr" / name)[:]
        )
    level0 = files(prediction / "0")
    # a shard of group 1 deleted: found before any job, and only that group is predicted again
    shard = prediction / "0" / "c" / "1" / "0" / "0"  # shards of 3 slices: the second is group 1's
    shard.unlink()
    redone = snakemake(folder, "--configfile", "case.yaml")
    assert redone.returncode == 0, redone.stderr[-3000:]
    assert "stack.zarr: block group 1 has shards missing or changed on disk: it runs again" in redone.stderr
    started = jobs(redone.stderr)
    assert [job for job in started if job.startswith("predict ")] == [
        "predict model=pretrained, volume=stack, group=1"
    ]
    assert files(prediction / "0") == level0
    again = snakemake(folder, "-n", "--configfile", "case.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_out_of_memory_is_one_line_saying_what_to_lower(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host memory, for real: `synthesize` of the largest volume under a 3 GiB address-space limit. GPU
    memory, where there is no GPU to fill: the error torch raises, from inside the prediction."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    disk = tmp_path / "host"
    disk.mkdir()
    command = [sys.executable, "-m", "unetflow.cli", "synthesize", "raw.tif", "labels.tif"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, "--shape", "128", "2048", "2048"],
        cwd=disk,
        env=env,
        preexec_fn=limit,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "unetflow synthesize: error: out of memory: make --shape smaller, or use a machine with more memory"
    )
    assert list(disk.iterdir()) == []

    def exhausted(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total)"
        )

    monkeypatch.setattr("unetflow.predict.run._run_threads", exhausted)
    folder = inputs_of(reference, "predict", tmp_path / "gpu")
    stderr = io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stderr(stderr):
        assert main(["-q", *STEPS["predict"]]) == 1
    assert stderr.getvalue().strip().splitlines()[-1] == (
        "unetflow predict: error: out of GPU memory: lower predict.memory_gb (or predict.batch_size, "
        "predict.workers), or use a GPU with more memory"
    )
