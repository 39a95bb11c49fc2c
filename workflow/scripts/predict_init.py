import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps import run_predict_init

run_predict_init(
    data=snakemake.input.data,
    model=snakemake.input.model,
    target=snakemake.output[0],
    options=snakemake.params.options,
)
