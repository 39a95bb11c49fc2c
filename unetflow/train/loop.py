"""Training to the paper's recipe: augmented tiles, weighted softmax cross-entropy, SGD momentum 0.99.

A run trains on one or several sources (unetflow.train.sources: volumes or annotated regions of them),
drawing tiles in proportion to their annotated area, and validates on each source's validation slices,
per source and pooled. It starts from random weights, or from a trained model (`train.init_from`,
fine-tuning: that model's net and weights, a fresh optimizer). The run is a `TrainingRun` taken through
named steps: `setup`, `resume`, `run_steps` (with `validate_sources` and the checkpoints) and `finish`;
the batches come from unetflow.train.batches, the optimizer, schedule and precision from
unetflow.train.optimization, the validation scores from unetflow.train.validation.

Checkpoints (model, optimizer, scheduler, scaler, every RNG state, the step and the log so far) are written
atomically every N steps; a re-run resumes from the latest one and, on the CPU, ends bit-identical to an
uninterrupted run (even after a SIGKILL) as long as torch uses the same number of CPU threads (reductions
split by thread count). The random parameters of each batch are drawn in sequence in the main thread; on
CUDA the tile rendering itself runs one step ahead in a background thread on a side stream, so augmentation
overlaps the net's compute. Validation runs whole-slice overlap-tile prediction on the validation slices.

Several GPUs of a node (`train.gpus`), or CPU processes (`train.cpu_processes`), train one run with
DistributedDataParallel: `train` launches the processes and each runs these same steps with its `Parallel`
(unetflow.train.distributed says what changes with N and what does not). One process is unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from unetflow.atomic import atomic_path, remove, temporary_sibling
from unetflow.config.model import TrainConfig
from unetflow.data import alignment, omezarr
from unetflow.device import resolve_device
from unetflow.errors import InputError
from unetflow.geometry import NetGeometry
from unetflow.layout import checkpoint
from unetflow.logs import progress_bar
from unetflow.model import loss
from unetflow.model.checkpoint import load_checkpoint, save_checkpoint
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict.sources import NORMALIZATION_POLICY
from unetflow.train import distributed
from unetflow.train.augment import TileBatch, TileSampler
from unetflow.train.augment3d import VolumeTileSampler, tile_sampler
from unetflow.train.batches import BatchStream
from unetflow.train.distributed import SINGLE, Parallel
from unetflow.train.optimization import build_optimization, build_optimizer, build_schedule
from unetflow.train.sources import (
    TrainingData,
    TrainingSource,
    check_training_data,
    count_classes,
    load_role,
    load_slices,
)
from unetflow.train.validation import VAL_COLUMNS, VAL_SCORES, validate, validate_per_source

log = logging.getLogger(__name__)

STEP_COLUMNS = ("step", "loss", "lr", "step_time", "data_time", "processes")

__all__ = [
    "STEP_COLUMNS",
    "VAL_COLUMNS",
    "BatchStream",
    "TrainConfig",
    "TrainingData",
    "TrainingDivergedError",
    "TrainingRun",
    "TrainingSource",
    "build_optimizer",
    "build_schedule",
    "load_slices",
    "train",
    "validate",
    "weighted_cross_entropy",
]


class TrainingDivergedError(InputError):
    """The loss became NaN or infinite: the run cannot go on with these settings (the message says which)."""


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The paper's energy (eq. 1): pixel-wise softmax cross-entropy weighted by w(x), averaged over pixels;
    the weights of every loss mode come from unetflow.model.loss."""
    return (functional.cross_entropy(logits.float(), labels, reduction="none") * weights).mean()


