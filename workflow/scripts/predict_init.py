import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.predict import run_predict_init

run_predict_init(
    data=snakemake.params.data,
    model=snakemake.input.model,
    target=snakemake.params.target,
    stats=snakemake.output.stats,
    options=Config.section("predict", snakemake.params.options),
    groups=snakemake.params.groups,
    source=snakemake.params.source,
    voxel_size=snakemake.params.voxel_size,
    record=snakemake.params.record,
)
