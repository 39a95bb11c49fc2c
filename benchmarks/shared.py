"""Benchmark training on a shared machine: how much slower it gets when another process takes one core.

A fresh process trains the embedded default's net (depth 4, 8 channels, 196 px tiles, Adam) for `--steps`
steps on a small synthetic volume, once on a quiet machine and once while a background process keeps one
core busy (a pure-Python loop), in interleaved repeats; the figure is the ratio of the loaded time to the
quiet one for each way of running torch's threads:

- `default`: OpenMP's default wait policy (OMP_WAIT_POLICY unset: libgomp spins a while at every barrier
  before it sleeps), what torch does unless told;
- `passive`: OMP_WAIT_POLICY=PASSIVE, a waiting thread sleeps at once, so the thread that is descheduled
  for the background process costs its partner nothing (but every wait pays a wake-up);
- `spin N`: GOMP_SPINCOUNT=N, libgomp spins N times before it sleeps (the default is 300000).

With two cores and one taken, a fair share is 2/3 of the machine for our two threads, a ratio of about 1.5;
the target is at most 2. Only the training loop is timed (the process start and imports are not).

    .venv/bin/python benchmarks/shared.py [--steps 120] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
from unetflow.config.model import SyntheticConfig, VolumeConfig, WeightsConfig
from unetflow.config.model import TrainConfig
from unetflow.model.unet import UNetConfig
from unetflow.train.loop import train
import torch
data, weights, folder, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(2)
config = TrainConfig(steps=steps, val_every=10 * steps, checkpoint_every=10 * steps, device="cpu")
start = time.perf_counter()
train(data=data, weights=weights, train_slices=list(range(8)), val_slices=[], model_config=UNetConfig(depth=4,
      base_channels=8), config=config, workdir=folder + "/work", output=folder + "/model.pt",
      step_log=folder + "/steps.csv", val_log=folder + "/val.csv", progress=False)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

BUSY = "while True:\n    pass\n"


def prepare(work: Path) -> tuple[str, str]:
    """The embedded default's data (16 x 256 x 256 synthetic slices), imported with its weight maps."""
    from unetflow.config.model import SyntheticConfig, VolumeConfig, WeightsConfig
    from unetflow.steps.data import run_import, run_synthesize, run_weights

    raw, labels = str(work / "raw.tif"), str(work / "labels.tif")
    run_synthesize(raw=raw, labels=labels, options=SyntheticConfig(shape=[16, 256, 256], seed=0))
    data, weights = str(work / "data.zarr"), str(work / "weights.zarr")
    run_import(raw=raw, labels=labels, target=data, volume=VolumeConfig(synthetic=SyntheticConfig()))
    run_weights(data=data, target=weights, train_slices="0-7", options=WeightsConfig())
    return data, weights


def environment(policy: str) -> dict[str, str]:
    """The process environment of a policy: default, passive or "spin N" (empty values: libgomp's own
    defaults; unetflow sets its own only where a variable is unset)."""
    env = {key: value for key, value in os.environ.items() if key != "GOMP_SPINCOUNT"}
    env["OMP_WAIT_POLICY"] = "PASSIVE" if policy == "passive" else ""
    env["GOMP_SPINCOUNT"] = policy.split()[1] if policy.startswith("spin ") else ""
    return env


def timed_run(work: Path, data: str, weights: str, steps: int, *, policy: str, loaded: bool) -> float:
    """Seconds of `steps` training steps in a fresh process, with a busy background process if `loaded`."""
    folder = Path(tempfile.mkdtemp(dir=work))
    env = environment(policy)
    background = subprocess.Popen([sys.executable, "-c", BUSY]) if loaded else None
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, data, weights, str(folder), str(steps)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if background is not None:
            background.kill()
            background.wait()
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def main(argv: list[str] | None = None) -> int:
    """Interleaved quiet and loaded runs of each policy; a table of times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats")
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["default", "passive", "spin 10000"],
        help='ways of waiting: default, passive, or "spin N" (GOMP_SPINCOUNT)',
    )
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()}\n")
    times: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="unetflow-shared-") as folder:
        work = Path(folder)
        data, weights = prepare(work)
        for _ in range(args.repeats):
            for policy in args.policies:
                for loaded in (False, True):
                    seconds = timed_run(work, data, weights, args.steps, policy=policy, loaded=loaded)
                    times.setdefault((policy, loaded), []).append(seconds)
    print(f"## training {args.steps} steps, fresh process each, {args.repeats} interleaved repeats\n")
    print("| threads wait by | quiet s | one core taken s | slowdown (target <= 2) | quiet vs default |")
    print("|---|---:|---:|---:|---:|")
    quiet_default = statistics.median(times[(args.policies[0], False)])
    for policy in args.policies:
        quiet = statistics.median(times[(policy, False)])
        loaded = statistics.median(times[(policy, True)])
        ratio = quiet / quiet_default
        print(f"| {policy} | {quiet:.1f} | {loaded:.1f} | {loaded / quiet:.2f}x | {ratio:.2f}x |")
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
