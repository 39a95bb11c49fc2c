import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import SyntheticConfig
from unetflow.steps.data import run_synthesize

run_synthesize(
    raw=snakemake.output.raw,
    labels=snakemake.output.labels,
    options=SyntheticConfig.from_dict(snakemake.params.options),
    voxel_size=snakemake.params.voxel_size,
)
