"""Helpers shared by test modules: a copy of the workflow to run in, a local HTTP server, an N5 writer."""

from __future__ import annotations

import collections
import contextlib
import functools
import gzip
import http.server
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLURM_STARTED = Path("/run/slurm/unetflow-tests-started")
"""Written by tests/test_slurm.py when it starts the SLURM test cluster (up until the session ends), holding
the process id of the pytest session that started it (`session_pid`): only that session stops it, not a
second one run beside it in another checkout."""


def session_pid() -> int:
    """The process id of this pytest session's controller: under xdist a worker's parent, else this one."""
    return os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()


def copy_workflow(folder: Path) -> Path:
    """Copy the Snakefile, config.yaml, workflow/, envs/ and the workflow profile (profiles/default, which
    Snakemake loads by itself) into `folder` (created); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, folder / name)
    for name in ("workflow", "envs", "profiles/default"):
        shutil.copytree(ROOT / name, folder / name)
    return folder


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder quietly and counts the requests per path; subclasses change `respond`."""

    hits: collections.Counter[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        self.respond()

    def respond(self) -> None:
        """Answer the counted request (by default: the file under the served folder)."""
        super().do_GET()


@contextlib.contextmanager
def serve_folder(
    folder: Path, handler: type[CountingHandler] = CountingHandler
) -> Iterator[tuple[str, collections.Counter[str]]]:
    """An HTTP server on 127.0.0.1 (a free port) serving `folder`: its base URL and the request counts."""
    hits: collections.Counter[str] = collections.Counter()
    bound = functools.partial(type("Bound", (handler,), {"hits": hits}), directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), bound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def write_n5(
    path: Path,
    data: np.ndarray,
    block: tuple[int, int, int],
    *,
    compression: str = "gzip",
    only: set[tuple[int, int, int]] | None = None,
    attributes: dict[str, Any] | None = None,
) -> Path:
    """An N5 dataset written by the spec, independently of the reader: axes reversed (x, y, z),
    blocks `<x>/<y>/<z>` with a big-endian header (mode 0, rank, block size), big-endian data, edge
    blocks cropped."""
    path.mkdir(parents=True, exist_ok=True)
    meta = {
        "dimensions": list(data.shape[::-1]),
        "blockSize": list(block[::-1]),
        "dataType": data.dtype.name,
        "compression": {"type": compression},
        **(attributes or {}),
    }
    (path / "attributes.json").write_text(json.dumps(meta))
    for corner in itertools.product(*(range(0, s, b) for s, b in zip(data.shape, block, strict=True))):
        grid = tuple(c // b for c, b in zip(corner, block, strict=True))
        if only is not None and grid not in only:
            continue
        part = data[tuple(slice(c, c + b) for c, b in zip(corner, block, strict=True))]
        header = np.array([0, part.ndim], ">u2").tobytes() + np.array(part.shape[::-1], ">u4").tobytes()
        payload = part.astype(part.dtype.newbyteorder(">")).tobytes()
        folder = path.joinpath(*(str(g) for g in grid[::-1][:-1]))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(grid[0])).write_bytes(
            header + (gzip.compress(payload) if compression == "gzip" else payload)
        )
    return path


def write_precomputed(folder: Path, data: np.ndarray, chunks: tuple[int, int, int]) -> None:
    """A neuroglancer precomputed volume (raw encoding, origin away from 0) written with tensorstore."""
    import tensorstore as ts

    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "file", "path": str(folder) + "/"},
        "multiscale_metadata": {"type": "image", "data_type": data.dtype.name, "num_channels": 1},
        "scale_metadata": {
            "size": list(data.shape[::-1]),
            "resolution": [4, 4, 40],
            "encoding": "raw",
            "chunk_size": list(chunks[::-1]),
            "voxel_offset": [3, 5, 7],
        },
        "create": True,
    }
    store = ts.open(spec).result()
    store[ts.d[:].translate_to[0]][..., 0] = data.T


SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(
    *args: str, cwd: Path = ROOT, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Snakemake run in `cwd` (the repository by default), its output captured."""
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def job_of(out: str, rule: str) -> str:
    """The block of a dry run's output that describes the first job of `rule`."""
    return out[out.index(f"rule {rule}:") :].split("\n\n")[0]


def write_config(tmp_path: Path, change: dict) -> Path:
    """config.yaml with the dotted keys of `change` set, written into `tmp_path`."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for dotted, value in change.items():
        *parents, key = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_training_volume(root: Path, train_slices: list[int]) -> tuple[Path, Path]:
    """A 4-slice synthetic volume (OME-Zarr with labels) and its border weight maps, balanced over the
    training slices: the small training data the training tests share."""
    from unetflow.data import omezarr
    from unetflow.data.importer import import_volume
    from unetflow.data.synthesize import synthesize_volume
    from unetflow.train.weights import class_balance_weights, weight_map_volume

    raw, cells = synthesize_volume(shape=(4, 64, 64), seed=0)
    data = import_volume(raw, root / "data.zarr", labels=cells)
    class_weights = class_balance_weights(cells[i] > 0 for i in train_slices)
    maps = weight_map_volume(cells, class_weights=class_weights)
    weights = root / "weights.zarr"
    omezarr.write_image(
        weights, maps, voxel_size=(1.0, 1.0, 1.0), attrs={"class_weights": list(class_weights)}
    )
    return Path(data), weights
