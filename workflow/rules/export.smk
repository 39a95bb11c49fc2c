# Each trained model as a bioimage.io model package, for bioimageio.core, ilastik, deepImageJ and napari.


rule export:
    input:
        model="results/models/{model}/model.pt",
        data=f"results/data/{split_volume()}.zarr",
        metrics="results/metrics/{model}.json",
    output:
        "results/models/{model}/bioimageio.zip",
    log:
        "results/logs/export/{model}.log",
    benchmark:
        "results/benchmarks/export/{model}.tsv"
    params:
        split=config["split"],
        volume=config["volumes"][split_volume()],
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/export.py"
