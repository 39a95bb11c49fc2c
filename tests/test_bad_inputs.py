"""Bad inputs, as a user meets them: one clear line, the exit code, and nothing lost or half-written.

One table of cases (issue 12): data a step would destroy, corrupt or unsuitable files, checkpoints that are
not a unetflow net, bad command-line arguments and config values, and cluster options that would reach a
job script. Each case runs in a folder of its own that holds every input of the chain (TIFFs, an imported
OME-Zarr, its weight map, a checkpoint); the checksum of every file and folder there is taken before and
after, and a case may change nothing but the outputs it names (an error: nothing at all). Most cases call
`unetflow.cli.main` in this process (what the command prints, without the interpreter's start-up); a few run
`python -m unetflow.cli` as a user does; config cases that only the workflow checks (a split against the
real shape of a file volume, a pretrained model) run `snakemake -n` on a copy of the workflow, all at once.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import tifffile
import torch
import yaml
import zarr
from helpers import copy_workflow

from unetflow.cli.main import main
from unetflow.data import omezarr
from unetflow.data.download import sha256_of
from unetflow.model.checkpoint import save_checkpoint
from unetflow.model.unet import UNet, UNetConfig

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (5, 64, 64)
NET = UNetConfig(depth=1, base_channels=2)
CONFIG = {
    "volumes": {"stack": {"synthetic": {"shape": list(SHAPE), "seed": 3}}},
    "split": {"volume": "stack", "train": "0-2", "val": "3", "test": "4"},
    "model": {"depth": NET.depth, "base_channels": NET.base_channels},
    "train": {"steps": 2, "tile": 20, "checkpoint_every": 1, "val_every": 1, "device": "cpu"},
    "predict": {"device": "cpu"},
}
"""cfg.yaml of the inputs folder: the config that fits its volume (5 slices of 64 x 64)."""

Prepare = Callable[[Path], Any]


@dataclass(frozen=True)
class Case:
    """One bad input: what runs, the message it must print (a regex), its exit code, what it may write.

    `via`: "cli" (unetflow.cli.main here), "process" (`python -m unetflow.cli`) or "snakemake" (`snakemake -n
    --configfile case.yaml` on a copy of the workflow, `config` the file). `prepare` makes the bad input
    in the case's folder first; `writes` are the paths a successful case may create or change, `check`
    tests them; `marks` are pytest marks of the case.
    """

    name: str
    argv: tuple[str, ...] = ()
    message: str = ""
    code: int = 2
    via: str = "cli"
    prepare: Prepare | None = None
    config: dict[str, Any] | None = None
    writes: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = None
    marks: tuple[Any, ...] = ()


def text(name: str, content: str | bytes) -> Prepare:
    """Write a file of the given content (bytes as they are)."""

    def prepare(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return prepare


def config_file(name: str, values: dict[str, Any]) -> Prepare:
    """A YAML config file."""
    return text(name, yaml.safe_dump(values))


def tiff(name: str, make: Callable[[], np.ndarray]) -> Prepare:
    """A multi-page TIFF (axes z, y, x) of the array `make` returns."""
    return lambda folder: tifffile.imwrite(
        folder / name, make(), photometric="minisblack", metadata={"axes": "ZYX"}
    )


def cut(source: str, name: str, fraction: float) -> Prepare:
    """The first `fraction` of a file's bytes, as a download cut short leaves it."""

    def prepare(folder: Path) -> None:
        data = (folder / source).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * fraction)])

    return prepare


def copy(source: str, name: str) -> Prepare:
    """A copy of a file or folder of the inputs."""

    def prepare(folder: Path) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if (folder / source).is_dir():
            shutil.copytree(folder / source, folder / name)
        else:
            shutil.copy(folder / source, folder / name)

    return prepare


def cli(*argv: str) -> Prepare:
    """An earlier step run by the CLI (it must succeed)."""

    def prepare(folder: Path) -> None:
        with contextlib.chdir(folder), contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["-q", *argv]) == 0, err.getvalue()

    return prepare


