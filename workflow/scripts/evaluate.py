import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.evaluate import run_evaluate

run_evaluate(
    data=list(snakemake.input.data),
    predictions=list(snakemake.input.predictions),
    volumes=snakemake.params.volumes,
    split=Config.section("split", snakemake.params.split),
    metrics=snakemake.output.metrics,
    slices=snakemake.output.slices,
    threshold=snakemake.params.threshold,
    options=Config.section("evaluate", snakemake.params.options),
    segmentations=list(snakemake.params.segmentations),
)
