"""Training: exact resume (after `stop_after` and after a real SIGKILL), the run fingerprint, divergence,
config parsing, the weighted loss against a hand computation, optimizers and schedules, and the prefetching
batch stream against on-demand sampling. All on a tiny synthetic volume and a depth-2, 4-channel U-Net."""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
import os
import signal
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

from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.model.checkpoint import decision_threshold_of, load_checkpoint
from unetflow.model.unet import UNet, UNetConfig
from unetflow.train.augment import TileSampler
from unetflow.train.loop import (
    STEP_COLUMNS,
    BatchStream,
    TrainConfig,
    TrainingDivergedError,
    build_optimizer,
    build_schedule,
    load_slices,
    train,
    validate,
    weighted_cross_entropy,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL = UNetConfig(depth=2, base_channels=4)


def changed(config: TrainConfig, **changes: Any) -> TrainConfig:
    """`config` with some options changed, checked like a config file."""
    return TrainConfig.from_dict({**config.dump(), **changes})


CONFIG = TrainConfig(
    steps=12,
    tile=36,
    optimizer="sgd",
    lr=0.01,
    schedule="constant",
    checkpoint_every=3,
    val_every=4,
    device="cpu",
    seed=1,
)
TRAIN_SLICES, VAL_SLICES = [0, 1, 2], [3]
TIMING = ("step_time", "data_time")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: steady timings on a shared 2-core machine (results are exact either way)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4-slice synthetic volume (OME-Zarr with labels) and its border weight maps."""
    root = tmp_path_factory.mktemp("train-data")
    return write_training_volume(root, TRAIN_SLICES)


def run(
    dataset: tuple[Path, Path], folder: Path, config: TrainConfig = CONFIG, **options: Any
) -> dict[str, Any]:
    """Train into `folder` (workdir, model.pt and the two CSV logs)."""
    data, weights = dataset
    return train(
        data=data,
        weights=weights,
        train_slices=TRAIN_SLICES,
        val_slices=options.pop("val_slices", VAL_SLICES),
        model_config=MODEL,
        config=config,
        workdir=folder / "checkpoints",
        output=folder / "model.pt",
        step_log=folder / "train_log.csv",
        val_log=folder / "val_log.csv",
        progress=options.pop("progress", False),
        **options,
    )


@pytest.fixture(scope="module")
def reference(dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted in-process run of CONFIG."""
    folder = tmp_path_factory.mktemp("reference")
    result = run(dataset, folder)
    assert result["finished"] and result["step"] == CONFIG.steps
    return folder


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Every tensor bit-identical (same keys, dtypes, shapes and values)."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def read_rows(path: Path, *, drop: tuple[str, ...] = TIMING) -> list[dict[str, str]]:
    """CSV rows without the timing columns (which differ from run to run)."""
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(handle)]


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders ended identically: final model, resumable checkpoint, best checkpoint and logs."""
    for name in ("model.pt", "checkpoints/latest.pt", "checkpoints/best.pt"):
        first, second = load_checkpoint(a / name), load_checkpoint(b / name)
        assert first["step"] == second["step"], name
        assert_same_tensors(first["model_state_dict"], second["model_state_dict"])
    latest_a, latest_b = (
        load_checkpoint(a / "checkpoints/latest.pt"),
        load_checkpoint(b / "checkpoints/latest.pt"),
    )
    for group_a, group_b in zip(
        latest_a["optimizer_state_dict"]["state"].values(),
        latest_b["optimizer_state_dict"]["state"].values(),
        strict=True,
    ):
        assert_same_tensors(group_a, group_b)
    assert torch.equal(latest_a["rng"]["torch"], latest_b["rng"]["torch"])
    assert torch.equal(latest_a["rng"]["sampler"], latest_b["rng"]["sampler"])
    for name in ("train_log.csv", "val_log.csv"):
        rows = read_rows(a / name)
        assert rows and rows == read_rows(b / name), name
    assert not list(a.rglob(".*.tmp-*")) and not list(b.rglob(".*.tmp-*"))


def test_training_learns_and_logs_every_step(reference: Path) -> None:
    with (reference / "train_log.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == STEP_COLUMNS
    assert [int(row["step"]) for row in rows] == list(range(1, CONFIG.steps + 1))
    assert all(math.isfinite(float(row["loss"])) and float(row["data_time"]) >= 0 for row in rows)
    assert [int(row["step"]) for row in read_rows(reference / "val_log.csv")] == [4, 8, 12]
    best = load_checkpoint(reference / "checkpoints/best.pt")
    assert best["step"] in (4, 8, 12) and best["run_id"] == load_checkpoint(reference / "model.pt")["run_id"]
    torch.manual_seed(CONFIG.seed)
    initial = UNet(MODEL)  # the run's initial weights
    trained = load_checkpoint(reference / "checkpoints/latest.pt")["model_state_dict"]
    assert not torch.equal(initial.head.weight, trained["head.weight"])  # the weights moved


def test_checkpoint_records_the_threshold_that_undoes_the_class_weights(
    dataset: tuple[Path, Path], reference: Path
) -> None:
    """model.pt carries w_fg / (w_bg + w_fg) of the weight maps' class weights; validation scored with it."""
    background, foreground = omezarr.read_attrs(dataset[1])["class_weights"]
    final = load_checkpoint(reference / "model.pt")
    assert final["threshold"] == pytest.approx(foreground / (background + foreground))
    assert final["threshold"] != 0.5
    assert decision_threshold_of(reference / "model.pt") == final["threshold"]
    data = load_slices(dataset[0], dataset[1], VAL_SLICES)
    model = UNet(MODEL)
    model.load_state_dict(final["model_state_dict"])
    scores = validate(model, data, device=torch.device("cpu"), threshold=final["threshold"])
    assert scores["val_iou"] == pytest.approx(final["metrics"]["val_iou"], abs=1e-12)


