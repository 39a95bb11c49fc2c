# Metrics of each model on the held-out test slices of every labelled volume.


rule evaluate:
    input:
        data=expand("results/data/{volume}.zarr", volume=labelled_volumes()),
        predictions=expand("results/predict/{{model}}/{volume}.zarr", volume=labelled_volumes()),
        summaries=expand("results/predict/{{model}}/{volume}.json", volume=labelled_volumes()),
    output:
        metrics="results/metrics/{model}.json",
        slices="results/metrics/{model}_slices.csv",
    log:
        "results/logs/evaluate/{model}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}.tsv"
    params:
        volumes=labelled_volumes(),
        split=config["split"],
        options=config["evaluate"],
        threshold=config["predict"]["threshold"],
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
        f"results/metrics/{MAIN_MODEL}.json",
    output:
        report("results/metrics.json", caption="../report/metrics.rst", category="Metrics"),
    log:
        "results/logs/metrics.log",
    benchmark:
        "results/benchmarks/metrics.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        ENV
    shell:
        "cp {input} {output} 2> {log}"
