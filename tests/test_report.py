"""The HTML report, built from real inputs: a synthetic volume imported to OME-Zarr, its weight map, blurred
labels as predictions, metrics from unetflow.evaluate and small training logs (tests/report_fixtures.py)."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest
from report_fixtures import BENCHMARKS, make_inputs, write_rows
from report_fixtures import config as fixture_config

from unetflow.config.model import SyntheticConfig, VolumeConfig
from unetflow.errors import InputError
from unetflow.evaluate.registry import METRICS
from unetflow.report import (
    PAPER_TABLE1,
    benchmark_times,
    build_report,
    config_yaml,
    format_seconds,
    format_value,
    read_csv_rows,
    slice_ranges,
    smooth,
)

PNG = "data:image/png;base64,"
OTHER = "isbi"
BROWSER_SETUP = Path(__file__).resolve().parent / "browser" / "setup.sh"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Headless Chromium as root, off the network: on a closed one its background connections are refused."""
PROBE = """<pre id="probe"></pre><script>
addEventListener("load", () => {
  const style = (selector, property) => getComputedStyle(document.querySelector(selector))[property];
  document.getElementById("probe").textContent = JSON.stringify({
    images: [...document.images].map((image) => [image.id, image.naturalWidth, image.naturalHeight]),
    font: style("body", "fontFamily"),
    paper: style("th.paper", "backgroundColor"),
    table: document.getElementById("table-metrics").getBoundingClientRect().height,
  });
});
</script>"""
"""Appended to a copy of the page: what the browser loaded and laid out, into the DOM for --dump-dom."""


class Page(HTMLParser):
    """The images, element ids and external references of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()
        self.references: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if "id" in values:
            self.ids.add(values["id"])
        if tag == "img":
            self.images.append(values)
        for key in ("src", "href"):
            if key in values and not values[key].startswith(("data:", "#")):
                self.references.append(values[key])


def _build(root: Path, models: list[str], **options: Any) -> tuple[dict[str, Any], str]:
    kwargs = make_inputs(root, models, **options)
    build_report(**kwargs)
    return kwargs, Path(kwargs["output"]).read_text(encoding="utf-8")


def _add_volume(metrics: Path, slices: Path) -> None:
    """Add a second evaluated volume (all its slices count) to a model's metrics, as run_evaluate does."""
    summary = json.loads(metrics.read_text())
    rows = read_csv_rows(slices)
    extra = {**rows[0], "volume": OTHER, "slice": "7", "iou": "0.5"}
    summary["volumes"][OTHER] = {key: float(extra[key]) for key in summary["overall"]}
    every = [*rows, extra]
    summary["overall"] = {key: float(np.mean([float(r[key]) for r in every])) for key in summary["overall"]}
    summary["slices_evaluated"] = len(every)
    metrics.write_text(json.dumps(summary))
    write_rows(slices, list(rows[0]), [list(r.values()) for r in every])


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The report of the main model alone, evaluated on the split volume's test slices and another volume."""
    root = tmp_path_factory.mktemp("single")
    kwargs = make_inputs(root, ["main"])
    _add_volume(kwargs["metrics"][0], kwargs["slices"][0])
    build_report(**kwargs)
    return kwargs, Path(kwargs["output"]).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The report of main and ablation; the ablation's validation log has no rows."""
    return _build(tmp_path_factory.mktemp("pair"), ["main", "ablation"], empty_val=["ablation"])


