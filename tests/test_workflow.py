"""The workflow as a user runs it: dry runs of both profiles, config errors, and a real run on tiny data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from helpers import copy_workflow, job_of, snakemake

from unetflow.data.synthesize import synthesize_volume

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the workflow run end to end on tiny data: one labelled volume, one unlabelled, and a crop
    of a third with sparse labels (a second training source)."""
    work = tmp_path_factory.mktemp("workflow")
    copy_workflow(work)
    shutil.copy(TINY, work / "tiny.yaml")
    rng = np.random.default_rng(0)
    unlabelled = rng.integers(0, 255, (2, 70, 50), dtype=np.uint8)
    tifffile.imwrite(work / "raw.tif", unlabelled, photometric="minisblack")
    raw, cells = synthesize_volume(shape=(2, 48, 64), seed=8, cell_diameter=20.0)
    sparse = np.where((cells % 2 == 1) | ((cells == 0) & (np.arange(64) >= 32)), cells, 1000).astype(
        np.uint16
    )
    tifffile.imwrite(work / "sparse-raw.tif", raw, photometric="minisblack")
    tifffile.imwrite(work / "sparse-labels.tif", sparse, photometric="minisblack")
    result = snakemake("--cores", "2", "--configfile", "tiny.yaml", cwd=work)
    assert result.returncode == 0, result.stderr[-4000:]
    return work


