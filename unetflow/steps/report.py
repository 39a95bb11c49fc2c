"""The report steps: the HTML page of a run that trained its models, or of one that only predicted, and the
bioimage.io package of a trained model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unetflow.atomic import protect_inputs
from unetflow.config.model import ExportConfig, VolumeConfig
from unetflow.config.slices import select_slices
from unetflow.config.split import Split, primary_entry, split_entries
from unetflow.data import omezarr
from unetflow.errors import InputError
from unetflow.logs import setup_logging


def run_export(
    *,
    model: str,
    output: str,
    options: ExportConfig,
    image: str | None = None,
    image_slice: int = 0,
    test_size: int | None = None,
    metrics: str | None = None,
    training_data: str | None = None,
) -> None:
    """Write a trained model as a bioimage.io package, described by the config's `export:` section; its test
    input is slice `image_slice` of `image` (default: a synthetic EM-like slice)."""
    from unetflow.export.bioimageio import export_model

    setup_logging()
    with protect_inputs([model, image, metrics], outputs=[output]):
        export_model(
            model,
            output,
            image=image,
            image_slice=image_slice,
            test_size=test_size,
            metrics=metrics,
            name=options.name,
            description=options.description,
            license=options.license,
            authors=options.authors or None,
            training_data=training_data,
            training_data_license=options.training_data_license,
            test=options.test,
        )


def run_workflow_export(
    *,
    model: str,
    output: str,
    data: str,
    split: Split,
    volumes: Mapping[str, VolumeConfig],
    metrics: str,
    options: ExportConfig,
) -> None:
    """The workflow's export of a trained model: the test input is the first test slice of the split's
    primary entry (`data`: that entry's imported volume), the training data described from the split and
    `volumes` (every volume by name)."""
    from unetflow.export.bioimageio import describe_training_data

    entries = split_entries(split)
    entry = primary_entry(entries)
    if entry is None:
        raise InputError("split names no entry: the export takes its test image from the split's test slices")
    image = omezarr.open_image(data)
    slices = image.shape[0] if image.ndim == 3 else 1
    test = select_slices(entry.test, slices, what="split.test") if entry.test not in ("", []) else [0]
    described = " ".join(
        describe_training_data(item.volume, volumes[item.volume], item.train)
        for item in entries
        if item.train not in ("", []) and item.volume in volumes
    )
    run_export(
        model=model,
        output=output,
        options=options,
        image=data,
        image_slice=test[0],
        metrics=metrics,
        training_data=described,
    )


def run_report(**kwargs: Any) -> None:
    """Render the HTML report of a run that trained its models (see unetflow.report)."""
    setup_logging()
    from unetflow.report import build_report

    with protect_inputs([], outputs=[kwargs["output"]]):
        build_report(**kwargs)


def run_prediction_report(**kwargs: Any) -> None:
    """Render the HTML report of a run that predicted with a pretrained model (see unetflow.report)."""
    setup_logging()
    from unetflow.report import build_prediction_report

    with protect_inputs([], outputs=[kwargs["output"]]):
        build_prediction_report(**kwargs)
