"""Where every file of a workflow run lives: the one statement of the results layout.

The rules' helper functions (workflow/rules/common.smk), the CLI and the report all take their paths from
here. Each method takes names (a volume, a model) or Snakemake wildcard patterns such as "{volume}" and
returns a POSIX path string relative to the run's folder, so the same call serves a rule's `output:` and
a script that opens the file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

PRETRAINED_MODEL = "pretrained"
"""The name under which a run that trains nothing files the predictions of its `pretrained:` model."""
MAIN_MODEL = "main"
"""The model trained with the configured loss (the paper's border weights by default)."""
ABLATION_MODEL = "ablation"
"""The model trained with class-balancing weights only (config `ablation: true`)."""


@dataclass(frozen=True)
class Layout:
    """Paths of a run's inputs (`raw`, downloads and synthetic volumes) and outputs (`results`); the
    predictions under `output` (config predict.output: a folder or an object store URL) when it is set."""

    results: str = "results"
    raw: str = "data/raw"
    output: str | None = None

    def with_output(self, output: str | None) -> Layout:
        """This layout with its predictions under `output` (None: results/predict)."""
        return replace(self, output=None if output is None else output.rstrip("/"))

    def _in(self, *parts: str) -> str:
        return "/".join((self.results, *parts))

    # inputs
    def synthetic(self, volume: str, role: str) -> str:
        """The embedded generator's raw or labels TIFF of a synthetic volume."""
        return f"{self.raw}/{volume}/synthetic/{role}.tif"

    def download(self, volume: str, filename: str) -> str:
        """A downloaded source file of a volume."""
        return f"{self.raw}/{volume}/{filename}"

    def model_download(self, filename: str) -> str:
        """A downloaded trained model (config `pretrained: {url: ...}`)."""
        return f"{self.raw.rsplit('/', 1)[0]}/models/{filename}"

    def ctc_dataset(self, dataset: str, role: str) -> str:
        """A Cell Tracking Challenge dataset's training or test archive, fetched and unpacked (the archive
        itself is kept beside it as `<role>.zip`)."""
        return f"{self.raw}/ctc/{dataset}/{role}"

    # data steps
    def data(self, volume: str) -> str:
        """The imported OME-Zarr of a volume (raw at 0, labels at labels/cells)."""
        return self._in("data", f"{volume}.zarr")

    def weights(self, volume: str) -> str:
        """The border weight map of a labelled volume."""
        return self._in("weights", f"{volume}.zarr")

    def class_balance(self) -> str:
        """The class weights w_c over every split source's training pixels, with each source's counts."""
        return self._in("weights", "class_balance.json")

    def model_balance(self, model: str) -> str:
        """The class weights of one model's training pixels (cell tracking runs: a balance per model)."""
        return self._in("weights", model, "class_balance.json")

    def model_weights(self, model: str, volume: str) -> str:
        """The border weight map of a volume with one model's class weights (cell tracking runs)."""
        return self._in("weights", model, f"{volume}.zarr")

    # training
    def model_dir(self, model: str) -> str:
        """Folder of one trained model."""
        return self._in("models", model)

    def model(self, model: str) -> str:
        """The best checkpoint of a model (PyTorch format)."""
        return f"{self.model_dir(model)}/model.pt"

    def train_log(self, model: str) -> str:
        """Loss, learning rate and timing of every training step."""
        return f"{self.model_dir(model)}/train_log.csv"

    def val_log(self, model: str) -> str:
        """Validation scores at every validation step."""
        return f"{self.model_dir(model)}/val_log.csv"

    def bioimageio_package(self, model: str) -> str:
        """The model as a bioimage.io model package (zip): ilastik, deepImageJ, napari, bioimageio.core."""
        return f"{self.model_dir(model)}/bioimageio.zip"

    def checkpoints(self, model: str) -> str:
        """Resumable checkpoints of a training run."""
        return f"{self.model_dir(model)}/checkpoints"

    # prediction
    def prediction(self, model: str, volume: str) -> str:
        """The probability and segmentation OME-Zarr of a volume (under `output` when set: maybe a URL)."""
        if self.output is not None:
            return f"{self.output}/{model}/{volume}.zarr"
        return self._in("predict", model, f"{volume}.zarr")

    def prediction_record(self, model: str, volume: str) -> str:
        """What the workflow tracks of a prediction: its folder, or with `output` a local record of where it
        was written (an object store is not Snakemake's to check or delete)."""
        if self.output is None:
            return self.prediction(model, volume)
        return self._in("predict", model, f"{volume}.where.json")

    def prediction_summary(self, model: str, volume: str) -> str:
        """What finalising a prediction found (blocks, voxels, instances); always under results/."""
        return prediction_summary(self._in("predict", model, f"{volume}.zarr"))

    def prediction_stats(self, model: str, volume: str) -> str:
        """The normalisation statistics of the predicted volume (computed by a chunked pass over a sample);
        always under results/."""
        return prediction_stats(self._in("predict", model, f"{volume}.zarr"))

    def prediction_progress(self, model: str, volume: str) -> str:
        """The completion journals of a prediction's block groups."""
        return prediction_progress(self.prediction(model, volume))

    def group_flag(self, model: str, volume: str, group: str | int) -> str:
        """Flag of one finished block group of a prediction."""
        return self._in("predict", model, f"{volume}.blocks", f"{group}.done")

    # segmentation
    def segmentation(self, model: str, volume: str) -> str:
        """The instance segmentation (OME-NGFF 0.5 label image, uint64 ids) of a volume's prediction: under
        `output` when set (maybe a URL), beside the prediction, else under results/segment."""
        if self.output is not None:
            return f"{self.output}/{model}/{volume}.segment.zarr"
        return self._in("segment", model, f"{volume}.zarr")

    def segmentation_record(self, model: str, volume: str) -> str:
        """What the workflow tracks of a segmentation: its folder, or with `output` a local record of where
        it was written (as for the prediction)."""
        if self.output is None:
            return self.segmentation(model, volume)
        return self._in("segment", model, f"{volume}.where.json")

    def segmentation_summary(self, model: str, volume: str) -> str:
        """What finalising a segmentation found (objects, fragments, edges, time per step); always under
        results/."""
        return self._in("segment", model, f"{volume}.json")

    def isbi_submission(self, model: str, volume: str) -> str:
        """The ISBI 2012 challenge submission file of a volume's segmentation (32-bit float TIFF)."""
        return self._in("segment", model, f"{volume}.isbi2012.tif")

    def segment_flag(self, model: str, volume: str, step: str, group: str | int = 0) -> str:
        """Flag of one finished step (fragments, graph, solve, relabel; all: the four) of a block group."""
        return self._in("segment", model, f"{volume}.steps", f"{step}-{group}.done")

    # evaluation and report
    def metrics(self, model: str) -> str:
        """A model's metrics (JSON: overall, per volume)."""
        return self._in("metrics", f"{model}.json")

    def slice_metrics(self, model: str) -> str:
        """A model's metrics per slice (CSV)."""
        return self._in("metrics", f"{model}_slices.csv")

    def cells(self, model: str, sequence: str) -> str:
        """One id per cell in every frame of a sequence, as a 16-bit (t, y, x) TIFF stack."""
        return self._in("cells", model, f"{sequence}.tif")

    def ctc_results(self, model: str, dataset: str, sequence: str) -> str:
        """The challenge's result folder of a sequence (`<dataset>/<sequence>_RES/maskNNN.tif`)."""
        return self._in("cells", model, dataset, f"{sequence}_RES")

    def seg_scores(self) -> str:
        """SEG and the object metrics of every cross-sequence model, with the protocol and the archive."""
        return self._in("metrics", "seg.json")

    def seg_frames(self) -> str:
        """The object metrics of every scored gold frame (CSV)."""
        return self._in("metrics", "seg_frames.csv")

    def metrics_summary(self) -> str:
        """The main model's metrics, the run's headline numbers."""
        return self._in("metrics.json")

    def report(self) -> str:
        """The self-contained HTML report."""
        return self._in("report", "index.html")

    def log(self, step: str, name: str) -> str:
        """The log file of one job of a step."""
        return self._in("logs", step, f"{name}.log")

    def benchmark(self, step: str, name: str) -> str:
        """Snakemake's benchmark file (time, memory) of one job of a step."""
        return self._in("benchmarks", step, f"{name}.tsv")

    def benchmarks(self) -> str:
        """The folder of every job's benchmark file."""
        return self._in("benchmarks")

    def dask_logs(self, model: str, volume: str, group: str | int) -> str:
        """Logs of the dask workers of one prediction job (predict.scheduler: distributed)."""
        return self._in("logs", "dask", model, f"{volume}.{group}")


def prediction_progress(prediction: str) -> str:
    """The folder of a prediction's completion journals: beside it (`<volume>.progress`), outside its Zarr."""
    return prediction.removesuffix("/").removesuffix(".zarr") + ".progress"


def segmentation_work(segmentation: str) -> str:
    """The folder of a segmentation's work files (`<out>.work`: fragments, journals, region graph,
    assignment), beside it, on the same file system or store."""
    return segmentation.removesuffix("/").removesuffix(".zarr") + ".work"


def prediction_summary(prediction: str) -> str:
    """What finalising a prediction found (`<volume>.json`, beside it)."""
    return prediction.removesuffix("/").removesuffix(".zarr") + ".json"


def prediction_stats(prediction: str) -> str:
    """The normalisation statistics of the volume a prediction was made from (`<volume>.stats.json`)."""
    return prediction.removesuffix("/").removesuffix(".zarr") + ".stats.json"


def training_outputs(model: str | Path) -> tuple[str, str, str]:
    """The training log, validation log and checkpoint folder of a model file, beside it as the workflow lays
    out a model's folder (the CLI's `train --output` names only the model file)."""
    folder = Path(model).parent
    return str(folder / "train_log.csv"), str(folder / "val_log.csv"), str(folder / "checkpoints")


def checkpoint(workdir: str | Path, which: str) -> Path:
    """The `latest` (resumable) or `best` checkpoint in a training run's checkpoint folder."""
    return Path(workdir) / f"{which}.pt"


def slice_metrics_beside(metrics: str | Path) -> str:
    """The per-slice CSV written beside a metrics JSON by the CLI's `evaluate` (same name, .csv)."""
    return str(Path(metrics).with_suffix(".csv"))


RESULTS = Layout()
"""The layout of a run in the current folder (the workflow's)."""
