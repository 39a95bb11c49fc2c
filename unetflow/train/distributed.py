"""Data-parallel training on one node: one process per GPU with PyTorch DistributedDataParallel (DDP).

`train.gpus: N` (`auto`: every GPU the job was given) trains on N GPUs of one node, one process each, over
NCCL; on the CPU, `train.cpu_processes: N` runs the same code as N CPU processes over gloo (each with the
job's threads / N torch threads), which is how the tests and benchmarks/parallel.py check it on a machine
without GPUs. One process is the run as it always was: no process is started, nothing here is used.

Who starts what. The process that calls `unetflow.train.loop.train` (the workflow's train script, `unetflow
train`, a notebook) launches the run itself, so the rule, the CLI and a SLURM job of one task run it alike:
it checks the request before anything is written (the GPUs are there, the batch splits over the processes,
the port is free), hosts the processes' meeting point (a TCPStore on 127.0.0.1, `train.port`), starts N
workers `python -m unetflow.train.distributed` (fresh interpreters: the caller's `__main__`, a Snakemake
script, is never imported again as multiprocessing's spawn would), waits, stops them all as soon as one
fails and raises that failure as its own error. A killed launcher takes its workers with it (Linux's
parent-death signal), as a cancelled SLURM job ends every process of it.

What N does not change (the recipe):
- `train.batch_size` is the batch of one whole step. Every process draws the step's whole batch from the
  one seeded tile generator (the same draws as one process makes) and renders only its share, tiles
  r*B/N to (r+1)*B/N - 1 on process r: the processes train on different tiles and the seed decides them
  all. The batch must split evenly over the processes (an InputError says so).
- Each process averages the loss over its tiles' pixels and DDP averages the gradients over the processes:
  with tiles of one size that is the mean over the whole batch, the gradient one process would compute
  for it (to float precision: the sums run in another order). So the learning rate is not scaled with N;
  the logged loss is the mean over the processes, the batch's loss as one process logs it.
- Drop-out draws from a stream of each process's own (process r > 0 seeded from train.seed and r).
- `model.norm: batch` normalises each process's tiles with their own statistics (no SyncBatchNorm: it runs
  on GPUs only, so the CPU path that tests this code would differ from the GPU one); the running
  statistics are process 0's (DDP broadcasts its buffers every step). A batch-norm net's training thus
  depends on N through its batch statistics, as it would with a batch of B/N tiles.

One checkpoint, written by process 0 (the net's plain state dict, so a one-process run, prediction and
`pretrained:` load it as any other), holding every process's random state: a run killed as a whole resumes
exactly on the same N. Validation, the best checkpoint, the logs and the progress bar are process 0's; the
other processes log errors only. How a run is spread (`LAUNCH_KEYS`) is not part of the run's identity.
"""

from __future__ import annotations

import ctypes
import datetime
import io
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel

from unetflow.config.model import TrainConfig
from unetflow.device import resolve_device
from unetflow.errors import InputError
from unetflow.logs import setup_logging

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# How long a process waits in a collective: validation runs on process 0 alone while the others wait.
TIMEOUT = datetime.timedelta(hours=2)
# The config keys that say how a run is spread over processes, not what it trains.
LAUNCH_KEYS = ("gpus", "cpu_processes", "port")
STOP_SECONDS = 10.0  # a worker asked to stop (SIGTERM) is killed after this long
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Parallel:
    """Where this process stands in a data-parallel run: its rank among `size` processes (1: no DDP)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes the checkpoints and logs (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether there are several processes (DDP on)."""
        return self.size > 1

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """`value` averaged over the processes (itself, untouched, with one process)."""
        if not self.active:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.size

    def gather(self, value: Any) -> list[Any]:
        """Every process's `value` (picklable), by rank; every process must call it."""
        if not self.active:
            return [value]
        found: list[Any] = [None] * self.size
        dist.all_gather_object(found, value)
        return found


SINGLE = Parallel()


