"""Volumes read and predictions written in place on real servers on loopback: moto's S3 API server and an
HTTP server. A prediction from each store equals the one from the same volume on disk; an output on S3
resumes after a kill; a bad key, a missing bucket or key and a dropped connection are one clear error each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from helpers import serve_folder, write_n5, write_precomputed
from servers import TEST_CREDENTIALS, dropping_endpoint, moto_s3, moto_s3_with_auth

from unetflow.config.model import PredictConfig
from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.model.unet import UNet, UNetConfig
from unetflow.predict import finalize_prediction, incomplete_groups, init_prediction, predict_volume
from unetflow.predict.progress import ShardFiles, journal_path
from unetflow.predict.run import ShardWriter
from unetflow.predict.sources import SourceSpec
from unetflow.readers import open_input
from unetflow.stores import Location, StoreOptions
from unetflow.stores import retry as store_retry

CPU = PredictConfig(device="cpu", pyramid=2)
SHAPE = (2, 48, 40)
CHUNKS = (1, 16, 16)
RUN = {"options": CPU, "stride": 16, "block": 32, "show_progress": False}


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(depth=3, base_channels=4)).eval()


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 255, size=SHAPE, dtype=np.uint8)


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory, volume: np.ndarray) -> Path:
    """The same volume as a Zarr v2 array, an OME-Zarr 0.5 image, an N5 dataset and a precomputed volume."""
    root = tmp_path_factory.mktemp("volumes")
    zarr.create_array(str(root / "plain.zarr"), data=volume, chunks=CHUNKS, zarr_format=2)
    image = omezarr.create_image(
        root / "image.ome.zarr", shape=SHAPE, dtype="uint8", chunks=CHUNKS, voxel_size=(40, 4, 4), ngff="0.5"
    )
    image[:] = volume
    write_n5(root / "stack.n5" / "raw", volume, CHUNKS)
    write_precomputed(root / "precomputed", volume, CHUNKS)
    return root


SOURCES = {
    "zarr-v2": {"path": "plain.zarr"},
    "ome-zarr-v3-level": {"path": "image.ome.zarr", "level": 0},
    "n5": {"path": "stack.n5", "member": "raw"},
    "precomputed": {"path": "precomputed", "format": "precomputed"},
}


@pytest.fixture(scope="module")
def s3(disk: Path) -> str:
    """moto's S3 server with bucket `lab` holding a copy of every volume on disk."""
    with moto_s3() as endpoint:
        place = Location("s3://lab", StoreOptions(endpoint_url=endpoint))
        place.fs.mkdir("lab")
        for name in ("plain.zarr", "image.ome.zarr", "stack.n5", "precomputed"):
            place.fs.put(str(disk / name), f"lab/{name}", recursive=True)
        yield endpoint


@pytest.fixture(scope="module")
def http(disk: Path) -> str:
    with serve_folder(disk) as (base, _):
        yield base