def checkpoint(name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Prepare:
    """A checkpoint file made from the inputs' model.pt by `change` (torch.save: a valid PyTorch file)."""

    def prepare(folder: Path) -> None:
        state = torch.load(folder / "model.pt", weights_only=True)
        torch.save(change(state), folder / name)

    return prepare


def h5(name: str, datasets: dict[str, np.ndarray]) -> Prepare:
    """An HDF5 file with these datasets."""

    def prepare(folder: Path) -> None:
        with h5py.File(folder / name, "w") as handle:
            for key, value in datasets.items():
                handle[key] = value

    return prepare


def zarr_store(name: str, arrays: dict[str, np.ndarray]) -> Prepare:
    """A Zarr group with these arrays."""

    def prepare(folder: Path) -> None:
        group = zarr.open_group(str(folder / name), mode="w")
        for key, value in arrays.items():
            group.create_array(key, data=value)

    return prepare


def symlink(name: str, target: str) -> Prepare:
    """A symbolic link `name` -> `target`."""
    return lambda folder: (folder / name).symlink_to(target)


def noise(shape: tuple[int, ...] = SHAPE, dtype: type = np.uint8) -> Callable[[], np.ndarray]:
    """Deterministic random grey values."""
    return lambda: np.random.default_rng(7).integers(1, 250, shape).astype(dtype)


def with_nan() -> np.ndarray:
    """Grey values with one NaN."""
    values = noise(dtype=np.float32)()
    values[2, 10, 10] = np.nan
    return values


def with_value(value: float, dtype: type, shape: tuple[int, ...] = SHAPE) -> Callable[[], np.ndarray]:
    """A volume of one value."""
    return lambda: np.full(shape, value, dtype=dtype)


def imported_as_slices(slices: int) -> Callable[[Path], None]:
    """A synthetic volume of 3 or 4 slices is that many slices, not one RGB(A) image (issue 12, item 5)."""

    def check(folder: Path) -> None:
        assert omezarr.open_image(folder / "few.zarr").shape == (slices, 64, 64)
        cells = omezarr.open_labels(folder / "few.zarr")
        assert cells is not None and cells.shape == (slices, 64, 64) and int(cells[:].max()) > 1

    return check


def every_group_predicted(folder: Path) -> None:
    """Without --group every block group is predicted (issue 12, item 3): each shard complete, each voxel."""
    from unetflow.predict import check_complete, read_plan

    assert read_plan(folder / "p.zarr").groups == 2
    check_complete(folder / "p.zarr")
    probability = omezarr.open_image(folder / "p.zarr")[:]
    assert probability.shape == SHAPE and np.all(probability > 0)


def defaults_merged(folder: Path) -> None:
    """A --config file with one key changed takes every other key from the defaults (issue 12, item 6)."""
    attrs = omezarr.read_attrs(folder / "w.zarr")
    assert attrs["sigma"] == 3.0 and attrs["w0"] == 10.0


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU's message")
SCRIPT_SAFE = "must be one word of letters, digits"
OUTPUT_OVERLAP = r"Nothing was written; choose an output path outside the inputs"
FILE_VOLUME = {"raw": {"path": "raw.tif"}, "labels": {"path": "labels.tif"}}
SPLIT = {"volume": "stack", "train": "0-2", "val": "3", "test": "4"}


def workflow_config(**sections: Any) -> dict[str, Any]:
    """A user's config for the workflow: the inputs' TIFF volume and its split, `sections` over them."""
    return {"volumes": {"stack": FILE_VOLUME}, "split": SPLIT, **sections}


def cluster(**options: Any) -> dict[str, Any]:
    """The predict section of a dask cluster on SLURM with these options."""
    return {"predict": {"scheduler": "distributed", "cluster": {"kind": "slurm", **options}}}


CASES = [
    # 1. Outputs that are, contain or lie inside an input: refused before anything is touched.
    Case(
        "import-output-is-its-input",
        ("import", "data.zarr", "data.zarr", "--member", "0"),
        rf"output data.zarr is the input data.zarr: writing it would destroy that input\. {OUTPUT_OVERLAP}",
        via="process",
    ),
    Case(
        "weights-output-is-its-input",
        ("weights", "data.zarr", "data.zarr"),
        r"output data.zarr is the input data.zarr",
        via="process",
    ),
    Case(
        "import-output-inside-its-input",
        ("import", "data.zarr", "data.zarr/more.zarr", "--member", "0"),
        r"output data.zarr/more.zarr lies inside the input data.zarr",
    ),
    Case(
        "import-output-contains-its-input",
        ("import", "in/raw.tif", "in"),
        r"output in contains the input in/raw.tif",
        prepare=copy("raw.tif", "in/raw.tif"),
    ),
    Case(
        "import-output-is-its-labels",
        ("import", "raw.tif", "labels.tif", "--labels", "labels.tif"),
        r"output labels.tif is the input labels.tif",
    ),
    Case(
        "weights-output-is-a-link-to-its-input",
        ("weights", "data.zarr", "link.zarr"),
        r"output link.zarr is the input data.zarr",
        prepare=symlink("link.zarr", "data.zarr"),
    ),
    Case(
        "train-output-inside-its-data",
        ("train", "data.zarr", "weights.zarr", "data.zarr/model.pt"),
        r"output data.zarr/model.pt lies inside the input data.zarr",
    ),
    Case(
        "train-workdir-is-its-weights",
        ("train", "data.zarr", "weights.zarr", "m/model.pt", "--workdir", "weights.zarr"),
        r"output weights.zarr is the input weights.zarr",
    ),
    Case(
        "predict-output-is-its-data",
        ("predict", "model.pt", "data.zarr", "data.zarr"),
        r"output data.zarr is the input data.zarr",
    ),
    Case(
        "predict-journal-is-its-data",
        ("predict", "model.pt", "p.progress", "p.zarr"),
        r"refusing to delete p.progress: it is the input .*p.progress of this step",
        prepare=copy("data.zarr", "p.progress"),
    ),
    Case(
        "evaluate-output-inside-the-prediction",
        ("evaluate", "data.zarr", "data.zarr", "data.zarr/m.json"),
        r"output data.zarr/m.json lies inside the input data.zarr",
    ),
    Case(
        "download-target-is-its-source",
        ("download", "raw.tif", "raw.tif"),
        r"output raw.tif is the input raw.tif",
    ),
    Case("export-output-is-its-model", ("export", "model.pt", "model.pt"), r"output model.pt is the input"),
    Case(
        "synthesize-raw-and-labels-one-file", ("synthesize", "a.tif", "a.tif"), r"a.tif.*both raw and labels"
    ),
    # 2. Files that are not what they claim to be.
    Case(
        "truncated-zlib-tiff",
        ("import", "cut.tif", "out.zarr"),
        r"cut.tif: the file is truncated .* download or export it again",
        prepare=cut("raw.tif", "cut.tif", 2 / 3),
        via="process",
    ),
    Case(
        "corrupt-tiff",
        ("import", "bad.tif", "out.zarr"),
        r"bad.tif: cannot be read as a TIFF",
        prepare=text("bad.tif", bytes(range(256)) * 8),
    ),
    Case(
        "empty-tiff",
        ("import", "empty.tif", "out.zarr"),
        r"empty.tif: cannot be read as a TIFF .*empty",
        prepare=text("empty.tif", b""),
    ),
    Case(
        "hdf5-without-the-member",
        ("import", "v.h5", "out.zarr", "--member", "volumes/raw"),
        r"v.h5: no HDF5 dataset 'volumes/raw'; the datasets in this file are: raw",
        prepare=h5("v.h5", {"raw": noise()()}),
    ),
    Case(
        "hdf5-that-is-not-hdf5",
        ("import", "v.h5", "out.zarr"),
        r"v.h5: cannot be read as an HDF5 file",
        prepare=text("v.h5", b"not an HDF5 file\n" * 20),
    ),
    Case(
        "zarr-without-the-array",
        ("import", "s.zarr", "out.zarr", "--member", "raw"),
        r"s.zarr: no Zarr array 'raw'; the arrays in this store are: volume",
        prepare=zarr_store("s.zarr", {"volume": noise()()}),
    ),
    Case(
        "zarr-folder-that-is-empty",
        ("import", "s.zarr", "out.zarr"),
        r"s.zarr: cannot be read as a Zarr",
        prepare=lambda folder: (folder / "s.zarr").mkdir(),
    ),
    Case(
        "constant-raw",
        ("import", "flat.tif", "out.zarr"),
        r"flat.tif: the raw volume is constant",
        prepare=tiff("flat.tif", with_value(7, np.uint8)),
    ),
    Case(
        "nan-in-raw",
        ("import", "nan.tif", "out.zarr"),
        r"nan.tif: the raw volume holds 1 non-finite",
        prepare=tiff("nan.tif", with_nan),
    ),
    Case(
        "labels-of-another-shape",
        ("import", "raw.tif", "out.zarr", "--labels", "other.tif"),
        r"other.tif: labels of shape \(5, 64, 60\) .* do not match the raw volume raw.tif of shape",
        prepare=tiff("other.tif", noise((5, 64, 60))),
    ),
    Case(
        "labels-without-foreground",
        ("import", "raw.tif", "out.zarr", "--labels", "zero.tif"),
        r"zero.tif: the labels hold no foreground",
        prepare=tiff("zero.tif", with_value(0, np.uint8)),
    ),
    Case(
        "labels-that-are-probabilities",
        ("import", "raw.tif", "out.zarr", "--labels", "p.tif"),
        r"p.tif: labels hold fractional",
        prepare=tiff("p.tif", with_value(0.5, np.float32)),
    ),
    Case(
        "labels-negative",
        ("import", "raw.tif", "out.zarr", "--labels", "neg.tif"),
        r"neg.tif: labels hold negative values",
        prepare=tiff("neg.tif", with_value(-1, np.int16)),
    ),
    Case(
        "invert-of-instance-labels",
        ("import", "raw.tif", "o.zarr", "--labels", "labels.tif", "--invert-labels"),
        r"labels.tif: invert applies to binary labels",
    ),
    Case("missing-raw", ("import", "nope.tif", "out.zarr"), r"nope.tif: no such file or folder"),
    Case(
        "missing-labels",
        ("import", "raw.tif", "out.zarr", "--labels", "nope.tif"),
        r"nope.tif: no such file or folder",
    ),
    Case(
        "weights-of-data-without-labels",
        ("weights", "bare.zarr", "w.zarr", "--train-slices", "0"),
        r"bare.zarr has no labels",
        prepare=cli("import", "raw.tif", "bare.zarr"),
    ),
    Case(
        "predict-of-a-missing-volume", ("predict", "model.pt", "nope.zarr", "p.zarr"), r"nope.zarr: no such"
    ),
    Case(
        "evaluate-of-a-missing-prediction",
        ("evaluate", "nope.zarr", "data.zarr", "m.json"),
        r"nope.zarr: no such Zarr image",
    ),
    # 3. Checkpoints that are not a unetflow net.
    Case(
        "truncated-checkpoint",
        ("predict", "cut.pt", "data.zarr", "p.zarr"),
        r"checkpoint cut.pt cannot be read: it is not a complete PyTorch file",
        prepare=cut("model.pt", "cut.pt", 0.5),
    ),
    Case(
        "text-file-as-checkpoint",
        ("predict", "notes.pt", "data.zarr", "p.zarr"),
        r"checkpoint notes.pt cannot be read: it is not a complete PyTorch file",
        prepare=text("notes.pt", "my notes\n"),
    ),
    Case(
        "checkpoint-of-another-program",
        ("predict", "other.pt", "data.zarr", "p.zarr"),
        r"other.pt is not a unetflow checkpoint",
        prepare=checkpoint("other.pt", lambda state: {"state_dict": state["model_state_dict"]}),
    ),
    Case(
        "checkpoint-of-another-architecture",
        ("predict", "deep.pt", "data.zarr", "p.zarr"),
        r"deep.pt holds a net of another architecture",
        prepare=checkpoint(
            "deep.pt", lambda state: {**state, "model_config": {"depth": 2, "base_channels": 2}}
        ),
    ),
    Case(
        "missing-checkpoint",
        ("predict", "nope.pt", "data.zarr", "p.zarr"),
        r"checkpoint nope.pt does not exist",
    ),
    Case(
        "predict-on-cuda-without-a-gpu",
        ("predict", "model.pt", "data.zarr", "p.zarr", "--config", "gpu.yaml"),
        r"device 'cuda' was asked for but PyTorch sees no CUDA GPU .*or set device: auto",
        prepare=config_file("gpu.yaml", {**CONFIG, "predict": {"device": "cuda"}}),
        marks=(NO_GPU,),
    ),
    Case(
        "train-on-cuda-without-a-gpu",
        ("train", "data.zarr", "weights.zarr", "m/model.pt", "--config", "gpu.yaml"),
        r"device 'cuda' was asked for but PyTorch sees no CUDA GPU",
        prepare=config_file("gpu.yaml", {**CONFIG, "train": {**CONFIG["train"], "device": "cuda"}}),
        marks=(NO_GPU,),
    ),
    # 4. Command-line arguments.
    Case(
        "unknown-format",
        ("import", "raw.tif", "out.zarr", "--format", "nrrd"),
        r"argument --format: invalid choice: 'nrrd'",
    ),
    Case(
        "slices-that-are-no-slices",
        ("weights", "data.zarr", "w.zarr", "--train-slices", "first"),
        r"split.train: cannot read 'first' as slices",
    ),
    Case(
        "slices-past-the-end",
        ("weights", "data.zarr", "w.zarr", "--train-slices", "3-9"),
        r"split.train: slice 9 is out of range; the volume has 5 slices",
    ),
    Case(
        "slices-backwards",
        ("train", "data.zarr", "weights.zarr", "m/model.pt", "--train-slices", "2-0"),
        r"split.train: range '2-0' runs backwards",
    ),
    Case(
        "train-and-val-overlap",
        ("train", "data.zarr", "weights.zarr", "m/model.pt", "--train-slices", "0-3", "--val-slices", "3"),
        r"split.train and split.val share slices \[3\]",
    ),
    Case(
        "evaluate-slices-past-the-end",
        ("evaluate", "data.zarr", "data.zarr", "m.json", "--slices", "9"),
        r"test: slice 9 is out of range; the volume has 5 slices",
    ),
    Case(
        "threshold-that-is-no-number",
        ("evaluate", "data.zarr", "data.zarr", "m.json", "--threshold", "high"),
        r"--threshold 'high': give a number",
    ),
    Case(
        "group-out-of-range",
        ("predict", "model.pt", "data.zarr", "p.zarr", "--group", "3"),
        r"block group 3 of 1 is out of range: .*nothing was written",
    ),
    Case(
        "negative-voxel-size",
        ("import", "raw.tif", "out.zarr", "--voxel-size", "50", "-4", "4"),
        r"voxel_size.1: Input should be greater than 0",
    ),
    Case(
        "labels-options-without-labels",
        ("import", "raw.tif", "out.zarr", "--labels-member", "cells"),
        r"--labels-format, --labels-member, --invert-labels and --labels-ignore need --labels",
    ),
    Case(
        "huge-synthetic-shape",
        ("synthesize", "a.tif", "b.tif", "--shape", "10000", "10000", "10000"),
        r"takes at most 536,870,912: make it smaller",
    ),
    Case(
        "zero-synthetic-shape",
        ("synthesize", "a.tif", "b.tif", "--shape", "0", "64", "64"),
        r"synthetic.shape.0: Input should be greater than or equal to 1",
    ),
    Case(
        "report-without-results",
        ("report", "--results", "results"),
        r"results/metrics/main.json does not exist: run the workflow",
    ),
    # 5. Config files given to the CLI (merged over the defaults, as the workflow does).
    Case(
        "missing-config-file",
        ("weights", "data.zarr", "w.zarr", "--config", "nope.yaml"),
        r"config file nope.yaml does not exist",
        via="process",
    ),
    Case(
        "config-file-that-is-no-yaml",
        ("weights", "data.zarr", "w.zarr", "--config", "bad.yaml"),
        r"config file bad.yaml cannot be read as YAML",
        prepare=text("bad.yaml", "split: [0-9,\n"),
    ),
    Case(
        "config-file-that-is-a-list",
        ("weights", "data.zarr", "w.zarr", "--config", "bad.yaml"),
        r"config file bad.yaml holds a list",
        prepare=text("bad.yaml", "- split\n- model\n"),
    ),
    Case(
        "depth-zero",
        ("train", "data.zarr", "weights.zarr", "m/model.pt", "--config", "bad.yaml"),
        r"model.depth: Input should be greater than or equal to 1 \(got 0\)",
        prepare=config_file("bad.yaml", {"model": {"depth": 0}}),
    ),
    Case(
        "learning-rate-as-text",
        ("train", "data.zarr", "weights.zarr", "m/model.pt", "--config", "bad.yaml"),
        r"train.lr: .*YAML reads 1e-3 as text",
        prepare=text("bad.yaml", "train: {lr: 1e-3}\n"),
    ),
    Case(
        "unknown-config-key",
        ("weights", "data.zarr", "w.zarr", "--config", "bad.yaml"),
        r"weights.w1: unknown key",
        prepare=config_file("bad.yaml", {"weights": {"w1": 3}}),
    ),
    Case(
        "volumes-empty",
        ("weights", "data.zarr", "w.zarr", "--config", "bad.yaml"),
        r"volumes: names no volume",
        prepare=config_file("bad.yaml", {"volumes": {}}),
    ),
    Case(
        "queue-with-a-newline",
        ("predict", "model.pt", "data.zarr", "p.zarr", "--config", "bad.yaml"),
        rf'predict.cluster.queue: {SCRIPT_SAFE}.*\(got "gpu\\n#SBATCH --mem=1T"\)',
        prepare=config_file("bad.yaml", {"predict": {"cluster": {"queue": "gpu\n#SBATCH --mem=1T"}}}),
    ),
    Case(
        "queue-ending-in-a-newline",
        ("predict", "model.pt", "data.zarr", "p.zarr", "--config", "bad.yaml"),
        rf'predict.cluster.queue: {SCRIPT_SAFE}.*\(got "gpu\\n"\)',
        prepare=config_file("bad.yaml", {"predict": {"cluster": {"queue": "gpu\n"}}}),
    ),
    Case(
        "sha256-ending-in-a-newline",
        ("weights", "data.zarr", "w.zarr", "--config", "bad.yaml"),
        r"volumes.stack.raw.sha256: must be 64 lower-case hexadecimal digits",
        prepare=config_file(
            "bad.yaml",
            {**CONFIG, "volumes": {"stack": {"raw": {"path": "raw.tif", "sha256": "a" * 64 + "\n"}}}},
        ),
    ),
    # 6. The workflow: every cross-key check before any job, against the real shape of every volume.
    Case(
        "split-test-past-the-end-of-a-file-volume",
        via="snakemake",
        code=1,
        config=workflow_config(split={**SPLIT, "test": "4-9"}),
        message=r"split.test: slice 9 is out of range; the volume has 5 slices .* 'stack' \(raw\.tif",
    ),
    Case(
        "split-roles-overlap",
        via="snakemake",
        code=1,
        config=workflow_config(split={**SPLIT, "test": "2-4"}),
        message=r"split.train and split.test share slices \[2\] of volume 'stack' \(raw.tif\)",
    ),
    Case(
        "user-volumes-empty",
        via="snakemake",
        code=1,
        config={"volumes": {}},
        message=r"volumes: names no volume",
    ),
    Case(
        "labels-of-another-shape-in-the-config",
        via="snakemake",
        code=1,
        config=workflow_config(volumes={"stack": {**FILE_VOLUME, "labels": {"path": "other.tif"}}}),
        prepare=tiff("other.tif", noise((5, 64, 60))),
        message=r"labels other.tif of shape \(5, 64, 60\) do not match the raw volume raw.tif",
    ),
    Case(
        "missing-raw-in-the-config",
        via="snakemake",
        code=1,
        config=workflow_config(volumes={"stack": {**FILE_VOLUME, "raw": {"path": "gone.tif"}}}),
        message=r"volumes.stack.raw.path: gone.tif does not exist",
    ),
    Case(
        "pretrained-of-another-sha256",
        via="snakemake",
        code=1,
        config={
            "volumes": {"stack": {"raw": {"path": "raw.tif"}}},
            "split": None,
            "pretrained": {"path": "model.pt", "sha256": "0" * 64},
        },
        message=r"checksum mismatch for model.pt \(pretrained model\): expected sha256 0{64}, got",
    ),
    Case(
        "pretrained-truncated",
        via="snakemake",
        code=1,
        prepare=cut("model.pt", "cut.pt", 0.5),
        config={
            "volumes": {"stack": {"raw": {"path": "raw.tif"}}},
            "split": None,
            "pretrained": {"path": "cut.pt"},
        },
        message=r"checkpoint cut.pt cannot be read",
    ),
    Case(
        "pretrained-of-another-architecture",
        via="snakemake",
        code=1,
        prepare=checkpoint(
            "deep.pt", lambda state: {**state, "model_config": {"depth": 3, "base_channels": 2}}
        ),
        config={
            "volumes": {"stack": {"raw": {"path": "raw.tif"}}},
            "split": None,
            "pretrained": {"path": "deep.pt"},
        },
        message=r"deep.pt holds a net of another architecture",
    ),
    Case(
        "cluster-queue-with-a-newline",
        via="snakemake",
        code=1,
        config=workflow_config(**cluster(queue="gpu\n#SBATCH --mem=1T")),
        message=rf"predict.cluster.queue: {SCRIPT_SAFE}",
    ),
    Case(
        "cluster-account-with-a-semicolon",
        via="snakemake",
        code=1,
        config=workflow_config(**cluster(account="lab;rm")),
        message=rf"predict.cluster.account: {SCRIPT_SAFE}",
    ),
    Case(
        "cluster-job-extra-with-a-command",
        via="snakemake",
        code=1,
        config=workflow_config(**cluster(job_extra=["--comment=$(id)"])),
        message=rf"predict.cluster.job_extra.0: {SCRIPT_SAFE}",
    ),
    Case(
        "cluster-walltime-ending-in-a-newline",
        via="snakemake",
        code=1,
        config=workflow_config(**cluster(walltime="02:00:00\n")),
        message=r"predict.cluster.walltime: must be a time limit such as 02:00:00 .*\(got \"02:00:00\\n\"\)",
    ),
    Case(
        "volume-name-with-a-slash",
        via="snakemake",
        code=1,
        config={
            "volumes": {"a/b": {"raw": {"path": "raw.tif"}}},
            "split": None,
            "pretrained": {"path": "model.pt"},
        },
        message=r"volumes.a/b\S*: must be letters, digits, _ and - only",
    ),
    # 7. What must work (each once broke): outputs checked, nothing else touched.
    *(
        Case(
            f"{slices}-slice-synthetic-volume",
            ("import", "a.tif", "few.zarr", "--labels", "b.tif"),
            code=0,
            prepare=cli("synthesize", "a.tif", "b.tif", "--shape", str(slices), "64", "64"),
            writes=("few.zarr",),
            check=imported_as_slices(slices),
        )
        for slices in (3, 4)
    ),
    Case(
        "predict-without-group-predicts-every-group",
        ("predict", "model.pt", "data.zarr", "p.zarr", "--config", "two.yaml"),
        code=0,
        prepare=config_file("two.yaml", {**CONFIG, "predict": {"device": "cpu", "block_groups": 2}}),
        writes=("p.zarr", "p.progress"),
        check=every_group_predicted,
    ),
    Case(
        "config-merged-over-the-defaults",
        ("weights", "data.zarr", "w.zarr", "--config", "one.yaml"),
        code=0,
        prepare=config_file("one.yaml", {**CONFIG, "weights": {"sigma": 3.0}}),
        writes=("w.zarr",),
        check=defaults_merged,
    ),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every input of the chain: raw and labels TIFFs (as `synthesize` writes them), their import, its
    weight map, a checkpoint of a tiny net and the config that fits them (cfg.yaml)."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    cli("synthesize", "raw.tif", "labels.tif", "--shape", *map(str, SHAPE), "--seed", "3")(folder)
    cli("import", "raw.tif", "data.zarr", "--labels", "labels.tif")(folder)
    cli("weights", "data.zarr", "weights.zarr", "--config", "cfg.yaml")(folder)
    torch.manual_seed(0)
    state = {"model_state_dict": UNet(NET).state_dict(), "model_config": NET.to_dict(), "threshold": 0.5}
    save_checkpoint(folder / "model.pt", state)
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder`: a file's sha256, "folder", or a link's target."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = f"link to {os.readlink(path)}"
        elif path.is_dir():
            found[name] = "folder"
        else:
            found[name] = sha256_of(path)
    return found


def allowed(name: str, writes: tuple[str, ...]) -> bool:
    return any(name == path or name.startswith(f"{path}/") for path in writes)


def assert_untouched(before: dict[str, str], after: dict[str, str], writes: tuple[str, ...]) -> None:
    """Every path as it was, except under `writes` (which the case may create or change)."""
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert {name for name in changed if not allowed(name, writes)} == set()


def run_cli(case: Case, folder: Path) -> tuple[int, str]:
    """The case's command in this process or in a fresh one; its exit code and stderr."""
    if case.via == "process":
        command = [sys.executable, "-m", "unetflow.cli", *case.argv]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
        return result.returncode, result.stderr
    stderr = io.StringIO()
    with contextlib.chdir(folder), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(case.argv))
        except SystemExit as exit:  # argparse
            code = int(exit.code or 0)
    return code, stderr.getvalue()


def case_folder(inputs: Path, folder: Path, case: Case) -> Path:
    """The inputs copied to `folder`, then the case's own preparation."""
    shutil.copytree(inputs, folder)
    if case.prepare is not None:
        case.prepare(folder)
    return folder


SNAKEMAKE_CASES = [case for case in CASES if case.via == "snakemake"]


@pytest.fixture(scope="module")
def dry_runs(
    inputs: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[subprocess.CompletedProcess[str], dict[str, str], dict[str, str]]]:
    """`snakemake -n` of every workflow case at once (each costs seconds of start-up, mostly waiting):
    its result and the snapshots of its folder (the workflow's copy and the inputs) before and after."""
    shim = tmp_path_factory.mktemp("bin")
    # the SLURM executor plugin asks `scontrol` for MinJobAge when Snakemake starts: here a stand-in that
    # answers at once (a machine with SLURM's tools but no controller would make each dry run wait 10 s)
    (shim / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (shim / "scontrol").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}

    def dry_run(case: Case) -> tuple[subprocess.CompletedProcess[str], dict[str, str], dict[str, str]]:
        folder = case_folder(inputs, tmp_path_factory.mktemp(case.name) / "run", case)
        copy_workflow(folder)
        (folder / "case.yaml").write_text(yaml.safe_dump(case.config))
        before = snapshot(folder)
        command = [sys.executable, "-m", "snakemake", "-n", "--configfile", "case.yaml"]
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        return result, before, snapshot(folder)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(dry_run, SNAKEMAKE_CASES)
        return {case.name: result for case, result in zip(SNAKEMAKE_CASES, results, strict=True)}


def error_lines(output: str) -> list[str]:
    """The lines of the command's output that report an error."""
    return [
        line for line in output.splitlines() if re.search(r"(^unetflow[\w -]*: error: |Error in file)", line)
    ]


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=case.marks) for case in CASES])
def test_a_bad_input_is_one_clear_message_and_changes_nothing(
    case: Case, inputs: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if case.via == "snakemake":
        result, before, after = request.getfixturevalue("dry_runs")[case.name]
        output = result.stdout + result.stderr
        assert result.returncode == case.code, output
        assert "Traceback" not in output
        errors = error_lines(output)
        assert len(errors) == 1, output
        # Snakemake prints the error's type and place, then the message
        message = output.split(errors[0], 1)[1].strip().splitlines()[0]
        assert re.search(case.message, message), output
        assert_untouched(before, after, ())
        return
    folder = case_folder(inputs, tmp_path / "case", case)
    before = snapshot(folder)
    code, stderr = run_cli(case, folder)
    after = snapshot(folder)
    assert "Traceback" not in stderr, stderr
    assert code == case.code, stderr
    errors = error_lines(stderr)
    if case.code == 0:
        assert errors == [], stderr
        assert case.check is not None
        case.check(folder)
    else:
        assert len(errors) == 1, stderr
        assert errors[0].startswith(f"unetflow {case.argv[0]}: error: "), stderr
        assert re.search(case.message, errors[0]), stderr
    assert_untouched(before, after, case.writes)


def test_the_table_covers_every_class_of_the_issue() -> None:
    """At least 40 bad inputs, each class of issue 12 among them, every name once."""
    bad = [case for case in CASES if case.code != 0]
    assert len(bad) >= 40 and len({case.name for case in CASES}) == len(CASES)
    assert {case.via for case in CASES} == {"cli", "process", "snakemake"}
    assert sum("cluster" in case.name or "queue" in case.name for case in bad) >= 5


def test_snapshot_sees_a_change_in_one_byte(inputs: Path, tmp_path: Path) -> None:
    """The check that nothing changed would see one byte changed, a new file, and a new empty folder."""
    folder = tmp_path / "copy"
    shutil.copytree(inputs, folder)
    before = snapshot(folder)
    chunk = next(path for path in (folder / "data.zarr").rglob("*") if path.is_file() and "0/" in str(path))
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    (folder / "new").mkdir()
    after = snapshot(folder)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert changed == {str(chunk.relative_to(folder)), "new"}