def process_count(config: TrainConfig) -> int:
    """How many processes train: one per GPU asked for (`train.gpus`) on CUDA, `train.cpu_processes` on
    the CPU. An InputError, raised before anything is written, where the node has fewer GPUs than asked
    for or none, or the batch does not split evenly over the processes."""
    if config.gpus == 1 and config.cpu_processes == 1:
        return 1
    device = resolve_device(config.device)
    if device.type == "cuda":
        present = torch.cuda.device_count()
        count = present if config.gpus == "auto" else config.gpus
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
        if count > present:
            raise InputError(
                f"train.gpus is {count} but this job sees {present} GPU{'s' if present != 1 else ''}{seen}: "
                f"ask the scheduler for {count} (the workflow profile's gpu: {count} for rule train, see "
                "docs/slurm.md: every GPU of a node), or set train.gpus to auto to train on every GPU the "
                "job was given"
            )
        if count > 1 and device.index is not None:
            raise InputError(
                f"train.device {config.device} names one GPU, train.gpus asks for {count}: set train.device "
                "to auto or cuda (process r takes GPU r of those the job sees)"
            )
    else:
        if config.gpus != "auto" and config.gpus > 1:
            where = (
                "train.device is cpu"
                if config.device == "cpu"
                else f"PyTorch sees no GPU on this node (torch {torch.__version__})"
            )
            raise InputError(
                f"train.gpus is {config.gpus} but {where}: run on a node with {config.gpus} GPUs (the "
                "workflow profile's gpu resource), or set train.gpus to 1 (auto: every GPU present); "
                "train.cpu_processes spreads a CPU run over processes"
            )
        count = config.cpu_processes
    if config.batch_size % count:
        raise InputError(
            f"train.batch_size {config.batch_size} does not split over {count} processes: it is the batch of "
            f"a whole step, of which each process trains batch_size / {count} tiles; set train.batch_size "
            f"to a multiple of {count} (e.g. {count * max(1, config.batch_size // count)}), or use fewer "
            "processes"
        )
    return count


def identity(config_dump: dict[str, Any]) -> dict[str, Any]:
    """A train section's dump without the keys that say how the run is spread (its fingerprint's part)."""
    return {key: value for key, value in config_dump.items() if key not in LAUNCH_KEYS}


def device_of(device: torch.device, parallel: Parallel) -> torch.device:
    """The device of this process: GPU `rank` of a multi-GPU run, else `device` as it is."""
    if parallel.active and device.type == "cuda":
        return torch.device("cuda", parallel.rank)
    return device


def wrap(model: torch.nn.Module, parallel: Parallel, device: torch.device) -> torch.nn.Module:
    """The module a training step runs: DDP around `model` with several processes, `model` with one.

    DDP all-reduces the gradients during the backward pass (their mean over the processes) and broadcasts
    process 0's buffers (batch-norm running statistics) before each forward pass."""
    if not parallel.active:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def seed_process(seed: int, parallel: Parallel) -> None:
    """Give process r > 0 a drop-out stream of its own, derived from the run's seed and r (process 0 keeps
    the stream a one-process run has)."""
    if parallel.rank > 0:
        entropy = np.random.SeedSequence([seed & (2**64 - 1), parallel.rank])
        torch.manual_seed(int(entropy.generate_state(1, dtype=np.uint64)[0] >> 1))


def process_rng() -> dict[str, Any]:
    """This process's drop-out random state (torch's, and CUDA's where present)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_process_rng(states: list[dict[str, Any]] | None, parallel: Parallel, seed: int) -> None:
    """Put back this process's random state from a checkpoint's `states` (one per process); a checkpoint
    of another number of processes continues the tiles exactly but not the other processes' drop-out."""
    if not parallel.active:
        return
    if states is None or len(states) != parallel.size:
        if parallel.main:
            log.warning(
                "the checkpoint was written by a run of %s process(es), this one has %d: the tiles continue "
                "as drawn, but drop-out streams start afresh (not bit-identical to an uninterrupted run)",
                "1" if states is None else len(states),
                parallel.size,
            )
        seed_process(seed, parallel)
        return
    own = states[parallel.rank]
    torch.set_rng_state(own["torch"])
    if "cuda" in own and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(own["cuda"])


