import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config, VolumeConfig
from unetflow.steps.data import run_import

run_import(
    raw=snakemake.input.raw,
    labels=snakemake.input.get("labels"),
    target=snakemake.output[0],
    volume=VolumeConfig.from_dict(snakemake.params.volume),
    ctc=Config.section("ctc", snakemake.params.ctc),
)
