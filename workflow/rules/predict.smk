# Overlap-tile prediction, split into independent block groups that write disjoint shards of one Zarr.
# With predict.scheduler distributed on SLURM or a running scheduler, the predict job is only the client of
# its dask workers (SLURM jobs of their own), so it runs on the head node.


if predict_cluster_kind() in ("slurm", "address"):

    localrules:
        predict,


rule predict_init:
    input:
        data=prediction_input,
        model=model_file,
    output:
        target=prediction_record(),
        stats=RESULTS.prediction_stats("{model}", "{volume}"),
    log:
        RESULTS.log("predict_init", "{model}/{volume}"),
    benchmark:
        RESULTS.benchmark("predict_init", "{model}/{volume}")
    params:
        options=config["predict"],
        groups=lambda wildcards: groups(wildcards.model, wildcards.volume),
        source=source_options,
        voxel_size=stated_voxel_size,
        data=prediction_data,
        target=prediction_target,
        record=RESULTS.prediction_record("{model}", "{volume}") if OUTPUT is not None else None,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/predict_init.py"


rule predict:
    input:
        data=prediction_input,
        model=model_file,
        target=RESULTS.prediction_record("{model}", "{volume}"),
    output:
        touch(RESULTS.group_flag("{model}", "{volume}", "{group}")),
    log:
        RESULTS.log("predict", "{model}/{volume}.{group}"),
    benchmark:
        RESULTS.benchmark("predict", "{model}/{volume}.{group}")
    params:
        options=config["predict"],
        dask_logs=RESULTS.dask_logs("{model}", "{volume}", "{group}"),
        source=source_options,
        data=prediction_data,
        target=prediction_target,
    threads: predict_threads()
    resources:
        mem_mb=predict_memory_mb,
        runtime=720,
    conda:
        ENV
    script:
        "../scripts/predict.py"


rule predict_finalize:
    input:
        target=RESULTS.prediction_record("{model}", "{volume}"),
        groups=predicted_groups,
    output:
        RESULTS.prediction_summary("{model}", "{volume}"),
    log:
        RESULTS.log("predict_finalize", "{model}/{volume}"),
    benchmark:
        RESULTS.benchmark("predict_finalize", "{model}/{volume}")
    params:
        options=config["predict"],
        target=prediction_target,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        ENV
    script:
        "../scripts/predict_finalize.py"
