"""The ISBI 2012 configs: dry runs of the whole chain; real downloads through the workflow (local server)."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from itertools import pairwise
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import yaml
from helpers import copy_workflow, serve_folder
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Reader

from unetflow.config.model import VolumeConfig
from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.steps.data import run_import

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
CHAIN = ("download", "import_volume", "weights", "train", "predict", "evaluate", "report")
SHA256 = {
    "train-volume.tif": "ffd3f1d01cfe6c11c95a9a68238e20d91d393906710a66d52de75405aaf501ca",
    "train-labels.tif": "b68ad8c084464014b38c6d5966048dabe033df9d0b4fd87ae28c83e1c4db4b57",
}
SPLIT = {"volume": "isbi", "train": "0-14", "val": "15-19", "test": "20-24"}
Job = tuple[str, list[str], list[str]]


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def dry_run_jobs(output: str) -> list[Job]:
    """(rule, inputs, outputs) of every job a dry run lists."""
    jobs: list[Job] = []
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", output, flags=re.MULTILINE)[1:]:
        rule = block.split(":", 1)[0].split()[-1]
        files = dict(re.findall(r"^\s+(input|output): (.*)$", block, flags=re.MULTILINE))
        inputs, outputs = (
            [f.strip() for f in files.get(key, "").split(",") if f] for key in ("input", "output")
        )
        jobs.append((rule, inputs, outputs))
    return jobs


def assert_chain(jobs: Sequence[Job], chain: Sequence[str]) -> None:
    """Each rule of `chain` leads to the next one through files its jobs write and the next ones read."""
    made_by = {out: i for i, (_, _, outputs) in enumerate(jobs) for out in outputs}
    needs = {i: {made_by[f] for f in inputs if f in made_by} for i, (_, inputs, _) in enumerate(jobs)}

    def upstream(job: int) -> set[int]:
        seen: set[int] = set()
        todo = [job]
        while todo:
            for parent in needs[todo.pop()] - seen:
                seen.add(parent)
                todo.append(parent)
        return seen

    for before, after in pairwise(chain):
        sources = {i for i, job in enumerate(jobs) if job[0] == before}
        targets = [i for i, job in enumerate(jobs) if job[0] == after]
        assert sources and targets, f"no {before} or no {after} job"
        assert any(sources & upstream(t) for t in targets), f"{before} does not lead to {after}"


# The configs that read ../shared/data/isbi2012 in place, with how many volumes each imports.
LOCAL_IMPORTS = {"isbi2012-local": 2, "isbi2012-cpu": 2}


@pytest.mark.parametrize("name", ["isbi2012", "isbi2012-cpu", "isbi2012-local"])
def test_dry_run_lists_the_chain(name: str, request: pytest.FixtureRequest) -> None:
    local = name in LOCAL_IMPORTS
    if local:
        request.getfixturevalue("isbi_dir")
    # --forceall: the whole plan whatever this checkout already holds; --nolock: others may be running here
    result = snakemake("-n", "--forceall", "--nolock", "--configfile", f"configs/{name}.yaml")
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = dry_run_jobs(result.stdout + result.stderr)
    rules = collections.Counter(rule for rule, _, _ in jobs)
    assert "synthesize" not in rules, "the config's volumes replace config.yaml's synthetic one"
    if local:
        assert "download" not in rules
        assert rules["import_volume"] == rules["predict_finalize"] == LOCAL_IMPORTS[name]
        assert_chain(jobs, CHAIN[1:])
        return
    assert rules["download"] == 1 and rules["import_volume"] == 1
    (download,) = [job for job in jobs if job[0] == "download"]
    (imported,) = [job for job in jobs if job[0] == "import_volume"]
    assert download[2] == ["data/raw/isbi2012/isbi2012.h5"]
    assert imported[1] == ["data/raw/isbi2012/isbi2012.h5"] * 2  # raw and labels: one file
    assert_chain(jobs, CHAIN)


@pytest.fixture(scope="module")
def served(
    isbi_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, collections.Counter[str]]]:
    """A server on 127.0.0.1 (random port): the ISBI TIFFs, and `download`, an HDF5 file of both whose
    labels have the membrane as foreground (255), like a source that needs invert."""
    folder = tmp_path_factory.mktemp("served")
    for name in SHA256:
        (folder / name).symlink_to(isbi_dir / name)
    with h5py.File(folder / "download", "w") as h5:
        h5["raw"] = tifffile.imread(isbi_dir / "train-volume.tif")
        h5["labels/membranes"] = 255 - tifffile.imread(isbi_dir / "train-labels.tif")
    with serve_folder(folder) as served:
        yield served


def workflow_copy(folder: Path, volumes: dict) -> Path:
    """A copy of the workflow in `folder` with a config of these volumes; returns the config's path."""
    copy_workflow(folder)
    config = folder / "isbi.yaml"
    config.write_text(yaml.safe_dump({"volumes": volumes, "split": SPLIT}))
    return config


def url_source(url: str, name: str, **extra: object) -> dict:
    return {"url": f"{url}/{name}", "sha256": SHA256[name], **extra}


