"""Benchmark volumes read and predictions written in place on an object store, against the same on disk.

moto's S3 API server (`tests/servers.py`, the tests' loopback server) runs in a process of its own (as a
real store, it never holds this process's GIL) and counts every request it serves. The same volume lies on
disk (warm in the page cache) and in a bucket of the server; every figure is a ratio of the two measured in
the same run, in interleaved repeats.

1. The server: one small GET's latency, requests per second with 16 in flight, MB/s of one 16 MiB GET,
   and its CPU time per request. moto is a Python program sharing these 2 cores, far slower than a real
   store (AWS S3: ~10-30 ms to the first byte, thousands of requests/s per prefix); the request counts
   below are what carries over to a real store, the times scale with its latency.
2. Block reads: the context window of every block of one 4096 x 4096 slice, read in the order a
   prediction reads them (`unetflow.predict.tiles.read_context` over `plan_tiles`' windows; blocks of
   1024 px, the net's 92 px margin on each side), one fresh reader per pass, for several chunk shapes:
   per block, the time on disk and on S3 and their ratio, GET requests, bytes fetched against the bytes
   the volume stores per block (1x: each stored byte fetched once), and client and server CPU. "no cache"
   rows read with the input cache off (`unetflow.stores.cache`: neighbouring blocks share chunks).
3. The whole predict-only run: `predict_volume` + `finalize_prediction` (plan, statistics, every block,
   shards, journals, the pyramid: what the workflow's jobs run, without their process starts) of an
   OME-Zarr volume read from S3 and written to S3, against disk to disk: same volume and net, blocks of
   1024 px on chunks of 1024^2 (chunk-aligned blocks); the requests by place (input, output, journals).
   Once with the default net (depth 4, 8 channels) and once with a small one (depth 3, 4 channels: the
   run is bound by its reads and writes); `--shard-gb` sets the output's shards (default 1 GiB: this
   volume is one shard; moto's range reads cost time in proportion to the object, S3's do not).

Prints figures only; it asserts nothing about time.

    .venv/bin/python benchmarks/stores.py [--repeats 3] [--run-repeats 2] [--skip-reads] [--skip-run]
        [--shard-gb 0.015625] [--nets 4x8 3x4] [--run-shape 2 4096 4096] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import write_n5, write_precomputed  # noqa: E402
from servers import TEST_CREDENTIALS, environment, moto_s3_process, server_counts  # noqa: E402

from unetflow.config.model import PredictConfig  # noqa: E402
from unetflow.data import omezarr  # noqa: E402
from unetflow.geometry import UNetGeometry, plan_tiles  # noqa: E402
from unetflow.model.unet import UNet, UNetConfig  # noqa: E402
from unetflow.predict import finalize_prediction, predict_volume  # noqa: E402
from unetflow.predict.sources import SourceSpec  # noqa: E402
from unetflow.predict.tiles import read_context  # noqa: E402
from unetflow.readers import Volume, open_input  # noqa: E402
from unetflow.stores import Location, StoreOptions, cache  # noqa: E402
from unetflow.stores.retry import REQUESTS  # noqa: E402
from unetflow.stores.s3 import ChunkS3FileSystem  # noqa: E402

BUCKET = "bench"
SLICE = 4096
"""Height and width of the slices of the block-read volumes (4 x 4 blocks of 1024)."""
BLOCK = 1024
STRIDE = 512
DEPTH = 4
"""The net's depth (the paper's: a 92 px margin)."""


@dataclass(frozen=True)
class Layout:
    """How a volume is stored: format, chunk (z, y, x), shard, slices; `cached`: the input cache on."""

    name: str
    kind: str
    chunks: tuple[int, int, int]
    shards: tuple[int, int, int] | None = None
    depth: int = 1
    cached: bool = True

    @property
    def key(self) -> str:
        """The volume's folder name (one per storage layout: the cache is a way of reading, not storing)."""
        shard = "" if self.shards is None else "-s" + "x".join(map(str, self.shards))
        return f"{self.kind}-{'x'.join(map(str, self.chunks))}{shard}"


