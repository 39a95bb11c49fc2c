"""Training to the paper's recipe: augmented tiles, weighted softmax cross-entropy, SGD momentum 0.99.

Checkpoints (model, optimizer, scheduler, scaler, every RNG state, the step and the log so far) are written
atomically every N steps; a re-run resumes from the latest one and, on the CPU, ends bit-identical to an
uninterrupted run. Validation runs whole-slice overlap-tile prediction on the validation slices.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from unetflow import omezarr
from unetflow.atomic import atomic_path
from unetflow.augment import AugmentConfig, TileSampler
from unetflow.checkpoint import load_checkpoint, save_checkpoint
from unetflow.device import resolve_device
from unetflow.errors import InputError
from unetflow.metrics import evaluate
from unetflow.model import UNet, UNetConfig
from unetflow.predict import predict_array

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")
LOSS_WEIGHTS = ("border", "class", "none")
STEP_COLUMNS = ("step", "loss", "lr", "step_time", "data_time")
VAL_COLUMNS = ("step", "val_loss", "val_iou", "val_pixel_error")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run besides the network and the data."""

    steps: int = 1000
    tile: int = 388
    batch_size: int = 1
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    seed: int = 0
    checkpoint_every: int = 100
    val_every: int = 100
    device: str = "auto"
    precision: str = "float32"
    channels_last: bool = True
    loss_weights: str = "border"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        checks = {
            "optimizer": (self.optimizer, OPTIMIZERS),
            "schedule": (self.schedule, SCHEDULES),
            "loss_weights": (self.loss_weights, LOSS_WEIGHTS),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise InputError(f"train.{key}: {value!r} is not one of {', '.join(allowed)}")
        for key in ("steps", "tile", "batch_size", "checkpoint_every", "val_every"):
            if getattr(self, key) < 1:
                raise InputError(f"train.{key} must be >= 1, got {getattr(self, key)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a config mapping (the workflow's `train:` section); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown train option(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "augment" in values and isinstance(values["augment"], dict):
            values["augment"] = AugmentConfig(**values["augment"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for checkpoints and logs."""
        return asdict(self)


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


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The paper's energy: pixel-wise softmax cross-entropy weighted by w(x), averaged over pixels."""
    return (F.cross_entropy(logits.float(), labels, reduction="none") * weights).mean()


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


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state training consumes: torch (CPU and CUDA) and the tile sampler's generator."""
    state = {"torch": torch.get_rng_state(), "sampler": generator.get_state()}
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
    model: UNet, data: TrainingData, *, device: torch.device, memory_gb: float = 1.0
) -> dict[str, float]:
    """Whole-slice overlap-tile prediction of the validation slices: weighted loss, IoU and pixel error."""
    probs = predict_array(model, data.raw, mean=0.0, std=1.0, device=device, memory_gb=memory_gb)
    chosen = np.where(data.labels > 0, probs, 1.0 - probs)
    loss = float(np.mean(-np.log(np.clip(chosen, 1e-7, 1.0)) * data.weights))
    scores = [evaluate(p, t, include_warping=False) for p, t in zip(probs, data.labels, strict=True)]
    model.train()
    return {
        "val_loss": loss,
        "val_iou": float(np.mean([s["iou"] for s in scores])),
        "val_pixel_error": float(np.mean([s["pixel_error"] for s in scores])),
    }


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
) -> dict[str, Any]:
    """Train (or resume) and write the best checkpoint to `output` plus the step and validation CSV logs.

    `stop_after` ends the run after that many steps as if interrupted (tests of resume use it and SIGKILL).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    geometry = model_config.geometry
    out_size = geometry.valid_output(config.tile)
    in_size = geometry.input_for_output(out_size)
    train_data = load_slices(data, weights, train_slices, loss_weights=config.loss_weights)
    val_data = (
        load_slices(data, weights, val_slices, loss_weights=config.loss_weights) if val_slices else None
    )
    mean, std = omezarr.normalization(data)
    run_id = fingerprint(model_config.to_dict(), config.to_dict(), train_slices, val_slices, mean, std)

    torch.manual_seed(config.seed)
    model = UNet(model_config).to(device)
    memory_format = torch.channels_last if config.channels_last and device.type == "cuda" else None
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, config)
    schedule = build_schedule(optimizer, config)
    autocast = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(config.precision)
    if config.precision not in ("float32", "bfloat16", "float16"):
        raise InputError(f"train.precision {config.precision!r} is not one of float32, bfloat16, float16")
    use_autocast = autocast is not None and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_autocast and autocast == torch.float16)
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
    step, steps_log, val_rows, best = 0, [], [], -1.0
    if latest.exists():
        state = load_checkpoint(latest, map_location=device)
        if state.get("run_id") == run_id:
            model.load_state_dict(state["model_state_dict"])
            optimizer.load_state_dict(state["optimizer_state_dict"])
            schedule.load_state_dict(state["scheduler_state_dict"])
            scaler.load_state_dict(state["scaler_state_dict"])
            restore_rng(state["rng"], generator)
            step, steps_log, val_rows, best = (
                state["step"],
                state["step_log"],
                state["val_log"],
                state["best"],
            )
            log.info("resuming from %s at step %d of %d", latest, step, config.steps)
        else:
            log.warning("%s belongs to another run (config or data changed): training from scratch", latest)

    def checkpoint(path: Path, **extra: Any) -> None:
        save_checkpoint(
            path,
            {
                "model_state_dict": model.state_dict(),
                "model_config": model_config.to_dict(),
                "train_config": config.to_dict(),
                "run_id": run_id,
                "step": step,
                "tile": {"input": in_size, "output": out_size},
                **extra,
            },
        )

    model.train()
    last = config.steps if stop_after is None else min(config.steps, stop_after)
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", disable=not progress)
    while step < last:
        started = time.perf_counter()
        batch = sampler.sample(generator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        data_time = time.perf_counter() - started
        inputs = batch.raw.contiguous(memory_format=memory_format) if memory_format else batch.raw
        with torch.autocast(device.type, dtype=autocast, enabled=use_autocast):
            logits = model(inputs)
        loss = weighted_cross_entropy(logits, batch.labels, batch.weights)
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"training diverged at step {step} (loss {loss.item()}): lower train.lr or use Adam"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        step += 1
        loss_value = loss.item()
        steps_log.append(
            {
                "step": step,
                "loss": loss_value,
                "lr": lr,
                "step_time": time.perf_counter() - started,
                "data_time": data_time,
            }
        )
        bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.update(1)
        if val_data is not None and (step % config.val_every == 0 or step == config.steps):
            scores = validate(model, val_data, device=device)
            val_rows.append({"step": step, **scores})
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
            if scores["val_iou"] >= best:
                best = scores["val_iou"]
                checkpoint(best_path, metrics=scores)
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint(
                latest,
                optimizer_state_dict=optimizer.state_dict(),
                scheduler_state_dict=schedule.state_dict(),
                scaler_state_dict=scaler.state_dict(),
                rng=rng_state(generator),
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
