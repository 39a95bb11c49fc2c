import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.ctc import run_ctc_cells

run_ctc_cells(
    prediction=snakemake.input.prediction,
    cells=snakemake.output.cells,
    results=snakemake.output.results,
    options=Config.section("cells", snakemake.params.options),
    threshold=snakemake.params.threshold,
)
