# Metrics of each model on the held-out test slices of every labelled volume.


rule evaluate:
    input:
        data=[RESULTS.data(volume) for volume in labelled_volumes()],
        predictions=[RESULTS.prediction("{model}", volume) for volume in labelled_volumes()],
        summaries=[RESULTS.prediction_summary("{model}", volume) for volume in labelled_volumes()],
        segmentations=lambda wildcards: labelled_segmentations(wildcards.model),
    output:
        metrics=RESULTS.metrics("{model}"),
        slices=RESULTS.slice_metrics("{model}"),
    log:
        RESULTS.log("evaluate", "{model}"),
    benchmark:
        RESULTS.benchmark("evaluate", "{model}")
    params:
        volumes=labelled_volumes(),
        split=config["split"],
        options=config["evaluate"],
        threshold=config["predict"]["threshold"],
        segmentations=labelled_segmentation_targets,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/evaluate.py"


rule metrics:
    input:
        RESULTS.metrics(models()[0]),
    output:
        report(RESULTS.metrics_summary(), caption="../report/metrics.rst", category="Metrics"),
    log:
        RESULTS.log("metrics", "main"),
    benchmark:
        RESULTS.benchmark("metrics", "main")
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        ENV
    shell:
        "cp {input} {output} 2> {log}"
