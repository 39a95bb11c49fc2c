import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps.ctc import run_ctc_cells

run_ctc_cells(
    prediction=snakemake.input.prediction,
    cells=snakemake.output.cells,
    results=snakemake.output.results,
    options=snakemake.params.options,
    threshold=snakemake.params.threshold,
)
