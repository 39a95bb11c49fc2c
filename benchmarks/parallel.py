"""Benchmark data-parallel training on this machine's CPUs: 2 processes (gloo) against 1, in one invocation.

The same training, the embedded default's net (depth 4, 8 channels, 196 px tiles, Adam; no drop-out, so
the runs' first losses agree to float precision, a check that they train the same batches) with a
batch of 2 tiles per step, run as
- 1 process with 1 torch thread (one core: the one-GPU run, both tiles on one device),
- 1 process with 2 torch threads (both cores in one process), and
- 2 processes with 1 torch thread each (`train.cpu_processes: 2`: one tile each, gradients averaged by
  DistributedDataParallel over gloo), the code path of `train.gpus: 2` on a node with 2 GPUs,
in interleaved repeats, each in a fresh launch. The figures are the ratios of steps per second (median
step time of the steps after the first five, as process 0's step log records it) and of the whole call's
wall time (process start-up included) of the 2 processes against each 1-process way.
This is a correctness run of the multi-process path on 2 shared CPU cores, not a GPU figure: on GPUs each
process has a device of its own and gloo gives way to NCCL.

    .venv/bin/python benchmarks/parallel.py [--steps 60] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared import prepare  # the embedded default's data, as benchmarks/shared.py makes it

from unetflow.config.model import TrainConfig
from unetflow.model.unet import UNetConfig
from unetflow.train.loop import train

SKIP = 5  # first steps left out of the step time (warm-up)


def timed_run(
    work: Path, data: str, weights: str, *, steps: int, processes: int, threads: int
) -> dict[str, float]:
    """Train `steps` steps with `processes` processes sharing `threads` torch threads; timings and the first
    loss."""
    folder = Path(tempfile.mkdtemp(dir=work))
    config = TrainConfig(
        steps=steps,
        batch_size=2,
        val_every=10 * steps,
        checkpoint_every=10 * steps,
        device="cpu",
        cpu_processes=processes,
    )
    torch.set_num_threads(threads)
    start = time.perf_counter()
    train(
        data=data,
        weights=weights,
        train_slices=list(range(8)),
        val_slices=[],
        model_config=UNetConfig(depth=4, base_channels=8, dropout=0.0),
        config=config,
        workdir=folder / "work",
        output=folder / "model.pt",
        step_log=folder / "steps.csv",
        val_log=folder / "val.csv",
        progress=False,
    )
    wall = time.perf_counter() - start
    with (folder / "steps.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    step = statistics.median(float(row["step_time"]) for row in rows[SKIP:])
    return {"wall": wall, "step": step, "loss": float(rows[0]["loss"]), "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    """Interleaved 1- and 2-process runs; a table of step times, wall times and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores, load average at the start {os.getloadavg()}\n")
    ways = ((1, 1), (1, 2), (2, 2))  # (processes, torch threads in all)
    runs: dict[tuple[int, int], list[dict[str, float]]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory(prefix="unetflow-parallel-") as folder:
        work = Path(folder)
        data, weights = prepare(work)
        for _ in range(args.repeats):
            for processes, threads in ways:
                timed = timed_run(work, data, weights, steps=args.steps, processes=processes, threads=threads)
                runs[(processes, threads)].append(timed)
    print(f"## {args.steps} steps of a 2-tile batch, {args.repeats} interleaved repeats (medians)\n")
    print("| processes x torch threads | median step s | steps/s | wall s (with start-up) | 1-min load avg |")
    print("|---|---:|---:|---:|---:|")
    medians = {}
    for (processes, threads), results in runs.items():
        step = statistics.median(r["step"] for r in results)
        wall = statistics.median(r["wall"] for r in results)
        loads = ", ".join(f"{r['load']:.1f}" for r in results)
        medians[(processes, threads)] = (step, wall)
        print(
            f"| {processes} x {threads // processes} | {step:.3f} | {1 / step:.2f} | {wall:.1f} | {loads} |"
        )
    two = medians[(2, 2)]
    for way in ways[:2]:
        print(
            f"\nspeed-up of 2 processes x 1 thread against 1 process x {way[1]} threads: "
            f"{medians[way][0] / two[0]:.2f}x in steps per second, "
            f"{medians[way][1] / two[1]:.2f}x in wall time"
        )
    losses = ", ".join(f"{p} x {t // p}: {results[0]['loss']:.7f}" for (p, t), results in runs.items())
    print(f"first-step loss (the same batch): {losses}")
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
