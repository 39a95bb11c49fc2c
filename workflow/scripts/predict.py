import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.predict import run_predict

run_predict(
    data=snakemake.params.data,
    model=snakemake.input.model,
    target=snakemake.params.target,
    options=Config.section("predict", snakemake.params.options),
    group=int(snakemake.wildcards.group),
    threads=snakemake.threads,
    log_directory=snakemake.params.dask_logs,
    source=snakemake.params.source,
)
