"""The content of each section of the report as plain data (names, numbers, figures) for its template.

Nothing here writes HTML: each function returns a `Section` whose `content` its template
(`templates/<id>.html.j2`) lays out, with the page's wording and number formats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetflow.config.model import Config
from unetflow.data import omezarr
from unetflow.evaluate.registry import METRICS, Metric, metric_info
from unetflow.layout import ABLATION_MODEL, MAIN_MODEL
from unetflow.model.loss import EVEN_ODDS
from unetflow.report import figures
from unetflow.report.figures import FALSE_NEGATIVE, FALSE_POSITIVE, MAX_PANEL, Image, embed, rgb
from unetflow.report.formatting import number
from unetflow.report.inputs import Inputs, Run
from unetflow.report.provenance import Provenance

PAPER_TABLE1: dict[str, float] = {"warping_error": 0.000353, "rand_error": 0.0382, "isbi_pixel_error": 0.0611}
"""The u-net row of the paper's Table 1 (ISBI 2012 EM segmentation challenge, test set), by our metric key.

The challenge's pixel error is 1 - maximal F-score of pixel similarity (`isbi_pixel_error`); where the
metrics have no such key the paper's figure is shown beside the plain `pixel_error`.
"""

CARD_METRICS = ("iou", "dice", "rand_error", "warping_error", "isbi_pixel_error", "pixel_error")
"""The headline cards at the top of the page, in order (pixel error only without the ISBI one)."""
ABLATION_METRICS = ("rand_error", "v_rand", "iou")
"""The metrics of the border-term ablation: the region measures the claim is about, and IoU."""
SLICE_METRICS = ("iou", "pixel_error")
"""The metrics drawn per test slice."""


@dataclass(frozen=True)
class Section:
    """One section of the page: its element id, title, template and the content the template shows."""

    id: str
    title: str
    template: str
    content: Any


def section(section_id: str, title: str, content: Any) -> Section:
    """A section of the page, laid out by its template `templates/<section_id>.html.j2`."""
    return Section(id=section_id, title=title, template=f"{section_id}.html.j2", content=content)


@dataclass(frozen=True)
class Crop:
    """The centre crop an image panel shows of a larger slice: shown and full (y, x) sizes."""

    shown: tuple[int, int]
    full: tuple[int, int]


def _crop(inputs: Inputs) -> Crop | None:
    _, y, x = inputs.shape
    if y <= MAX_PANEL and x <= MAX_PANEL:
        return None
    return Crop(shown=(min(y, MAX_PANEL), min(x, MAX_PANEL)), full=(y, x))


def paper_values(keys: Sequence[str]) -> dict[str, float]:
    """The paper's Table 1 figures by the metric key they stand beside (pixel error: the ISBI one if any)."""
    values = {k: v for k, v in PAPER_TABLE1.items() if k in keys}
    if "isbi_pixel_error" not in keys and "pixel_error" in keys:
        values["pixel_error"] = PAPER_TABLE1["isbi_pixel_error"]
    return values


def threshold_of(run: Run, config: Config) -> float:
    """The segmentation threshold a run was evaluated at (its metrics record it; else the config's number,
    even odds where the config leaves it to the model's loss and the run records none)."""
    recorded = run.summary.get("threshold")
    if recorded is not None:
        return float(recorded)
    option = config.predict.threshold
    return EVEN_ODDS if option == "auto" else float(option)


def _threshold_set(config: Config) -> bool:
    """Whether the config sets the threshold (else it is w_fg / (w_bg + w_fg) of the class weights)."""
    return config.predict.threshold != "auto"


def _metric_keys(runs: Sequence[Run]) -> list[str]:
    keys: list[str] = []
    for run in runs:
        for key in run.summary["overall"]:
            if key not in keys:
                keys.append(key)
    return keys


def _main_run(runs: Sequence[Run], inputs: Inputs) -> Run:
    return next(run for run in runs if run.name == inputs.main)


