"""The report and export subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from unetflow.cli.options import add_config, sections
from unetflow.config.load import load_config_files
from unetflow.config.model import Config, ExportConfig
from unetflow.errors import InputError
from unetflow.layout import ABLATION_MODEL, MAIN_MODEL, Layout
from unetflow.steps import report as steps


def add_commands(sub: Any) -> None:
    """The subcommands of this stage, on the `unetflow` command's subparsers."""
    p = sub.add_parser("report", help="the HTML report of a workflow run, at <results>/report/index.html")
    p.add_argument("--results", default="results", help="the run's results folder")
    p.add_argument(
        "--config", action="append", default=[], metavar="YAML", help="the config file(s) of the run"
    )
    p.add_argument("--project", default=".", help="the workflow's folder, for its git commit (default: here)")
    p.set_defaults(handler=_report)

    p = sub.add_parser("export", help="write a trained model as a bioimage.io model package (.zip)")
    p.add_argument("model", help="the trained checkpoint (.pt)")
    p.add_argument("output", help="the package to write (.zip)")
    p.add_argument(
        "--image",
        help="a volume (OME-Zarr or any format `unetflow import` reads) to take the test input from "
        "(default: a synthetic EM-like slice)",
    )
    p.add_argument("--slice", type=int, default=0, help="slice of --image to take the test input from")
    p.add_argument(
        "--test-size", type=int, help="output pixels of the test input (default: the training tile)"
    )
    p.add_argument("--metrics", help="metrics JSON of `unetflow evaluate` to put into the package")
    p.add_argument("--name", help="the model's name (default: export.name, else from its depth and width)")
    p.add_argument(
        "--description", help="a short description (default: export.description, else what the net is)"
    )
    p.add_argument(
        "--license",
        help="SPDX licence of the package (default: export.license, MIT: unetflow's, whose model source it "
        "contains)",
    )
    p.add_argument(
        "--author",
        action="append",
        dest="authors",
        help="an author of the model; repeat for several (default: export.authors, else the login name "
        "running the export)",
    )
    p.add_argument("--training-data-description", help="what the net was trained on, in a sentence or two")
    p.add_argument(
        "--training-data-license",
        help="SPDX licence of the training data (default: export.training_data_license)",
    )
    p.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test_model of the package")
    add_config(p)
    p.set_defaults(handler=_export)


def _report(args: argparse.Namespace) -> None:
    run_report_of(Path(args.results), load_config_files(args.config), project=Path(args.project))


def _export(args: argparse.Namespace) -> None:
    """The config's `export:` section, with the options given on the command line taking its place."""
    given = {
        "name": args.name,
        "description": args.description,
        "license": args.license,
        "authors": args.authors,
        "training_data_license": args.training_data_license,
        "test": False if args.no_test else None,
    }
    options = {
        **sections(args).export.dump(),
        **{key: value for key, value in given.items() if value is not None},
    }
    steps.run_export(
        model=args.model,
        output=args.output,
        options=ExportConfig.from_dict(options),
        image=args.image,
        image_slice=args.slice,
        test_size=args.test_size,
        metrics=args.metrics,
        training_data=args.training_data_description,
    )


def run_report_of(results: Path, config: Config, *, project: Path | None = None) -> None:
    """The report of a workflow run, from the file names the workflow gives its outputs (unetflow.layout).

    `project` is the workflow's folder, whose git commit the report names (default: the current folder).
    """
    layout = Layout(results=str(results))
    models = [MAIN_MODEL, ABLATION_MODEL] if config.ablation else [MAIN_MODEL]
    for path in [layout.metrics(m) for m in models]:
        if not Path(path).is_file():
            raise InputError(
                f"{path} does not exist: run the workflow (or its evaluate step) before the report"
            )
    volume = config.report_volume()
    if volume is None:
        raise InputError("the report of a run that trained needs its split; give the run's config files")
    steps.run_report(
        output=layout.report(),
        models=models,
        metrics=[layout.metrics(m) for m in models],
        slices=[layout.slice_metrics(m) for m in models],
        step_logs=[layout.train_log(m) for m in models],
        val_logs=[layout.val_log(m) for m in models],
        predictions=[layout.prediction(m, volume) for m in models],
        data=layout.data(volume),
        weights=layout.weights(volume),
        config=config,
        benchmarks=layout.benchmarks(),
        project=str(Path.cwd() if project is None else project),
    )
