"""The cell tracking chain offline: a synthetic dataset in the Cell Tracking Challenge layout (touching cells
that move, 8- and 16-bit, sparse and partial gold, zipped), served over a loopback HTTP server, through the
whole workflow (download, unpack, import, weights, a tiny net, prediction, cells, SEG, RES folders, report);
and the bad inputs, each one clear error with nothing half-written."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from helpers import ROOT, copy_workflow, serve_folder, snakemake

from unetflow.data import ctc, omezarr
from unetflow.data.cellsynth import synthesize_timelapse
from unetflow.errors import InputError
from unetflow.evaluate.metrics import evaluate_objects_frames

NAME = "SYN-C2DH-Cells"


def write_dataset(root: Path, *, gold: bool = True) -> Path:
    """Two sequences in the challenge's layout under root/NAME: 01 8-bit, 02 16-bit, gold on every other
    frame with one cell left untraced per gold frame, tracking marks on every frame."""
    for name, bits, seed in (("01", 8, 1), ("02", 16, 2)):
        lapse = synthesize_timelapse(frames=6, shape=(64, 80), cells=7, seed=seed, bits=bits)
        ctc.write_sequence(
            root / NAME,
            name,
            lapse.frames,
            gold=lapse.gold if gold else None,
            tracks=lapse.tracks if gold else None,
        )
    return root / NAME


def zip_folder(folder: Path, archive: Path) -> Path:
    """The folder zipped with its name as the archive's top folder, as the challenge ships it."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.rglob("*")):
            handle.write(path, path.relative_to(folder.parent).as_posix())
    return archive


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The training and the test archive of the synthetic dataset, in one folder to serve."""
    root = tmp_path_factory.mktemp("ctc-data")
    zip_folder(write_dataset(root / "training"), root / f"{NAME}.zip")
    zip_folder(write_dataset(root / "test", gold=False), root / f"{NAME}-test.zip")
    return root


@pytest.fixture(scope="module")
def ctc_run(archives: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole workflow on the synthetic dataset, downloaded from a loopback HTTP server: the two
    cross-sequence models (the final model on the test archive runs the same rules on other wildcards,
    planned in test_the_table_2_configs_plan_the_protocol; left out here to keep the run to 19 jobs)."""
    work = copy_workflow(tmp_path_factory.mktemp("ctc-run"))
    with serve_folder(archives) as (base, hits):
        config = {
            "ctc": {
                "dataset": NAME,
                "archive": f"{base}/{NAME}.zip",
                "frame_shape": [64, 80],
                "final": False,
                "pixel_size": 0.5,
                "separate": 2,
            },
            "model": {"depth": 2, "base_channels": 4},
            "train": {"steps": 8, "tile": 36, "checkpoint_every": 4, "device": "cpu"},
            "predict": {"memory_gb": 0.01, "device": "cpu"},
            "cells": {"min_size": 10},
        }
        (work / "ctc.yaml").write_text(yaml.safe_dump(config))
        result = snakemake("--cores", "2", "--configfile", "ctc.yaml", cwd=work, timeout=1200)
        assert result.returncode == 0, result.stderr[-4000:]
        assert hits[f"/{NAME}.zip"] == 1
    return work


def test_the_run_writes_seg_res_folders_and_the_report(ctc_run: Path, archives: Path) -> None:
    results = ctc_run / "results"
    scores = json.loads((results / "metrics" / "seg.json").read_text())
    assert set(scores["folds"]) == {"train01", "train02"}
    assert scores["folds"]["train01"]["trained_on"] == ["01"]
    values = [scores["folds"][m]["scored_on"][s]["seg"] for m, s in (("train01", "02"), ("train02", "01"))]
    assert all(0.0 <= v <= 1.0 for v in values) and scores["seg"] == pytest.approx(np.mean(values))
    digest = hashlib.sha256((archives / f"{NAME}.zip").read_bytes()).hexdigest()
    assert scores["archive"]["sha256"] == digest  # what was fetched, for a lab to pin
    for model, sequences in (("train01", ["02"]), ("train02", ["01"])):
        for sequence in sequences:
            folder = results / "cells" / model / NAME / f"{sequence}_RES"
            masks = sorted(path for path in folder.iterdir() if not path.name.startswith("."))
            assert [m.name for m in masks] == [f"mask{n:03d}.tif" for n in range(6)]
            first = tifffile.imread(masks[0])
            assert first.dtype == np.uint16 and first.shape == (64, 80)
            stack = tifffile.imread(results / "cells" / model / f"{sequence}.tif")
            assert stack.shape == (6, 64, 80) and stack.dtype == np.uint16
    html = (results / "report" / "index.html").read_text()
    assert "0.9203" in html and "0.7756" in html and "Table 2" in html
    assert "data:image/png;base64," in html and digest in html


