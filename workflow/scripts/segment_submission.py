import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.segment import run_isbi_submission

run_isbi_submission(
    segmentation=snakemake.params.segmentation,
    submission=snakemake.output[0],
    output=Config.section("predict", snakemake.params.predict).output,
)
