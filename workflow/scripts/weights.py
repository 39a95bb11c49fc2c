import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps import run_weights

run_weights(
    data=snakemake.input[0],
    target=snakemake.output[0],
    train_slices=snakemake.params.train_slices,
    workers=snakemake.threads,
    options=snakemake.params.options,
)
