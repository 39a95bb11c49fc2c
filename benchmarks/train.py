"""Does augmentation starve the net? A full training step against a bare step of the same net, in one run.

bare:      forward + weighted loss + backward + optimizer step (`unetflow.train.loop.optimize_step`) on one
           preallocated batch: no augmentation, no sampling.
on demand: the training loop's step on the CPU (prefetching off): draw and render the next augmented
           batch (`TileSampler.draw` + `.render`: position, rotation, flips, elastic, gray values; raw,
           labels and weights), then the same optimize_step.
prefetch:  the training loop's step on CUDA: the batch was rendered one step ahead in a background thread
           (on CUDA on a side stream) while the net trained on the previous one.
sample:    `TileSampler.sample` alone, to show what there is to hide.

Cases run round-robin in blocks of steps, after a warm-up, so load from other processes hits them alike; a
prefetching block ends by waiting for the batch it rendered ahead, so none of its cost leaks into the next
case. Every case steps the same net and optimizer (the step's cost does not depend on the weights' values).

Run from the repo root:  .venv/bin/python benchmarks/train.py [--paper-repeats 1] [--small-repeats 6]
(about 2-4 minutes on 2 shared CPU cores, most of it the paper's net: a step takes 20-50 s there).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from unetflow.model.unet import UNet, UNetConfig
from unetflow.train.augment import TileSampler
from unetflow.train.loop import BatchStream, TrainConfig, build_optimizer, optimize_step

TARGET = 1.15


@dataclass(frozen=True)
class Setup:
    """One net and tile to time on one device."""

    label: str
    model: UNetConfig
    output: int
    repeats: int
    block: int
    device: str


def time_blocks(
    cases: dict[str, Callable[[], None]], *, repeats: int, sync: Callable[[], None], warm_all: bool = True
) -> dict[str, dict[str, list[float]]]:
    """Wall and process CPU seconds per block of each case, timed round-robin after a warm-up block of
    each case (of the first only, where steps take seconds); the order rotates every round so that no case
    always follows the same one. CPU time counts every thread of this process (the render thread too) and
    is steadier than wall time where other processes load the machine."""
    for run in list(cases.values())[: None if warm_all else 1]:
        run()
        sync()
    names = list(cases)
    times: dict[str, dict[str, list[float]]] = {"wall": {n: [] for n in names}, "cpu": {n: [] for n in names}}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            cases[name]()
            sync()
            times["wall"][name].append(time.perf_counter() - wall)
            times["cpu"][name].append(time.process_time() - cpu)
    return times


def measure(
    setup: Setup, raw: np.ndarray, labels: np.ndarray, weights: np.ndarray
) -> tuple[int, dict[str, dict[str, float]]]:
    """The input tile size and the median wall and CPU ms per step of each case, for one setup."""
    device = torch.device(setup.device)
    geometry = setup.model.geometry
    out = geometry.valid_output(setup.output)
    inp = geometry.input_for_output(out)
    torch.manual_seed(0)
    model = UNet(setup.model).to(device)
    memory_format = torch.channels_last if device.type == "cuda" else None
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    model.train()
    optimizer = build_optimizer(model, TrainConfig(lr=1e-6))  # SGD, momentum 0.99: the paper's optimizer
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    sampler = TileSampler(raw, labels, weights, input_size=inp, output_size=out, device=device)
    fixed = sampler.sample(torch.Generator().manual_seed(1))
    on_demand = BatchStream(sampler, torch.Generator().manual_seed(2), prefetch=False)
    ahead = BatchStream(sampler, torch.Generator().manual_seed(3), prefetch=True)
    sample_generator = torch.Generator().manual_seed(4)

    def step(batch: object) -> None:
        optimize_step(model, optimizer, scaler, batch, memory_format=memory_format)  # type: ignore[arg-type]

    def bare() -> None:
        for _ in range(setup.block):
            step(fixed)

    def demand() -> None:
        for _ in range(setup.block):
            step(on_demand.next())

    def prefetch() -> None:
        for _ in range(setup.block):
            step(ahead.next())
        ahead.wait()

    def sample() -> None:
        for _ in range(setup.block):
            sampler.sample(sample_generator)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cases = {"bare": bare, "on demand": demand, "prefetch": prefetch, "sample": sample}
    try:
        seconds = time_blocks(cases, repeats=setup.repeats, sync=sync, warm_all=setup.repeats > 1)
    finally:
        ahead.close()
    return inp, {
        clock: {name: 1000 * statistics.median(values) / setup.block for name, values in cases.items()}
        for clock, cases in seconds.items()
    }


def main() -> None:
    """Time every setup and print a table of ms per step and the ratios to the bare step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=int, default=388, help="output tile asked for (+ margin = input)")
    parser.add_argument("--paper-repeats", type=int, default=1, help="timed rounds of the paper's net on CPU")
    parser.add_argument("--small-repeats", type=int, default=6, help="timed rounds of the small net on CPU")
    parser.add_argument("--small-base", type=int, default=8, help="base channels of the small net")
    parser.add_argument("--small-depth", type=int, default=4, help="depth of the small net")
    parser.add_argument("--small-output", type=int, help="output tile of the small net (default: --output)")
    parser.add_argument("--cuda-repeats", type=int, default=10, help="timed rounds of 5 steps on CUDA")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--skip-paper-cpu", action="store_true", help="leave out the paper's net on the CPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    paper = UNetConfig(depth=4, base_channels=64)
    small = UNetConfig(depth=args.small_depth, base_channels=args.small_base)
    small_label = f"small net (depth {args.small_depth}, base {args.small_base})"
    small_output = args.small_output or args.output
    setups = []
    if not args.skip_paper_cpu:
        setups.append(Setup("paper net (depth 4, base 64)", paper, args.output, args.paper_repeats, 1, "cpu"))
    setups.append(Setup(small_label, small, small_output, args.small_repeats, 1, "cpu"))
    if torch.cuda.is_available():
        setups.append(Setup("paper net (depth 4, base 64)", paper, args.output, args.cuda_repeats, 5, "cuda"))
        setups.append(Setup(small_label, small, small_output, args.cuda_repeats, 5, "cuda"))

    rng = np.random.default_rng(0)
    raw = rng.normal(size=(30, 512, 512)).astype(np.float32)  # the ISBI stack's shape
    labels = (rng.random(raw.shape) > 0.3).astype(np.uint8)
    weights = rng.uniform(1.0, 10.0, size=raw.shape).astype(np.float32)
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} torch threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no CUDA")
        + f"; SGD, batch 1, float32; round-robin rounds; target train/bare <= {TARGET}"
    )
    header = (
        f"{'net':30s} {'device':6s} {'input':>5s} {'clock':>6s} {'bare':>10s} {'on demand':>10s} "
        f"{'ratio':>6s} {'prefetch':>10s} {'ratio':>6s} {'sample':>9s} {'1+s/b':>6s} "
        f"{'out':>4s} {'kpx/s':>7s}"
    )
    print(header)
    print("-" * len(header))
    for setup in setups:
        inp, clocks = measure(setup, raw, labels, weights)
        out = setup.model.geometry.valid_output(setup.output)
        for stat, ms in clocks.items():
            bare, demand, ahead = ms["bare"], ms["on demand"], ms["prefetch"]
            step = demand if setup.device == "cpu" else ahead  # what `unetflow train` runs on that device
            print(
                f"{setup.label:30s} {setup.device:6s} {inp:5d} {stat:>6s} {bare:8.1f}ms {demand:8.1f}ms "
                f"{demand / bare:6.3f} {ahead:8.1f}ms {ahead / bare:6.3f} {ms['sample']:7.1f}ms "
                f"{1 + ms['sample'] / bare:6.3f} {out:4d} {out * out / step:7.1f}",
                flush=True,
            )
    print(
        "median ms per step, wall clock and CPU time (all of this process's threads); ratio = train step / "
        "bare step;\n`unetflow train` runs prefetch on CUDA, on demand on the CPU; out = labelled output "
        "pixels per side of a tile,\nkpx/s = labelled output pixels trained on per second, in thousands "
        "(tiles of different sizes compare fairly on it:\nthe context a tile needs is not counted); "
        "1+s/b = 1 + sample / bare: the ratio if augmentation overlapped nothing\n(steadier under load than "
        "whole steps: sampling is short)"
    )


if __name__ == "__main__":
    main()