LAYOUTS = [
    Layout("Zarr v3, 1024^2 chunks (= the block)", "zarr", (1, 1024, 1024)),
    Layout("Zarr v3, 1024^2 chunks, no cache", "zarr", (1, 1024, 1024), cached=False),
    Layout("Zarr v3, 512^2 chunks", "zarr", (1, 512, 512)),
    Layout("Zarr v3, 512^2 chunks, no cache", "zarr", (1, 512, 512), cached=False),
    Layout("Zarr v3, 256^2 chunks", "zarr", (1, 256, 256)),
    Layout("Zarr v3, 128^2 chunks", "zarr", (1, 128, 128)),
    Layout("Zarr v3, 384^2 chunks (blocks not aligned)", "zarr", (1, 384, 384)),
    Layout("Zarr v3, 256^2 chunks in 2048^2 shards", "zarr", (1, 256, 256), shards=(1, 2048, 2048)),
    Layout("Zarr v3, 3-D chunks 8 x 256^2", "zarr", (8, 256, 256), depth=8),
    Layout("N5, 512^2 blocks (tensorstore)", "n5", (1, 512, 512)),
    Layout("precomputed, 512^2 chunks (tensorstore)", "precomputed", (1, 512, 512)),
]


def em_like(depth: int, seed: int = 0) -> np.ndarray:
    """A uint8 (depth, SLICE, SLICE) volume with EM-like texture (smooth structure plus noise, compressing
    to about 80%): the structure moves from slice to slice, the noise is each slice's own."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.standard_normal((SLICE, SLICE)).astype(np.float32), 3)
    smooth *= 30 / smooth.std()
    volume = np.empty((depth, SLICE, SLICE), np.uint8)
    for z in range(depth):
        noise = rng.normal(128, 12, (SLICE, SLICE)).astype(np.float32)
        volume[z] = np.clip(np.roll(smooth, 37 * z, axis=1) + noise, 0, 255)
    return volume


def write_layout(folder: Path, layout: Layout) -> Path:
    """The volume of `layout` written under `folder` (once); its path."""
    path = folder / layout.key
    if path.exists():
        return path
    data = em_like(layout.depth)
    if layout.kind == "n5":
        write_n5(path / "raw", data, layout.chunks)
    elif layout.kind == "precomputed":
        write_precomputed(path, data, layout.chunks)
    else:
        zarr.create_array(
            str(path), data=data, chunks=layout.chunks, shards=layout.shards, zarr_format=3, write_data=True
        )
    return path


def open_layout(layout: Layout, place: str, options: StoreOptions | None) -> Volume:
    """A fresh reader of the layout's volume at `place` (a path or a URL)."""
    if layout.kind == "n5":
        return open_input(place, format="n5", member="raw", options=options)
    if layout.kind == "precomputed":
        return open_input(place, format="precomputed", options=options)
    return open_input(place, format="zarr", options=options)


@contextmanager
def cache_limit(cached: bool) -> Iterator[None]:
    """The input cache as it is, or off (0 bytes) for the duration."""
    before = cache.CHUNK_CACHE_BYTES
    cache.CHUNK_CACHE_BYTES = before if cached else 0
    try:
        yield
    finally:
        cache.CHUNK_CACHE_BYTES = before


def windows() -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (rows, cols) context window of every block of one slice, in the order a prediction reads them."""
    plan = plan_tiles(UNetGeometry(DEPTH), SLICE, SLICE, stride=STRIDE, block=BLOCK)
    found = []
    for y, x in plan.block_starts():
        height, width = plan.block_extent(y, x)
        found.append((plan.context_window(y, height), plan.context_window(x, width)))
    return found


def diff(before: dict[str, Any], after: dict[str, Any], key: str = "requests") -> dict[str, int]:
    """What the server served between two snapshots (by kind, or by place with key="places")."""
    return {k: v - before[key].get(k, 0) for k, v in after[key].items() if v - before[key].get(k, 0)}


def read_pass(volume_at: Callable[[], Volume], z: int, endpoint: str | None) -> dict[str, Any]:
    """Read every block's window of slice `z` with a fresh reader; time, CPU and what the server served."""
    before = server_counts(endpoint) if endpoint else None
    cpu, start = time.process_time(), time.perf_counter()
    volume = volume_at()
    opened = time.perf_counter()
    opening = server_counts(endpoint) if endpoint else None
    for rows, cols in windows():
        read_context(volume, z, rows, cols)
    seconds, cpu = time.perf_counter() - opened, time.process_time() - cpu
    volume.close()
    result: dict[str, Any] = {"seconds": seconds, "open": opened - start, "cpu": cpu}
    if endpoint and before and opening:
        after = server_counts(endpoint)
        result["open_requests"] = sum(diff(before, opening).values())
        result["requests"] = diff(opening, after)
        result["bytes"] = sum(diff(opening, after, "bytes").values())
        result["server_cpu"] = after["cpu_seconds"] - opening["cpu_seconds"]
    return result


