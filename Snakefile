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


# With `ctc:` a Cell Tracking Challenge dataset by the challenge's protocol (the paper's Table 2); with
# `pretrained:` nothing is trained: no weight maps, no training.
if SETTINGS.ctc is not None:

    include: "workflow/rules/train.smk"
    include: "workflow/rules/ctc.smk"

elif trained_models():

    include: "workflow/rules/weights.smk"
    include: "workflow/rules/train.smk"
    include: "workflow/rules/report.smk"
    include: "workflow/rules/export.smk"

else:

    include: "workflow/rules/report_predictions.smk"


include: "workflow/rules/predict.smk"


# The instance segmentation of whole volumes and the metrics: not in a cell tracking run (its cells are
# made per frame by ctc.smk and scored by the challenge's SEG).
if SETTINGS.ctc is None:

    include: "workflow/rules/segment.smk"
    include: "workflow/rules/evaluate.smk"


rule all:
    input:
        final_outputs(),
