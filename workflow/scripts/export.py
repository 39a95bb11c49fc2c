import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps.report import run_workflow_export

run_workflow_export(
    model=snakemake.input.model,
    output=snakemake.output[0],
    data=snakemake.input.data,
    split=snakemake.params.split,
    volumes=snakemake.params.volumes,
    metrics=snakemake.input.metrics,
    options=snakemake.params.options,
)
