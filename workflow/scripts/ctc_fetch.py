import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.ctc import run_ctc_fetch

run_ctc_fetch(
    source=snakemake.params.source,
    target=snakemake.output[0],
    ctc=Config.section("ctc", snakemake.params.ctc),
    role=snakemake.wildcards.role,
)
