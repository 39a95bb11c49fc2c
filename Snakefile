# unetflow: the U-Net paper (Ronneberger, Fischer, Brox 2015) end-to-end, from data to the metrics report.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


# Loads and checks the config with the package's model (unetflow.config.model) before any job runs.
include: "workflow/rules/common.smk"


# The schema generated from that model (defaults already filled in): Snakemake's own check.
validate(config, "workflow/schemas/config.schema.yaml", set_default=False)


report: "workflow/report/workflow.rst"


include: "workflow/rules/data.smk"


# With `pretrained:` nothing is trained: no weight maps, no training.
if trained_models():

    include: "workflow/rules/weights.smk"
    include: "workflow/rules/train.smk"
    include: "workflow/rules/report.smk"
    include: "workflow/rules/export.smk"

else:

    include: "workflow/rules/report_predictions.smk"


include: "workflow/rules/predict.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        final_outputs(),