def block_reads(work: Path, endpoint: str, repeats: int) -> None:
    """Section 2: every layout's slice pass on disk and on S3, interleaved; a table per block."""
    options = StoreOptions(endpoint_url=endpoint)
    uploader = Location(f"s3://{BUCKET}", options).fs
    for layout in {layout.key: layout for layout in LAYOUTS}.values():
        path = write_layout(work, layout)
        uploader.put(str(path), f"{BUCKET}/{layout.key}", recursive=True)
    first = LAYOUTS[0]
    read_pass(
        functools.partial(open_layout, first, f"s3://{BUCKET}/{first.key}", options), 0, endpoint
    )  # warm
    results: dict[str, dict[str, list[dict[str, Any]]]] = {x.name: {"disk": [], "s3": []} for x in LAYOUTS}
    for repeat in range(repeats):
        for layout in LAYOUTS:
            z = repeat % layout.depth
            disk = work / layout.key
            url = f"s3://{BUCKET}/{layout.key}"
            with cache_limit(layout.cached):
                results[layout.name]["disk"].append(
                    read_pass(functools.partial(open_layout, layout, str(disk), None), z, None)
                )
                results[layout.name]["s3"].append(
                    read_pass(functools.partial(open_layout, layout, url, options), z, endpoint)
                )
    stored = {layout.name: stored_per_block(work / layout.key, layout) for layout in LAYOUTS}
    print_block_table(results, stored)


def stored_per_block(path: Path, layout: Layout) -> float:
    """Bytes the volume stores per block of one slice (its files' bytes / slices / blocks per slice)."""
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return total / layout.depth / len(windows())


def print_block_table(results: dict[str, dict[str, list[dict[str, Any]]]], stored: dict[str, float]) -> None:
    """Per block medians of each layout's passes; bytes fetched against the bytes stored per block (1: each
    stored byte fetched once)."""
    blocks = len(windows())
    window = statistics.mean((r[1] - r[0]) * (c[1] - c[0]) for r, c in windows())
    print(
        f"\n## Block reads: {blocks} blocks of {BLOCK} px per {SLICE}^2 slice "
        f"(context window ~{window / 2**20:.2f} Mpx)\n"
    )
    print(
        "| layout | disk ms/block | S3 ms/block | S3 / disk | GETs/block | MB fetched/block (x stored) "
        "| client CPU ms/block | server CPU ms/block | open: requests, ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, passes in results.items():
        disk = statistics.median(p["seconds"] for p in passes["disk"]) / blocks
        s3 = [p["seconds"] / blocks for p in passes["s3"]]
        ratios = [p["seconds"] / d["seconds"] for p, d in zip(passes["s3"], passes["disk"], strict=True)]
        gets = statistics.median(p["requests"].get("get", 0) for p in passes["s3"]) / blocks
        fetched = statistics.median(p["bytes"] for p in passes["s3"]) / blocks
        cpu = statistics.median(p["cpu"] for p in passes["s3"]) / blocks
        server = statistics.median(p["server_cpu"] for p in passes["s3"]) / blocks
        opening = statistics.median(p["open_requests"] for p in passes["s3"])
        open_ms = statistics.median(p["open"] for p in passes["s3"]) * 1000
        print(
            f"| {name} | {disk * 1000:.1f} | {statistics.median(s3) * 1000:.1f} | "
            f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}-{max(ratios):.1f}) | {gets:.1f} | "
            f"{fetched / 2**20:.2f} ({fetched / stored[name]:.1f}x) | {cpu * 1000:.0f} | "
            f"{server * 1000:.0f} | {opening:.0f}, {open_ms:.0f} |"
        )


