"""The report's pages, built the same way: the inputs checked and read, the sections assembled, the page
written atomically (unetflow.report.render.write_page): `build_report` for a run that trained its models,
`build_prediction_report` for a run that only predicted, `build_ctc_report` for a cell tracking run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unetflow.config.model import Config
from unetflow.errors import InputError
from unetflow.report import sections
from unetflow.report.cells import cells_sections, paper_seg
from unetflow.report.datasets import datasets_section, model_section, volume_metrics_section
from unetflow.report.figures import model_colour
from unetflow.report.inputs import check_inputs, load_run
from unetflow.report.provenance import collect_provenance
from unetflow.report.render import CellsPage, Page, PredictionPage, generated_now, write_page
from unetflow.stores import Location


def build_report(
    *,
    output: str | os.PathLike[str],
    models: Sequence[str],
    metrics: Sequence[str | os.PathLike[str]],
    slices: Sequence[str | os.PathLike[str]],
    step_logs: Sequence[str | os.PathLike[str]],
    val_logs: Sequence[str | os.PathLike[str]],
    predictions: Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str],
    weights: str | os.PathLike[str],
    config: Config,
    benchmarks: str | os.PathLike[str],
    project: str | os.PathLike[str] | None = None,
    datasets: Sequence[tuple[str, str, str, str, str]] = (),
    segmentation: str | None = None,
) -> None:
    """Write the self-contained HTML report `output` (results/report/index.html) atomically.

    One entry per model in `metrics`, `slices`, `step_logs`, `val_logs` and `predictions` (its prediction
    of the split volume); `benchmarks` is the folder of Snakemake's benchmark files, `project` the folder
    whose git commit the provenance names (default: the current folder); `datasets` lists every
    prediction as (model, volume, source read, prediction, its summary) for the section on predicted
    volumes; `segmentation` the main model's segmentation of the split volume (the objects section).
    Missing inputs raise FileNotFoundError naming the file before anything is drawn.
    """
    per_model = {
        "metrics": metrics,
        "slices": slices,
        "step_logs": step_logs,
        "val_logs": val_logs,
        "predictions": predictions,
    }
    inputs = check_inputs(
        models=list(models), per_model=per_model, data=Path(data), weights=Path(weights), split=config.split
    )
    runs = [load_run(model, inputs, i, colour=model_colour(i)) for i, model in enumerate(inputs.models)]
    main = next(run for run in runs if run.name == inputs.main)
    parts = [
        sections.data_section(inputs, config),
        sections.results_section(runs, inputs, config),
        sections.predictions_section(runs, inputs, config),
        *_objects(main, inputs, segmentation, sections.threshold_of(main, config)),
        *([datasets_section(datasets)] if datasets else []),
        sections.slices_section(runs),
        sections.weights_section(inputs, config),
        sections.training_section(runs, config),
    ]
    if sections.has_ablation(runs):
        parts.append(sections.ablation_section(runs))
    parts.append(_provenance(project, benchmarks, config))
    page = Page(
        volume=inputs.volume,
        test=inputs.test,
        models=[run.name for run in runs],
        main=main.name,
        cards=sections.cards(main, inputs.volume),
        sections=parts,
        generated=generated_now(),
    )
    write_page(output, page)


def build_prediction_report(
    *,
    output: str | os.PathLike[str],
    model: str,
    predictions: Sequence[tuple[str, str, str, str]],
    metrics: str | os.PathLike[str] | None,
    config: Config,
    benchmarks: str | os.PathLike[str],
    project: str | os.PathLike[str] | None = None,
) -> None:
    """The report of a run that trained nothing: the model, each (volume, source, prediction, summary), the
    metrics of labelled volumes (when `metrics` is given) and the provenance; written atomically."""
    for _, _, prediction, summary in predictions:
        for path in (prediction, summary):
            if not Location.of(path).exists():
                raise InputError(f"{path} does not exist: run the prediction (and its finalisation) first")
    parts = [model_section(predictions[0][2])] if predictions else []
    parts.append(datasets_section([(model, volume, *rest) for volume, *rest in predictions]))
    if metrics is not None:
        parts.append(volume_metrics_section(metrics))
    parts.append(_provenance(project, benchmarks, config))
    page = PredictionPage(
        model=model,
        volumes=[volume for volume, *_ in predictions],
        sections=parts,
        generated=generated_now(),
    )
    write_page(output, page)


def _objects(run: Any, inputs: Any, segmentation: str | None, threshold: float) -> list[Any]:
    """The objects section where the run segmented (none otherwise)."""
    from unetflow.report.objects import objects_section

    found = objects_section(run, inputs, segmentation, threshold)
    return [] if found is None else [found]


def _provenance(
    project: str | os.PathLike[str] | None, benchmarks: str | os.PathLike[str], config: Config
) -> sections.Section:
    """The last section of every page: versions, commit (of `project`, default the current folder),
    hardware, rule times and the config."""
    folder = Path.cwd() if project is None else Path(project)
    return sections.provenance_section(
        collect_provenance(project=folder, benchmarks=Path(benchmarks), config=config)
    )


def build_ctc_report(
    *,
    output: str | os.PathLike[str],
    seg: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    cells: Sequence[str | os.PathLike[str]],
    step_logs: Sequence[str | os.PathLike[str]],
    config: Config,
    benchmarks: str | os.PathLike[str],
    project: str | os.PathLike[str] | None = None,
) -> None:
    """Write a cell tracking run's page `output` (unetflow.report.cells): Table 2 beside its SEG file `seg`,
    the cells of the label stacks `cells` against the gold of the fetched `dataset`, each model's step log."""
    if config.ctc is None:
        raise InputError("the cell tracking report needs the config's ctc section")
    for path in (seg, dataset, *cells, *step_logs):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: an input of the report is missing; run the workflow first")
    scores = json.loads(Path(seg).read_text())
    parts = cells_sections(
        scores,
        dataset=Path(dataset),
        cells=[Path(path) for path in cells],
        step_logs=[Path(path) for path in step_logs],
        config=config,
    )
    provenance = collect_provenance(
        project=Path.cwd() if project is None else Path(project), benchmarks=Path(benchmarks), config=config
    )
    parts.append(sections.provenance_section(provenance))
    page = CellsPage(
        dataset=config.ctc.dataset,
        seg=float(scores["seg"]),
        paper=paper_seg(config.ctc.dataset),
        sections=parts,
        generated=generated_now(),
    )
    write_page(output, page)