def test_download_and_import_through_the_workflow(served, isbi_dir: Path, tmp_path: Path) -> None:
    url, hits = served
    h5 = {"url": f"{url}/download", "filename": "isbi.h5", "format": "h5"}
    workflow_copy(
        tmp_path,
        {
            "isbi": {
                "raw": url_source(url, "train-volume.tif"),
                "labels": url_source(url, "train-labels.tif"),
                "voxel_size": [50.0, 4.0, 4.0],
            },
            "membranes": {
                "raw": {**h5, "member": "raw"},
                "labels": {**h5, "member": "labels/membranes", "invert": True},
            },
        },
    )
    targets = ("results/data/isbi.zarr", "results/data/membranes.zarr")
    result = snakemake(*targets, "--cores", "2", "--configfile", "isbi.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert hits["/download"] == 1, "raw and labels of one url: one download"
    assert sorted(p.name for p in (tmp_path / "data" / "raw" / "membranes").iterdir()) == ["isbi.h5"]
    volume = tifffile.imread(isbi_dir / "train-volume.tif")
    cells = (tifffile.imread(isbi_dir / "train-labels.tif") == 255).astype(np.uint8)
    for name in ("isbi", "membranes"):
        store = tmp_path / "results" / "data" / f"{name}.zarr"
        image = omezarr.open_image(store)
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image[:], volume)
        labels = omezarr.open_labels(store)
        assert labels is not None and labels.dtype == np.uint8
        np.testing.assert_array_equal(labels[:], cells)  # 255 -> 1 (cell), 0 -> 0 (membrane)
    nodes = list(Reader(parse_url(str(tmp_path / "results" / "data" / "isbi.zarr")))())
    np.testing.assert_array_equal(np.asarray(nodes[0].data[0][:3]), volume[:3])
    assert nodes[0].metadata["coordinateTransformations"][0][0]["scale"] == [50.0, 4.0, 4.0]
    assert any(isinstance(spec, Label) for node in nodes for spec in node.specs)


def test_wrong_sha256_stops_the_workflow_and_keeps_nothing(served, isbi_dir: Path, tmp_path: Path) -> None:
    url, _ = served
    wrong = "0" * 64
    labels = url_source(url, "train-labels.tif", sha256=wrong)
    raw = {"path": str(isbi_dir / "train-volume.tif")}  # one download job: the labels
    workflow_copy(tmp_path, {"isbi": {"raw": raw, "labels": labels}})
    result = snakemake("results/data/isbi.zarr", "--cores", "2", "--configfile", "isbi.yaml", cwd=tmp_path)
    assert result.returncode != 0
    log = tmp_path / "results" / "logs" / "download" / "isbi" / "train-labels.tif.log"
    assert str(log.relative_to(tmp_path)) in result.stderr + result.stdout
    message = log.read_text()
    assert f"{url}/train-labels.tif" in message
    assert f"expected sha256 {wrong}, got {SHA256['train-labels.tif']}" in message
    folder = tmp_path / "data" / "raw" / "isbi"
    assert not (folder / "train-labels.tif").exists()
    assert [p.name for p in folder.glob("*") if "train-labels" in p.name] == []  # no temporaries either
    assert not (tmp_path / "results" / "data" / "isbi.zarr").exists()


def test_path_source_is_checked_against_its_sha256(isbi_dir: Path, tmp_path: Path) -> None:
    raw, labels = str(isbi_dir / "train-volume.tif"), str(isbi_dir / "train-labels.tif")
    wrong = "f" * 64
    entry = {
        "raw": {"path": raw, "sha256": SHA256["train-volume.tif"]},
        "labels": {"path": labels, "sha256": wrong},
    }
    target = tmp_path / "isbi.zarr"
    with pytest.raises(InputError) as error:
        run_import(raw=raw, labels=labels, target=str(target), volume=VolumeConfig.from_dict(entry))
    assert f"checksum mismatch for {labels}" in str(error.value)
    assert f"expected sha256 {wrong}, got {SHA256['train-labels.tif']}" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_invert_refuses_labels_that_are_not_binary(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 255, (2, 16, 16), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", raw)
    tifffile.imwrite(tmp_path / "ids.tif", (raw // 64).astype(np.uint8))
    entry = {"raw": {"path": "raw.tif"}, "labels": {"path": "ids.tif", "invert": True}}
    with pytest.raises(InputError, match=r"ids\.tif: invert applies to binary labels, these hold 3 non-zero"):
        run_import(
            raw=str(tmp_path / "raw.tif"),
            labels=str(tmp_path / "ids.tif"),
            target=str(tmp_path / "o.zarr"),
            volume=VolumeConfig.from_dict(entry),
        )
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        (
            {"url": "https://example.org/b/raw.h5"},
            "volumes.isbi: raw and labels download different URLs to the same file raw.h5",
        ),
        ({"url": "https://example.org", "format": "h5"}, "ends in no file name; set filename"),
    ],
)
def test_conflicting_sources_fail_before_any_job(labels: dict, named: str, tmp_path: Path) -> None:
    volumes = {"isbi": {"raw": {"url": "https://example.org/a/raw.h5", "sha256": "0" * 64}, "labels": labels}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"volumes": volumes, "split": SPLIT}))
    result = snakemake("-n", "--nolock", "--configfile", str(config), "--directory", str(tmp_path))
    assert result.returncode != 0
    assert named in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()
