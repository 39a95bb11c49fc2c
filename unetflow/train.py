"""Training to the paper's recipe: augmented tiles, weighted softmax cross-entropy, SGD momentum 0.99.

Checkpoints (model, optimizer, scheduler, scaler, every RNG state, the step and the log so far) are written
atomically every N steps; a re-run resumes from the latest one and, on the CPU, ends bit-identical to an
uninterrupted run (even after a SIGKILL) as long as torch uses the same number of CPU threads (reductions
split by thread count). The random parameters of each batch are drawn in sequence in the main thread; on
CUDA the tile rendering itself runs one step ahead in a background thread on a side stream, so augmentation
overlaps the net's compute. Validation runs whole-slice overlap-tile prediction on the validation slices.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unetflow import omezarr
from unetflow.atomic import atomic_path, remove, temporary_sibling
from unetflow.augment import TileBatch, TileParams, TileSampler
from unetflow.checkpoint import load_checkpoint, save_checkpoint
from unetflow.config import TrainConfig
from unetflow.device import resolve_device
from unetflow.errors import InputError
from unetflow.logs import progress_bar
from unetflow.metrics import evaluate
from unetflow.model import UNet, UNetConfig
from unetflow.predict import predict_array
from unetflow.predict.sources import NORMALIZATION_POLICY
from unetflow.weights import decision_threshold

log = logging.getLogger(__name__)

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
STEP_COLUMNS = ("step", "loss", "lr", "step_time", "data_time")
VAL_COLUMNS = ("step", "val_loss", "val_iou", "val_pixel_error")


@dataclass
class TrainingData:
    """The slices of one role, in memory: normalised raw, binary labels (0/1) and the loss weights."""

    raw: np.ndarray
    labels: np.ndarray
    weights: np.ndarray


def load_slices(
    data: str | Path, weights: str | Path | None, slices: list[int], *, loss_weights: str = "border"
) -> TrainingData:
    """Read the chosen slices of an imported dataset (and its weight maps) into memory."""
    raw_array = omezarr.open_image(data)
    labels_array = omezarr.open_labels(data)
    if labels_array is None:
        raise InputError(
            f"{data} has no labels: training needs a volume with labels (config volumes.*.labels)"
        )
    if not slices:
        raise InputError(f"no slices selected for training/validation from {data}: check config split")
    mean, std = omezarr.normalization(data)
    raw = omezarr.normalize(np.stack([raw_array[i] for i in slices]), mean, std)
    labels = (np.stack([labels_array[i] for i in slices]) > 0).astype(np.uint8)
    if loss_weights == "none":
        weight = np.ones(labels.shape, dtype=np.float32)
    elif weights is None:
        raise InputError("train.loss_weights needs the weight maps: give the weights Zarr")
    elif loss_weights == "class":
        background, foreground = omezarr.read_attrs(weights)["class_weights"]
        weight = np.where(labels > 0, foreground, background).astype(np.float32)
    else:
        weight_array = omezarr.open_image(weights)
        weight = np.stack([weight_array[i] for i in slices]).astype(np.float32)
    return TrainingData(raw=raw, labels=labels, weights=weight)


def loss_threshold(weights: str | Path | None, loss_weights: str) -> float:
    """The segmentation threshold that matches the loss: it undoes the class weights (decision_threshold)."""
    if loss_weights == "none" or weights is None:
        return 0.5
    return decision_threshold(tuple(omezarr.read_attrs(weights)["class_weights"]))


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The paper's energy: pixel-wise softmax cross-entropy weighted by w(x), averaged over pixels."""
    return (F.cross_entropy(logits.float(), labels, reduction="none") * weights).mean()


class TrainingDivergedError(InputError):
    """The loss became NaN or infinite: the run cannot go on with these settings (the message says which)."""