# ------------------------------------------------------------------------------------------------ cards


@dataclass(frozen=True)
class Card:
    """A headline number of the main model, beside the paper's figure where it has one."""

    metric: Metric
    value: float
    paper: float | None


def cards(run: Run, volume: str) -> list[Card]:
    """Headline numbers of the main model on the split volume's test slices, beside the paper's figures."""
    overall = run.summary.get("volumes", {}).get(volume) or run.summary["overall"]
    keys = [k for k in CARD_METRICS if k in overall]
    if "isbi_pixel_error" in keys and "pixel_error" in keys:
        keys.remove("pixel_error")
    reference = paper_values(list(overall))
    return [Card(metric=METRICS[key], value=number(overall[key]), paper=reference.get(key)) for key in keys]


# ------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataContent:
    """The data and its split."""

    volume: str
    data: Path
    shape: tuple[int, int, int]
    voxel_size: list[float] | None
    unit: str
    train: list[int]
    val: list[int]
    test: list[int]
    class_weights: list[float] | None
    w0: Any
    sigma: Any
    other_volumes: list[str] | None
    sources: list[dict[str, Any]] | None = None
    """Every entry of the split, where it has several (name, volume, region, train, val, test)."""
    unannotated: bool = False
    """Whether the volume's labels leave pixels unannotated (sparse labels)."""


def data_section(inputs: Inputs, config: Config) -> Section:
    """The volume, its voxel size, the split and the loss weights' parameters."""
    attrs = omezarr.read_attrs(inputs.data)
    weight_attrs = omezarr.read_attrs(inputs.weights)
    volumes = config.volumes
    others = [str(v) for v in volumes if v != inputs.volume] if len(volumes) > 1 else None
    content = DataContent(
        volume=inputs.volume,
        data=inputs.data,
        shape=inputs.shape,
        voxel_size=attrs.get("voxel_size") or None,
        unit=attrs.get("unit", ""),
        train=inputs.train,
        val=inputs.val,
        test=inputs.test,
        class_weights=weight_attrs.get("class_weights") or None,
        w0=weight_attrs.get("w0", "n/a"),
        sigma=weight_attrs.get("sigma", "n/a"),
        other_volumes=others,
        sources=[{**item, "region": _region_text(item.get("region"))} for item in inputs.sources]
        if len(inputs.sources) > 1
        else None,
        unannotated=omezarr.label_ignore(inputs.data) is not None,
    )
    return section("data", "Data and split", content)


def _region_text(region: Mapping[str, Any] | None) -> str:
    """A split entry's region as shown: "z [1, 4), x [10, 50)" (axes left out are whole), "" for none."""
    spans = [f"{axis} [{span[0]}, {span[1]})" for axis, span in (region or {}).items() if span]
    return ", ".join(spans)


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Column:
    """A column of each model in the metrics table: a volume (its test slices or all of them) or overall."""

    name: str
    scope: str


@dataclass(frozen=True)
class Cell:
    """A value of the metrics table, in bold where it is the better model's."""

    value: float
    best: bool


@dataclass(frozen=True)
class MetricRow:
    """One metric across models and columns, and the paper's figure (None where it has none)."""

    key: str
    metric: Metric | None
    cells: list[Cell]
    paper: float | None


@dataclass(frozen=True)
class ResultsContent:
    """The metrics table against the paper, and what each number was measured on."""

    models: list[str]
    columns: list[Column]
    rows: list[MetricRow]
    counts: list[Any]
    volume: str
    test: list[int]
    tta: bool
    label_offset: bool
    threshold: float
    threshold_set: bool

    @property
    def definitions(self) -> list[Metric]:
        """The registered metrics of the table, for their definitions."""
        return [row.metric for row in self.rows if row.metric is not None]