def server_latency(endpoint: str, *, count: int = 40, concurrent: int = 16) -> dict[str, float]:
    """Section 1: what the server serves: serial 1 KiB GETs, `concurrent` in flight, one 16 MiB GET."""
    options = StoreOptions(endpoint_url=endpoint)
    fs = Location(f"s3://{BUCKET}", options).fs
    for i in range(concurrent):
        fs.pipe_file(f"{BUCKET}/probe/{i}", os.urandom(1024))
    fs.pipe_file(f"{BUCKET}/probe/big", os.urandom(16 * 2**20))
    fs.pipe_file(f"{BUCKET}/probe/shard", os.urandom(128 * 2**20))
    before, start = server_counts(endpoint), time.perf_counter()
    for i in range(count):
        fs.cat_file(f"{BUCKET}/probe/{i % concurrent}")
    serial = (time.perf_counter() - start) / count
    cpu = (server_counts(endpoint)["cpu_seconds"] - before["cpu_seconds"]) / count
    afs = ChunkS3FileSystem(endpoint_url=endpoint, asynchronous=True, skip_instance_cache=True)

    async def many() -> float:
        await afs.set_session()
        began = time.perf_counter()
        for _ in range(count // concurrent + 1):
            await asyncio.gather(*(afs._cat_file(f"{BUCKET}/probe/{i}") for i in range(concurrent)))
        seconds = time.perf_counter() - began
        await afs._s3.close()
        return seconds

    rate = (count // concurrent + 1) * concurrent / asyncio.run(many())
    start = time.perf_counter()
    fs.cat_file(f"{BUCKET}/probe/big")
    bandwidth = 16 / (time.perf_counter() - start)
    ranged = {}
    for name in ("big", "shard"):
        start = time.perf_counter()
        for _ in range(3):
            fs.cat_file(f"{BUCKET}/probe/{name}", start=0, end=4 * 2**20)
        ranged[name] = (time.perf_counter() - start) / 3 * 1000
    return {
        "serial_ms": serial * 1000,
        "server_cpu_ms": cpu * 1000,
        "rate": rate,
        "mb_s": bandwidth,
        "range_16": ranged["big"],
        "range_128": ranged["shard"],
    }


def run_volume(work: Path, shape: tuple[int, int, int]) -> Path:
    """The whole run's input: an OME-Zarr 0.5 image (chunks 1 x 1024 x 1024) of EM-like slices."""
    path = work / "run.ome.zarr"
    if not path.exists():
        image = omezarr.create_image(
            path, shape=shape, dtype="uint8", chunks=(1, BLOCK, BLOCK), voxel_size=(30, 4, 4), ngff="0.5"
        )
        data = em_like(shape[0], seed=1)
        image[:] = data[:, : shape[1], : shape[2]]
    return path


def whole_run(
    model: UNet, source: SourceSpec, target: str | Location, endpoint: str, *, options: PredictConfig
) -> dict[str, Any]:
    """One predict-only run (predict_volume, then finalize_prediction): its times and what it asked."""
    REQUESTS.reset()
    before, start = server_counts(endpoint), time.perf_counter()
    counts = predict_volume(
        model, source, target, options=options, show_progress=False, stride=STRIDE, block=BLOCK
    )
    predicted, middle = time.perf_counter(), server_counts(endpoint)
    finalize_prediction(target, pyramid=options.pyramid, show_progress=False)
    done, after = time.perf_counter(), server_counts(endpoint)
    return {
        "predict": predicted - start,
        "finalize": done - predicted,
        "blocks": counts["computed"],
        "predict_places": diff(before, middle, "places"),
        "finalize_places": diff(middle, after, "places"),
        "retries": REQUESTS.counts.get("retry", 0),
        "server_cpu": after["cpu_seconds"] - before["cpu_seconds"],
    }


def whole_runs(
    work: Path,
    endpoint: str,
    repeats: int,
    *,
    shape: tuple[int, int, int],
    net: UNetConfig,
    predict: PredictConfig,
) -> None:
    """Section 3: the run from disk to disk and from S3 to S3, interleaved; times, ratio, requests."""
    options = StoreOptions(endpoint_url=endpoint)
    path = run_volume(work, shape)
    Location(f"s3://{BUCKET}", options).fs.put(str(path), f"{BUCKET}/run.ome.zarr", recursive=True)
    torch.manual_seed(0)
    model = UNet(net).eval()
    runs: dict[str, list[dict[str, Any]]] = {"disk": [], "s3": []}
    for repeat in range(repeats):
        target = work / f"out-{repeat}.zarr"
        runs["disk"].append(
            whole_run(model, SourceSpec(path=str(path)), str(target), endpoint, options=predict)
        )
        shutil.rmtree(target)
        source = SourceSpec(path=f"s3://{BUCKET}/run.ome.zarr", endpoint_url=endpoint)
        remote = Location(f"s3://{BUCKET}/{net.depth}x{net.base_channels}-{repeat}.zarr", options)
        runs["s3"].append(whole_run(model, source, remote, endpoint, options=predict))
    print(
        f"\n## Whole predict-only run: {'x'.join(map(str, shape))} OME-Zarr, chunks 1x{BLOCK}^2, "
        f"{runs['disk'][0]['blocks']} blocks of {BLOCK}, net depth {net.depth} with {net.base_channels} "
        f"channels, shards of {predict.shard_gb} GiB, pyramid {predict.pyramid} levels\n"
    )
    print_run_table(runs)


def print_run_table(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Times of the disk and S3 runs (median), the S3 / disk ratios (median and range of the interleaved
    pairs), and the last S3 run's requests by place and kind."""

    def ratios(phase: str) -> str:
        values = [
            (s["predict"] + s["finalize"]) / (d["predict"] + d["finalize"])
            if phase == "total"
            else s[phase] / d[phase]
            for s, d in zip(runs["s3"], runs["disk"], strict=True)
        ]
        return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"

    print("| phase | disk s | S3 s | S3 / disk |")
    print("|---|---:|---:|---:|")
    for phase in ("predict", "finalize", "total"):
        times = {
            where: statistics.median(
                r["predict"] + r["finalize"] if phase == "total" else r[phase] for r in found
            )
            for where, found in runs.items()
        }
        print(f"| {phase} | {times['disk']:.1f} | {times['s3']:.1f} | {ratios(phase)} |")
    last = runs["s3"][-1]
    for phase in ("predict", "finalize"):
        places = last[f"{phase}_places"]
        listing = ", ".join(f"{place}: {count}" for place, count in sorted(places.items()))
        print(f"\n{phase} requests ({sum(places.values())}): {listing}")
    print(f"retries: {last['retries']}, server CPU {last['server_cpu']:.1f} s")


def print_server(endpoint: str, when: str) -> None:
    """Section 1's line: the server's latency, rate, bandwidth and CPU per request, now."""
    found = server_latency(endpoint)
    print(
        f"moto ({when}): one 1 KiB GET {found['serial_ms']:.1f} ms "
        f"({found['server_cpu_ms']:.1f} ms of its CPU), "
        f"{found['rate']:.0f} GETs/s with 16 in flight, {found['mb_s']:.0f} MB/s for one 16 MiB GET; "
        f"4 MiB range of a 16 MiB object {found['range_16']:.0f} ms, of a 128 MiB object "
        f"{found['range_128']:.0f} ms (moto copies the whole object per range); "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    """Start the server, then each section; every figure against disk in the same run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved passes of each block-read layout")
    parser.add_argument("--run-repeats", type=int, default=2, help="interleaved whole runs per net")
    parser.add_argument("--run-shape", type=int, nargs=3, default=[2, SLICE, SLICE], help="z y x of the run")
    parser.add_argument(
        "--nets", nargs="+", default=["4x8", "3x4"], help="nets of the whole run: depth x channels"
    )
    parser.add_argument(
        "--shard-gb", type=float, default=PredictConfig().shard_gb, help="predict.shard_gb of the whole run"
    )
    parser.add_argument("--skip-reads", action="store_true", help="no block-read section")
    parser.add_argument("--skip-run", action="store_true", help="no whole-run section")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the volumes go (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()}")
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="unetflow-stores-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with environment(TEST_CREDENTIALS), moto_s3_process(folder / "moto.log") as endpoint:
            Location(f"s3://{BUCKET}", StoreOptions(endpoint_url=endpoint)).fs.mkdir(BUCKET)
            print_server(endpoint, "start")
            if not args.skip_reads:
                block_reads(folder, endpoint, args.repeats)
            if not args.skip_run:
                for net in args.nets:
                    depth, channels = (int(v) for v in net.split("x"))
                    shape = tuple(args.run_shape)
                    whole_runs(
                        folder,
                        endpoint,
                        args.run_repeats,
                        shape=shape,  # type: ignore[arg-type]
                        net=UNetConfig(depth=depth, base_channels=channels),
                        predict=PredictConfig(device="cpu", shard_gb=args.shard_gb),
                    )
            print_server(endpoint, "end")
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
