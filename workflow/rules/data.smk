# Data in: the embedded synthetic volume or verified downloads, imported to OME-Zarr.


localrules:
    download,


rule synthesize:
    output:
        raw="data/raw/{volume}/synthetic/raw.tif",
        labels="data/raw/{volume}/synthetic/labels.tif",
    log:
        "results/logs/synthesize/{volume}.log",
    benchmark:
        "results/benchmarks/synthesize/{volume}.tsv"
    params:
        options=lambda wildcards: config["volumes"][wildcards.volume]["synthetic"],
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
        "data/raw/{volume}/{filename}",
    log:
        "results/logs/download/{volume}/{filename}.log",
    benchmark:
        "results/benchmarks/download/{volume}/{filename}.tsv"
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


rule import_volume:
    input:
        unpack(import_inputs),
    output:
        directory("results/data/{volume}.zarr"),
    log:
        "results/logs/import/{volume}.log",
    benchmark:
        "results/benchmarks/import/{volume}.tsv"
    params:
        entry=lambda wildcards: config["volumes"][wildcards.volume],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/import_volume.py"
