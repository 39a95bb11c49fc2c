import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps import run_predict_finalize

run_predict_finalize(
    target=snakemake.input.target,
    model=snakemake.input.model,
    summary=snakemake.output[0],
    options=snakemake.params.options,
)