def optimize_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: TileBatch,
    *,
    autocast: torch.dtype | None = None,
    memory_format: torch.memory_format | None = None,
    step: int = 0,
    parallel: Parallel = SINGLE,
) -> float:
    """One step of the recipe on a batch: forward, weighted loss, backward, optimizer update; the loss.

    A loss that is not finite raises TrainingDivergedError before the weights change. The loss is read
    (one device sync) after the backward pass has been queued, not before it. With several processes
    `model` is the DDP-wrapped net and the loss returned is the mean over the processes (every process
    sees the same value, so all of them stop together on a divergence).
    """
    inputs = batch.raw.contiguous(memory_format=memory_format) if memory_format else batch.raw
    device_type = inputs.device.type
    with torch.autocast(device_type, dtype=autocast, enabled=autocast is not None):
        logits = model(inputs)
    loss = weighted_cross_entropy(logits, batch.labels, batch.weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    value = parallel.mean(loss.detach()).item()
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"training diverged at step {step + 1} (loss {value}): lower train.lr, add train.warmup_steps "
            "or use train.optimizer: adam"
        )
    scaler.step(optimizer)
    scaler.update()
    return value


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


def init_identity(path: str | Path | None) -> dict[str, Any] | None:
    """What a fine-tuning run starts from, for its fingerprint and its record (None: random weights)."""
    if path is None:
        return None
    from unetflow.data.download import sha256_of

    target = Path(path)
    checksum = sha256_of(target) if target.is_file() else None
    return {"path": str(target), "sha256": checksum}


def read_init(path: str | Path, model_config: UNetConfig) -> dict[str, Any]:
    """The checkpoint a fine-tuning run starts from; another net than `model_config`, or another
    normalisation policy than this training's, is an InputError."""
    state = load_checkpoint(path)
    recorded = UNetConfig(**state["model_config"])
    if recorded != model_config:
        raise InputError(
            f"train.init_from {path} is a net {recorded}, not the {model_config} this run was set up for; "
            "take the net from the checkpoint (unetflow.model.checkpoint.init_architecture)"
        )
    policy = (state.get("normalization") or {}).get("policy", NORMALIZATION_POLICY)
    if policy != NORMALIZATION_POLICY:
        raise InputError(
            f"train.init_from {path} was trained on images normalised as {policy!r}; fine-tuning here "
            f"normalises as {NORMALIZATION_POLICY!r}: start from a unetflow model"
        )
    return state


def align_training_data(train_data: Sequence[TrainingData]) -> tuple[float, float]:
    """Measure the training labels' offset from the raw image's boundaries and move the training raw onto
    the labels (in place); the offset, which prediction (validation included) applies to its input."""
    offset = alignment.estimate_label_offset((data.raw, data.labels, data.unannotated) for data in train_data)
    log.info(
        "label offset (train.label_offset auto): the training labels lie (%+.2f, %+.2f) px (y, x) from the "
        "raw image's boundaries; the raw is moved onto them in training and prediction",
        *offset,
    )
    for data in train_data:
        data.raw = alignment.move(data.raw, offset)
    return offset


def loss_class_weights(sources: Sequence[TrainingSource], mode: str) -> tuple[float, float] | None:
    """The class weights of the loss (None without them); the weight maps of every source must agree."""
    if not loss.uses_class_weights(mode):
        return None
    found = {source.name: loss.class_weights_of(source.weights) for source in sources if source.weights}
    if len(set(found.values())) > 1:
        raise InputError(
            f"the weight maps of the sources were made with different class weights ({found}); compute them "
            "again from one class balance (the workflow's class_balance and weights rules)"
        )
    return next(iter(found.values()), None)


def normalization_record(sources: Sequence[TrainingSource]) -> dict[str, Any]:
    """What a checkpoint records of the normalisation: the policy (each volume z-scored with its own
    statistics), the first source's mean and std, and with several sources each one's."""
    stats = {source.name: omezarr.normalization(source.data) for source in sources}
    mean, std = stats[sources[0].name]
    policy = omezarr.normalization_policy(sources[0].data, NORMALIZATION_POLICY)
    record: dict[str, Any] = {"policy": policy, "mean": mean, "std": std}
    if len(sources) > 1:
        record["sources"] = {name: {"mean": m, "std": s} for name, (m, s) in stats.items()}
    return record


