# One self-contained HTML page: metrics next to the paper's, figures, training curves, provenance.


localrules:
    report,


rule report:
    input:
        metrics=[RESULTS.metrics(model) for model in models()],
        slices=[RESULTS.slice_metrics(model) for model in models()],
        step_logs=[RESULTS.train_log(model) for model in models()],
        val_logs=[RESULTS.val_log(model) for model in models()],
        data=RESULTS.data(split_volume()),
        weights=RESULTS.weights(split_volume()),
        predictions=[
            RESULTS.prediction_summary(model, volume) for model in models() for volume in volumes()
        ],
        split_predictions=[RESULTS.prediction(model, split_volume()) for model in models()],
        segmentations=segmentations(),
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
        models=models(),
        config=config,
        benchmarks=RESULTS.benchmarks(),
        project=workflow.basedir,
        datasets=dataset_rows(),
        segmentation=split_segmentation(),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../scripts/report.py"