def results_section(runs: Sequence[Run], inputs: Inputs, config: Config) -> Section:
    """Every metric of every model per volume and overall, beside the paper's Table 1."""
    keys = _metric_keys(runs)
    volumes: list[str] = []
    for run in runs:
        for volume in run.summary.get("volumes", {}):
            if volume not in volumes:
                volumes.append(volume)
    sources: list[str] = []
    for run in runs:
        for name in run.summary.get("sources", {}):
            if name not in sources and name not in volumes:
                sources.append(name)
    columns = [*volumes, *sources]
    names = [*columns, "overall"] if len(columns) > 1 else (columns or ["overall"])
    scopes = {
        c: "test" if c == inputs.volume or c in sources else "" if c == "overall" else "all slices"
        for c in names
    }

    def value(run: Run, column: str, key: str) -> float:
        scope = "sources" if column in sources else "volumes"
        source = run.summary["overall"] if column == "overall" else run.summary.get(scope, {}).get(column, {})
        if column != "overall" and not source and len(names) == 1:
            source = run.summary["overall"]
        return number(source.get(key))

    paper = paper_values(keys)
    rows = []
    for key in keys:
        best = _best_model(runs, key, names[-1], value) if len(runs) > 1 else None
        cells = [
            Cell(value=value(run, column, key), best=best == run.name and column == names[-1])
            for run in runs
            for column in names
        ]
        rows.append(MetricRow(key=key, metric=metric_info(key), cells=cells, paper=paper.get(key)))
    content = ResultsContent(
        models=[run.name for run in runs],
        columns=[Column(name=c, scope=scopes[c]) for c in names],
        rows=rows,
        counts=[_slice_count(run, column) for run in runs for column in names],
        volume=inputs.volume,
        test=inputs.test,
        tta=config.predict.tta,
        label_offset=config.train.label_offset == "auto",
        threshold=threshold_of(runs[0], config),
        threshold_set=_threshold_set(config),
    )
    return section("results", "Results against the paper", content)


def _slice_count(run: Run, column: str) -> Any:
    """Slices behind a column of the metrics table: of one volume (per-slice CSV) or all of them."""
    if column == "overall" or not run.slices:
        return run.summary.get("slices_evaluated", len(run.slices))
    if column in run.summary.get("sources", {}) and column not in run.summary.get("volumes", {}):
        return run.summary["sources"][column].get("slices", "")
    return sum(1 for row in run.slices if str(row["volume"]) == column)


def _best_model(
    runs: Sequence[Run], key: str, column: str, value: Callable[[Run, str, str], float]
) -> str | None:
    info = metric_info(key)
    if info is None:
        return None
    scored = [(value(run, column, key), run.name) for run in runs]
    scored = [(v, n) for v, n in scored if math.isfinite(v)]
    if len(scored) < 2:
        return None
    return (max if info.higher_is_better else min)(scored)[1]


# ------------------------------------------------------------------------------------------ predictions


@dataclass(frozen=True)
class PredictionsContent:
    """The best and worst test slices of the main model (no image where no slice has an IoU)."""

    model: str
    volume: str
    image: Image | None
    threshold: float
    crop: Crop | None
    false_positive: tuple[int, int, int]
    false_negative: tuple[int, int, int]


def _ranked_test_slices(run: Run, inputs: Inputs) -> list[tuple[int, float]]:
    """(slice, IoU) of the split volume's evaluated slices, best first."""
    pairs = [
        (int(row["slice"]), number(row.get("iou")))
        for row in run.slices
        if str(row["volume"]) == inputs.volume and math.isfinite(number(row.get("iou")))
    ]
    return sorted(pairs, key=lambda p: (-p[1], p[0]))


