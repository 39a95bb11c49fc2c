import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.report import run_report

run_report(
    output=snakemake.output[0],
    models=snakemake.params.models,
    metrics=list(snakemake.input.metrics),
    slices=list(snakemake.input.slices),
    step_logs=list(snakemake.input.step_logs),
    val_logs=list(snakemake.input.val_logs),
    predictions=list(snakemake.input.split_predictions),
    data=snakemake.input.data,
    weights=snakemake.input.weights,
    config=Config.from_dict(snakemake.params.config),
    benchmarks=snakemake.params.benchmarks,
    project=snakemake.params.project,
    datasets=snakemake.params.datasets,
    segmentation=snakemake.params.segmentation,
)
