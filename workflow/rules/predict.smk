# Overlap-tile prediction, split into independent block groups that write disjoint chunks of one Zarr.
# With predict.scheduler distributed on SLURM or a running scheduler, the predict job is only the client of
# its dask workers (SLURM jobs of their own), so it runs on the head node.


if predict_cluster_kind() in ("slurm", "address"):

    localrules:
        predict,


rule predict_init:
    input:
        data="results/data/{volume}.zarr",
        model="results/models/{model}/model.pt",
    output:
        directory("results/predict/{model}/{volume}.zarr"),
    log:
        "results/logs/predict_init/{model}/{volume}.log",
    benchmark:
        "results/benchmarks/predict_init/{model}/{volume}.tsv"
    params:
        options=config["predict"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/predict_init.py"


rule predict:
    input:
        data="results/data/{volume}.zarr",
        model="results/models/{model}/model.pt",
        target="results/predict/{model}/{volume}.zarr",
    output:
        touch("results/predict/{model}/{volume}.blocks/{group}.done"),
    log:
        "results/logs/predict/{model}/{volume}.{group}.log",
    benchmark:
        "results/benchmarks/predict/{model}/{volume}.{group}.tsv"
    params:
        options=config["predict"],
        dask_logs="results/logs/dask/{model}/{volume}.{group}",
    threads: predict_threads()
    resources:
        mem_mb=lambda wildcards: int(config["predict"]["memory_gb"] * 1024 + 2000),
        runtime=720,
    conda:
        ENV
    script:
        "../scripts/predict.py"


rule predict_finalize:
    input:
        target="results/predict/{model}/{volume}.zarr",
        model="results/models/{model}/model.pt",
        blocks=predicted_blocks,
    output:
        "results/predict/{model}/{volume}.json",
    log:
        "results/logs/predict_finalize/{model}/{volume}.log",
    benchmark:
        "results/benchmarks/predict_finalize/{model}/{volume}.tsv"
    params:
        options=config["predict"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/predict_finalize.py"
