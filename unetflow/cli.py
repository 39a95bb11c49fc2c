"""The `unetflow` command: one subcommand per workflow step, for use outside Snakemake.

Options that the workflow reads from config.yaml come from config files here too: `--config a.yaml
--config b.yaml` merges them over the defaults exactly as `snakemake --configfile a.yaml b.yaml` merges them
over config.yaml (unetflow.config.merge_config), so a step run by hand behaves like the same step in the
workflow. Command-line options override the files. Errors are one line that says what to fix; `--debug`
shows the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from unetflow import profiles, steps
from unetflow.atomic import DISK_FULL, protect_inputs
from unetflow.config import (
    FORMAT_NAMES,
    Config,
    EvaluateConfig,
    SplitConfig,
    SyntheticConfig,
    VolumeConfig,
    WeightsConfig,
    load_config_files,
    schema_yaml,
)
from unetflow.errors import InputError
from unetflow.layout import ABLATION_MODEL, MAIN_MODEL, Layout
from unetflow.logs import set_verbosity, setup_logging
from unetflow.metrics_registry import HEADLINE_KEYS, help_text
from unetflow.readers import describe_formats

SYNTHETIC = SyntheticConfig()
WEIGHTS = WeightsConfig()
VOLUME = VolumeConfig(synthetic=SYNTHETIC)
EVALUATE = EvaluateConfig()


def version() -> str:
    """The installed package's version."""
    try:
        return metadata.version("unetflow")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="a unetflow config file (as config.yaml); repeat to merge several, later ones win",
    )


def _format_help() -> str:
    """The formats, from the registry of readers (the one list of formats)."""
    return "Formats: " + "; ".join(describe_formats().splitlines())


