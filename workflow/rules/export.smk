# Each trained model as a bioimage.io model package, for bioimageio.core, ilastik, deepImageJ and napari.


rule export:
    input:
        model=RESULTS.model("{model}"),
        data=RESULTS.data(split_volume()),
        metrics=RESULTS.metrics("{model}"),
    output:
        RESULTS.bioimageio_package("{model}"),
    log:
        RESULTS.log("export", "{model}"),
    benchmark:
        RESULTS.benchmark("export", "{model}")
    params:
        split=config["split"],
        volumes=config["volumes"],
        options=config["export"],
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/export.py"
