import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.data import run_class_balance

run_class_balance(
    data=dict(zip(snakemake.params.volumes, snakemake.input, strict=True)),
    split=Config.section("split", snakemake.params.split),
    target=snakemake.output[0],
)