@dataclass
class TrainingRun:
    """The state of one training run between its named steps (`setup`, `resume`, `run_steps`, `finish`)."""

    sources: list[TrainingSource]
    model_config: UNetConfig
    config: TrainConfig
    workdir: Path
    output: Path
    step_log: Path
    val_log: Path
    device: torch.device
    in_size: int
    out_size: int
    tile_z: tuple[int, int] | None
    train_data: list[TrainingData]
    val_data: list[TrainingData]
    threshold: float
    run_id: str
    normalization: dict[str, Any]
    init: dict[str, Any] | None
    model: UNet
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    sampler: TileSampler | VolumeTileSampler
    autocast: torch.dtype | None
    memory_format: torch.memory_format | None
    step: int = 0
    steps_log: list[dict[str, Any]] = field(default_factory=list)
    val_rows: list[dict[str, Any]] = field(default_factory=list)
    best: float = -1.0
    parallel: Parallel = SINGLE

    @property
    def latest(self) -> Path:
        """The resumable checkpoint."""
        return checkpoint(self.workdir, "latest")

    @property
    def best_path(self) -> Path:
        """The checkpoint of the best validation IoU so far."""
        return checkpoint(self.workdir, "best")

    @property
    def val_columns(self) -> tuple[str, ...]:
        """The validation log's columns: the pooled scores, then each source's where there are several."""
        names = list(dict.fromkeys(data.name for data in self.val_data))
        per_source = [f"{key}:{name}" for name in names for key in VAL_SCORES] if len(names) > 1 else []
        return (*VAL_COLUMNS, *per_source)


def read_training_data(
    sources: Sequence[TrainingSource], config: TrainConfig, *, net: NetGeometry, tile: int
) -> tuple[list[TrainingData], list[TrainingData], float, tuple[float, float]]:
    """Check the sources' training slices (`tile`: the output tile) and read every source's training and
    validation data; those, the loss's threshold and the label offset (moved onto, with `auto`)."""
    counts = {
        source.name: count_classes(source.data, source.train, rows=source.rows, columns=source.columns)
        for source in sources
        if source.train
    }
    check_training_data(counts, tile=tile)
    mode = config.loss_weights
    train_data = [data for s in sources for data in load_role(s, "train", loss_weights=mode, net=net)]
    val_data = [data for s in sources for data in load_role(s, "val", loss_weights=mode, net=net)]
    threshold = loss.loss_threshold(mode, loss_class_weights(sources, mode))
    label_offset = align_training_data(train_data) if config.label_offset == "auto" else alignment.NO_OFFSET
    return train_data, val_data, threshold, label_offset


def build_net(
    model_config: UNetConfig,
    *,
    seed: int,
    device: torch.device,
    label_offset: tuple[float, float],
    init: str | Path | None,
    init_state: dict[str, Any] | None,
    init_record: dict[str, Any] | None,
) -> tuple[UNet, dict[str, Any] | None]:
    """The net, random from `seed` or with the weights of the model fine-tuned (`init_state`); the record
    of what it starts from, completed with that model's step, run and metrics."""
    torch.manual_seed(seed)
    model = UNet(model_config).to(device)
    model.label_offset = label_offset
    if init_state is not None:
        model.load_state_dict(init_state["model_state_dict"])
        init_record = {
            **(init_record or {}),
            "step": init_state.get("step"),
            "run_id": init_state.get("run_id"),
            "metrics": init_state.get("metrics", {}),
        }
        log.info(
            "fine-tuning: starting from %s (sha256 %s, step %s of its run), a fresh optimizer",
            init,
            (init_record.get("sha256") or "?")[:12],
            init_record["step"],
        )
    return model, init_record


def build_sampler(
    net: NetGeometry, train_data: list[TrainingData], config: TrainConfig, *, device: torch.device, data: Path
) -> TileSampler | VolumeTileSampler:
    """The run's tile sampler (the paper's augmentation); a 3-D one steps along z by the voxel aspect of
    the first source's volume (`data`)."""
    voxel = omezarr.voxel_size(data)
    return tile_sampler(
        net,
        train_data,
        tile=config.tile,
        config=config.augment,
        device=device,
        batch_size=config.batch_size,
        step=voxel[0] / voxel[1],
    )