def optimize_step(
    model: UNet,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: TileBatch,
    *,
    autocast: torch.dtype | None = None,
    memory_format: torch.memory_format | None = None,
    step: int = 0,
) -> float:
    """One step of the recipe on a batch: forward, weighted loss, backward, optimizer update; the loss.

    A loss that is not finite raises TrainingDivergedError before the weights change. The loss is read
    (one device sync) after the backward pass has been queued, not before it.
    """
    inputs = batch.raw.contiguous(memory_format=memory_format) if memory_format else batch.raw
    device_type = inputs.device.type
    with torch.autocast(device_type, dtype=autocast, enabled=autocast is not None):
        logits = model(inputs)
    loss = weighted_cross_entropy(logits, batch.labels, batch.weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"training diverged at step {step + 1} (loss {value}): lower train.lr, add train.warmup_steps "
            "or use train.optimizer: adam"
        )
    scaler.step(optimizer)
    scaler.update()
    return value


class BatchStream:
    """The run's training batches in order, each rendered one step ahead in a background thread.

    The random parameters of every batch are drawn here in the caller's thread, in sequence, from the
    sampler's generator (`TileSampler.draw`); only the rendering (`TileSampler.render`: grid sampling and
    gray values, no random numbers) runs in the background while the net trains on the previous batch.
    Torch ops release the GIL, so on the CPU the two overlap where compute leaves cores idle; on CUDA the
    rendering goes to a side stream. `resume_state` is the generator state to checkpoint: the state before
    the draw of the batch rendered ahead, so a resumed run draws that batch again and none is skipped.
    With `prefetch=False` each batch is drawn and rendered on demand (the same batches, in the same order).
    """

    def __init__(self, sampler: TileSampler, generator: torch.Generator, *, prefetch: bool = True) -> None:
        self.sampler = sampler
        self.generator = generator
        self._state = generator.get_state()
        self._ahead: Future[tuple[TileBatch, torch.cuda.Event | None]] | None = None
        self._executor = None
        if prefetch:  # the render thread uses as many torch threads as the caller (same numerics)
            self._executor = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix="unetflow-augment",
                initializer=torch.set_num_threads,
                initargs=(torch.get_num_threads(),),
            )
        self._stream = None
        if prefetch and sampler.device.type == "cuda":
            self._stream = torch.cuda.Stream(sampler.device)
            self._stream.wait_stream(torch.cuda.current_stream(sampler.device))

    def resume_state(self) -> torch.Tensor:
        """The sampler generator's state from which a resumed run draws the next batch not yet returned."""
        return self._state

    def next(self, *, ahead: bool = True) -> TileBatch:
        """The next batch in sequence; with prefetching (and `ahead`), start rendering the one after it."""
        if self._executor is None:
            batch = self.sampler.render(self.sampler.draw(self.generator))
        else:
            batch = self._collect(self._ahead if self._ahead is not None else self._submit())
            self._ahead = None
        self._state = self.generator.get_state()
        if self._executor is not None and ahead:
            self._ahead = self._submit()
        return batch

    def wait(self) -> None:
        """Block until the batch being rendered ahead, if any, is ready (benchmarks time whole steps so)."""
        if self._ahead is not None:
            _, event = self._ahead.result()
            if event is not None:
                event.synchronize()

    def close(self) -> None:
        """Wait for the batch being rendered ahead (it is discarded) and stop the background thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor, self._ahead = None, None

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit(self) -> Future[tuple[TileBatch, torch.cuda.Event | None]]:
        if self._executor is None:
            raise RuntimeError("the batch stream is closed")
        return self._executor.submit(self._render, self.sampler.draw(self.generator))

    def _render(self, params: TileParams) -> tuple[TileBatch, torch.cuda.Event | None]:
        with torch.no_grad():
            if self._stream is None:
                return self.sampler.render(params), None
            with torch.cuda.stream(self._stream):
                batch = self.sampler.render(params)
                event = torch.cuda.Event()
                event.record(self._stream)
            return batch, event

    def _collect(self, future: Future[tuple[TileBatch, torch.cuda.Event | None]]) -> TileBatch:
        batch, event = future.result()
        if event is not None:
            current = torch.cuda.current_stream(self.sampler.device)
            current.wait_event(event)
            for tensor in (batch.raw, batch.labels, batch.weights):
                tensor.record_stream(current)
        return batch


def build_optimizer(model: UNet, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's Caffe setting) or Adam."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A learning-rate factor per step: linear warm-up, then constant, cosine decay or step decay."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if config.schedule == "step":
            return 0.1 ** int(progress * 3)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fingerprint(*parts: Any) -> str:
    """A short hash of what defines a run, so a checkpoint of another run is never resumed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_state(sampler_state: torch.Tensor) -> dict[str, Any]:
    """Every random state training consumes: torch (CPU and CUDA; drop-out) and the tile sampler's."""
    state = {"torch": torch.get_rng_state(), "sampler": sampler_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def validate(
    model: UNet, data: TrainingData, *, device: torch.device, threshold: float = 0.5, memory_gb: float = 1.0
) -> dict[str, float]:
    """Whole-slice overlap-tile prediction of the validation slices: weighted loss, IoU and pixel error."""
    probs = predict_array(model, data.raw, mean=0.0, std=1.0, device=device, memory_gb=memory_gb)
    chosen = np.where(data.labels > 0, probs, 1.0 - probs)
    loss = float(np.mean(-np.log(np.clip(chosen, 1e-7, 1.0)) * data.weights))
    scores = [
        evaluate(p, t, threshold=threshold, include_warping=False)
        for p, t in zip(probs, data.labels, strict=True)
    ]
    model.train()
    return {
        "val_loss": loss,
        "val_iou": float(np.mean([s["iou"] for s in scores])),
        "val_pixel_error": float(np.mean([s["pixel_error"] for s in scores])),
    }


def remove_stale_temporaries(*paths: Path) -> None:
    """Delete the temporary siblings a killed run left beside `paths` (a write that never got renamed)."""
    for path in paths:
        prefix = temporary_sibling(path).name.rsplit("-", 1)[0] + "-"
        for stale in path.parent.glob(f"{prefix}*"):
            log.info("removing %s, left half-written by an interrupted run", stale)
            remove(stale)


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Write log rows as CSV atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def train(
    *,
    data: str | Path,
    weights: str | Path | None,
    train_slices: list[int],
    val_slices: list[int],
    model_config: UNetConfig,
    config: TrainConfig,
    workdir: str | Path,
    output: str | Path,
    step_log: str | Path,
    val_log: str | Path,
    progress: bool = True,
    stop_after: int | None = None,
    prefetch: bool | None = None,
) -> dict[str, Any]:
    """Train (or resume) and write the best checkpoint to `output` plus the step and validation CSV logs.

    `stop_after` ends the run after that many steps as if interrupted (tests of resume use it and SIGKILL).
    `prefetch` renders each batch one step ahead in a background thread (None: on CUDA only, where the CPU
    is otherwise idle while the GPU computes; on the CPU the net's ops already keep every core busy, so a
    render thread competes rather than overlaps: see benchmarks/train.py). The batches are the same either
    way, so it is not part of the run's identity and a run may resume with the other setting.
    """
    device = resolve_device(config.device)  # before anything is written: no GPU is one clear error
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    geometry = model_config.geometry
    out_size = geometry.valid_output(config.tile)
    in_size = geometry.input_for_output(out_size)
    train_data = load_slices(data, weights, train_slices, loss_weights=config.loss_weights)
    val_data = (
        load_slices(data, weights, val_slices, loss_weights=config.loss_weights) if val_slices else None
    )
    mean, std = omezarr.normalization(data)
    threshold = loss_threshold(weights, config.loss_weights)
    run_id = fingerprint(model_config.to_dict(), config.dump(), train_slices, val_slices, mean, std)

    torch.manual_seed(config.seed)
    model = UNet(model_config).to(device)
    memory_format = torch.channels_last if config.channels_last and device.type == "cuda" else None
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, config)
    schedule = build_schedule(optimizer, config)
    autocast = PRECISIONS[config.precision] if device.type == "cuda" else None
    scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = TileSampler(
        train_data.raw,
        train_data.labels,
        train_data.weights,
        input_size=in_size,
        output_size=out_size,
        config=config.augment,
        device=device,
        batch_size=config.batch_size,
    )

    latest, best_path = workdir / "latest.pt", workdir / "best.pt"
    remove_stale_temporaries(latest, best_path, Path(output), Path(step_log), Path(val_log))
    step, steps_log, val_rows, best = 0, [], [], -1.0
    state = load_checkpoint(latest, map_location=device) if latest.exists() else None
    if state is not None and state.get("run_id") == run_id:
        model.load_state_dict(state["model_state_dict"])
        optimizer.load_state_dict(state["optimizer_state_dict"])
        schedule.load_state_dict(state["scheduler_state_dict"])
        scaler.load_state_dict(state["scaler_state_dict"])
        restore_rng(state["rng"], generator)
        step, steps_log, val_rows, best = state["step"], state["step_log"], state["val_log"], state["best"]
        log.info("resuming from %s at step %d of %d", latest, step, config.steps)
    else:
        if state is not None:
            log.warning("%s belongs to another run (config or data changed): training from scratch", latest)
        remove(best_path)  # a best checkpoint of another run (or of one killed before its first checkpoint)

    def checkpoint(path: Path, **extra: Any) -> None:
        save_checkpoint(
            path,
            {
                "model_state_dict": model.state_dict(),
                "model_config": model_config.to_dict(),
                "train_config": config.dump(),
                "run_id": run_id,
                "step": step,
                "tile": {"input": in_size, "output": out_size},
                "threshold": threshold,
                "normalization": {"policy": NORMALIZATION_POLICY, "mean": mean, "std": std},
                **extra,
            },
        )

    model.train()
    last = config.steps if stop_after is None else min(config.steps, stop_after)
    bar = progress_bar(total=config.steps, initial=step, desc="train", unit="step", disable=not progress)
    ahead = prefetch if prefetch is not None else device.type == "cuda"
    with BatchStream(sampler, generator, prefetch=ahead and step < last) as batches:
        while step < last:
            started = time.perf_counter()
            batch = batches.next(ahead=step + 1 < last)
            data_time = time.perf_counter() - started
            loss = optimize_step(
                model, optimizer, scaler, batch, autocast=autocast, memory_format=memory_format, step=step
            )
            lr = optimizer.param_groups[0]["lr"]
            schedule.step()
            step += 1
            steps_log.append(
                {
                    "step": step,
                    "loss": loss,
                    "lr": lr,
                    "step_time": time.perf_counter() - started,
                    "data_time": data_time,
                }
            )
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(1)
            if val_data is not None and (step % config.val_every == 0 or step == config.steps):
                scores = validate(model, val_data, device=device, threshold=threshold)
                val_rows.append({"step": step, **scores})
                bar.write(
                    f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), file=sys.stderr
                )
                if scores["val_iou"] >= best:
                    best = scores["val_iou"]
                    checkpoint(best_path, metrics=scores)
            if step % config.checkpoint_every == 0 or step == config.steps:
                checkpoint(
                    latest,
                    optimizer_state_dict=optimizer.state_dict(),
                    scheduler_state_dict=schedule.state_dict(),
                    scaler_state_dict=scaler.state_dict(),
                    rng=rng_state(batches.resume_state()),
                    step_log=steps_log,
                    val_log=val_rows,
                    best=best,
                )
    bar.close()
    if step < config.steps:
        return {"step": step, "finished": False}
    if not best_path.exists():
        checkpoint(best_path, metrics={})
    final = load_checkpoint(best_path)
    save_checkpoint(output, final)
    write_csv(Path(step_log), STEP_COLUMNS, steps_log)
    write_csv(Path(val_log), VAL_COLUMNS, val_rows)
    return {"step": step, "finished": True, "best_step": final["step"], **final.get("metrics", {})}