def test_seg_of_the_run_is_the_challenges_own(ctc_run: Path) -> None:
    """py-ctcmetrics on the run's RES folder and the dataset's gold: the SEG the run wrote, to 1e-12."""
    evaluate = pytest.importorskip("ctc_metrics.scripts.evaluate")
    dataset = ctc_run / "data" / "raw" / "ctc" / NAME / "training"
    res = ctc_run / "results" / "cells" / "train01" / NAME / "02_RES"
    theirs = evaluate.evaluate_sequence(str(res), str(dataset / "02_GT"), ["SEG"], threads=1)["SEG"]
    scores = json.loads((ctc_run / "results" / "metrics" / "seg.json").read_text())
    assert scores["folds"]["train01"]["scored_on"]["02"]["seg"] == pytest.approx(theirs, abs=1e-12)


def test_the_import_holds_gold_frames_separated_and_percentile_normalised(ctc_run: Path) -> None:
    data = ctc_run / "results" / "data" / "02.zarr"
    attrs = omezarr.read_attrs(data)
    assert attrs["normalization"]["policy"] == "percentile" and attrs["separate"]["width"] == 2
    assert attrs["ctc"]["gold_frames"] == [0, 2, 4] and attrs["voxel_size"] == [1.0, 0.5, 0.5]
    cells, ids = np.asarray(omezarr.open_labels(data)[:]), np.asarray(omezarr.open_instances(data)[:])
    ignore = omezarr.label_ignore(data)
    assert np.all(cells[[1, 3, 5]] == ignore)  # frames without gold train nothing
    gold = tifffile.imread(
        ctc_run / "data" / "raw" / "ctc" / NAME / "training" / "02_GT" / "SEG" / "man_seg002.tif"
    )
    traced = ids[2] != ignore
    np.testing.assert_array_equal(ids[2][traced], gold[traced])
    assert (~traced).sum() > 0  # the untraced cell (a tracking mark on no gold cell) is unannotated
    assert ((ids[2] > 0) & (cells[2] == 0)).sum() > 0  # the gaps forced between touching cells
    raw = omezarr.open_image(data)
    assert raw.dtype == np.uint16
    state_policy = omezarr.normalization_policy(data, "zscore-volume")
    assert state_policy == "percentile"


def test_a_rerun_does_nothing(ctc_run: Path) -> None:
    result = snakemake("-n", "--cores", "2", "--configfile", "ctc.yaml", cwd=ctc_run)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize("config", ["configs/ctc-dic-hela.yaml", "configs/ctc-phc-u373.yaml"])
def test_the_table_2_configs_plan_the_protocol(config: str) -> None:
    """The two configs a researcher runs: the challenge's archives, a model per sequence and the final one,
    cells and RES folders of each, SEG and the report (a dry run: nothing is downloaded)."""
    result = snakemake("-n", "--forceall", "--nolock", "--configfile", config)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    dataset = yaml.safe_load((ROOT / config).read_text())["ctc"]["dataset"]
    for rule, count in (
        ("ctc_fetch", 2),
        ("train", 3),
        ("ctc_cells", 4),
        ("ctc_score", 1),
        ("ctc_report", 1),
    ):
        assert f"{rule:<17} {count:>6}" in out or f"{rule} {count}" in " ".join(out.split()), rule
    for model, sequence in (("train01", "02"), ("train02", "01"), ("final", "01"), ("final", "02")):
        assert f"results/cells/{model}/{dataset}/{sequence}_RES" in out


# ------------------------------------------------------------------------------------------ bad inputs


def fetch(source: Path | str, target: Path, **options: object) -> dict[str, object]:
    return ctc.fetch_dataset(str(source), target, sequences=["01", "02"], **options)


def test_an_archive_without_gold_is_refused_nothing_written(archives: Path, tmp_path: Path) -> None:
    target = tmp_path / "training"
    with pytest.raises(InputError, match=r"sequence 01 has no gold segmentation .*not a test archive"):
        fetch(archives / f"{NAME}-test.zip", target)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    record = fetch(archives / f"{NAME}-test.zip", target, gold=False)
    assert record["sequences"]["01"]["gold_frames"] == [] and (target / "01" / "t005.tif").is_file()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("gold of another shape", r"man_seg002.tif: gold mask of \(32, 80\), its frame is \(64, 80\)"),
        ("missing frame", r"frame t003.tif is missing"),
        ("float ids", r"man_seg000.tif: gold mask of type float32: instance ids must be an integer image"),
        ("frame of another size", r"t004.tif: \(64, 40\) uint8, but t000 is \(64, 80\) uint8"),
        ("stated size", r"frames of 64 x 80 px, the config states \[512, 512\]"),
    ],
)
def test_a_damaged_dataset_is_one_clear_error(tmp_path: Path, damage: str, message: str) -> None:
    folder = write_dataset(tmp_path / "copy")
    options: dict[str, object] = {}
    if damage == "gold of another shape":
        tifffile.imwrite(folder / "01_GT" / "SEG" / "man_seg002.tif", np.zeros((32, 80), np.uint16))
    elif damage == "missing frame":
        (folder / "02" / "t003.tif").unlink()
    elif damage == "float ids":
        gold = tifffile.imread(folder / "01_GT" / "SEG" / "man_seg000.tif")
        tifffile.imwrite(folder / "01_GT" / "SEG" / "man_seg000.tif", gold.astype(np.float32))
    elif damage == "frame of another size":
        tifffile.imwrite(folder / "01" / "t004.tif", np.zeros((64, 40), np.uint8))
    else:
        options["frame_shape"] = [512, 512]
    archive = zip_folder(folder, tmp_path / "damaged.zip")
    target = tmp_path / "out" / "training"
    with pytest.raises(InputError, match=message) as raised:
        fetch(archive, target, **options)
    assert "\n" not in str(raised.value)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == []  # a local zip is read where it lies
    with pytest.raises(InputError, match=message):  # a folder of that layout: the same check
        fetch(folder, tmp_path / "from-folder", **options)
    assert not (tmp_path / "from-folder").exists()


