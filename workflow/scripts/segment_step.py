import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps.segment import run_segment_step

run_segment_step(step=snakemake.params.step, target=snakemake.input.target, group=int(snakemake.params.group))