def setup(
    *,
    sources: Sequence[TrainingSource],
    model_config: UNetConfig,
    config: TrainConfig,
    workdir: str | Path,
    output: str | Path,
    step_log: str | Path,
    val_log: str | Path,
    init: str | Path | None = None,
    parallel: Parallel = SINGLE,
) -> TrainingRun:
    """Read the data, check it, build the net (random, or the fine-tuned model's), optimizer and sampler."""
    # before anything is written: no GPU is one clear error
    device = distributed.device_of(resolve_device(config.device), parallel)
    if not sources or not any(source.train for source in sources):
        raise InputError('no training slices: give the split some, e.g. train: "0-9"')
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    net = model_config.net_geometry
    (in_z, out_z), (in_size, out_size) = net.training_tile(config.tile)
    train_data, val_data, threshold, label_offset = read_training_data(
        sources, config, net=net, tile=out_size
    )
    init_state = read_init(init, model_config) if init is not None else None
    init_record = init_identity(init)
    run_id = fingerprint(
        model_config.to_dict(),
        distributed.identity(config.dump()),
        [source.identity() for source in sources],
        init_record,
    )
    normalization = normalization_record(sources)

    model, init_record = build_net(
        model_config,
        seed=config.seed,
        device=device,
        label_offset=label_offset,
        init=init,
        init_state=init_state,
        init_record=init_record,
    )
    distributed.seed_process(config.seed, parallel)
    optimization = build_optimization(model, config, device=device, dims=net.dims)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = build_sampler(net, train_data, config, device=device, data=sources[0].data)
    return TrainingRun(
        sources=list(sources),
        model_config=model_config,
        config=config,
        workdir=workdir,
        output=Path(output),
        step_log=Path(step_log),
        val_log=Path(val_log),
        device=device,
        in_size=in_size,
        out_size=out_size,
        tile_z=(in_z, out_z) if net.dims == 3 else None,
        train_data=train_data,
        val_data=val_data,
        threshold=threshold,
        run_id=run_id,
        normalization=normalization,
        init=init_record,
        model=optimization.model,
        optimizer=optimization.optimizer,
        schedule=optimization.schedule,
        scaler=optimization.scaler,
        generator=generator,
        sampler=sampler,
        autocast=optimization.autocast,
        memory_format=optimization.memory_format,
        parallel=parallel,
    )


def resume(run: TrainingRun) -> None:
    """Continue from the latest checkpoint of this same run, if any; else start afresh (no stale best)."""
    if run.parallel.main:
        remove_stale_temporaries(run.latest, run.best_path, run.output, run.step_log, run.val_log)
    state = load_checkpoint(run.latest, map_location=run.device) if run.latest.exists() else None
    if state is not None and state.get("run_id") == run.run_id:
        run.model.load_state_dict(state["model_state_dict"])
        run.optimizer.load_state_dict(state["optimizer_state_dict"])
        run.schedule.load_state_dict(state["scheduler_state_dict"])
        run.scaler.load_state_dict(state["scaler_state_dict"])
        restore_rng(state["rng"], run.generator)
        distributed.restore_process_rng(state["rng"].get("processes"), run.parallel, run.config.seed)
        run.step, run.steps_log, run.val_rows = state["step"], state["step_log"], state["val_log"]
        run.best = state["best"]
        log.info("resuming from %s at step %d of %d", run.latest, run.step, run.config.steps)
        return
    if state is not None:
        log.warning("%s belongs to another run (config or data changed): training from scratch", run.latest)
    if run.parallel.main:  # a best checkpoint of another run (or of one killed before its first checkpoint)
        remove(run.best_path)


