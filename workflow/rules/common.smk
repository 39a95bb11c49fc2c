# Helper functions of the rules: the checked config and file names. The logic lives in the unetflow package.
from unetflow.config.load import load_config, merge_config
from unetflow.config.ctc import FINAL_MODEL, TEST_PREFIX
from unetflow.layout import ABLATION_MODEL, MAIN_MODEL, PRETRAINED_MODEL, RESULTS
from unetflow.model.loss import ABLATION_MODE
from unetflow.preflight import check_data, invalidate_incomplete_groups, read_in_place, shape_of
from unetflow.predict.plan import groups_for, planned_groups
from unetflow.segment.plan import planned_segment_groups
from unetflow.predict.sources import SourceSpec
from unetflow.steps.predict import prediction_place as place_of

ENV = "../../envs/unetflow.yaml"


wildcard_constraints:
    volume="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_-]+",
    filename="[^/]+",
    group="[0-9]+",
    sequence="[0-9]+",
    role="training|test",


def load_settings():
    """The typed config (unetflow.config.model): config.yaml merged with --configfile/--config, checked.

    The same merge as the CLI's: a user's `volumes:` replace config.yaml's (and with them its split).
    Every key is checked before any job runs; an error names the key and the fix.
    """
    overrides = workflow.config_settings.overwrite_config or {}
    files = ["config.yaml", *map(str, workflow.config_settings.configfiles or [])]
    return load_config(merge_config(config, overrides), origin=f"config ({' + '.join(files)})")


SETTINGS = load_settings()
config.clear()
config.update(SETTINGS.dump())
# Rules pass config[...] (plain values) as params, never a SETTINGS section: Snakemake records and compares only
# plain values, so a changed option reruns its rule; scripts turn them back into sections (Config.section).
OUTPUT = SETTINGS.predict.output
RESULTS = RESULTS.with_output(None if OUTPUT is None else OUTPUT.url)


def volumes():
    """Names of every configured volume."""
    return list(SETTINGS.volumes)


def models():
    """The models that predict: the pretrained one, the trained ones (the ablation when switched on), or
    a cell tracking run's (one per training sequence, and the final one)."""
    if SETTINGS.ctc is not None:
        return SETTINGS.ctc.models()
    if SETTINGS.pretrained is not None:
        return [PRETRAINED_MODEL]
    return [MAIN_MODEL, ABLATION_MODEL] if SETTINGS.ablation else [MAIN_MODEL]


def predictions():
    """Every (model, volume) predicted: each model every volume, or a cell tracking run's protocol."""
    if SETTINGS.ctc is not None:
        return SETTINGS.ctc.predictions()
    return [(model, volume) for model in models() for volume in volumes()]


def model_split(wildcards):
    """The split a model trains on (plain values): the config's, or a cell tracking model's training sequences."""
    if SETTINGS.ctc is not None:
        return [entry.dump() for entry in SETTINGS.ctc.model_split(wildcards.model)]
    return config["split"]


def model_volumes(wildcards):
    """The volumes a model trains on (each imported and weighted)."""
    if SETTINGS.ctc is not None:
        return SETTINGS.ctc.training_sequences(wildcards.model)
    return training_volumes()


def model_data(wildcards):
    """The imported volumes a model trains on."""
    return [RESULTS.data(volume) for volume in model_volumes(wildcards)]


def model_weights(wildcards):
    """The weight maps a model trains on: one per volume, or in a cell tracking run one per model and
    volume (each model balances the classes of its own training pixels)."""
    if SETTINGS.ctc is not None:
        return [RESULTS.model_weights(wildcards.model, v) for v in model_volumes(wildcards)]
    return [RESULTS.weights(volume) for volume in model_volumes(wildcards)]


def trained_models():
    """The models this run trains (none with pretrained)."""
    return [] if SETTINGS.pretrained is not None else models()


def train_section(wildcards):
    """The train section of a model (plain values): the configured one, with class balance only for the ablation."""
    if wildcards.model == ABLATION_MODEL:
        return config["train"] | {"loss_weights": ABLATION_MODE}
    return config["train"]


def model_file(wildcards):
    """The checkpoint a model predicts with: trained here, or the pretrained one (used in place or fetched)."""
    if wildcards.model != PRETRAINED_MODEL:
        return RESULTS.model(wildcards.model)
    source = SETTINGS.pretrained
    return source.path if source.path is not None else RESULTS.model_download(source.local_name)


