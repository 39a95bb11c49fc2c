import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.report import run_prediction_report

run_prediction_report(
    output=snakemake.output[0],
    model=snakemake.params.model,
    predictions=snakemake.params.rows,
    metrics=snakemake.input.metrics[0] if snakemake.input.metrics else None,
    config=Config.from_dict(snakemake.params.config),
    benchmarks=snakemake.params.benchmarks,
    project=snakemake.params.project,
)