def predictions_section(runs: Sequence[Run], inputs: Inputs, config: Config) -> Section:
    """Raw, truth, prediction and errors of the main model's best and worst test slice."""
    main = _main_run(runs, inputs)
    ranked = _ranked_test_slices(main, inputs)
    threshold = threshold_of(main, config)
    image = None
    if ranked:
        rows = [("Best", *ranked[0])]
        if len(ranked) > 1:
            rows.append(("Worst", *ranked[-1]))
        fig = figures.prediction_figure(rows, inputs, main.name, threshold)
        shown = ", ".join(str(z) for _, z, _ in rows)
        alt = f"Raw, ground truth, prediction and error overlay of test slices {shown}"
        image = embed(fig, fig_id="fig-predictions", alt=alt)
    content = PredictionsContent(
        model=main.name,
        volume=inputs.volume,
        image=image,
        threshold=threshold,
        crop=_crop(inputs),
        false_positive=rgb(FALSE_POSITIVE),
        false_negative=rgb(FALSE_NEGATIVE),
    )
    return section("predictions", "Predictions on the test slices", content)


# ------------------------------------------------------------------------------------------- per slice


@dataclass(frozen=True)
class SliceRow:
    """The metrics of one evaluated slice of one model."""

    model: str
    volume: str
    slice: int
    values: list[float]


@dataclass(frozen=True)
class SlicesContent:
    """The per-slice metrics: a figure and every value (no figure where no slice was evaluated)."""

    image: Image | None
    metrics: list[tuple[str, Metric | None]]
    rows: list[SliceRow]


def _slice_keys(runs: Sequence[Run]) -> list[tuple[str, int]]:
    keys: list[tuple[str, int]] = []
    for run in runs:
        for row in run.slices:
            key = (str(row["volume"]), int(row["slice"]))
            if key not in keys:
                keys.append(key)
    return keys


def slices_section(runs: Sequence[Run]) -> Section:
    """IoU and pixel error of every evaluated slice per model, and a table of every value."""
    keys = _slice_keys(runs)
    if not keys:
        return section("slices", "Metrics per test slice", SlicesContent(image=None, metrics=[], rows=[]))
    fig = figures.slices_figure(runs, keys, [METRICS[key] for key in SLICE_METRICS])
    image = embed(fig, fig_id="fig-slices", alt="IoU and pixel error per test slice and model")
    metric_keys = [k for k in _metric_keys(runs) if any(k in row for run in runs for row in run.slices)]
    rows = [
        SliceRow(
            model=run.name,
            volume=str(row["volume"]),
            slice=row["slice"],
            values=[number(row.get(k)) for k in metric_keys],
        )
        for run in runs
        for row in run.slices
    ]
    content = SlicesContent(image=image, metrics=[(k, metric_info(k)) for k in metric_keys], rows=rows)
    return section("slices", "Metrics per test slice", content)


# ------------------------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightsContent:
    """The weight map of one training slice, as the paper's Fig. 3."""

    slice: int
    image: Image
    w0: Any
    sigma: Any
    crop: Crop | None


def weights_section(inputs: Inputs, config: Config) -> Section:
    """The paper's Fig. 3 for the first training slice."""
    z = inputs.train[0] if inputs.train else 0
    attrs = omezarr.read_attrs(inputs.weights)
    connectivity = config.weights.connectivity
    fig = figures.weight_figure(inputs, z, connectivity)
    content = WeightsContent(
        slice=z,
        image=embed(fig, fig_id="fig-weight-map", alt=f"Weight map of training slice {z}"),
        w0=attrs.get("w0", "n/a"),
        sigma=attrs.get("sigma", "n/a"),
        crop=_crop(inputs),
    )
    return section("weights", "Weight map", content)


# ------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingRow:
    """The training summary of one model (None where its log has no such value)."""

    model: str
    steps: int
    final_loss: float
    best_iou: float | None
    best_step: int | None
    step_seconds: float | None
    median_step: float | None
    median_data: float | None
    processes: int = 1
    """Processes that trained it (one per GPU, train.gpus; 1 where the log predates the column)."""


