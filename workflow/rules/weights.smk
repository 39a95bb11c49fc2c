# The paper's border weight map w(x), precomputed once per labelled volume, with one class balance w_c
# over the training pixels of every split source.


rule class_balance:
    input:
        [RESULTS.data(volume) for volume in training_volumes()],
    output:
        RESULTS.class_balance(),
    log:
        RESULTS.log("class_balance", "split"),
    benchmark:
        RESULTS.benchmark("class_balance", "split")
    params:
        volumes=training_volumes(),
        split=config["split"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/class_balance.py"


rule weights:
    input:
        data=RESULTS.data("{volume}"),
        balance=RESULTS.class_balance(),
    output:
        directory(RESULTS.weights("{volume}")),
    log:
        RESULTS.log("weights", "{volume}"),
    benchmark:
        RESULTS.benchmark("weights", "{volume}")
    params:
        options=config["weights"],
        model=config["model"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/weights.py"