def _section(text: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', text, re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


def _table(text: str, table_id: str) -> str:
    match = re.search(rf'<table id="{table_id}"[^>]*>(.*?)</table>', text, re.S)
    assert match, f"no table {table_id}"
    return match.group(1)


def test_page_is_self_contained_with_every_figure(single: tuple[dict[str, Any], str]) -> None:
    kwargs, text = single
    page = Page(text)
    ids = [image["id"] for image in page.images]
    assert ids == ["img-fig-predictions", "img-fig-slices", "img-fig-weight-map", "img-fig-training"]
    assert text.count(f'src="{PNG}') == 4
    for image in page.images:
        assert image["alt"].strip()
        assert image["src"].startswith(PNG)
        png = base64.b64decode(image["src"][len(PNG) :])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert page.references == []
    assert not {"script", "link", "iframe"} & page.tags
    assert "<style>" in text and text.startswith("<!DOCTYPE html>")
    assert {"data", "results", "predictions", "slices", "weights", "training", "provenance"} <= page.ids
    assert "ablation" not in page.ids
    assert [p.name for p in Path(kwargs["output"]).parent.iterdir()] == ["index.html"]


def test_metric_values_sit_beside_the_papers(single: tuple[dict[str, Any], str]) -> None:
    kwargs, text = single
    summary = json.loads(Path(kwargs["metrics"][0]).read_text())
    table = _table(text, "table-metrics")
    for key, value in summary["overall"].items():
        assert f">{format_value(value)}<" in table, key
    for value in PAPER_TABLE1.values():
        assert f">{format_value(value)}<" in table
    assert format_value(0.000353) == "0.000353" and format_value(0.0382) == "0.0382"
    # the paper's pixel error stands in the row of the challenge's pixel error
    pixel_row = re.search(r"<tr><th[^>]*>Pixel error \(ISBI\)</th>(.*?)</tr>", table).group(1)
    assert "0.0611" in pixel_row
    note = _section(text, "results")
    assert "ISBI 2012 EM segmentation challenge test set" in note and "organisers" in note
    assert "held-out test slices 4\u20135" in note
    assert f">{summary['slices_evaluated']}<" in table


def test_the_results_note_says_when_the_raw_was_moved_onto_the_labels(
    single: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    kwargs, text = single
    moved = "the raw image moved onto the labels by their sub-pixel offset"
    assert moved not in _section(text, "results")
    config = fixture_config(["main"], train={"label_offset": "auto"})
    build_report(**{**kwargs, "config": config, "output": str(tmp_path / "index.html")})
    note = _section((tmp_path / "index.html").read_text(encoding="utf-8"), "results")
    assert moved in " ".join(note.split()) and "train.label_offset: auto" in note


def test_metric_rows_take_label_direction_and_description_from_the_registry(
    single: tuple[dict[str, Any], str],
) -> None:
    kwargs, text = single
    table = _table(text, "table-metrics")
    rows = re.findall(r'<tr><th title="([^"]*)">(.*?)</th><td class="dir">(.*?)</td>', table)
    shown = {label: (html.unescape(title), arrow) for title, label, arrow in rows}
    keys = list(json.loads(Path(kwargs["metrics"][0]).read_text())["overall"])
    expected = {}
    for key in keys:
        metric = METRICS[key]
        label = metric.label + (f"<sub>{metric.subscript}</sub>" if metric.subscript else "")
        expected[label] = (metric.description, metric.arrow)
    assert shown == expected
    assert "V<sub>rand</sub>" in shown and shown["Rand error"][1] == "\u2193"
    definitions = re.search(r'<ul class="defs">(.*?)</ul>', text, re.S).group(1)
    assert definitions.count("<li>") == len(keys)


def test_run_values_are_escaped_and_unknown_metrics_keep_their_key(
    pair: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    odd = "odd<b>&key"
    hostile = "<script>alert(1)</script>"
    kwargs = dict(pair[0])
    summary = json.loads(Path(kwargs["metrics"][0]).read_text())
    for scores in (summary["overall"], *summary["volumes"].values()):
        scores[odd] = 0.25
    metrics = tmp_path / "main.json"
    metrics.write_text(json.dumps(summary))
    volumes = {**kwargs["config"].volumes, hostile: VolumeConfig(synthetic=SyntheticConfig())}
    config = kwargs["config"].model_copy(update={"volumes": volumes})  # a name no config would let through
    output = tmp_path / "report" / "index.html"
    build_report(**{**kwargs, "metrics": [metrics, kwargs["metrics"][1]], "config": config, "output": output})
    text = output.read_text(encoding="utf-8")
    page = Page(text)
    assert "script" not in page.tags and hostile not in text
    assert "<td>Other volumes (predicted)</td><td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in text
    row = re.search(r"<tr><th>odd&lt;b&gt;&amp;key</th>(.*?)</tr>", _table(text, "table-metrics")).group(1)
    assert row.startswith('<td class="dir"></td><td class="num">0.2500</td>')  # no direction, no bold
    assert "odd" not in re.search(r'<ul class="defs">(.*?)</ul>', text, re.S).group(1)


def test_best_and_worst_test_slices_are_shown(single: tuple[dict[str, Any], str]) -> None:
    kwargs, text = single
    rows = [r for r in read_csv_rows(kwargs["slices"][0]) if r["volume"] == "synthetic"]
    ranked = sorted(rows, key=lambda r: -float(r["iou"]))
    assert len(ranked) == 2  # the other volume's slice (IoU 0.5) is not a test slice of the split
    best, worst = ranked[0]["slice"], ranked[-1]["slice"]
    alt = next(i["alt"] for i in Page(text).images if i["id"] == "img-fig-predictions")
    assert alt.endswith(f"test slices {best}, {worst}")
    caption = _section(text, "predictions")
    assert "false positives" in caption and "false negatives" in caption and "0.5" in caption


def test_provenance_lists_config_versions_hardware_and_rule_times(single: tuple[dict[str, Any], str]) -> None:
    text = single[1]
    page = Page(text)
    assert {
        "prov-run",
        "prov-software",
        "prov-hardware",
        "prov-rules",
        "prov-config",
        "config-yaml",
    } <= page.ids
    software = _table(text, "table-software")
    for package in ("python", "torch", "numpy", "scipy", "zarr", "dask", "snakemake"):
        assert f"<td>{package}</td>" in software
    assert f"<td>{metadata.version('numpy')}</td>" in software
    hardware = _table(text, "table-hardware")
    assert "CPU" in hardware and "GPU" in hardware
    run = _table(text, "table-run")
    commit = re.search(r"Git commit</td><td><code>([^<]*)</code>", run).group(1)
    assert commit == "unknown" or re.fullmatch(r"[0-9a-f]{40}( \(with uncommitted changes\))?", commit)
    assert "Generated" in run
    rules = _table(text, "table-rules")
    assert "<code>train</code></td><td>2</td><td>4 min 06 s</td><td>2 min 06 s</td><td>1450 MB" in rules
    assert "<code>weights</code></td><td>1</td><td>3.00 s</td>" in rules
    yaml_text = re.search(r'<pre id="config-yaml">(.*?)</pre>', text, re.S).group(1)
    assert "shape: [6, 64, 64]" in yaml_text and "w0: 10.0" in yaml_text and "ablation: false" in yaml_text


def test_ablation_compares_the_border_term(pair: tuple[dict[str, Any], str]) -> None:
    kwargs, text = pair
    page = Page(text)
    assert [i["id"] for i in page.images][-1] == "img-fig-ablation"
    assert text.count(f'src="{PNG}') == 5
    main, ablation = (json.loads(Path(p).read_text())["overall"] for p in kwargs["metrics"])
    table = _table(text, "table-ablation")
    for key in ("rand_error", "v_rand", "iou"):
        assert format_value(main[key]) in table and format_value(ablation[key]) in table
    section = _section(text, "ablation")
    sentence = (
        f"Here the Rand error is {format_value(main['rand_error'])} with the border term and "
        f"{format_value(ablation['rand_error'])} without it"
    )
    assert sentence in section
    assert main["rand_error"] < ablation["rand_error"]  # the blurrier 'ablation' merges cells
    assert "consistent with the paper's claim" in section and "touching cells" in section
    metrics = _table(text, "table-metrics")
    assert metrics.count('class="model"') == 2
    training = _table(text, "table-training")
    assert re.search(r"<td>ablation</td><td>60</td><td>[0-9.]+</td><td>n/a</td>", training)
    processes = re.findall(r"<td>(main|ablation)</td>.*?<td>(\d+)</td></tr>", training)
    assert processes == [("main", "4"), ("ablation", "1")]  # train.gpus of each run, 1 for an old log


@pytest.mark.parametrize("key", ["metrics", "slices", "step_logs", "val_logs"])
def test_missing_model_input_is_named(pair: tuple[dict[str, Any], str], tmp_path: Path, key: str) -> None:
    kwargs = dict(pair[0])
    missing = tmp_path / f"gone_{key}.csv"
    kwargs[key] = [kwargs[key][0], missing]
    kwargs["output"] = tmp_path / "results" / "report" / "index.html"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        build_report(**kwargs)
    assert not Path(kwargs["output"]).exists()


@pytest.mark.parametrize("key", ["data", "weights"])
def test_missing_volume_is_named(pair: tuple[dict[str, Any], str], tmp_path: Path, key: str) -> None:
    kwargs = {**pair[0], key: tmp_path / "absent.zarr", "output": tmp_path / "results/report/index.html"}
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent.zarr"))):
        build_report(**kwargs)


def test_missing_prediction_is_named(pair: tuple[dict[str, Any], str], tmp_path: Path) -> None:
    kwargs = {**pair[0], "output": tmp_path / "results" / "report" / "index.html"}
    expected = tmp_path / "results" / "predict" / "main" / "synthetic.zarr"
    kwargs["predictions"] = [expected, pair[0]["predictions"][1]]
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        build_report(**kwargs)
    assert not kwargs["output"].exists()


def test_one_path_per_model(pair: tuple[dict[str, Any], str]) -> None:
    kwargs = {**pair[0], "metrics": pair[0]["metrics"][:1]}
    with pytest.raises(ValueError, match="metrics: 1 path"):
        build_report(**kwargs)


def test_log_without_loss_column_is_named(pair: tuple[dict[str, Any], str], tmp_path: Path) -> None:
    broken = tmp_path / "train_log.csv"
    write_rows(broken, ["step", "lr"], [(1, 0.1)])
    report = tmp_path / "results" / "report" / "index.html"
    shutil.copytree(Path(pair[0]["output"]).parents[1] / "predict", tmp_path / "results" / "predict")
    kwargs = {**pair[0], "step_logs": [broken, pair[0]["step_logs"][1]], "output": report}
    with pytest.raises(InputError, match=r"train_log\.csv: missing column\(s\) \['loss'\]"):
        build_report(**kwargs)


def test_benchmark_times_per_rule(pair: tuple[dict[str, Any], str]) -> None:
    times = {t["rule"]: t for t in benchmark_times(pair[0]["benchmarks"])}
    assert set(times) == {name.split("/")[0].removesuffix(".tsv") for name in BENCHMARKS}
    assert times["train"]["jobs"] == 2 and times["train"]["seconds"] == pytest.approx(245.5)
    assert times["predict"]["longest"] == pytest.approx(14.0)
    assert times["weights"]["seconds"] == pytest.approx(3.0)  # repeated runs of one job are averaged
    assert times["train"]["max_rss"] == pytest.approx(1450.25)
    assert benchmark_times(Path(pair[0]["benchmarks"]) / "nowhere") == []


def test_formatting_helpers() -> None:
    assert format_value(0.12345) == "0.1235"
    assert format_value(float("nan")) == "n/a" and format_value(None) == "n/a"
    assert slice_ranges([5, 0, 1, 2, 7, 8]) == "0\u20132, 5, 7\u20138" and slice_ranges([]) == "none"
    assert format_seconds(3.256) == "3.26 s" and format_seconds(245.5) == "4 min 06 s"
    assert format_seconds(7384) == "2 h 03 min"
    assert np.allclose(smooth(np.full(10, 0.3), span=4), 0.3)
    smoothed = smooth(np.array([1.0, math.nan, 1.0, 3.0]), span=3)
    assert smoothed[1] == 1.0 and 1.0 < smoothed[3] < 3.0
    assert config_yaml({"a": {"b": [1, 2]}, "c": [{"d": 1}]}) == "a:\n  b: [1, 2]\nc:\n- d: 1\n"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium; tests/browser/setup.sh installs it (root, apt) where it is missing."""
    if shutil.which("chromium") is None and os.geteuid() != 0:
        pytest.skip(
            "headless Chromium is not installed and installing it needs root: run sudo tests/browser/setup.sh"
        )
    command = ["timeout", "-k", "10", "600", str(BROWSER_SETUP)]
    setup = subprocess.run(command, capture_output=True, text=True, check=False)
    if setup.returncode != 0:
        pytest.fail(f"tests/browser/setup.sh failed (rc {setup.returncode}): {setup.stderr}{setup.stdout}")
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(f"tests/browser/setup.sh succeeded but chromium is not on PATH: {setup.stdout}")
    return found


def _png_size(src: str) -> tuple[int, int]:
    """Width and height of an embedded PNG, from its IHDR chunk."""
    png = base64.b64decode(src[len(PNG) :])
    width, height = struct.unpack(">II", png[16:24])
    return width, height


@pytest.mark.slow
def test_page_renders_in_chromium(chromium: str, pair: tuple[dict[str, Any], str], tmp_path: Path) -> None:
    text = pair[1]
    page = tmp_path / "index.html"
    page.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / "profile"
    profile.mkdir()
    shot = tmp_path / "report.png"
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    dom = result.stdout
    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))
    # every figure was decoded at the size of its PNG
    expected = {image["id"]: _png_size(image["src"]) for image in Page(text).images}
    assert {name: (width, height) for name, width, height in probe["images"]} == expected
    # the inlined stylesheet was parsed and applied (its quoted font names too)
    assert "Segoe UI" in probe["font"] and probe["paper"] == "rgb(246, 241, 228)"
    # the metrics table was laid out, with the paper's figures in it
    assert probe["table"] > 100
    metrics = _table(dom, "table-metrics")
    assert re.search(r"<tr><th[^>]*>Pixel error \(ISBI\)</th>.*0\.0611", metrics)
    assert metrics.count('class="model"') == 2
    # the screenshot shows ink, and the header's 3 px rule in the accent colour across the page
    pixels = np.round(255 * mpimg.imread(shot)[..., :3]).astype(int)
    assert pixels.shape == (2400, 1280, 3)
    assert np.mean(np.any(pixels < 200, axis=-1)) > 0.05
    accent = np.all(np.abs(pixels - (31, 95, 168)) <= 2, axis=-1)
    assert np.count_nonzero(accent.sum(axis=1) > 1000) >= 3


def test_other_volumes_get_their_own_columns(single: tuple[dict[str, Any], str]) -> None:
    kwargs, text = single
    other = json.loads(Path(kwargs["metrics"][0]).read_text())["volumes"][OTHER]
    table = _table(text, "table-metrics")
    assert f"<th>synthetic (test)</th><th>{OTHER} (all slices)</th><th>overall</th>" in table
    assert f">{format_value(other['rand_error'])}<" in table
    assert f"<td>{OTHER}</td><td>7</td>" in _table(text, "table-slices")
    test_iou = json.loads(Path(kwargs["metrics"][0]).read_text())["volumes"]["synthetic"]["iou"]
    cards = re.search(r'<div class="cards" id="summary-cards">(.*?)</div></div></div>', text, re.S).group(1)
    assert (
        f'IoU (cells) \u2191</div><div class="v">{format_value(test_iou)}<' in cards
    )  # headline: test slices


def test_several_sources_and_fine_tuning_are_reported(tmp_path: Path) -> None:
    """A split of two entries of one volume: the data table lists both (name, region, slices), the metrics
    table has a column for the source the volume's name does not cover, and the training caption names
    the model the run fine-tuned."""
    kwargs = make_inputs(tmp_path, ["main"])
    split = [
        {"volume": "synthetic", "name": "left", "region": {"x": [0, 32]}, "train": "0-2", "val": "3"},
        {"volume": "synthetic", "name": "right", "region": {"x": [32, 64]}, "test": "4-5"},
    ]
    summary = json.loads(Path(kwargs["metrics"][0]).read_text())
    summary["sources"] = {"right": {**summary["volumes"]["synthetic"], "iou": 0.4321, "slices": 2}}
    Path(kwargs["metrics"][0]).write_text(json.dumps(summary))
    config = fixture_config(["main"], split=split, train={"init_from": {"path": "lab.pt"}})
    build_report(**{**kwargs, "config": config})
    text = Path(kwargs["output"]).read_text(encoding="utf-8")
    data = _table(text, "table-data")
    assert (
        "<code>left</code>: volume <code>synthetic</code>, region x [0, 32); train 0-2, val 3, test none"
        in data
    )
    assert "<code>right</code>" in data and "test 4-5" in data
    table = _table(text, "table-metrics")
    assert "<th>synthetic (test)</th><th>right (test)</th><th>overall</th>" in table
    assert ">0.4321<" in table
    assert "started from the trained model <code>lab.pt</code>" in _section(text, "training")
