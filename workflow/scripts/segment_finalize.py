import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.segment import run_segment_finalize

run_segment_finalize(
    target=snakemake.params.target,
    summary=snakemake.output[0],
    options=Config.section("segment", snakemake.params.options),
    output=Config.section("predict", snakemake.params.predict).output,
)
