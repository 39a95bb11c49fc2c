import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.predict import run_predict_finalize

run_predict_finalize(
    target=snakemake.params.target,
    summary=snakemake.output[0],
    options=Config.section("predict", snakemake.params.options),
)
