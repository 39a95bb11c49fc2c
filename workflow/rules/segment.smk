# Instance segmentation of every prediction: fragments and region graph per block group, one agglomeration,
# a relabel per block group, then the label image's pyramid (unetflow.segment). A volume planned as one
# block group runs the four steps as one job (step `all`). With predict.output the label image and its work
# folder lie beside the prediction there (maybe on an object store): the rules track a local record of it.


rule segment_init:
    input:
        prediction=RESULTS.prediction_record("{model}", "{volume}"),
        summary=RESULTS.prediction_summary("{model}", "{volume}"),
    output:
        segmentation_record(),
    log:
        RESULTS.log("segment_init", "{model}/{volume}"),
    benchmark:
        RESULTS.benchmark("segment_init", "{model}/{volume}")
    params:
        options=config["segment"],
        groups=lambda wildcards: segment_groups(wildcards.model, wildcards.volume),
        prediction=prediction_target,
        target=segmentation_target,
        predict=config["predict"],
        record=(RESULTS.segmentation_record("{model}", "{volume}") if OUTPUT is not None else None),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/segment_init.py"


rule segment_step:
    input:
        target=RESULTS.segmentation_record("{model}", "{volume}"),
        before=segment_step_inputs,
    output:
        touch(RESULTS.segment_flag("{model}", "{volume}", "{step}", "{group}")),
    log:
        RESULTS.log("segment_step", "{model}/{volume}.{step}-{group}"),
    benchmark:
        RESULTS.benchmark("segment_step", "{model}/{volume}.{step}-{group}")
    params:
        step="{step}",
        group="{group}",
        target=segmentation_target,
        predict=config["predict"],
    threads: 1
    resources:
        mem_mb=segment_memory_mb,
        runtime=720,
    wildcard_constraints:
        step="fragments|graph|solve|relabel|all",
    conda:
        ENV
    script:
        "../scripts/segment_step.py"


rule segment_finalize:
    input:
        target=RESULTS.segmentation_record("{model}", "{volume}"),
        relabelled=lambda wildcards: segment_flags(wildcards, "relabel"),
    output:
        RESULTS.segmentation_summary("{model}", "{volume}"),
    log:
        RESULTS.log("segment_finalize", "{model}/{volume}"),
    benchmark:
        RESULTS.benchmark("segment_finalize", "{model}/{volume}")
    params:
        options=config["segment"],
        target=segmentation_target,
        predict=config["predict"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        ENV
    script:
        "../scripts/segment_finalize.py"


rule segment_submission:
    input:
        summary=RESULTS.segmentation_summary("{model}", "{volume}"),
        segmentation=RESULTS.segmentation_record("{model}", "{volume}"),
    output:
        RESULTS.isbi_submission("{model}", "{volume}"),
    log:
        RESULTS.log("segment_submission", "{model}/{volume}"),
    benchmark:
        RESULTS.benchmark("segment_submission", "{model}/{volume}")
    params:
        segmentation=segmentation_target,
        predict=config["predict"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/segment_submission.py"
