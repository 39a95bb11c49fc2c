"""Which lever buys the most validation IoU per CPU minute? The ISBI CPU recipe with one change per run.

Every lever trains configs/isbi2012-cpu.yaml's net and data with one change, for the same wall-clock budget,
on this machine, one after another. Equal wall time: a lever first times `--calibrate` steps (after one
warm-up step) to learn its seconds per step, then trains budget / (seconds per step) steps with its learning
rate annealed over exactly those steps (the recipe's cosine reaches 0 at the budget), and validates on the
config's validation slices at every `--marks`-th of them (validation time is not counted). Printed per lever:
its steps, labelled output pixels trained on per second, the training minutes it really took, validation IoU
and pixel error at each mark, and the best. `--tta` then predicts the validation slices with the baseline's
best weights with and without the 8 flips and rotations.

Prepare the data once, then run from the repo root (about 11 minutes per lever at --minutes 10):
  snakemake results/weights/isbi2012.zarr --cores 2 --configfile configs/isbi2012-cpu.yaml
  .venv/bin/python benchmarks/levers.py --minutes 10 --tta
`--test` also scores each lever's best weights on the config's held-out test slices; `context slices 1`
gives the 2-D net the slice above and below as channels (configs/isbi2012-context-cpu.yaml):
  .venv/bin/python benchmarks/levers.py --minutes 10 --levers baseline "context slices 1" --test
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetflow.config.load import load_config_files
from unetflow.config.model import ModelConfig, TrainConfig
from unetflow.config.slices import select_slices
from unetflow.config.split import split_entries
from unetflow.data import omezarr
from unetflow.data.alignment import recorded_offset
from unetflow.model.checkpoint import load_checkpoint
from unetflow.model.unet import UNet, UNetConfig
from unetflow.train.loop import BatchStream, TrainingRun, optimize_step, run_steps, setup, validate
from unetflow.train.sources import load_role, resolve_sources


@dataclass(frozen=True)
class Lever:
    """One change to the recipe: config overrides and the CPU memory format."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    channels_last: bool = False


LEVERS = {
    lever.name: lever
    for lever in (
        Lever("baseline"),
        Lever("tile 388", train={"tile": 388}),
        Lever("tile 292", train={"tile": 292}),
        Lever("depth 3, 24 channels", model={"depth": 3, "base_channels": 24}),
        Lever("lr 0.003", train={"lr": 0.003, "warmup_steps": 100}),
        Lever("no weight map", train={"loss_weights": "none"}),
        Lever("tile 388, lr 0.002", train={"tile": 388, "lr": 0.002, "warmup_steps": 50}),
        Lever("batch norm", model={"norm": "batch"}),
        Lever("batch norm, lr 0.003", model={"norm": "batch"}, train={"lr": 0.003, "warmup_steps": 100}),
        Lever("no dropout", model={"dropout": 0.0}),
        Lever("batch norm, no dropout", model={"norm": "batch", "dropout": 0.0}),
        Lever("no elastic deformation", train={"augment": {"elastic_std": 0.0}}),
        Lever("no flips or rotations", train={"augment": {"flip": False, "rotate": False}}),
        Lever("label alignment", train={"label_offset": "auto"}),
        Lever("no label alignment", train={"label_offset": "none"}),
        Lever("24 channels", model={"base_channels": 24}),
        Lever("batch 2", train={"batch_size": 2}),
        Lever("lr 0.0005", train={"lr": 0.0005}),
        Lever("context slices 1", model={"context_slices": 1}),
        Lever("context slices 2", model={"context_slices": 2}),
    )
}
DEFAULT_LEVERS = ["baseline", "tile 388", "depth 3, 24 channels", "lr 0.003"]