def test_stop_and_resume_is_bit_identical(
    dataset: tuple[Path, Path], reference: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Stop at 7: the last checkpoint is at step 6, so steps 7 and 8 (with its validation) run again.
    assert run(dataset, tmp_path, stop_after=7, prefetch=True) == {"step": 7, "finished": False}
    assert load_checkpoint(tmp_path / "checkpoints/latest.pt")["step"] == 6
    assert not (tmp_path / "model.pt").exists()
    # a write killed half-way leaves a temporary sibling; the resumed run removes it
    (tmp_path / "checkpoints/.latest.pt.tmp-0badc0de").write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.INFO, logger="unetflow.train.loop"):
        result = run(dataset, tmp_path, prefetch=False)  # the batches do not depend on prefetching
    assert "resuming from" in caplog.text and "at step 6 of 12" in caplog.text
    assert result["finished"] and result["step"] == CONFIG.steps
    assert_same_run(reference, tmp_path)


def test_rerun_of_a_finished_run_changes_nothing(dataset: tuple[Path, Path], reference: Path) -> None:
    before = load_checkpoint(reference / "model.pt")["model_state_dict"]
    assert run(dataset, reference)["finished"]
    assert_same_tensors(before, load_checkpoint(reference / "model.pt")["model_state_dict"])


