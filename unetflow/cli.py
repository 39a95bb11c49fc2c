"""The `unetflow` command: one subcommand per workflow step, for use outside Snakemake.

Options that the workflow reads from config.yaml come from a config file here too (`--config`), so a step
run by hand behaves exactly like the same step in the workflow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from unetflow import steps
from unetflow.errors import InputError
from unetflow.logs import setup_logging


def _config(path: str | None, section: str) -> dict[str, Any]:
    """One section of a unetflow config file (empty when no file is given)."""
    if path is None:
        return {}
    values = yaml.safe_load(Path(path).read_text()) or {}
    return dict(values.get(section) or {})


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a unetflow config.yaml whose sections give the step's options")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="unetflow", description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True)

    p = sub.add_parser("synthesize", help="generate the embedded EM-like volume (raw + labels TIFFs)")
    p.add_argument("raw")
    p.add_argument("labels")
    p.add_argument("--shape", type=int, nargs=3, default=(16, 256, 256), metavar=("Z", "Y", "X"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cell-diameter", type=float, default=40.0)

    p = sub.add_parser("download", help="fetch a file and verify its sha256")
    p.add_argument("source", help="http(s):// or file:// URL, or a local path")
    p.add_argument("target")
    p.add_argument("--sha256")

    p = sub.add_parser("import", help="import a volume (and labels) into OME-Zarr")
    p.add_argument("raw")
    p.add_argument("target")
    p.add_argument("--labels")
    p.add_argument("--format", dest="raw_format")
    p.add_argument("--member", dest="raw_member")
    p.add_argument("--voxel-size", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("Z", "Y", "X"))
    p.add_argument("--unit", default="nanometer")

    p = sub.add_parser("weights", help="the paper's border weight map of an imported volume")
    p.add_argument("data")
    p.add_argument("target")
    p.add_argument("--train-slices", required=True, help='slices that set the class balance, e.g. "0-19"')
    p.add_argument("--w0", type=float, default=10.0)
    p.add_argument("--sigma", type=float, default=5.0)
    p.add_argument("--connectivity", type=int, default=1, choices=(1, 2))

    p = sub.add_parser("train", help="train (or resume) the U-Net")
    p.add_argument("data")
    p.add_argument("weights")
    p.add_argument("output", help="the best checkpoint (.pt)")
    p.add_argument("--workdir", help="resumable checkpoints (default: beside the output)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    _add_config(p)

    p = sub.add_parser("predict", help="overlap-tile prediction of a Zarr volume (resumable)")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("target")
    p.add_argument("--group", type=int, default=0, help="this job's block group")
    _add_config(p)

    p = sub.add_parser("evaluate", help="metrics of a prediction against its labels")
    p.add_argument("prediction")
    p.add_argument("data")
    p.add_argument("metrics", help="JSON output")
    p.add_argument("--slices", default=None, help='slices to evaluate, e.g. "20-24" (default: all)')
    p.add_argument("--no-warping", action="store_true")

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
    p.add_argument("--name", help="the model's name (default: from its depth and width)")
    p.add_argument("--description", help="a short description (default: what the net is and outputs)")
    p.add_argument(
        "--license",
        default="MIT",
        help="SPDX licence of the package (default MIT, unetflow's, whose model source it contains)",
    )
    p.add_argument(
        "--author",
        action="append",
        dest="authors",
        help="an author of the model; repeat for several (default: the login name running the export)",
    )
    p.add_argument("--training-data-description", help="what the net was trained on, in a sentence or two")
    p.add_argument("--training-data-license", help="SPDX licence of the training data (default: not stated)")
    p.add_argument("--no-test", action="store_true", help="skip bioimageio.core's test_model of the package")

    p = sub.add_parser("report", help="the HTML report of a workflow run, at <results>/report/index.html")
    p.add_argument("--results", default="results", help="the run's results folder")
    p.add_argument("--config", required=True, help="the config.yaml the run used")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `unetflow` command."""
    args = build_parser().parse_args(argv)
    try:
        dispatch(args)
    except InputError as error:
        print(f"unetflow {args.step}: error: {error}", file=sys.stderr)
        return 2
    return 0


def dispatch(args: argparse.Namespace) -> None:
    """Run the chosen step."""
    if args.step == "synthesize":
        steps.run_synthesize(
            raw=args.raw,
            labels=args.labels,
            shape=args.shape,
            seed=args.seed,
            cell_diameter=args.cell_diameter,
        )
    elif args.step == "download":
        steps.run_download(source=args.source, target=args.target, sha256=args.sha256)
    elif args.step == "import":
        entry = {
            "raw": {"format": args.raw_format, "member": args.raw_member},
            "voxel_size": args.voxel_size,
            "unit": args.unit,
        }
        steps.run_import(raw=args.raw, labels=args.labels, target=args.target, entry=entry)
    elif args.step == "weights":
        steps.run_weights(
            data=args.data,
            target=args.target,
            train_slices=args.train_slices,
            w0=args.w0,
            sigma=args.sigma,
            connectivity=args.connectivity,
        )
    elif args.step == "train":
        output = Path(args.output)
        split = _config(args.config, "split") or {"train": "all"}
        steps.run_train(
            data=args.data,
            weights=args.weights,
            output=str(output),
            step_log=str(output.with_name("train_log.csv")),
            val_log=str(output.with_name("val_log.csv")),
            workdir=args.workdir or str(output.with_name("checkpoints")),
            model=_config(args.config, "model"),
            train=_config(args.config, "train"),
            split=split,
            threads=args.threads,
        )
    elif args.step == "predict":
        options = _config(args.config, "predict")
        steps.run_predict(
            data=args.data, model=args.model, target=args.target, options=options, group=args.group
        )
    elif args.step == "evaluate":
        split = {"volume": "volume", "test": args.slices} if args.slices else {"volume": None}
        steps.run_evaluate(
            data=[args.data],
            predictions=[args.prediction],
            volumes=["volume"],
            split=split,
            metrics=args.metrics,
            slices=str(Path(args.metrics).with_suffix(".csv")),
            warping=not args.no_warping,
        )
    elif args.step == "export":
        from unetflow.bioimageio import export_model

        setup_logging()
        export_model(
            args.model,
            args.output,
            image=args.image,
            image_slice=args.slice,
            test_size=args.test_size,
            metrics=args.metrics,
            name=args.name,
            description=args.description,
            license=args.license,
            authors=args.authors,
            training_data=args.training_data_description,
            training_data_license=args.training_data_license,
            test=not args.no_test,
        )
    elif args.step == "report":
        run_report_of(Path(args.results), yaml.safe_load(Path(args.config).read_text()) or {})


def run_report_of(results: Path, config: dict[str, Any]) -> None:
    """The report of a workflow run, from the file names the workflow gives its outputs."""
    split = config.get("split") or {}
    models = ["main", "ablation"] if config.get("ablation") else ["main"]
    steps.run_report(
        output=str(results / "report" / "index.html"),
        models=models,
        metrics=[str(results / "metrics" / f"{m}.json") for m in models],
        slices=[str(results / "metrics" / f"{m}_slices.csv") for m in models],
        step_logs=[str(results / "models" / m / "train_log.csv") for m in models],
        val_logs=[str(results / "models" / m / "val_log.csv") for m in models],
        data=str(results / "data" / f"{split.get('volume')}.zarr"),
        weights=str(results / "weights" / f"{split.get('volume')}.zarr"),
        split=split,
        config=config,
        benchmarks=str(results / "benchmarks"),
    )


if __name__ == "__main__":
    sys.exit(main())
