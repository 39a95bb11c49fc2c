import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.train import run_train

volumes = snakemake.params.volumes
run_train(
    data=dict(zip(volumes, snakemake.input.data, strict=True)),
    weights=dict(zip(volumes, snakemake.input.weights, strict=True)),
    output=snakemake.output.model,
    step_log=snakemake.output.step_log,
    val_log=snakemake.output.val_log,
    workdir=snakemake.params.workdir,
    model=Config.section("model", snakemake.params.model),
    train=Config.section("train", snakemake.params.train),
    split=Config.section("split", snakemake.params.split),
    init_from=snakemake.input.init[0] if snakemake.input.init else None,
    threads=snakemake.threads,
)
