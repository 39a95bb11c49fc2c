# Training to the paper's recipe; resumes from results/models/{model}/checkpoints after an interruption.


rule train:
    input:
        data=f"results/data/{split_volume()}.zarr",
        weights=f"results/weights/{split_volume()}.zarr",
    output:
        model=report(
            "results/models/{model}/model.pt",
            caption="../report/model.rst",
            category="Training",
        ),
        step_log="results/models/{model}/train_log.csv",
        val_log="results/models/{model}/val_log.csv",
    log:
        "results/logs/train/{model}.log",
    benchmark:
        "results/benchmarks/train/{model}.tsv"
    params:
        workdir="results/models/{model}/checkpoints",
        model=config["model"],
        train=config["train"],
        split=config["split"],
        loss_weights=loss_weights,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        ENV
    script:
        "../scripts/train.py"
