import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.data import run_weights

run_weights(
    data=snakemake.input.data,
    target=snakemake.output[0],
    class_balance=snakemake.input.balance,
    workers=snakemake.threads,
    options=Config.section("weights", snakemake.params.options),
    model=Config.section("model", snakemake.params.model),
)