class ShardSampler:
    """A tile sampler that draws a step's whole batch and renders only this process's share of it."""

    def __init__(self, sampler: Any, parallel: Parallel) -> None:
        self.sampler = sampler
        self.parallel = parallel
        self.device = sampler.device

    def draw(self, generator: torch.Generator) -> Any:
        """The whole batch's random draws (as one process draws them), cut to this process's tiles."""
        return shard(self.sampler.draw(generator), self.parallel)

    def render(self, params: Any) -> Any:
        """The tiles of `params`, as the wrapped sampler renders them."""
        return self.sampler.render(params)


def shard(params: Any, parallel: Parallel) -> Any:
    """This process's tiles of a batch's draws (a dataclass of per-tile tensors): tiles r*B/N to
    (r+1)*B/N - 1 on process r of N."""
    per = params.batch_size // parallel.size
    start = parallel.rank * per
    cut = {
        item.name: value[start : start + per]
        for item in fields(params)
        if isinstance(value := getattr(params, item.name), torch.Tensor)
    }
    return replace(params, **cut)


def sharded(sampler: Any, parallel: Parallel) -> Any:
    """The sampler this process draws its tiles from: `sampler` itself with one process."""
    return ShardSampler(sampler, parallel) if parallel.active else sampler


def open_store(port: int | str) -> dist.TCPStore:
    """The processes' meeting point on 127.0.0.1 (`port`, or a free one for auto); a taken port is an
    InputError."""
    number = 0 if port == "auto" else int(port)
    try:
        return dist.TCPStore(HOST, number, None, True, timeout=TIMEOUT, wait_for_workers=False)
    except dist.DistNetworkError as error:
        raise InputError(
            f"train.port {number} is taken on this node ({str(error).split('message: ')[-1].strip()}): "
            "another training, or another program, listens there; set train.port to a free port, or to "
            "auto to take one"
        ) from None


def launch(
    target: Callable[..., dict[str, Any]],
    arguments: dict[str, Any],
    *,
    processes: int,
    config: TrainConfig,
) -> dict[str, Any]:
    """Run `target(**arguments, parallel=...)` in `processes` worker processes; process 0's result.

    The first worker to fail stops them all; its error is raised here: an InputError as it was raised,
    anything else as a RuntimeError naming the process (its traceback is logged).
    """
    on_gpu = config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available())
    backend = "nccl" if on_gpu else "gloo"
    threads = max(1, torch.get_num_threads() // processes)
    store = open_store(config.port)
    spec = {
        "target": target,
        "arguments": arguments,
        "backend": backend,
        "port": store.port,
        "size": processes,
        "threads": threads,
        "log_level": logging.getLogger().getEffectiveLevel(),
    }
    log.info(
        "training with %d processes (%s, %s, %d torch thread%s each) meeting at %s:%d",
        processes,
        f"one per GPU, {backend}" if backend == "nccl" else "CPU",
        backend,
        threads,
        "s" if threads > 1 else "",
        HOST,
        store.port,
    )
    with tempfile.TemporaryDirectory(prefix="unetflow-ddp-") as folder:
        (Path(folder) / "spec.pkl").write_bytes(pickle.dumps(spec))
        workers: list[subprocess.Popen[bytes]] = []
        try:
            for rank in range(processes):
                workers.append(_start(Path(folder), rank, processes, store.port, threads))
            order = _wait(workers)
        finally:
            _stop(workers)
        outcomes = [_outcome(Path(folder), rank, worker) for rank, worker in enumerate(workers)]
    del store
    failed = [rank for rank in order if "value" not in outcomes[rank]]
    if not failed:
        return outcomes[0]["value"]
    raise _failure(outcomes, failed, processes)


def _stream(handle: Any) -> Any:
    """A file object's descriptor for a worker's output, None (inherit) where it has none (pytest's)."""
    try:
        handle.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return None
    return handle


def _start(folder: Path, rank: int, size: int, port: int, threads: int) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(size),
        "MASTER_ADDR": HOST,
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": str(threads),
    }
    command = [sys.executable, "-m", "unetflow.train.distributed", str(folder), str(rank), str(os.getpid())]
    return subprocess.Popen(
        command,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=_stream(sys.stdout),
        stderr=_stream(sys.stderr),
    )


