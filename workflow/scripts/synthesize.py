import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps.data import run_synthesize

run_synthesize(
    raw=snakemake.output.raw,
    labels=snakemake.output.labels,
    options=snakemake.params.options,
    voxel_size=snakemake.params.voxel_size,
)
