import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps import run_export

run_export(
    model=snakemake.input.model,
    output=snakemake.output[0],
    data=snakemake.input.data,
    split=snakemake.params.split,
    volume=snakemake.params.volume,
    volumes=snakemake.params.volumes,
    metrics=snakemake.input.metrics,
    options=snakemake.params.options,
)
