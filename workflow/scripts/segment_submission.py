import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps.segment import run_isbi_submission

run_isbi_submission(segmentation=snakemake.input.segmentation, output=snakemake.output[0])