@dataclass(frozen=True)
class TrainingContent:
    """Training curves and a summary per model."""

    image: Image
    rows: list[TrainingRow]
    init_from: str | None = None
    """The trained model the run fine-tuned (train.init_from: its path or url), None from random weights."""


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _training_row(run: Run) -> TrainingRow:
    steps, loss = run.steps["step"], run.steps["loss"]
    step_time = _finite(run.steps.get("step_time", np.array([])))
    data_time = _finite(run.steps.get("data_time", np.array([])))
    processes = _finite(run.steps.get("processes", np.array([])))
    vsteps, viou = run.val["step"], run.val["val_iou"]
    best = int(np.nanargmax(viou)) if len(viou) and np.isfinite(viou).any() else None
    return TrainingRow(
        model=run.name,
        steps=int(np.nanmax(steps)) if len(steps) else 0,
        final_loss=figures.smooth(loss, span=figures.loss_span(len(loss)))[-1] if len(loss) else math.nan,
        best_iou=None if best is None else float(viou[best]),
        best_step=None if best is None else int(vsteps[best]),
        step_seconds=float(step_time.sum()) if len(step_time) else None,
        median_step=float(np.median(step_time)) if len(step_time) else None,
        median_data=float(np.median(data_time)) if len(data_time) else None,
        processes=int(processes.max()) if len(processes) else 1,
    )


def training_section(runs: Sequence[Run], config: Config) -> Section:
    """Loss and validation curves of every model, their summary, and the model they started from."""
    fig = figures.training_figure(runs)
    image = embed(fig, fig_id="fig-training", alt="Training loss and validation IoU")
    init = config.train.init_from
    started = None if init is None else init.path or init.url
    content = TrainingContent(image=image, rows=[_training_row(run) for run in runs], init_from=started)
    return section("training", "Training", content)


# ------------------------------------------------------------------------------------------- ablation


@dataclass(frozen=True)
class AblationRow:
    """One metric with the border term (main) and without it (ablation), and which model is better."""

    metric: Metric
    main: float
    ablation: float
    better: str


@dataclass(frozen=True)
class AblationContent:
    """The border term of the weight map on and off: the claim, the table and the figure."""

    main: str
    ablation: str
    rand_main: float
    rand_ablation: float
    rows: list[AblationRow]
    image: Image | None


def _better(metric: Metric, main: float, ablation: float) -> str:
    """Which loss did better on a metric: 'border term', 'class weights only', 'tie' or ''."""
    if not math.isfinite(main - ablation):
        return ""
    if main == ablation:
        return "tie"
    main_wins = (main > ablation) == metric.higher_is_better
    return "border term" if main_wins else "class weights only"


def has_ablation(runs: Sequence[Run]) -> bool:
    """Whether the ablation was trained beside another model, so that there are two to compare."""
    return any(run.name == ABLATION_MODEL for run in runs) and len(runs) > 1


def ablation_section(runs: Sequence[Run]) -> Section:
    """The paper's border term against class weights only, on the region measures."""
    main = next((run for run in runs if run.name == MAIN_MODEL), runs[0])
    ablation = next(run for run in runs if run.name == ABLATION_MODEL)
    first, second = main.summary["overall"], ablation.summary["overall"]
    metrics = [METRICS[k] for k in ABLATION_METRICS if k in first and k in second]
    rows = []
    for metric in metrics:
        a, b = number(first[metric.key]), number(second[metric.key])
        rows.append(AblationRow(metric=metric, main=a, ablation=b, better=_better(metric, a, b)))
    image = None
    if metrics:
        fig = figures.ablation_figure(main, ablation, metrics)
        alt = "Ablation: Rand error, V_rand and IoU with and without the border term"
        image = embed(fig, fig_id="fig-ablation", alt=alt)
    content = AblationContent(
        main=main.name,
        ablation=ablation.name,
        rand_main=number(first.get("rand_error")),
        rand_ablation=number(second.get("rand_error")),
        rows=rows,
        image=image,
    )
    return section("ablation", "Ablation: the border term of the weight map", content)


# ----------------------------------------------------------------------------------------- provenance


def provenance_section(provenance: Provenance) -> Section:
    """Versions, commit, hardware, rule times and the config of the run."""
    return section("provenance", "Provenance", provenance)
