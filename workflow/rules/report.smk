# One self-contained HTML page: metrics next to the paper's, figures, training curves, provenance.


localrules:
    report,


rule report:
    input:
        metrics=expand("results/metrics/{model}.json", model=models()),
        slices=expand("results/metrics/{model}_slices.csv", model=models()),
        step_logs=expand("results/models/{model}/train_log.csv", model=models()),
        val_logs=expand("results/models/{model}/val_log.csv", model=models()),
        data=f"results/data/{split_volume()}.zarr",
        weights=f"results/weights/{split_volume()}.zarr",
        predictions=expand(
            "results/predict/{model}/{volume}.json", model=models(), volume=volumes()
        ),
        split_predictions=expand(
            "results/predict/{model}/{volume}.zarr", model=models(), volume=split_volume()
        ),
    output:
        report(
            "results/report/index.html",
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    params:
        models=models(),
        split=config["split"],
        config=config,
        benchmarks="results/benchmarks",
        project=workflow.basedir,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/report.py"
