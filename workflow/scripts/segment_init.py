import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.segment import run_segment_init

run_segment_init(
    probability=snakemake.params.prediction,
    target=snakemake.params.target,
    options=Config.section("segment", snakemake.params.options),
    groups=snakemake.params.groups,
    source={"level": 0},
    output=Config.section("predict", snakemake.params.predict).output,
    record=snakemake.params.record,
)
