import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.segment import run_segment_step

run_segment_step(
    step=snakemake.params.step,
    target=snakemake.params.target,
    group=int(snakemake.params.group),
    output=Config.section("predict", snakemake.params.predict).output,
)
