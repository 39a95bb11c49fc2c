import sys

sys.stderr = open(snakemake.log[0], "w")

from unetflow.steps.data import run_download

source = snakemake.params.source
run_download(source=source["url"], target=snakemake.output[0], sha256=source["sha256"])