def source_file(volume, role):
    """Local path of a volume's raw or labels input (downloaded, synthesized, or used in place)."""
    entry = SETTINGS.volumes[volume]
    if entry.synthetic is not None:
        return RESULTS.synthetic(volume, role)
    if entry.ctc is not None:
        return RESULTS.ctc_dataset(SETTINGS.ctc.dataset, entry.ctc.role)
    source = getattr(entry, role)
    if source.path is not None:
        return source.path
    if source.in_place:
        return source.url
    return RESULTS.download(volume, source.local_name)


def import_inputs(wildcards):
    """The raw (and labels, when configured) files of a volume."""
    entry = SETTINGS.volumes[wildcards.volume]
    inputs = {"raw": source_file(wildcards.volume, "raw")}
    if entry.labelled and entry.ctc is None:
        inputs["labels"] = source_file(wildcards.volume, "labels")
    return inputs


def download_source(wildcards):
    """The url source downloaded to data/raw/{volume}/{filename} (raw and labels may share it)."""
    source = SETTINGS.volumes[wildcards.volume].downloads().get(wildcards.filename)
    if source is None:
        raise ValueError(
            f"{RESULTS.download(wildcards.volume, wildcards.filename)}: no url source of "
            f"volumes.{wildcards.volume} downloads to this file"
        )
    return {"url": source.url, "sha256": source.sha256}


def split_volume():
    """The volume of the split's primary entry: the report's figures, the exported model's test image."""
    return SETTINGS.report_volume()


def training_volumes():
    """The volumes training reads (train or validation slices of a split entry): each imported, weighted."""
    return SETTINGS.training_volumes()


def init_model_files():
    """The model a fine-tuning run starts from (train.init_from: in place or downloaded), or none."""
    source = SETTINGS.train.init_from
    if source is None:
        return []
    return [source.path if source.path is not None else RESULTS.model_download(source.local_name)]


def model_download_source(wildcards):
    """The url model (pretrained or train.init_from) downloaded to data/models/{filename}."""
    for source in (SETTINGS.pretrained, SETTINGS.train.init_from):
        if (
            source is not None
            and source.url is not None
            and source.local_name == wildcards.filename
        ):
            return source.dump()
    raise ValueError(
        f"{RESULTS.model_download(wildcards.filename)}: no url model downloads to this file"
    )


def prediction_source(volume):
    """The volume a prediction reads: the source itself when chunked (Zarr, N5, HDF5), else its import."""
    entry = SETTINGS.volumes[volume]
    if read_in_place(entry):
        return source_file(volume, "raw")
    return RESULTS.data(volume)


def source_options_of(volume):
    """Format, member and level of a volume read in place (none for an import); for a url, how to reach
    its store (anon, endpoint_url, profile: never a credential)."""
    entry = SETTINGS.volumes[volume]
    if not read_in_place(entry):
        return {}
    options = {"format": entry.raw.format, "member": entry.raw.member, "level": entry.raw.level}
    if entry.raw.in_place:
        options.update(entry.raw.store_options.to_dict())
    return options


def stated_voxel_size(wildcards):
    """The config's voxel size of a volume read in place, where it states one (else its metadata's)."""
    entry = SETTINGS.volumes[wildcards.volume]
    if not read_in_place(entry):
        return None
    return entry.voxel_size


def source_options(wildcards):
    """The prediction jobs' source options (see source_options_of)."""
    return source_options_of(wildcards.volume)


def prediction_input(wildcards):
    """The input file of a volume's prediction jobs (see prediction_source); none for a url read in place
    (a store is not Snakemake's to check)."""
    entry = SETTINGS.volumes[wildcards.volume]
    if entry.raw is not None and entry.raw.in_place:
        return []
    return prediction_source(wildcards.volume)


def prediction_data(wildcards):
    """The path or URL the prediction jobs read (see prediction_source)."""
    return prediction_source(wildcards.volume)


def prediction_place(model, volume):
    """Where a prediction is written: a path, or a URL with the options to reach predict.output's store."""
    return place_of(RESULTS.prediction(model, volume), SETTINGS.predict)


def prediction_target(wildcards):
    """The path or URL a prediction job writes."""
    return RESULTS.prediction(wildcards.model, wildcards.volume)


def prediction_record():
    """What predict_init leaves for the workflow to track: the prediction's folder, or with predict.output
    a local record of where it was written."""
    record = RESULTS.prediction_record("{model}", "{volume}")
    return record if OUTPUT is not None else directory(record)


