import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.ctc import run_ctc_score

run_ctc_score(
    dataset=snakemake.input.dataset,
    results=snakemake.params.results,
    ctc=Config.section("ctc", snakemake.params.ctc),
    target=snakemake.output.seg,
    frames=snakemake.output.frames,
)
