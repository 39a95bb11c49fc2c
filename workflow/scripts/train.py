import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps import run_train

run_train(
    data=snakemake.input.data,
    weights=snakemake.input.weights,
    output=snakemake.output.model,
    step_log=snakemake.output.step_log,
    val_log=snakemake.output.val_log,
    workdir=snakemake.params.workdir,
    model=snakemake.params.model,
    train={**snakemake.params.train, "loss_weights": snakemake.params.loss_weights},
    split=snakemake.params.split,
    threads=snakemake.threads,
)
