# The paper's border weight map w(x), precomputed once per labelled volume.


rule weights:
    input:
        RESULTS.data("{volume}"),
    output:
        directory(RESULTS.weights("{volume}")),
    log:
        RESULTS.log("weights", "{volume}"),
    benchmark:
        RESULTS.benchmark("weights", "{volume}")
    params:
        options=config["weights"],
        train_slices=config["split"]["train"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/weights.py"
