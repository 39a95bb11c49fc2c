import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.report import run_workflow_export

run_workflow_export(
    model=snakemake.input.model,
    output=snakemake.output[0],
    data=snakemake.input.data,
    split=Config.section("split", snakemake.params.split),
    volumes=Config.section("volumes", snakemake.params.volumes),
    metrics=snakemake.input.metrics,
    options=Config.section("export", snakemake.params.options),
)
