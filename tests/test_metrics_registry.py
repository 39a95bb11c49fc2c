"""The metrics registry: the one list of metrics that the metric functions, the evaluate step, the report and
the CLI's help all follow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from unetflow.cli.main import main
from unetflow.config.model import EvaluateConfig
from unetflow.config.split import SplitConfig
from unetflow.data import omezarr
from unetflow.data.importer import import_volume
from unetflow.data.synthesize import synthesize_volume
from unetflow.evaluate import metrics
from unetflow.evaluate.registry import (
    HEADLINE_KEYS,
    METRICS,
    Metric,
    build_registry,
    help_text,
    metric_info,
)
from unetflow.evaluate.stats import SliceStats
from unetflow.steps.evaluate import run_evaluate


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """A small synthetic volume imported to OME-Zarr, and a blurred copy of its labels as the prediction."""
    root = tmp_path_factory.mktemp("registry")
    raw, labels = synthesize_volume(shape=(2, 48, 48), seed=3, cell_diameter=14.0)
    data = root / "data.zarr"
    import_volume(raw, data, labels=labels, voxel_size=(1.0, 1.0, 1.0))
    truth = np.asarray(omezarr.open_labels(data))
    probability = ndimage.gaussian_filter((truth > 0).astype(np.float32), sigma=(0, 1.5, 1.5))
    prediction = root / "prediction.zarr"
    omezarr.write_image(prediction, probability, voxel_size=(1.0, 1.0, 1.0))
    return data, prediction, truth


def test_evaluate_returns_the_registered_metrics_in_order(volume: tuple[Path, Path, np.ndarray]) -> None:
    _, prediction, truth = volume
    probability = np.asarray(omezarr.open_image(prediction)[0])
    result = metrics.evaluate(probability, truth[0])
    assert list(result) == list(METRICS)
    assert all(np.isfinite(list(result.values())))
    _, aggregate = metrics.evaluate_volume(np.asarray(omezarr.open_image(prediction)[:]), truth)
    assert all(metric_info(key) is not None for key in aggregate)  # pooled keys included


def test_directions_say_which_of_two_predictions_is_better(volume: tuple[Path, Path, np.ndarray]) -> None:
    """A sharper prediction scores better than a blurrier one on every metric, in its registered direction."""
    _, _, truth = volume
    mask = (truth[0] > 0).astype(np.float32)
    sharp = metrics.evaluate(ndimage.gaussian_filter(mask, 1.0), truth[0])
    blurred = metrics.evaluate(ndimage.gaussian_filter(mask, 3.0), truth[0])
    for key, metric in METRICS.items():
        assert sharp[key] != blurred[key], key
        assert (sharp[key] > blurred[key]) == metric.higher_is_better, key


def test_evaluate_step_puts_the_headline_metrics_on_top(
    volume: tuple[Path, Path, np.ndarray], tmp_path: Path
) -> None:
    data, prediction, _ = volume
    payload = run_evaluate(
        data=[str(data)],
        predictions=[str(prediction)],
        volumes=["v"],
        split=SplitConfig(volume="v", test="0-1"),
        metrics=str(tmp_path / "metrics.json"),
        slices=str(tmp_path / "slices.csv"),
        threshold=0.5,
        options=EvaluateConfig(warping=False),
    )
    assert HEADLINE_KEYS == ("iou", "dice", "pixel_error")
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert [key for key in written if key in METRICS] == list(HEADLINE_KEYS)
    assert list(written["overall"]) == list(METRICS)
    for key in HEADLINE_KEYS:
        assert written[key] == payload["overall"][key]


def test_labels_in_each_writing() -> None:
    v_rand = METRICS["v_rand"]
    assert (v_rand.label, v_rand.subscript) == ("V", "rand")
    assert (v_rand.text, v_rand.mathtext) == ("V_rand", "V$_{rand}$")
    assert METRICS["rand_error"].arrow == "\u2193" and METRICS["iou"].arrow == "\u2191"
    pooled = metric_info("v_rand_pooled")
    assert pooled is not None and pooled.pooled and not pooled.headline
    assert pooled.text == "V_rand (pooled)" and pooled.mathtext == "V$_{rand}$ (pooled)"
    assert pooled.higher_is_better and pooled.description == f"{v_rand.description}, pooled over slices"
    assert metric_info("nonsense") is None and metric_info("nonsense_pooled") is None


def test_a_key_is_registered_once() -> None:
    iou = METRICS["iou"]
    other = Metric("iou", "Other", higher_is_better=False, description="x", score=iou.score)
    with pytest.raises(ValueError, match="'iou' is registered twice"):
        build_registry(iou, other)
    with pytest.raises(ValueError, match="'x_pooled'"):
        build_registry(Metric("x_pooled", "X", higher_is_better=True, description="x", score=iou.score))


def false_positive_pixels(stats: SliceStats) -> int:
    """A metric that no entry has: the foreground pixels predicted where the truth has none."""
    return stats.at_threshold.fp


def test_the_registry_drives_the_computation(
    volume: tuple[Path, Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A metric registered here is computed, pooled, written by the evaluate step and described; one taken
    out of the registry is computed nowhere."""
    data, prediction, truth = volume
    probability = np.asarray(omezarr.open_image(prediction)[:])
    extra = Metric(
        "false_positives",
        "False positives",
        higher_is_better=False,
        description="foreground pixels predicted outside the truth's cells",
        score=false_positive_pixels,
        stack=lambda stacks: sum(s.at_threshold.fp for s in stacks),
    )
    registered = {key: m for key, m in METRICS.items() if key != "warping_error"}
    monkeypatch.setitem(registered, extra.key, extra)
    monkeypatch.setattr(metrics, "METRICS", registered)
    per_slice, aggregate = metrics.evaluate_volume(probability, truth, threshold=0.5)
    expected = [int(np.count_nonzero((p > 0.5) & (t == 0))) for p, t in zip(probability, truth, strict=True)]
    assert [row["false_positives"] for row in per_slice] == expected
    assert aggregate["false_positives_pooled"] == sum(expected)
    assert aggregate["false_positives"] == pytest.approx(np.mean(expected))
    assert "warping_error" not in per_slice[0] and "warping_error_pooled" not in aggregate
    payload = run_evaluate(
        data=[str(data)],
        predictions=[str(prediction)],
        volumes=["v"],
        split=SplitConfig(volume="v", test="0-1"),
        metrics=str(tmp_path / "metrics.json"),
        slices=str(tmp_path / "slices.csv"),
        threshold=0.5,
        options=EvaluateConfig(warping=False),
    )
    assert payload["overall"]["false_positives"] == pytest.approx(np.mean(expected))
    assert "false_positives" in (tmp_path / "slices.csv").read_text().splitlines()[0]


def test_evaluate_help_lists_every_metric(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_code:
        main(["evaluate", "--help"])
    assert exit_code.value.code == 0
    out = capsys.readouterr().out
    assert help_text() in out
    for key, metric in METRICS.items():
        line = next(line for line in out.splitlines() if line.strip().lstrip("*").startswith(f"{key} "))
        assert f"{metric.text}, {metric.better} is better" in line
        assert line.lstrip().startswith("*") == metric.headline
    assert ", ".join(HEADLINE_KEYS) in out
