import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.config.model import Config
from unetflow.steps.ctc import run_ctc_report

run_ctc_report(
    output=snakemake.output[0],
    seg=snakemake.input.seg,
    frames=snakemake.input.frames,
    dataset=snakemake.input.dataset,
    cells=list(snakemake.input.cells),
    step_logs=list(snakemake.input.step_logs),
    config=Config.from_dict(snakemake.params.config),
    benchmarks=snakemake.params.benchmarks,
    project=snakemake.params.project,
)