def _add_source(parser: argparse.ArgumentParser, role: str) -> None:
    prefix = "" if role == "raw" else "labels-"
    parser.add_argument(
        f"--{prefix}format",
        dest=f"{role}_format",
        choices=FORMAT_NAMES,
        metavar="FORMAT",
        help=f"format of the {role} input (default: inferred from the path). {_format_help()}",
    )
    parser.add_argument(
        f"--{prefix}member",
        dest=f"{role}_member",
        metavar="PATH",
        help=f"HDF5 dataset or path inside a Zarr store of the {role} input",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="unetflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"unetflow {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    p = sub.add_parser("synthesize", help="generate the embedded EM-like volume (raw + labels TIFFs)")
    p.add_argument("raw", help="multi-page TIFF to write the raw volume to")
    p.add_argument("labels", help="multi-page TIFF to write the instance labels to")
    p.add_argument(
        "--shape", type=int, nargs=3, default=SYNTHETIC.shape, metavar=("Z", "Y", "X"), help="volume size"
    )
    p.add_argument("--seed", type=int, default=SYNTHETIC.seed, help="random seed (same seed, same data)")
    p.add_argument(
        "--cell-diameter", type=float, default=SYNTHETIC.cell_diameter, help="mean cell diameter in pixels"
    )

    p = sub.add_parser("download", help="fetch a file and verify its sha256")
    p.add_argument("source", help="http(s):// or file:// URL, or a local path")
    p.add_argument("target", help="where to save the file")
    p.add_argument("--sha256", help="the file's expected SHA-256 (a mismatch is an error)")

    p = sub.add_parser("import", help="import a volume (and labels) into OME-Zarr")
    p.add_argument(
        "raw", help="the raw volume: a TIFF stack, a folder of slices, an HDF5 file or a Zarr store"
    )
    p.add_argument("target", help="the OME-Zarr store to write (must not be, contain or lie inside an input)")
    p.add_argument("--labels", help="its labels (instance ids, or binary with cell interior non-zero)")
    _add_source(p, "raw")
    _add_source(p, "labels")
    p.add_argument("--invert-labels", action="store_true", help="binary labels with membrane as foreground")
    p.add_argument(
        "--labels-ignore",
        type=int,
        metavar="VALUE",
        help="label value of unannotated pixels (sparse labels): no loss, no class, no metric there",
    )
    p.add_argument(
        "--voxel-size",
        type=float,
        nargs=3,
        default=VOLUME.voxel_size,
        metavar=("Z", "Y", "X"),
        help="voxel size written to the OME-Zarr metadata",
    )
    p.add_argument("--unit", default=VOLUME.unit, help="unit of the voxel size (an OME-NGFF unit)")

    p = sub.add_parser("weights", help="the paper's border weight map of an imported volume")
    p.add_argument("data", help="an imported OME-Zarr with labels")
    p.add_argument("target", help="the weight-map OME-Zarr to write")
    p.add_argument(
        "--train-slices", help='slices that set the class balance, e.g. "0-19" (default: split.train)'
    )
    p.add_argument("--w0", type=float, help=f"weight of the border term (default {WEIGHTS.w0})")
    p.add_argument("--sigma", type=float, help=f"border term width in pixels (default {WEIGHTS.sigma})")
    p.add_argument(
        "--connectivity", type=int, choices=(1, 2), help="cells of binary labels: 1 = 4-, 2 = 8-nb"
    )
    p.add_argument(
        "--class-balance",
        metavar="JSON",
        help="take w_c from this class balance (unetflow class-balance) instead of --train-slices",
    )
    _add_config(p)

    p = sub.add_parser(
        "class-balance",
        help="the class weights w_c over the training pixels of every split source (JSON)",
        description="The class weights w_c over the annotated training pixels of every source of the "
        "config's split, checked (a source of one class, a split without annotation), as JSON for "
        "`unetflow weights --class-balance` of each volume.",
    )
    p.add_argument("target", help="the JSON to write")
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="VOLUME=ZARR",
        required=True,
        help="an imported volume of the split by its name in the config; repeat for each training volume",
    )
    _add_config(p)

    p = sub.add_parser("train", help="train (or resume) the U-Net")
    p.add_argument("data", help="an imported OME-Zarr with labels")
    p.add_argument("weights", help="its weight-map OME-Zarr")
    p.add_argument("output", help="the best checkpoint to write (.pt)")
    p.add_argument("--workdir", help="resumable checkpoints (default: checkpoints/ beside the output)")
    p.add_argument("--train-slices", help='training slices (default: the config\'s split.train), e.g. "0-19"')
    p.add_argument("--val-slices", help="validation slices (default: the config's split.val)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    _add_config(p)

    p = sub.add_parser("predict", help="overlap-tile prediction of a Zarr volume (resumable)")
    p.add_argument("model", help="a trained checkpoint (.pt)")
    p.add_argument("data", help="the OME-Zarr volume to predict")
    p.add_argument("target", help="the prediction OME-Zarr to write or resume")
    p.add_argument("--group", type=int, help="predict only this block group (default: every group)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    _add_config(p)

    p = sub.add_parser(
        "evaluate",
        help="metrics of a prediction against its labels",
        description="Metrics of a prediction against its labels: per slice (CSV beside the JSON) and their\n"
        f"mean (JSON, with the headline ones, {', '.join(HEADLINE_KEYS)}, at its top).",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prediction", help="a prediction OME-Zarr")
    p.add_argument("data", help="the imported OME-Zarr with the labels")
    p.add_argument("metrics", help="JSON to write (a per-slice CSV is written beside it)")
    p.add_argument("--slices", help='slices to evaluate, e.g. "20-24" (default: all)')
    p.add_argument(
        "--threshold", help="segmentation threshold, or auto (the prediction's own)", default="auto"
    )
    p.add_argument("--no-warping", action="store_true", help="skip the warping error (the slowest measure)")
    _add_config(p)

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
    p.add_argument(
        "--config", action="append", default=[], metavar="YAML", help="the config file(s) of the run"
    )
    p.add_argument("--project", default=".", help="the workflow's folder, for its git commit (default: here)")

    p = sub.add_parser(
        "schema", help="print the config's JSON schema (as workflow/schemas/config.schema.yaml)"
    )
    p.add_argument("--output", help="write it to this file instead of printing it")

    p = sub.add_parser(
        "install-profile",
        help="install a Snakemake profile (slurm) so that `snakemake --profile slurm` finds it",
        description="Write a Snakemake profile template of unetflow into Snakemake's user profile folder "
        f"({profiles.user_profiles_dir()} here); an existing profile is left as it is unless --force.",
    )
    p.add_argument("name", nargs="?", default="slurm", help="the template (default: slurm)")
    p.add_argument(
        "--force", action="store_true", help="replace an existing profile (it is kept as <name>.old-<time>)"
    )
    p.add_argument(
        "--profiles-dir",
        help="install into this folder of profiles instead (e.g. /etc/xdg/snakemake, for every user)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `unetflow` command: 0 on success, 2 for bad input, 1 for other failures."""
    args = build_parser().parse_args(argv)
    set_verbosity(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    name = f"unetflow {args.step}"
    try:
        dispatch(args)
    except InputError as error:
        return _fail(name, str(error), 2)
    except KeyboardInterrupt:
        return _fail(name, "interrupted; no output was left half-written: run the same command again", 130)
    except OSError as error:
        if args.debug:
            raise
        if error.errno in DISK_FULL:
            return _fail(name, f"no space left on the device writing {error.filename or 'an output'}", 1)
        where = f" ({error.filename})" if error.filename else ""
        return _fail(name, f"{error.strerror or error}{where}; check the path and its permissions", 1)
    except MemoryError:
        return _fail(name, out_of_memory(args.step, gpu=False), 1)
    except Exception as error:
        if args.debug:
            raise
        if type(error).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA), known by name
            return _fail(name, out_of_memory(args.step, gpu=True), 1)
        return _fail(name, f"unexpected {type(error).__name__}: {error} (rerun with --debug for details)", 1)
    return 0


MEMORY_ADVICE = {
    "synthesize": "make --shape smaller",
    "train": "lower train.tile or train.batch_size",
    "predict": "lower predict.memory_gb (or predict.batch_size, predict.workers)",
    "evaluate": "evaluate fewer slices at a time (--slices)",
}
"""What uses less memory in each step that can run out of it."""


def out_of_memory(step: str, *, gpu: bool) -> str:
    """The message for a step that ran out of (GPU) memory: what to lower, else a bigger machine."""
    where = "GPU memory" if gpu else "memory"
    advice = MEMORY_ADVICE.get(step)
    bigger = "a GPU with more memory" if gpu else "a machine with more memory"
    return f"out of {where}: {advice}, or use {bigger}" if advice else f"out of {where}: use {bigger}"


def _fail(name: str, message: str, code: int) -> int:
    print(f"{name}: error: {message}", file=sys.stderr)
    return code


def _sections(args: argparse.Namespace) -> Config:
    return load_config_files(getattr(args, "config", []))


def dispatch(args: argparse.Namespace) -> None:
    """Run the chosen step."""
    handler = {
        "synthesize": _synthesize,
        "download": _download,
        "import": _import,
        "weights": _weights,
        "class-balance": _class_balance,
        "train": _train,
        "predict": _predict,
        "evaluate": _evaluate,
        "report": _report,
        "schema": _schema,
        "install-profile": _install_profile,
        "export": _export,
    }[args.step]
    handler(args)


def _synthesize(args: argparse.Namespace) -> None:
    options = {"shape": list(args.shape), "seed": args.seed, "cell_diameter": args.cell_diameter}
    steps.run_synthesize(raw=args.raw, labels=args.labels, options=options)


def _download(args: argparse.Namespace) -> None:
    steps.run_download(source=args.source, target=args.target, sha256=args.sha256)


def _import(args: argparse.Namespace) -> None:
    volume: dict[str, Any] = {
        "raw": {"path": args.raw, "format": args.raw_format, "member": args.raw_member},
        "voxel_size": list(args.voxel_size),
        "unit": args.unit,
    }
    if args.labels is not None:
        volume["labels"] = {
            "path": args.labels,
            "format": args.labels_format,
            "member": args.labels_member,
            "invert": args.invert_labels,
            "ignore": args.labels_ignore,
        }
    elif args.labels_format or args.labels_member or args.invert_labels or args.labels_ignore is not None:
        raise InputError(
            "--labels-format, --labels-member, --invert-labels and --labels-ignore need --labels"
        )
    steps.run_import(raw=args.raw, labels=args.labels, target=args.target, volume=volume)


def _weights(args: argparse.Namespace) -> None:
    config = _sections(args)
    given = {
        key: getattr(args, key) for key in ("w0", "sigma", "connectivity") if getattr(args, key) is not None
    }
    options = {**config.weights.dump(), **given}
    if args.class_balance is not None:
        if args.train_slices is not None:
            raise InputError("--class-balance and --train-slices both set w_c: give one")
        steps.run_weights(
            data=args.data, target=args.target, class_balance=args.class_balance, options=options
        )
        return
    train_slices = args.train_slices if args.train_slices is not None else _training_entry(config).train
    steps.run_weights(data=args.data, target=args.target, train_slices=train_slices, options=options)


def _class_balance(args: argparse.Namespace) -> None:
    config = _sections(args)
    data = {}
    for item in args.data:
        name, _, path = item.partition("=")
        if not name or not path:
            raise InputError(
                f"--data {item!r}: give VOLUME=ZARR, e.g. --data stack1=results/data/stack1.zarr"
            )
        data[name] = path
    steps.run_class_balance(data=data, split=config.dump()["split"], target=args.target)


def _training_entry(config: Config) -> SplitConfig:
    """The split entry a one-volume command (weights, train) takes its slices from: the first that trains."""
    entries = config.split_entries()
    entry = next((item for item in entries if item.train not in ("", [])), None)
    if entry is None:
        raise InputError("the config's split names no training slices: give --train-slices or a split")
    return entry


def _train(args: argparse.Namespace) -> None:
    config = _sections(args)
    output = Path(args.output)
    entry = _training_entry(config)
    split = SplitConfig.from_dict(
        {
            "volume": entry.volume,
            "region": None if entry.region is None else entry.region.dump(),
            "train": args.train_slices if args.train_slices is not None else entry.train,
            "val": args.val_slices if args.val_slices is not None else entry.val,
        }
    )
    init = config.train.init_from
    if init is not None and init.path is None:
        raise InputError(
            f"train.init_from {init.url}: the train command takes a local file; download it (unetflow "
            "download) and give its path"
        )
    steps.run_train(
        data=args.data,
        weights=args.weights,
        output=str(output),
        step_log=str(output.with_name("train_log.csv")),
        val_log=str(output.with_name("val_log.csv")),
        workdir=args.workdir or str(output.with_name("checkpoints")),
        model=config.model,
        train=config.train,
        split=split,
        init_from=None if init is None else init.path,
        threads=args.threads,
    )


def _predict(args: argparse.Namespace) -> None:
    config = _sections(args)
    steps.run_predict(
        data=args.data,
        model=args.model,
        target=args.target,
        options=config.predict,
        group=args.group,
        threads=args.threads,
    )


def _evaluate(args: argparse.Namespace) -> None:
    config = _sections(args)
    threshold: float | str = args.threshold
    if threshold != "auto":
        try:
            threshold = float(threshold)
        except ValueError:
            raise InputError(f"--threshold {args.threshold!r}: give a number in [0, 1] or auto") from None
    options = {**config.evaluate.dump(), **({"warping": False} if args.no_warping else {})}
    split = None if args.slices is None else {"volume": "volume", "train": [], "test": args.slices}
    steps.run_evaluate(
        data=[args.data],
        predictions=[args.prediction],
        volumes=["volume"],
        split=split,
        metrics=args.metrics,
        slices=str(Path(args.metrics).with_suffix(".csv")),
        threshold=threshold,
        options=options,
    )


def _report(args: argparse.Namespace) -> None:
    run_report_of(Path(args.results), load_config_files(args.config), project=Path(args.project))


def _schema(args: argparse.Namespace) -> None:
    text = schema_yaml()
    if args.output is None:
        sys.stdout.write(text)
        return
    from unetflow.atomic import atomic_path

    with atomic_path(args.output) as tmp:
        tmp.write_text(text)


def _export(args: argparse.Namespace) -> None:
    from unetflow.bioimageio import export_model

    setup_logging()
    with protect_inputs([args.model, args.image, args.metrics], outputs=[args.output]):
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


def _install_profile(args: argparse.Namespace) -> None:
    installed = profiles.install_profile(args.name, profiles_dir=args.profiles_dir, force=args.force)
    if installed.previous is not None:
        print(f"moved the profile that was there to {installed.previous}")
    print(
        f"installed the Snakemake profile {args.name!r} at {installed.path}: set your account and "
        f"partitions in its config.yaml and partitions.yaml, then run: snakemake --profile {args.name}"
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
        split=config.dump()["split"],
        config=config.dump(),
        benchmarks=layout.benchmarks(),
        project=str(Path.cwd() if project is None else project),
    )


if __name__ == "__main__":
    sys.exit(main())