def save(run: TrainingRun, path: Path, **extra: Any) -> None:
    """Write a checkpoint of the run's model with everything prediction and provenance need."""
    save_checkpoint(
        path,
        {
            "model_state_dict": run.model.state_dict(),
            "model_config": run.model_config.to_dict(),
            "train_config": run.config.dump(),
            "run_id": run.run_id,
            "step": run.step,
            "tile": {"input": run.in_size, "output": run.out_size, **_depth_of(run.tile_z)},
            "threshold": run.threshold,
            "label_offset": [float(value) for value in run.model.label_offset],
            "normalization": run.normalization,
            "processes": run.parallel.size,
            "training_sources": [_describe(source) for source in run.sources],
            **({"init_from": run.init} if run.init is not None else {}),
            **extra,
        },
    )


def _depth_of(tile_z: tuple[int, int] | None) -> dict[str, int]:
    """A 3-D net's training tile along z, for the checkpoint's record (nothing for a 2-D net)."""
    return {} if tile_z is None else {"input_z": tile_z[0], "output_z": tile_z[1]}


def _describe(source: TrainingSource) -> dict[str, Any]:
    return {
        "name": source.name,
        "data": str(source.data),
        "train": source.train,
        "val": source.val,
        "rows": None if source.rows is None else list(source.rows),
        "columns": None if source.columns is None else list(source.columns),
    }


def save_resumable(run: TrainingRun, batches: BatchStream) -> None:
    """The latest checkpoint: the model and everything a resumed run needs to continue bit-identically.

    With several processes every one of them takes part (their random states are gathered), process 0
    writes it."""
    rng = rng_state(batches.resume_state())
    if run.parallel.active:
        rng["processes"] = run.parallel.gather(distributed.process_rng())
    if not run.parallel.main:
        return
    save(
        run,
        run.latest,
        optimizer_state_dict=run.optimizer.state_dict(),
        scheduler_state_dict=run.schedule.state_dict(),
        scaler_state_dict=run.scaler.state_dict(),
        rng=rng,
        step_log=run.steps_log,
        val_log=run.val_rows,
        best=run.best,
    )


def validate_sources(run: TrainingRun) -> dict[str, float]:
    """Validate on every source's validation slices; keep the best checkpoint by pooled IoU; the scores."""
    per_source, scores = validate_per_source(
        run.model, run.val_data, device=run.device, threshold=run.threshold
    )
    row = {"step": run.step, **scores}
    if len(per_source) > 1:
        row.update({f"{key}:{name}": value for name, s in per_source.items() for key, value in s.items()})
    run.val_rows.append(row)
    if scores["val_iou"] >= run.best:
        run.best = scores["val_iou"]
        save(run, run.best_path, metrics=scores)
    return scores


def run_steps(
    run: TrainingRun, *, stop_after: int | None = None, progress: bool = True, prefetch: bool | None = None
) -> None:
    """The step loop up to `stop_after` (default: the end): optimize, log, validate and checkpoint.

    With several processes each trains its share of every batch; process 0 alone validates, keeps the
    best checkpoint and shows the progress."""
    config, parallel = run.config, run.parallel
    last = config.steps if stop_after is None else min(config.steps, stop_after)
    run.model.train()
    net = distributed.wrap(run.model, parallel, run.device)
    shown = progress and parallel.main
    bar = progress_bar(total=config.steps, initial=run.step, desc="train", unit="step", disable=not shown)
    ahead = prefetch if prefetch is not None else run.device.type == "cuda"
    sampler = distributed.sharded(run.sampler, parallel)
    with BatchStream(sampler, run.generator, prefetch=ahead and run.step < last) as batches:
        while run.step < last:
            started = time.perf_counter()
            batch = batches.next(ahead=run.step + 1 < last)
            data_time = time.perf_counter() - started
            value = optimize_step(
                net,
                run.optimizer,
                run.scaler,
                batch,
                autocast=run.autocast,
                memory_format=run.memory_format,
                step=run.step,
                parallel=parallel,
            )
            lr = run.optimizer.param_groups[0]["lr"]
            run.schedule.step()
            run.step += 1
            run.steps_log.append(
                {
                    "step": run.step,
                    "loss": value,
                    "lr": lr,
                    "step_time": time.perf_counter() - started,
                    "data_time": data_time,
                    "processes": parallel.size,
                }
            )
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            bar.update(1)
            if (
                run.val_data
                and parallel.main
                and (run.step % config.val_every == 0 or run.step == config.steps)
            ):
                scores = validate_sources(run)
                bar.write(
                    f"step {run.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()),
                    file=sys.stderr,
                )
            if run.step % config.checkpoint_every == 0 or run.step == config.steps:
                save_resumable(run, batches)
    bar.close()


