# Data in: the embedded synthetic volume or verified downloads, imported to OME-Zarr.


localrules:
    download,
    download_model,


rule synthesize:
    output:
        raw=RESULTS.synthetic("{volume}", "raw"),
        labels=RESULTS.synthetic("{volume}", "labels"),
    log:
        RESULTS.log("synthesize", "{volume}"),
    benchmark:
        RESULTS.benchmark("synthesize", "{volume}")
    params:
        options=lambda wildcards: config["volumes"][wildcards.volume]["synthetic"],
        voxel_size=lambda wildcards: config["volumes"][wildcards.volume]["voxel_size"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/synthesize.py"


rule download:
    output:
        RESULTS.download("{volume}", "{filename}"),
    log:
        RESULTS.log("download", "{volume}/{filename}"),
    benchmark:
        RESULTS.benchmark("download", "{volume}/{filename}")
    params:
        source=download_source,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    conda:
        ENV
    script:
        "../scripts/download.py"


rule download_model:
    output:
        RESULTS.model_download("{filename}"),
    log:
        RESULTS.log("download", "models/{filename}"),
    benchmark:
        RESULTS.benchmark("download", "models/{filename}")
    params:
        source=model_download_source,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    conda:
        ENV
    script:
        "../scripts/download.py"


rule import_volume:
    input:
        unpack(import_inputs),
    output:
        directory(RESULTS.data("{volume}")),
    log:
        RESULTS.log("import", "{volume}"),
    benchmark:
        RESULTS.benchmark("import", "{volume}")
    params:
        volume=lambda wildcards: config["volumes"][wildcards.volume],
        ctc=config["ctc"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/import_volume.py"