def test_checkpoint_of_another_config_is_not_resumed(
    dataset: tuple[Path, Path], reference: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = changed(CONFIG, lr=0.02)
    assert not run(dataset, tmp_path, other, stop_after=9)["finished"]
    assert load_checkpoint(tmp_path / "checkpoints/latest.pt")["step"] == 9
    with caplog.at_level(logging.WARNING, logger="unetflow.train.loop"):
        assert run(dataset, tmp_path)["finished"]
    assert "belongs to another run" in caplog.text
    assert_same_run(reference, tmp_path)


def test_best_checkpoint_of_another_run_is_never_the_output(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    # A run with validation writes best.pt at step 4; a run without validation must not take it over.
    assert not run(dataset, tmp_path, stop_after=5)["finished"]
    assert load_checkpoint(tmp_path / "checkpoints/best.pt")["step"] == 4
    result = run(dataset, tmp_path, val_slices=[])
    assert result["finished"] and result["best_step"] == CONFIG.steps
    final = load_checkpoint(tmp_path / "model.pt")
    assert_same_tensors(
        final["model_state_dict"], load_checkpoint(tmp_path / "checkpoints/latest.pt")["model_state_dict"]
    )


def test_progress_bar_in_a_log_file_is_not_a_line_per_step(
    dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule's log (stderr is a file) gets a bar line every 30 s and the validation lines, not 40 bars."""
    log_file = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log_file)
    run(dataset, tmp_path, changed(CONFIG, steps=40, val_every=20), progress=True)
    text = log_file.getvalue()
    assert text.count("step 20: val_loss") == text.count("step 40: val_loss") == 1
    assert 1 <= text.count("train:") <= 6, text


def test_validation_consumes_no_randomness(dataset: tuple[Path, Path]) -> None:
    # validation between checkpoints must not shift drop-out's random stream, or resume could not be exact
    data, weights = dataset
    val_data = load_slices(data, weights, VAL_SLICES)
    torch.manual_seed(0)
    model = UNet(MODEL).train()
    state = torch.get_rng_state()
    scores = validate(model, val_data, device=torch.device("cpu"))
    assert torch.equal(state, torch.get_rng_state())
    assert model.training  # back in training mode (drop-out on)
    assert 0.0 <= scores["val_iou"] <= 1.0 and 0.0 <= scores["val_pixel_error"] <= 1.0
    assert math.isfinite(scores["val_loss"]) and scores["val_loss"] > 0


def test_divergence_raises_a_clear_error(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(
        TrainingDivergedError, match=r"diverged at step \d+ \(loss (nan|inf)\): lower train\.lr"
    ):
        run(dataset, tmp_path, changed(CONFIG, lr=1e6), val_slices=[])
    assert not (tmp_path / "model.pt").exists()


SCRIPT = """
import os, sys, time
import unetflow.train.loop
from unetflow.cli.main import main

pause_at = int(os.environ.get("PAUSE_AT_STEP", "0"))
loss = unetflow.train.loop.weighted_cross_entropy
calls = []

def pausing_loss(*args, **kwargs):
    calls.append(None)
    if len(calls) == pause_at:  # mid-step: after the forward pass, before backward and update
        print("paused", flush=True)
        time.sleep(300)
    return loss(*args, **kwargs)

unetflow.train.loop.weighted_cross_entropy = pausing_loss
sys.exit(main(sys.argv[1:]))
"""


def cli_train(dataset: tuple[Path, Path], folder: Path, config: Path, **env: str) -> subprocess.Popen[bytes]:
    """`unetflow train` in a fresh Python process; stdout and stderr append to folder/output.log."""
    data, weights = dataset
    folder.mkdir(exist_ok=True)
    command = [sys.executable, "-c", SCRIPT, "train", str(data), str(weights), str(folder / "model.pt")]
    command += ["--config", str(config), "--threads", "1"]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with (folder / "output.log").open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=output, env=environment, cwd=ROOT)


def wait_for_pause(process: subprocess.Popen[bytes], output: Path, *, timeout: float = 240.0) -> None:
    """Wait until the process prints "paused" (it then sleeps); fail if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while "paused" not in output.read_text():
        assert process.poll() is None, f"the run ended before pausing:\n{output.read_text()}"
        assert time.monotonic() < deadline, f"the run did not pause within {timeout} s"
        time.sleep(0.05)


def test_sigkill_mid_run_then_rerun_ends_bit_identical(
    dataset: tuple[Path, Path], reference: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    options = {key: value for key, value in CONFIG.dump().items() if key != "augment"}
    split = {"train": "0-2", "val": "3", "test": "4"}
    model = {"depth": MODEL.depth, "base_channels": MODEL.base_channels}
    config.write_text(yaml.safe_dump({"model": model, "train": options, "split": split}))
    killed = tmp_path / "killed"
    victim = cli_train(dataset, killed, config, PAUSE_AT_STEP="9")
    try:
        wait_for_pause(victim, killed / "output.log")
        # step 9 is under way: checkpoints at 3 and 6 are written (best.pt maybe at 8), no output yet
        assert load_checkpoint(killed / "checkpoints/latest.pt")["step"] == 6
        assert not (killed / "model.pt").exists()
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    # as if the kill had hit a checkpoint write: its temporary sibling stays behind, latest.pt is intact
    (killed / "checkpoints/.latest.pt.tmp-0badc0de").write_bytes(b"half a checkpoint")
    rerun = cli_train(dataset, killed, config)  # the same command
    assert rerun.wait(timeout=300) == 0, (killed / "output.log").read_text()
    assert "at step 6 of 12" in (killed / "output.log").read_text()
    # the CLI run is the reference run (same fingerprint), which went through uninterrupted in-process
    run_id = load_checkpoint(reference / "model.pt")["run_id"]
    assert load_checkpoint(killed / "model.pt")["run_id"] == run_id
    assert_same_run(reference, killed)


def test_weighted_cross_entropy_by_hand() -> None:
    ln3, ln9 = math.log(3.0), math.log(9.0)
    logits = torch.tensor([[[0.0, ln3], [ln3, 0.0]], [[0.0, 0.0], [0.0, ln9]]])[None]  # (1, 2 classes, 2, 2)
    labels = torch.tensor([[[0, 0], [1, 1]]])
    weights = torch.tensor([[[1.0, 2.0], [0.5, 10.0]]])
    # softmax per pixel: (1/2, 1/2), (3/4, 1/4), (3/4, 1/4), (1/10, 9/10); -w log p(label), mean of four
    expected = (math.log(2) + 2 * math.log(4 / 3) + 0.5 * math.log(4) + 10 * math.log(10 / 9)) / 4
    loss = weighted_cross_entropy(logits, labels, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    uniform = weighted_cross_entropy(logits, labels, torch.ones_like(weights))
    assert uniform.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)


def learning_rates(config: TrainConfig) -> list[float]:
    """The learning rate of each of the config's steps."""
    optimizer = build_optimizer(UNet(MODEL), config)
    schedule = build_schedule(optimizer, config)
    rates = []
    for _ in range(config.steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


def test_optimizers_and_schedules() -> None:
    sgd = build_optimizer(UNet(MODEL), CONFIG)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.99
    adam = build_optimizer(UNet(MODEL), changed(CONFIG, optimizer="adam", lr=1e-3, weight_decay=1e-4))
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 1e-4
    base = changed(CONFIG, steps=12, lr=0.1)
    assert learning_rates(base) == pytest.approx([0.1] * 12)
    warm = learning_rates(changed(base, warmup_steps=4))
    assert warm == pytest.approx([0.025, 0.05, 0.075] + [0.1] * 9)
    cosine = learning_rates(changed(base, schedule="cosine"))
    assert cosine[0] == pytest.approx(0.1) and cosine[6] == pytest.approx(0.05)
    assert all(a > b for a, b in itertools.pairwise(cosine)) and cosine[-1] > 0
    step = learning_rates(changed(base, schedule="step"))
    assert step == pytest.approx([0.1] * 4 + [0.01] * 4 + [0.001] * 4)
    for key, value in (("optimizer", "rmsprop"), ("schedule", "linear"), ("steps", 0), ("lr", 0.0)):
        with pytest.raises(InputError, match=rf"train\.{key}"):
            TrainConfig.from_dict({key: value})


def test_batch_stream_prefetch_matches_sampling_and_resumes_exactly() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(3, 40, 48)).astype(np.float32)
    labels = (raw > 0).astype(np.uint8)
    sampler = TileSampler(raw, labels, raw**2, input_size=44, output_size=4, batch_size=2)
    generator = torch.Generator().manual_seed(5)
    expected = [sampler.sample(generator) for _ in range(6)]
    with BatchStream(sampler, torch.Generator().manual_seed(5), prefetch=True) as stream:
        got = [stream.next() for _ in range(3)]
        state = stream.resume_state()  # what a checkpoint after the third batch stores
    resumed = torch.Generator().manual_seed(99)
    resumed.set_state(state)
    with BatchStream(sampler, resumed, prefetch=False) as stream:
        got += [stream.next() for _ in range(3)]
    for want, have in zip(expected, got, strict=True):
        for name in ("raw", "labels", "weights"):
            assert torch.equal(getattr(want, name), getattr(have, name)), name
