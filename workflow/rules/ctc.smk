# The paper's Table 2: a Cell Tracking Challenge dataset fetched, a model per training sequence (and a
# final one on all), each balanced and weighted on its own training pixels, cells made of every predicted
# frame (16-bit stacks and the challenge's RES folders), SEG on the other sequence, the report.


localrules:
    ctc_fetch,
    ctc_report,


rule ctc_fetch:
    output:
        directory(RESULTS.ctc_dataset(SETTINGS.ctc.dataset, "{role}")),
    log:
        RESULTS.log("ctc_fetch", "{role}"),
    benchmark:
        RESULTS.benchmark("ctc_fetch", "{role}")
    params:
        source=ctc_source,
        ctc=config["ctc"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        ENV
    script:
        "../scripts/ctc_fetch.py"


rule ctc_class_balance:
    input:
        model_data,
    output:
        RESULTS.model_balance("{model}"),
    log:
        RESULTS.log("class_balance", "{model}"),
    benchmark:
        RESULTS.benchmark("class_balance", "{model}")
    params:
        volumes=model_volumes,
        split=model_split,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/class_balance.py"


rule ctc_weights:
    input:
        data=RESULTS.data("{volume}"),
        balance=RESULTS.model_balance("{model}"),
    output:
        directory(RESULTS.model_weights("{model}", "{volume}")),
    log:
        RESULTS.log("weights", "{model}/{volume}"),
    benchmark:
        RESULTS.benchmark("weights", "{model}/{volume}")
    params:
        options=config["weights"],
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/weights.py"


rule ctc_cells:
    input:
        unpack(ctc_prediction),
    output:
        cells=RESULTS.cells("{model}", "{sequence}"),
        results=directory(RESULTS.ctc_results("{model}", SETTINGS.ctc.dataset, "{sequence}")),
    log:
        RESULTS.log("ctc_cells", "{model}/{sequence}"),
    benchmark:
        RESULTS.benchmark("ctc_cells", "{model}/{sequence}")
    params:
        options=config["cells"],
        threshold=config["predict"]["threshold"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/ctc_cells.py"


rule ctc_score:
    input:
        dataset=RESULTS.ctc_dataset(SETTINGS.ctc.dataset, "training"),
        results=[folder for scored in ctc_scored().values() for folder in scored.values()],
    output:
        seg=RESULTS.seg_scores(),
        frames=RESULTS.seg_frames(),
    log:
        RESULTS.log("ctc_score", "seg"),
    benchmark:
        RESULTS.benchmark("ctc_score", "seg")
    params:
        results=ctc_scored(),
        ctc=config["ctc"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/ctc_score.py"


rule ctc_report:
    input:
        seg=RESULTS.seg_scores(),
        frames=RESULTS.seg_frames(),
        dataset=RESULTS.ctc_dataset(SETTINGS.ctc.dataset, "training"),
        cells=ctc_cells_files(),
        step_logs=[RESULTS.train_log(model) for model in models()],
    output:
        report(RESULTS.report(), caption="../report/report.rst", category="Report"),
    log:
        RESULTS.log("report", "index"),
    benchmark:
        RESULTS.benchmark("report", "index")
    params:
        config=config,
        benchmarks=RESULTS.benchmarks(),
        project=workflow.basedir,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/ctc_report.py"
