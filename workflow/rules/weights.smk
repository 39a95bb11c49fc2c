# The paper's border weight map w(x), precomputed once per labelled volume.


rule weights:
    input:
        "results/data/{volume}.zarr",
    output:
        directory("results/weights/{volume}.zarr"),
    log:
        "results/logs/weights/{volume}.log",
    benchmark:
        "results/benchmarks/weights/{volume}.tsv"
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