def known_shape(volume):
    """The (z, y, x) shape of a volume where it can be read now (its config, header or import), else None."""
    entry = SETTINGS.volumes[volume]
    if entry.synthetic is not None:
        return tuple(entry.synthetic.shape)
    return shape_of(prediction_source(volume), **source_options_of(volume))


def groups(model, volume):
    """Block groups of a volume's prediction: as planned when it exists, else from the config and size."""
    options = SETTINGS.predict
    if options.block_groups != "auto":
        return options.block_groups
    planned = planned_groups(prediction_place(model, volume))
    if planned is not None:
        return planned
    shape = known_shape(volume)
    if shape is None:
        return 1 if options.block_groups == "auto" else options.block_groups
    return groups_for(
        shape, block_groups=options.block_groups, group_gb=options.group_gb, dtype=options.dtype
    )


def predict_cluster_kind():
    """None for the threads engine; else where the dask workers of prediction run (local, slurm, address)."""
    if SETTINGS.predict.scheduler != "distributed":
        return None
    return SETTINGS.predict.cluster.kind


def predict_threads():
    """Cores of a predict job: its own threads, its local dask workers, or one (a client of remote workers)."""
    kind = predict_cluster_kind()
    if kind is None:
        return 2
    if kind == "local":
        return SETTINGS.predict.cluster.workers * SETTINGS.predict.cluster.threads
    return 1


def predict_memory_mb(wildcards):
    """Memory of a predict job: the activation budget, two shards in flight, and the interpreter."""
    return int(SETTINGS.predict.memory_gb * 1024 + 3 * 1250 + 2000)


def predicted_groups(wildcards):
    """Completion flags of every block group of one volume."""
    return [
        RESULTS.group_flag(wildcards.model, wildcards.volume, group)
        for group in range(groups(wildcards.model, wildcards.volume))
    ]


def segmentation_place(model, volume):
    """Where a segmentation is written: a path, or beside the prediction under predict.output (maybe a URL,
    with the options to reach its store)."""
    return place_of(RESULTS.segmentation(model, volume), SETTINGS.predict)


def segmentation_target(wildcards):
    """The path or URL the segmentation jobs write."""
    return RESULTS.segmentation(wildcards.model, wildcards.volume)


def segmentation_record():
    """What segment_init leaves for the workflow to track: the segmentation's folder, or with
    predict.output a local record of where it was written (as for the prediction)."""
    record = RESULTS.segmentation_record("{model}", "{volume}")
    return record if OUTPUT is not None else directory(record)