def build(
    lever: Lever, base: Any, sources: list[Any], workdir: Path, *, steps: int, marks: int
) -> TrainingRun:
    """A training run of the recipe changed by `lever`, annealed over `steps`, validating `marks` times."""
    model = ModelConfig.from_dict({**base.model.dump(), **lever.model})
    recipe = base.train.dump()
    changes = {
        key: {**recipe[key], **value} if isinstance(value, dict) else value
        for key, value in lever.train.items()
    }
    train = TrainConfig.from_dict(
        {
            **recipe,
            **changes,
            "steps": steps,
            "val_every": max(1, steps // marks),
            "checkpoint_every": steps,
            "device": "cpu",
        }
    )
    run = setup(
        sources=sources,
        model_config=UNetConfig.from_section(model),
        config=train,
        workdir=workdir,
        output=workdir / "model.pt",
        step_log=workdir / "steps.csv",
        val_log=workdir / "val.csv",
    )
    if lever.channels_last:
        run.model = run.model.to(memory_format=torch.channels_last)
        run.memory_format = torch.channels_last
    return run


def seconds_per_step(lever: Lever, base: Any, sources: list[Any], workdir: Path, *, steps: int) -> float:
    """Median wall seconds of one training step of the lever (data rendering included), after a warm-up."""
    run = build(lever, base, sources, workdir, steps=10**6, marks=1)
    run_steps(run, stop_after=steps + 1, progress=False)
    return float(np.median([row["step_time"] for row in run.steps_log[1:]]))


def measure(
    lever: Lever, base: Any, sources: list[Any], *, minutes: float, marks: int, calibrate: int
) -> dict:
    """Train the lever for the budget; its figures and the best model's weights."""
    with tempfile.TemporaryDirectory(prefix="levers-") as tmp:
        per_step = seconds_per_step(lever, base, sources, Path(tmp) / "calibrate", steps=calibrate)
        steps = max(marks, int(minutes * 60 / per_step))
        run = build(lever, base, sources, Path(tmp) / "run", steps=steps, marks=marks)
        run_steps(run, progress=False)
        best = max(run.val_rows, key=lambda row: row["val_iou"])
        best_state = load_checkpoint(run.best_path)
    pixels = run.out_size**2 * run.config.batch_size
    trained = sum(row["step_time"] for row in run.steps_log)
    return {
        "lever": lever.name,
        "steps": steps,
        "tile": f"{run.in_size}->{run.out_size}",
        "kpx_s": pixels * steps / trained / 1000,
        "minutes": trained / 60,
        "marks": [(row["step"], row["val_iou"], row["val_pixel_error"]) for row in run.val_rows],
        "best": (best["step"], best["val_iou"], best["val_pixel_error"]),
        "state": best_state,
        "threshold": run.threshold,
        "val": run.val_data,
    }


def throughput(base: Any, sources: list[Any], *, rounds: int, block: int) -> list[tuple[str, float, float]]:
    """Levers that change only the speed of the same arithmetic (memory format, compilation): median ms per
    training step of each, timed round-robin in blocks of steps after each one's first step (a compilation's
    cost, reported apart); the rows are (case, first step s, ms per step)."""
    cases: dict[str, tuple[torch.nn.Module, TrainingRun]] = {}
    with tempfile.TemporaryDirectory(prefix="levers-") as tmp:
        for name, channels_last, compiled in (
            ("eager", False, False),
            ("channels-last", True, False),
            ("torch.compile", False, True),
        ):
            run = build(
                Lever(name, channels_last=channels_last),
                base,
                sources,
                Path(tmp) / name,
                steps=10**6,
                marks=1,
            )
            cases[name] = (torch.compile(run.model) if compiled else run.model, run)
        streams = {
            name: BatchStream(run.sampler, run.generator, prefetch=False) for name, (_, run) in cases.items()
        }
        first, per_step = {}, {name: [] for name in cases}

        def steps(name: str, count: int) -> float:
            model, run = cases[name]
            started = time.perf_counter()
            for _ in range(count):
                batch = streams[name].next(ahead=False)
                optimize_step(model, run.optimizer, run.scaler, batch, memory_format=run.memory_format)
            return time.perf_counter() - started

        for name in cases:
            first[name] = steps(name, 1)
        for round_ in range(rounds):
            names = list(cases)[round_ % len(cases) :] + list(cases)[: round_ % len(cases)]
            for name in names:
                per_step[name].append(1000 * steps(name, block) / block)
        for stream in streams.values():
            stream.close()
    return [(name, first[name], float(np.median(per_step[name]))) for name in cases]


def held_out(result: dict, base: Any, sources: list[Any]) -> tuple[float, float]:
    """IoU and pixel error of the lever's best weights on the config's test slices, each predicted with the
    volume's slices around it (as the workflow predicts the whole volume) and moved by its label offset."""
    state = result["state"]
    model = UNet(UNetConfig(**state["model_config"]))
    model.load_state_dict(state["model_state_dict"])
    model.label_offset = recorded_offset(state)
    depth = int(omezarr.open_image(sources[0].data).shape[0])
    test = select_slices(split_entries(base.split)[0].test, depth, what="split.test")
    runs = load_role(
        replace(sources[0], val=test),
        "val",
        loss_weights=base.train.loss_weights,
        net=model.config.net_geometry,
    )
    scores = validate(model, runs, device=torch.device("cpu"), threshold=result["threshold"])
    return scores["val_iou"], scores["val_pixel_error"]


def tta_gain(result: dict) -> list[tuple[str, float, float]]:
    """Validation IoU and pixel error of the lever's best weights without and with test-time augmentation."""
    state = result["state"]
    model = UNet(UNetConfig(**state["model_config"]))
    model.load_state_dict(state["model_state_dict"])
    rows = []
    for tta in (False, True):
        scores = [
            validate(model, data, device=torch.device("cpu"), threshold=result["threshold"], tta=tta)
            for data in result["val"]
        ]
        label = "8 flips and rotations" if tta else "plain"
        rows.append(
            (
                label,
                float(np.mean([s["val_iou"] for s in scores])),
                float(np.mean([s["val_pixel_error"] for s in scores])),
            )
        )
    return rows


def main() -> None:
    """Run the chosen levers one after another and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default="configs/isbi2012-cpu.yaml", help="the recipe (merged on config.yaml)"
    )
    parser.add_argument("--data", default="results/data/isbi2012.zarr", help="the imported volume")
    parser.add_argument("--weights", default="results/weights/isbi2012.zarr", help="its weight maps")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall-clock budget per lever")
    parser.add_argument("--marks", type=int, default=4, help="validations per run")
    parser.add_argument("--calibrate", type=int, default=20, help="steps timed to set a lever's step count")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--levers", nargs="*", default=DEFAULT_LEVERS, choices=list(LEVERS), metavar="LEVER")
    parser.add_argument("--speed-rounds", type=int, default=0, help="also time eager, channels-last, compile")
    parser.add_argument("--tta", action="store_true", help="also score the first lever's best with TTA")
    parser.add_argument("--test", action="store_true", help="also score each lever's best on the test slices")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_config_files(["config.yaml", args.config])
    entries = split_entries(base.split)
    volume = entries[0].volume
    sources = resolve_sources(entries, {volume: args.data}, {volume: args.weights})
    print(f"{args.config}: {sum(len(s.train) for s in sources)} training slices, validation {sources[0].val}")
    results = []
    for name in args.levers:
        started = time.perf_counter()
        result = measure(
            LEVERS[name], base, sources, minutes=args.minutes, marks=args.marks, calibrate=args.calibrate
        )
        results.append(result)
        marks = "  ".join(f"{step}:{iou:.4f}" for step, iou, _ in result["marks"])
        print(
            f"{name:<22s} {result['tile']:>9s} {result['steps']:>5d} steps {result['kpx_s']:6.1f} kpx/s "
            f"{result['minutes']:5.1f} min trained ({(time.perf_counter() - started) / 60:.1f} in all) | "
            f"best IoU {result['best'][1]:.4f} px err {result['best'][2]:.4f} (step {result['best'][0]}) | "
            f"IoU at marks {marks}",
            flush=True,
        )
        if args.test:
            iou, error = held_out(result, base, sources)
            print(f"{name:<22s} held-out test slices: IoU {iou:.4f}, pixel error {error:.4f}", flush=True)
    if args.speed_rounds:
        rows = throughput(base, sources, rounds=args.speed_rounds, block=10)
        eager = rows[0][2]
        for name, first, ms in rows:
            print(f"{name:<14s} first step {first:6.1f} s, then {ms:6.1f} ms/step ({eager / ms:.2f}x eager)")
    if args.tta and results:
        for label, iou, error in tta_gain(results[0]):
            print(f"{results[0]['lever']} best weights, {label}: IoU {iou:.4f}, pixel error {error:.4f}")


if __name__ == "__main__":
    main()