def _wait(workers: list[subprocess.Popen[bytes]]) -> list[int]:
    """Wait until every worker has ended or one has failed; the ranks in the order they ended."""
    ended: list[int] = []
    while len(ended) < len(workers):
        for rank, worker in enumerate(workers):
            if rank not in ended and worker.poll() is not None:
                ended.append(rank)
        if any(workers[rank].returncode != 0 for rank in ended):
            break
        time.sleep(0.05)
    return ended + [rank for rank in range(len(workers)) if rank not in ended]


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    """End the workers still running: SIGTERM, then SIGKILL after STOP_SECONDS."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _outcome(folder: Path, rank: int, worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    """What worker `rank` reported ({"value"} or {"error", "traceback"}), or how it died without a word."""
    path = folder / f"result-{rank}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    code = worker.returncode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    hint = " (out of memory? the job's mem_mb must hold every process's data)" if code == -9 else ""
    return {"error": RuntimeError(f"it {how} before reporting{hint}"), "traceback": ""}


def _failure(outcomes: list[dict[str, Any]], failed: list[int], size: int) -> Exception:
    """The error to raise for a failed run: the first worker's own error (an InputError where one raised
    one), not a peer's complaint that the failed one went away."""
    first = next(
        (rank for rank in failed if isinstance(outcomes[rank]["error"], InputError)),
        next((rank for rank in failed if not isinstance(outcomes[rank]["error"], dist.DistError)), failed[0]),
    )
    error, trace = outcomes[first]["error"], outcomes[first]["traceback"]
    if isinstance(error, InputError):
        return error
    if trace:
        log.error("training process %d of %d failed:\n%s", first, size, trace.rstrip())
    return RuntimeError(f"training process {first} of {size} failed: {type(error).__name__}: {error}")


def _die_with(parent: int) -> None:
    """End this worker when its launcher ends (SIGKILL from the kernel on Linux, else a watching thread)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the launcher ended before the signal was armed
        os._exit(1)


def _report(path: Path, outcome: dict[str, Any]) -> None:
    """Write a worker's outcome for the launcher; an error that does not pickle goes as its text."""
    try:
        payload = pickle.dumps(outcome)
    except Exception:
        error = outcome["error"]
        text = RuntimeError(f"{type(error).__name__}: {error}")
        payload = pickle.dumps({"error": text, "traceback": outcome.get("traceback", "")})
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(payload)
    temporary.rename(path)


def worker(folder: Path, rank: int, parent: int) -> int:
    """One training process: join the others, run the target with this process's `Parallel`, report."""
    _die_with(parent)
    spec = pickle.loads((folder / "spec.pkl").read_bytes())
    size = spec["size"]
    setup_logging(spec["log_level"] if rank == 0 else logging.ERROR)
    torch.set_num_threads(spec["threads"])
    outcome: dict[str, Any]
    try:
        device = None
        if spec["backend"] == "nccl":
            device = torch.device("cuda", rank)
            torch.cuda.set_device(device)
        store = dist.TCPStore(HOST, spec["port"], None, False, timeout=TIMEOUT)
        dist.init_process_group(
            spec["backend"], store=store, rank=rank, world_size=size, timeout=TIMEOUT, device_id=device
        )
        try:
            outcome = {"value": spec["target"](**spec["arguments"], parallel=Parallel(rank, size))}
        finally:
            dist.destroy_process_group()
    except BaseException as error:  # reported to the launcher, which raises it
        outcome = {"error": error, "traceback": traceback.format_exc()}
    _report(folder / f"result-{rank}.pkl", outcome)
    return 0 if "value" in outcome else 1


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