def test_tiny_run_writes_metrics_report_and_predictions(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "results" / "metrics.json").read_text())
    for key in ("iou", "dice", "pixel_error"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["slices_evaluated"] == 1
    html = (tiny_run / "results" / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "0.0382" in html
    from unetflow.data import omezarr

    unlabelled = omezarr.open_image(tiny_run / "results" / "predict" / "main" / "unlabelled.zarr")[:]
    assert unlabelled.shape == (2, 70, 50) and np.all((unlabelled >= 0) & (unlabelled <= 1))
    groups = sorted((tiny_run / "results" / "predict" / "main" / "unlabelled.blocks").iterdir())
    assert [g.name for g in groups] == ["0.done", "1.done"]


def test_tiny_run_segments_at_the_threshold_of_the_models_loss(tiny_run: Path) -> None:
    """predict.threshold auto: w_fg / (w_bg + w_fg) from the checkpoint, used by predict and evaluate."""
    from unetflow.data import omezarr
    from unetflow.model.checkpoint import load_checkpoint

    results = tiny_run / "results"
    background, foreground = omezarr.read_attrs(results / "weights" / "synthetic.zarr")["class_weights"]
    threshold = load_checkpoint(results / "models" / "main" / "model.pt")["threshold"]
    assert threshold == pytest.approx(foreground / (background + foreground)) and threshold < 0.5
    assert json.loads((results / "metrics.json").read_text())["threshold"] == threshold
    prediction = results / "predict" / "main" / "synthetic.zarr"
    probability = omezarr.open_image(prediction)[:]
    segmentation = omezarr.open_labels(prediction, "segmentation")[:]
    np.testing.assert_array_equal(segmentation, (probability > threshold).astype(np.uint8))


def test_tiny_run_segments_each_prediction_in_one_job(tiny_run: Path) -> None:
    """Each volume's segmentation (one block group: fragments to relabel as one job, step `all`): a label
    image with its pyramid, its objects counted in the summary, scored against the labels in metrics.json."""
    from unetflow.data import omezarr
    from unetflow.layout import RESULTS

    for volume in ("synthetic", "unlabelled", "sparse"):
        steps = tiny_run / RESULTS.segment_flag("main", volume, "all")
        assert sorted(p.name for p in steps.parent.iterdir()) == ["all-0.done"]
        written = omezarr.open_image(tiny_run / RESULTS.segmentation("main", volume))[:]
        summary = json.loads((tiny_run / RESULTS.segmentation_summary("main", volume)).read_text())
        assert summary["objects"] == len(np.unique(written[written > 0])) and summary["levels"] == 4
    scores = json.loads((tiny_run / RESULTS.metrics("main")).read_text())["segment"]["volumes"]
    assert list(scores) == ["synthetic"] and scores["synthetic"]["scores"]["segmentation"]["voi"] >= 0.0


def test_tiny_run_exports_the_model_as_a_bioimageio_package(tiny_run: Path) -> None:
    """rule all ends with results/models/<model>/bioimageio.zip: the checkpoint's weights, the metrics."""
    pytest.importorskip("bioimageio.spec")
    import torch

    from unetflow.layout import RESULTS
    from unetflow.model.checkpoint import load_checkpoint, load_model

    package = tiny_run / RESULTS.bioimageio_package("main")
    reference = load_model(tiny_run / RESULTS.model("main")).state_dict()
    loaded = load_model(package).state_dict()
    assert all(torch.equal(loaded[key], reference[key]) for key in reference)
    metrics = json.loads((tiny_run / RESULTS.metrics("main")).read_text())
    assert load_checkpoint(package)["metrics"]["overall"]["iou"] == pytest.approx(metrics["overall"]["iou"])


def test_rerun_with_nothing_changed_does_nothing(tiny_run: Path) -> None:
    result = snakemake("-n", "--configfile", "tiny.yaml", cwd=tiny_run)
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_changed_option_reruns_its_rule_and_what_follows(tiny_run: Path, tmp_path: Path) -> None:
    """Rules pass plain params, which Snakemake compares with the last run's: a changed predict option reruns
    the prediction (and what reads it), never training."""
    change = tmp_path / "change.yaml"
    change.write_text(yaml.safe_dump({"predict": {"memory_gb": 0.02}}))
    result = snakemake("-n", "--configfile", "tiny.yaml", str(change), cwd=tiny_run)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "rule predict_init:" in out and "rule evaluate:" in out
    assert "rule train:" not in out and "rule weights:" not in out


def test_cli_report_rebuilds_the_page_of_a_run(tiny_run: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(tiny_run / "results", results)
    (results / "report" / "index.html").unlink()
    from unetflow.cli.main import main

    assert main(["report", "--results", str(results), "--config", str(tiny_run / "tiny.yaml")]) == 0
    html = (results / "report" / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 3


@pytest.fixture(scope="module")
def predict_only_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab's run: the tiny run's model predicts a sparse Zarr read in place and a labelled volume."""
    import zarr

    work = tmp_path_factory.mktemp("predict-only")
    copy_workflow(work)
    sparse = zarr.create_array(
        str(work / "lab.zarr"), shape=(3, 160, 130), chunks=(1, 32, 32), dtype="uint16", fill_value=0
    )
    rng = np.random.default_rng(5)
    sparse[1, 32:96, 64:128] = rng.integers(1000, 40000, size=(64, 64), dtype=np.uint16)
    shutil.copy(tiny_run / "results" / "models" / "main" / "model.pt", work / "trained.pt")
    config = {
        "volumes": {
            "lab": {"raw": {"path": "lab.zarr"}, "voxel_size": [40.0, 8.0, 8.0]},
            "crop": {"synthetic": {"shape": [2, 64, 64], "seed": 9, "cell_diameter": 30.0}},
        },
        "pretrained": {"path": "trained.pt"},
        "predict": {"device": "cpu", "memory_gb": 0.01, "pyramid": 2},
    }
    (work / "lab.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake("--cores", "2", "--configfile", "lab.yaml", cwd=work)
    assert result.returncode == 0, result.stderr[-4000:]
    return work


def test_predict_only_trains_nothing_and_reads_in_place(predict_only_run: Path) -> None:
    from unetflow.data import omezarr
    from unetflow.predict import read_plan

    results = predict_only_run / "results"
    assert not (results / "models").exists() and not (results / "weights").exists()
    assert not (results / "data" / "lab.zarr").exists()  # read where it lies, not copied
    prediction = results / "predict" / "pretrained" / "lab.zarr"
    plan = read_plan(prediction)
    assert plan.ngff == "0.5" and plan.shape == (3, 160, 130)
    summary = json.loads((results / "predict" / "pretrained" / "lab.json").read_text())
    assert summary["levels"] == 2 and summary["blocks_computed"] < summary["blocks"]  # skip-empty
    probability = omezarr.open_image(prediction)[:]
    assert np.all(probability[0] == 0) and np.all(probability[2] == 0) and np.any(probability[1] > 0)
    stats = json.loads((results / "predict" / "pretrained" / "lab.stats.json").read_text())
    assert stats["chunks_stored"] == 4 and stats["policy"] == "zscore-volume"
    assert omezarr.voxel_size(prediction) == (40.0, 8.0, 8.0)


def test_predict_only_reports_the_model_the_volumes_and_labelled_metrics(predict_only_run: Path) -> None:
    from unetflow.data.download import sha256_of

    results = predict_only_run / "results"
    metrics = json.loads((results / "metrics.json").read_text())
    assert list(metrics["volumes"]) == ["crop"] and metrics["slices_evaluated"] == 2
    html = (results / "report" / "index.html").read_text()
    assert "U-Net predictions" in html and "Predicted volumes" in html
    assert sha256_of(predict_only_run / "trained.pt") in html
    assert html.count("data:image/png;base64,") >= 2 and "table-volume-metrics" in html


def test_tiny_run_trains_on_both_sources_and_leaves_unannotated_pixels_out(tiny_run: Path) -> None:
    """The split's second source (a region of a volume with sparse labels) is imported, weighted and
    trained on; its unannotated pixels weigh 0 and the class balance counts neither class there."""
    import torch

    from unetflow.data import omezarr
    from unetflow.layout import RESULTS

    balance = json.loads((tiny_run / RESULTS.class_balance()).read_text())
    assert (
        list(balance["sources"]) == ["synthetic", "sparse"]
        and balance["sources"]["sparse"]["unannotated"] > 0
    )
    data = tiny_run / RESULTS.data("sparse")
    assert omezarr.label_ignore(data) == 2**32 - 1
    unannotated = omezarr.open_labels(data)[:] == 2**32 - 1
    weights = omezarr.open_image(tiny_run / RESULTS.weights("sparse"))[:]
    np.testing.assert_array_equal(weights == 0, unannotated)
    assert (
        omezarr.read_attrs(tiny_run / RESULTS.weights("sparse"))["class_weights"] == balance["class_weights"]
    )
    state = torch.load(tiny_run / RESULTS.model("main"), weights_only=True)
    assert [(s["name"], s["train"], s["rows"]) for s in state["training_sources"]] == [
        ("synthetic", [0, 1, 2], None),
        ("sparse", [0, 1], [0, 40]),
    ]
    assert "sparse" not in json.loads((tiny_run / "results" / "metrics.json").read_text())["volumes"]


def test_fine_tuning_takes_the_models_net_and_refuses_a_contradicting_config(tiny_run: Path) -> None:
    """train.init_from: the train job reads the model; a model section that contradicts its net stops the
    run before any job, naming the key."""
    model = str(tiny_run / "results" / "models" / "main" / "model.pt")
    (tiny_run / "tune.yaml").write_text(yaml.safe_dump({"train": {"init_from": {"path": model}}}))
    result = snakemake("-n", "--forceall", "--nolock", "--configfile", "tiny.yaml", "tune.yaml", cwd=tiny_run)
    assert result.returncode == 0, result.stderr + result.stdout
    assert model in job_of(result.stdout, "train")
    (tiny_run / "wrong.yaml").write_text(
        yaml.safe_dump({"train": {"init_from": {"path": model}}, "model": {"depth": 3}})
    )
    result = snakemake(
        "-n", "--forceall", "--nolock", "--configfile", "tiny.yaml", "wrong.yaml", cwd=tiny_run
    )
    assert result.returncode != 0
    assert "model.depth is 3 there, 2 in the model" in result.stderr + result.stdout