def finish(run: TrainingRun) -> dict[str, Any]:
    """After the last step: the best checkpoint becomes the output, the logs are written; the summary."""
    if run.step < run.config.steps:
        return {"step": run.step, "finished": False}
    if not run.parallel.main:
        return {"step": run.step, "finished": True}
    if not run.best_path.exists():
        save(run, run.best_path, metrics={})
    final = load_checkpoint(run.best_path)
    save_checkpoint(run.output, final)
    write_csv(run.step_log, STEP_COLUMNS, run.steps_log)
    write_csv(run.val_log, run.val_columns, run.val_rows)
    return {"step": run.step, "finished": True, "best_step": final["step"], **final.get("metrics", {})}


def train(
    *,
    sources: Sequence[TrainingSource] | None = None,
    data: str | Path | None = None,
    weights: str | Path | None = None,
    train_slices: Sequence[int] = (),
    val_slices: Sequence[int] = (),
    model_config: UNetConfig,
    config: TrainConfig,
    workdir: str | Path,
    output: str | Path,
    step_log: str | Path,
    val_log: str | Path,
    init: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    prefetch: bool | None = None,
    parallel: Parallel | None = None,
) -> dict[str, Any]:
    """Train (or resume) and write the best checkpoint to `output` plus the step and validation CSV logs.

    `sources` are the training data (unetflow.train.sources.resolve_sources); one whole volume may be
    given as `data` (an imported OME-Zarr), `weights` (its weight maps) and its `train_slices` and
    `val_slices` instead. `init` is a trained model to fine-tune (its net must be `model_config`:
    unetflow.model.checkpoint.init_architecture). `stop_after` ends
    the run after that many steps as if interrupted (tests of resume use it and SIGKILL). `prefetch`
    renders each batch one step ahead in a background thread (None: on CUDA only, where the CPU is
    otherwise idle while the GPU computes; on the CPU the net's ops already keep every core busy, so a
    render thread competes rather than overlaps: see benchmarks/train.py). The batches are the same either
    way, so it is not part of the run's identity and a run may resume with the other setting.

    Where `config` asks for several processes (`train.gpus`, `train.cpu_processes`), this call checks the
    request, launches them (each calls `train` with its `parallel`) and returns process 0's summary.
    """
    if (sources is None) == (data is None):
        raise ValueError("give the training data as sources, or as one volume's data and slices")
    if sources is None:
        whole = TrainingSource(
            name=Path(str(data)).stem,
            data=Path(str(data)),
            weights=None if weights is None else Path(weights),
            train=list(train_slices),
            val=list(val_slices),
        )
        sources = [whole]
    arguments = {
        "sources": sources,
        "model_config": model_config,
        "config": config,
        "workdir": workdir,
        "output": output,
        "step_log": step_log,
        "val_log": val_log,
        "init": init,
        "progress": progress,
        "stop_after": stop_after,
        "prefetch": prefetch,
    }
    if parallel is None:
        processes = distributed.process_count(config)  # before anything is written
        if processes > 1:
            return distributed.launch(train, arguments, processes=processes, config=config)
        parallel = SINGLE
    run = setup(
        sources=sources,
        model_config=model_config,
        config=config,
        workdir=workdir,
        output=output,
        step_log=step_log,
        val_log=val_log,
        init=init,
        parallel=parallel,
    )
    resume(run)
    run_steps(run, stop_after=stop_after, progress=progress, prefetch=prefetch)
    return finish(run)