def test_a_truncated_or_foreign_archive_is_one_line(archives: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes((archives / f"{NAME}.zip").read_bytes()[:5000])
    with pytest.raises(InputError, match=r"not a zip archive .*a truncated download") as raised:
        fetch(truncated, tmp_path / "a")
    assert "\n" not in str(raised.value) and not (tmp_path / "a").exists()
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    tifffile.imwrite(other / "images" / "a.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="holds no sequence folder"):
        fetch(zip_folder(other, tmp_path / "other.zip"), tmp_path / "b")
    with pytest.raises(InputError, match="checksum mismatch"):
        fetch(archives / f"{NAME}.zip", tmp_path / "c", sha256="0" * 64)


def test_fetching_again_keeps_a_complete_download_and_a_file_url_works(
    archives: Path, tmp_path: Path
) -> None:
    source = (archives / f"{NAME}.zip").resolve().as_uri()
    digest = hashlib.sha256((archives / f"{NAME}.zip").read_bytes()).hexdigest()
    record = fetch(source, tmp_path / "training", sha256=digest)
    assert record["sha256"] == digest and (tmp_path / "training.zip").is_file()
    assert (
        json.loads((tmp_path / "training" / ctc.RECORD).read_text())["sequences"]["02"]["dtype"] == "uint16"
    )
    shutil.rmtree(tmp_path / "training")  # the unpacked folder lost: the kept zip is unpacked again
    assert fetch(source, tmp_path / "training", sha256=digest)["sha256"] == digest


def test_untraced_cells_come_from_tracking_marks() -> None:
    gold = np.zeros((20, 20), np.uint16)
    gold[2:8, 2:8] = 1
    tracks = np.zeros_like(gold)
    tracks[4, 4] = 1  # on a gold cell
    tracks[14, 14] = 2  # on no gold cell: a cell nobody traced
    unannotated = ctc.untraced(gold, tracks, margin=3)
    assert unannotated[14, 14] and unannotated[11, 14] and not unannotated[10, 14]
    assert not unannotated[gold > 0].any()


def test_result_masks_are_16_bit_and_refuse_more_ids(tmp_path: Path) -> None:
    cells = np.zeros((2, 8, 8), np.uint32)
    cells[0, :2, :2] = 3
    ctc.write_results(tmp_path / "01_RES", cells)
    assert sorted(ctc.result_masks(tmp_path / "01_RES")) == [0, 1]
    cells[1, 0, 0] = 70000
    with pytest.raises(InputError, match="65535"):
        ctc.write_results(tmp_path / "02_RES", cells)
    assert not (tmp_path / "02_RES").exists()
    _, aggregate, _ = evaluate_objects_frames(cells[:1].astype(np.int64), cells[:1].astype(np.int64))
    assert aggregate["seg_pooled"] == 1.0


def test_the_seg_command_scores_a_result_folder(ctc_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from unetflow.cli.main import main

    dataset = ctc_run / "data" / "raw" / "ctc" / NAME / "training"
    res = ctc_run / "results" / "cells" / "train02" / NAME / "01_RES"
    assert main(["seg", str(dataset), "01", str(res)]) == 0
    pooled = json.loads(capsys.readouterr().out.splitlines()[0])
    scores = json.loads((ctc_run / "results" / "metrics" / "seg.json").read_text())
    assert pooled["seg"] == pytest.approx(scores["folds"]["train02"]["scored_on"]["01"]["seg"], abs=1e-12)
    assert main(["seg", str(dataset), "01", str(ctc_run / "missing")]) == 2


def test_the_paper_size_recipe_overlays_either_dataset() -> None:
    from unetflow.config.load import load_config_files

    for dataset in ("ctc-dic-hela", "ctc-phc-u373"):
        config = load_config_files(
            [ROOT / "configs" / f"{dataset}.yaml", ROOT / "configs" / "ctc-paper-size.yaml"]
        )
        assert config.ctc is not None and config.model.base_channels == 64 and config.train.tile == 388
        assert (
            list(config.volumes) == ["01", "02", "test-01", "test-02"] and config.cells.method == "watershed"
        )


def test_a_local_archive_that_is_not_there_stops_the_run_before_any_job(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path / "run")
    (work / "ctc.yaml").write_text(yaml.safe_dump({"ctc": {"dataset": NAME, "archive": "data/missing.zip"}}))
    result = snakemake("-n", "--cores", "1", "--configfile", "ctc.yaml", cwd=work)
    assert result.returncode != 0
    assert "config ctc.archive: data/missing.zip does not exist" in result.stderr + result.stdout