@pytest.fixture(scope="module")
def references(model: UNet, disk: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The probability of each volume predicted from disk."""
    out = tmp_path_factory.mktemp("from-disk")
    found = {}
    for name, source in SOURCES.items():
        spec = SourceSpec(**{**source, "path": str(disk / source["path"])})
        predict_volume(model, spec, str(out / f"{name}.zarr"), **RUN)
        found[name] = omezarr.open_image(out / f"{name}.zarr")[:]
    return found


@pytest.mark.parametrize("name", list(SOURCES))
def test_a_volume_on_s3_predicts_exactly_as_from_disk(
    name: str, model: UNet, s3: str, references: dict[str, np.ndarray], tmp_path: Path
) -> None:
    source = SOURCES[name]
    spec = SourceSpec(**{**source, "path": f"s3://lab/{source['path']}", "endpoint_url": s3})
    counts = predict_volume(model, spec, str(tmp_path / "p.zarr"), **RUN)
    assert counts["computed"] == counts["total"] > 0
    np.testing.assert_array_equal(omezarr.open_image(tmp_path / "p.zarr")[:], references[name])


@pytest.mark.parametrize("name", ["zarr-v2", "n5", "precomputed"])
def test_a_volume_on_a_web_server_predicts_exactly_as_from_disk(
    name: str, model: UNet, http: str, references: dict[str, np.ndarray], tmp_path: Path
) -> None:
    source = SOURCES[name]
    spec = SourceSpec(**{**source, "path": f"{http}/{source['path']}"})
    predict_volume(model, spec, str(tmp_path / "p.zarr"), **RUN)
    np.testing.assert_array_equal(omezarr.open_image(tmp_path / "p.zarr")[:], references[name])


def test_readers_give_the_volume_its_chunks_and_metadata_from_a_url(s3: str, volume: np.ndarray) -> None:
    options = StoreOptions(endpoint_url=s3)
    image = open_input("s3://lab/image.ome.zarr", level=0, options=options)
    assert image.voxel_size == (40.0, 4.0, 4.0)
    assert len(image.stored_chunks()) == 2 * 3 * 3
    assert image.stored_chunks(z_range=(1, 2)) == {(1, y, x) for y in range(3) for x in range(3)}
    np.testing.assert_array_equal(image[1, 5:30, 7:33], volume[1, 5:30, 7:33])
    scale = open_input("precomputed://s3://lab/precomputed", level="4_4_40", options=options)
    assert (scale.shape, scale.voxel_size, len(scale.stored_chunks())) == (SHAPE, (40.0, 4.0, 4.0), 18)
    np.testing.assert_array_equal(scale[:], volume)


def test_an_output_on_s3_equals_the_one_on_disk_with_its_pyramid_and_journals(
    model: UNet, s3: str, disk: Path, tmp_path: Path
) -> None:
    spec = SourceSpec(path=str(disk / "image.ome.zarr"))
    local = tmp_path / "local.zarr"
    predict_volume(model, spec, str(local), groups=2, **RUN)
    remote = Location("s3://lab/run/image.zarr", StoreOptions(endpoint_url=s3))
    predict_volume(model, spec, remote, groups=2, **RUN)
    for where in (local, remote):
        assert finalize_prediction(where, pyramid=2, show_progress=False)["levels"] == 2
    for level in ("0", "1", "labels/segmentation/0", "labels/segmentation/1"):
        ours, theirs = omezarr.open_image(remote / level)[:], omezarr.open_image(local / level)[:]
        np.testing.assert_array_equal(ours, theirs)
    objects = remote.parent.sizes()
    assert "image.progress/0.json" in objects
    assert any(key.startswith("image.progress/0.tsv/0.") for key in objects)
    metadata = (remote / "zarr.json").read_text()
    assert json.loads(metadata)["attributes"]["unetflow"]["source"]["path"] == spec.path
    for secret in (TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"]):
        assert secret not in metadata


def test_an_output_on_s3_resumes_after_a_kill_and_redoes_what_changed(
    model: UNet, s3: str, disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = SourceSpec(path=str(disk / "plain.zarr"))
    reference = tmp_path / "reference.zarr"
    predict_volume(model, spec, str(reference), groups=2, **{**RUN, "options": PredictConfig(device="cpu")})
    remote = Location("s3://lab/resume/p.zarr", StoreOptions(endpoint_url=s3))
    written = ShardWriter.write_shard
    calls = []

    def killed_after_one(self: ShardWriter, number: int, blocks: dict) -> object:
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(number)
        return written(self, number, blocks)

    monkeypatch.setattr(ShardWriter, "write_shard", killed_after_one)
    options = PredictConfig(device="cpu", ngff="0.4")
    with pytest.raises(KeyboardInterrupt):
        predict_volume(model, spec, remote, groups=2, **{**RUN, "options": options, "block": 16})
    monkeypatch.setattr(ShardWriter, "write_shard", written)
    assert incomplete_groups(remote) == {0: 8, 1: 9}  # 18 shards of one chunk; the first one is done
    again = predict_volume(model, spec, remote, **{**RUN, "options": options, "block": 16})
    assert (again["computed"], again["done"]) == (17, 1)

    files = ShardFiles(remote)
    lost, cut = files.path(0, (0, 0, 0)), files.path(0, (1, 2, 2))
    lost.unlink()
    cut.write_bytes(cut.read_bytes()[:10])  # a shard rewritten by a job killed half-way
    assert incomplete_groups(remote) == {0: 1, 1: 1}
    assert predict_volume(model, spec, remote, **{**RUN, "options": options, "block": 16})["computed"] == 2
    assert incomplete_groups(remote) == {}
    np.testing.assert_array_equal(omezarr.open_image(remote)[:], _level0(model, spec, tmp_path))
    # The workflow's predict_init on a new machine: the same options resume, a changed option that the plan
    # does not hold (test-time augmentation) starts the prediction afresh instead of keeping old values.
    for tta, incomplete in ((False, {}), (True, {0: 9, 1: 9})):
        again_options = options.model_copy(update={"tta": tta})
        init_prediction(spec, remote, model=model, options=again_options, groups=2, stride=16, block=16)
        assert incomplete_groups(remote) == incomplete


def _level0(model: UNet, spec: SourceSpec, tmp_path: Path) -> np.ndarray:
    target = tmp_path / "blocks16.zarr"
    predict_volume(model, spec, str(target), **{**RUN, "options": PredictConfig(device="cpu"), "block": 16})
    return omezarr.open_image(target)[:]


def test_a_segmentation_on_s3_killed_mid_step_resumes_to_the_same_ids(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Label image and work folder on S3: a fragments step killed after two blocks leaves a journal listing
    those two, a chunk that a job killed before its journal entry wrote is redone, not taken for done, the
    start on a new machine keeps the work there, and the run goes on to the ids of a fresh run on disk."""
    from segment_volumes import voronoi_volume

    from unetflow.config.model import OutputConfig, SegmentConfig
    from unetflow.segment import run, store
    from unetflow.segment.pipeline import finalize_segmentation, segment_volume
    from unetflow.segment.source import ProbabilitySource
    from unetflow.steps.segment import run_segment

    boundary, _ = voronoi_volume((24, 64, 64), cells=30, noise=0.05, seed=4)
    path = tmp_path / "boundary.zarr"  # x 64..96 never written: blocks without data, recorded at once
    array = zarr.create_array(str(path), shape=(24, 64, 96), chunks=(12, 32, 32), dtype="float32")
    array[..., :64] = boundary
    source = ProbabilitySource(str(path))
    options = {"block": (12, 32, 32), "halo": (8, 8, 8), "groups": 2, "mode": "3d", "boundary": True}
    fresh = omezarr.open_image(segment_volume(source, tmp_path / "fresh.zarr", **options)["target"])[:]
    remote = Location("s3://lab/segment/cells.segment.zarr", StoreOptions(endpoint_url=s3))
    computed, fragments = [], run.fragments

    def killed_after_two(*args: object, **kwargs: object) -> object:
        if len(computed) == 2:
            raise KeyboardInterrupt("killed")
        computed.append(1)
        return fragments(*args, **kwargs)

    monkeypatch.setattr(run, "fragments", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        segment_volume(source, remote, **options)
    journal = store.journal_path(remote, run.FRAGMENTS, 0)
    assert {n for n, count in store.read_journal(journal).items() if count} == {0, 1}
    assert any("/many/" in key for key in store.work_folder(remote).sizes())  # the blocks without data
    store.open_fragments(remote)[0:12, 32:64, 0:32] = 7  # block 3: written, then killed before its entry
    run.init_segmentation(source, remote, **options)  # segment_init on a new machine: the work is kept
    computed.clear()
    monkeypatch.setattr(run, "fragments", lambda *a, **k: computed.append(1) or fragments(*a, **k))
    summary = remote.with_name("cells.segment.json")
    run_segment(  # as `unetflow segment` does it, predict.output's options reaching the store
        probability=str(path),
        target=remote.url,
        options=SegmentConfig(block_shape=[12, 32, 32], halo=[8, 8, 8], mode="3d", block_groups=2),
        boundary=True,
        summary=summary.url,
        output=OutputConfig(url="s3://lab/segment", endpoint_url=s3),
    )
    assert len(computed) == 8 - 2  # 12 blocks, 4 without data, 2 done before the kill
    np.testing.assert_array_equal(omezarr.open_image(remote)[:], fresh)
    assert fresh.max() > 20 and not fresh[..., 64:].any()
    assert json.loads(summary.read_text())["objects"] == fresh.max()
    assert finalize_segmentation(remote, pyramid=2)["levels"] == 2  # segment_finalize rerun: levels anew
    np.testing.assert_array_equal(omezarr.open_image(remote / "1")[:], fresh[:, ::2, ::2])


def test_journal_entries_on_s3_are_objects_read_back_by_one_listing(s3: str) -> None:
    from unetflow.predict.progress import Entry, journal, read_journal

    place = journal_path(Location("s3://lab/journal/p.zarr", StoreOptions(endpoint_url=s3)), 0)
    with journal(place) as record:
        record(Entry(shard=3, sizes=(10, 0)))
        record(Entry(shard=3, sizes=(12, 5)))  # written again: the earlier entry goes
        record(Entry(shard=1, sizes=(0, 0), level=1))
    assert read_journal(place) == {
        (0, 3): Entry(shard=3, sizes=(12, 5)),
        (1, 1): Entry(shard=1, sizes=(0, 0), level=1),
    }


def test_only_what_lies_under_the_output_gets_its_store_options() -> None:
    """A target under predict.output is reached with its endpoint; a sibling prefix that merely starts with
    the same letters (s3://lab/run2 beside s3://lab/run) is not."""
    from unetflow.config.model import OutputConfig
    from unetflow.steps.common import output_place

    output = OutputConfig(url="s3://lab/run/", endpoint_url="http://127.0.0.1:9000")
    assert output_place("s3://lab/run/main/em.zarr", output).options.endpoint_url == "http://127.0.0.1:9000"
    assert output_place("s3://lab/run", output).options == output.options
    assert output_place("s3://lab/run2/main/em.zarr", output).options == StoreOptions()


def test_a_missing_bucket_or_key_is_named(s3: str) -> None:
    options = StoreOptions(endpoint_url=s3)
    with pytest.raises(InputError, match=r"s3://lab/absent.zarr: no such object or prefix in lab at http://"):
        open_input("s3://lab/absent.zarr", options=options)
    with pytest.raises(InputError, match=r"no such bucket 'nowhere' .*set endpoint_url"):
        open_input("s3://nowhere/volume.zarr", options=options)


def test_bad_credentials_are_access_denied_and_say_what_to_set(tmp_path: Path) -> None:
    denied = r"access denied .*anon: true.*AWS_ACCESS_KEY_ID"
    with (
        moto_s3_with_auth(tmp_path / "moto.log") as endpoint,
        pytest.raises(InputError, match=denied) as caught,
    ):
        open_input("s3://lab/image.ome.zarr", options=StoreOptions(endpoint_url=endpoint))
    assert TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in str(caught.value)


def test_a_dropped_connection_is_retried_then_named(s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_retry, "FIRST_DELAY", 0.01)
    monkeypatch.setattr(store_retry, "ATTEMPTS", 3)
    upstream = s3.removeprefix("http://")
    with dropping_endpoint(forward_to=upstream, drop_first=2) as (flaky, dropped):
        image = open_input("s3://lab/plain.zarr", options=StoreOptions(endpoint_url=flaky))
        assert image.shape == SHAPE
    assert dropped == [2]
    with (
        dropping_endpoint() as (dead, dropped),
        pytest.raises(InputError, match=r"cannot be reached .*endpoint_url"),
    ):
        open_input("s3://lab/plain.zarr", options=StoreOptions(endpoint_url=dead))
    assert dropped[0] >= 3


def test_the_workflow_predicts_an_s3_volume_into_an_s3_output_with_the_usual_command(
    s3: str, volume: np.ndarray, tmp_path: Path
) -> None:
    """A lab's config: an OME-Zarr on S3 read in place, predictions written to S3, credentials from the
    environment (the standard chain), nothing of either in the config or the logs."""
    import subprocess
    import sys

    import yaml
    from helpers import copy_workflow
    from servers import environment

    from unetflow.model.checkpoint import save_checkpoint

    work = copy_workflow(tmp_path / "lab")
    net = UNetConfig(depth=3, base_channels=4)
    torch.manual_seed(0)
    save_checkpoint(
        work / "model.pt",
        {"model_state_dict": UNet(net).state_dict(), "model_config": net.to_dict(), "threshold": 0.5},
    )
    config = {
        "volumes": {"em": {"raw": {"url": "s3://lab/image.ome.zarr", "level": 0, "endpoint_url": s3}}},
        "split": None,
        "pretrained": {"path": "model.pt"},
        "predict": {"device": "cpu", "pyramid": 2, "output": {"url": "s3://lab/lab-run", "endpoint_url": s3}},
    }
    (work / "lab.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with environment(TEST_CREDENTIALS):
        command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "lab.yaml"]
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    remote = Location("s3://lab/lab-run/pretrained/em.zarr", StoreOptions(endpoint_url=s3))
    probability = omezarr.open_image(remote)[:]
    assert probability.shape == SHAPE and np.any(probability > 0)
    assert omezarr.open_image(remote / "1").shape == (2, 24, 20)  # the pyramid, on S3
    assert not (work / "results" / "predict" / "pretrained" / "em.zarr").exists()  # nothing written locally
    record = json.loads((work / "results" / "predict" / "pretrained" / "em.where.json").read_text())
    assert record["prediction"] == remote.url
    _check_segmentation_on_s3(remote, work / "results", tmp_path)
    logs = "".join(p.read_text() for p in (work / "results" / "logs").rglob("*.log")) + result.stderr
    records = "".join(p.read_text() for p in (work / "results").rglob("*.where.json"))
    for secret in (TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"]):
        assert secret not in logs + records
        assert secret not in (work / "lab.yaml").read_text()


def _check_segmentation_on_s3(prediction: Location, results: Path, tmp_path: Path) -> None:
    """The workflow's segmentation lies beside the prediction on S3 (label image, pyramid, work folder),
    results/ holds only its record, flag and summary, and its ids are those of the same probability copied
    to disk and segmented there through the Python API with the same (default) options."""
    from unetflow.config.model import SegmentConfig
    from unetflow.steps.segment import run_segment

    segmentation = prediction.with_name("em.segment.zarr")
    ids = omezarr.open_image(segmentation)[:]
    copy = tmp_path / "copied" / "em.zarr"
    prediction.fs.get(prediction.fspath, str(copy), recursive=True)
    run_segment(probability=str(copy), target=str(tmp_path / "disk.zarr"), options=SegmentConfig())
    np.testing.assert_array_equal(ids, omezarr.open_image(tmp_path / "disk.zarr")[:])
    assert ids.dtype == np.uint64 and ids.max() >= 1
    assert omezarr.open_image(segmentation / "1").shape == (2, 24, 20)  # its pyramid, on S3
    assert "image-label" in json.loads((segmentation / "zarr.json").read_text())["attributes"]["ome"]
    work = segmentation.with_name("em.segment.work").sizes()
    assert any(key.startswith("relabel/0.tsv/0/") for key in work) and "solve.json" in work
    local = results / "segment" / "pretrained"
    assert sorted(p.name for p in local.iterdir()) == ["em.json", "em.steps", "em.where.json"]
    assert json.loads((local / "em.where.json").read_text())["segmentation"] == segmentation.url
    assert json.loads((local / "em.json").read_text())["objects"] == int(ids.max())
