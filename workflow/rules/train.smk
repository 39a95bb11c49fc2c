# Training to the paper's recipe on every split source (fine-tuning train.init_from when set); resumes
# from results/models/{model}/checkpoints after an interruption.


rule train:
    input:
        data=model_data,
        weights=model_weights,
        init=init_model_files(),
    output:
        model=report(
            RESULTS.model("{model}"),
            caption="../report/model.rst",
            category="Training",
        ),
        step_log=RESULTS.train_log("{model}"),
        val_log=RESULTS.val_log("{model}"),
    log:
        RESULTS.log("train", "{model}"),
    benchmark:
        RESULTS.benchmark("train", "{model}")
    params:
        workdir=RESULTS.checkpoints("{model}"),
        model=config["model"],
        train=train_section,
        split=model_split,
        volumes=model_volumes,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        ENV
    script:
        "../scripts/train.py"