def segment_groups(model, volume):
    """Block groups of a volume's segmentation: as planned when it exists, else from the config and size."""
    planned = planned_segment_groups(segmentation_place(model, volume))
    if planned is not None:
        return planned
    shape = known_shape(volume) or (1, 1, 1)
    blocks = 1
    for size, block in zip(shape, SETTINGS.segment.block_shape):
        blocks *= -(-size // block)
    return max(1, min(SETTINGS.segment.block_groups, blocks))


def segment_flags(wildcards, step):
    """Completion flags of one step of every block group of a segmentation (solve: one); a segmentation of
    one block group is one job of step `all`, whatever step is asked."""
    count = segment_groups(wildcards.model, wildcards.volume)
    if count == 1:
        step = "all"
    elif step == "solve":
        count = 1
    return [
        RESULTS.segment_flag(wildcards.model, wildcards.volume, step, group)
        for group in range(count)
    ]


SEGMENT_BEFORE = {
    "fragments": None,
    "graph": "fragments",
    "solve": "graph",
    "relabel": "solve",
    "all": None,
}


def segment_step_inputs(wildcards):
    """What one segmentation step waits for: every group of the step before it."""
    before = SEGMENT_BEFORE[wildcards.step]
    return [] if before is None else segment_flags(wildcards, before)


def segment_memory_mb(wildcards):
    """Memory of a segmentation step: a block's arrays for the blockwise steps, the graph for solve."""
    return 16000 if wildcards.step == "solve" else 4000


def segmentations():
    """Every segmentation's summary (none with segment.enabled false)."""
    if not SETTINGS.segment.enabled:
        return []
    return [
        RESULTS.segmentation_summary(model, volume) for model in models() for volume in volumes()
    ]


def split_segmentation():
    """The main model's segmentation of the split volume (the report's objects section), or None."""
    if not SETTINGS.segment.enabled or split_volume() is None:
        return None
    return RESULTS.segmentation(models()[0], split_volume())


def labelled_segmentations(model):
    """The segmentation summaries of a model's labelled volumes (none with segment.enabled false)."""
    if not SETTINGS.segment.enabled:
        return []
    return [RESULTS.segmentation_summary(model, volume) for volume in labelled_volumes()]


def labelled_segmentation_targets(wildcards):
    """The label images of a model's labelled volumes, in the order of labelled_segmentations."""
    if not SETTINGS.segment.enabled:
        return []
    return [RESULTS.segmentation(wildcards.model, volume) for volume in labelled_volumes()]


def labelled_volumes():
    """Volumes with ground truth, evaluated on their test slices (every slice where no split names them)."""
    return [name for name, entry in SETTINGS.volumes.items() if entry.labelled]


def dataset_rows():
    """Every prediction as (model, volume, source read, prediction, summary), for the report."""
    return [
        [
            model,
            volume,
            SourceSpec(path=prediction_source(volume), **source_options_of(volume)),
            prediction_place(model, volume),
            RESULTS.prediction_summary(model, volume),
        ]
        for model in models()
        for volume in volumes()
    ]


def isbi_submissions():
    """The ISBI 2012 submission file of segment.isbi_submission's volume, for every model (or none)."""
    volume = SETTINGS.segment.isbi_submission
    if not SETTINGS.segment.enabled or volume is None:
        return []
    return [RESULTS.isbi_submission(model, volume) for model in models()]


def final_outputs():
    """The targets of the whole run: every prediction, the metrics where there are labels, the report."""
    if SETTINGS.ctc is not None:
        return ctc_outputs()
    outputs = [
        RESULTS.prediction_summary(model, volume) for model in models() for volume in volumes()
    ]
    if labelled_volumes():
        outputs.append(RESULTS.metrics_summary())
    outputs += segmentations() + isbi_submissions()
    outputs.append(RESULTS.report())
    outputs += [RESULTS.bioimageio_package(model) for model in trained_models()]
    return outputs


def ctc_volume(model, sequence):
    """The volume a cell tracking model predicts for a sequence: the training sequence itself, or the test
    archive's sequence of that name (the final model)."""
    return f"{TEST_PREFIX}{sequence}" if model == FINAL_MODEL else sequence


def ctc_sequence(volume):
    """The sequence of a cell tracking volume (test-01 is the test archive's 01)."""
    return volume.removeprefix(TEST_PREFIX)


def ctc_prediction(wildcards):
    """The prediction a cell tracking model made of a sequence."""
    volume = ctc_volume(wildcards.model, wildcards.sequence)
    return {
        "prediction": RESULTS.prediction(wildcards.model, volume),
        "summary": RESULTS.prediction_summary(wildcards.model, volume),
    }


def ctc_results(model, sequence):
    """The challenge's result folder of a model's cells of a sequence."""
    return RESULTS.ctc_results(model, SETTINGS.ctc.dataset, sequence)


def ctc_scored():
    """The result folders that are scored: {model: {sequence: folder}} of every cross-sequence model."""
    ctc = SETTINGS.ctc
    return {
        model: {sequence: ctc_results(model, sequence) for sequence in ctc.scored_sequences(model)}
        for model in ctc.fold_models()
    }


def ctc_source(wildcards):
    """The archive (URL, file:// or local path) of the training or test data."""
    ctc = SETTINGS.ctc
    return ctc.archive if wildcards.role == "training" else ctc.test_archive


def ctc_cells_files():
    """The cell stacks of every prediction of a cell tracking run."""
    return [RESULTS.cells(model, ctc_sequence(volume)) for model, volume in predictions()]


def ctc_outputs():
    """The targets of a cell tracking run: every sequence's cells and RES folder, the SEG file, the report."""
    outputs = ctc_cells_files()
    outputs += [ctc_results(model, ctc_sequence(volume)) for model, volume in predictions()]
    return [*outputs, RESULTS.seg_scores(), RESULTS.report()]


if workflow.is_main_process:
    check_data(SETTINGS)
    for model, volume in predictions():
        invalidate_incomplete_groups(
            prediction_place(model, volume),
            [RESULTS.group_flag(model, volume, g) for g in range(groups(model, volume))],
            summary=RESULTS.prediction_summary(model, volume),
        )
