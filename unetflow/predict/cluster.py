"""dask.distributed clusters for the second prediction engine: a LocalCluster on this node, SLURM jobs
(dask-jobqueue's SLURMCluster, one worker per job), or a running scheduler given by its address.

The predict job becomes the client: it starts (or connects to) the cluster, scatters the net once to each
worker and hands out one task per block; every worker writes its blocks straight into the shared Zarr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unetflow.config.base import script_safe
from unetflow.config.model import ClusterConfig
from unetflow.errors import InputError

log = logging.getLogger(__name__)


def slurm_cluster_options(config: ClusterConfig, *, log_directory: str | Path) -> dict[str, Any]:
    """Keyword arguments of dask_jobqueue.SLURMCluster: one single-process worker per SLURM job."""
    for key in ("queue", "account", "walltime", "memory"):
        script_safe(getattr(config, key), key=f"predict.cluster.{key}")
    directives = [f"--gres=gpu:{config.gpus}"] if config.gpus else []
    directives += [script_safe(item, key="predict.cluster.job_extra") for item in config.job_extra]
    options: dict[str, Any] = {
        "cores": config.threads,
        "processes": 1,
        "memory": config.memory,
        "walltime": config.walltime,
        "job_extra_directives": directives,
        "log_directory": str(log_directory),
        # One dask task slot per worker: a block's net call already uses all of the job's cores.
        "worker_extra_args": ["--nthreads", "1"],
        # The scheduler's HTTP server on a free port: a login node is shared, 8787 is often taken.
        "scheduler_options": {"dashboard_address": ":0"},
    }
    if config.queue:
        options["queue"] = config.queue
    if config.account:
        options["account"] = config.account
    return options


@contextlib.contextmanager
def restored_environment() -> Iterator[None]:
    """Undo changes to os.environ on exit: distributed's nanny sets OMP_NUM_THREADS=1 (its pre-spawn-environ)
    in the calling process, which every later subprocess (a SLURM set-up, another workflow) would inherit."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


@contextlib.contextmanager
def open_client(config: ClusterConfig, *, log_directory: str | Path = "dask-logs") -> Iterator[Any]:
    """A dask.distributed Client on the configured cluster, waiting for a first worker; shut down on exit."""
    with restored_environment():
        yield from _client(config, log_directory=log_directory)


def _client(config: ClusterConfig, *, log_directory: str | Path) -> Iterator[Any]:
    """The body of `open_client` (a generator it delegates to)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise InputError(
            "predict.scheduler distributed needs dask's distributed package: pip install 'unetflow[workflow]'"
        ) from error
    if config.kind == "address":
        try:
            client = Client(config.address, timeout=config.timeout)
        except OSError as error:
            raise InputError(
                f"cannot reach the dask scheduler at predict.cluster.address {config.address} ({error}); "
                "start it (`dask scheduler`) or correct the address"
            ) from error
        with client:
            yield client
        return
    if config.kind == "local":
        cluster = LocalCluster(
            n_workers=config.workers,
            threads_per_worker=1,
            memory_limit=config.memory,
            dashboard_address=":0",  # a free port: several predict jobs may share a node
            processes=True,
        )
    else:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError as error:
            raise InputError(
                "predict.cluster.kind slurm needs dask-jobqueue: pip install 'unetflow[workflow]'"
            ) from error
        Path(log_directory).mkdir(parents=True, exist_ok=True)
        cluster = SLURMCluster(**slurm_cluster_options(config, log_directory=log_directory))
    try:
        if config.kind == "slurm":
            script = cluster.job_script()
            log.info("SLURM worker job script:\n%s", script)
            check_worker_job(script, log_directory=log_directory)
            cluster.scale(jobs=config.workers)
        with Client(cluster) as client:
            log.info("waiting up to %.0f s for a first %s worker", config.timeout, config.kind)
            try:
                client.wait_for_workers(1, timeout=config.timeout)
            except TimeoutError as error:
                raise InputError(
                    f"no dask worker of the {config.kind} cluster started within {config.timeout:.0f} s "
                    f"(SLURM: see squeue and the worker logs in {log_directory}); check predict.cluster"
                ) from error
            yield client
    finally:
        _close_quietly(cluster)


def check_worker_job(script: str, *, log_directory: str | Path) -> None:
    """`sbatch --test-only` the worker job script: SLURM's refusal (no controller, an unknown partition or
    account, a GPU the cluster lacks) is one clear error now, not workers that never start."""
    path = Path(log_directory) / "dask-worker-check.sh"
    path.write_text(script)
    try:
        done = subprocess.run(
            ["sbatch", "--test-only", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError as error:
        raise InputError(
            "predict.cluster.kind slurm needs sbatch (run on a SLURM login node); elsewhere use kind local"
        ) from error
    finally:
        path.unlink(missing_ok=True)
    if done.returncode != 0:
        raise InputError(
            f"SLURM refuses the dask worker job (sbatch --test-only): {done.stderr.strip()}; "
            "check predict.cluster (queue, account, gpus, memory, walltime, job_extra)"
        )


def _close_quietly(cluster: Any) -> None:
    """Shut the cluster down; a failure to (e.g. workers still pending in the queue) is only a warning."""
    try:
        cluster.close()
    except Exception as error:
        log.warning("closing the dask cluster: %r", error)
