# The report of a run that trained nothing (pretrained:): the model, every prediction, metrics where labelled.


localrules:
    report,


rule report:
    input:
        predictions=[RESULTS.prediction_summary(models()[0], volume) for volume in volumes()],
        metrics=[RESULTS.metrics(models()[0])] if labelled_volumes() else [],
    output:
        report(
            RESULTS.report(),
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        RESULTS.log("report", "index"),
    benchmark:
        RESULTS.benchmark("report", "index")
    params:
        model=models()[0],
        rows=[row[1:] for row in dataset_rows()],
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
        "../scripts/report_predictions.py"
