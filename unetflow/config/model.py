"""The one configuration model: a frozen pydantic model per section, with every default stated once.

`workflow/schemas/config.schema.yaml` is generated from this model (`unetflow schema`, checked by a test),
and `config.yaml` lists exactly these defaults. An unknown key, a value of the wrong type or out of range,
and the cross-key mistakes a schema cannot express (a split naming a missing volume, overlapping train and
test slices, a string that would break a job script) are one `InputError` that names the key and the fix.

Light on purpose (pydantic only): the workflow imports it while parsing the Snakefile, once per job.
The volume sections (sources, labels, the generator) are in unetflow.config.volumes, importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, TypeAdapter, model_validator

from unetflow.config.base import Device, Precision, ScriptSafe, Section, VolumeName
from unetflow.config.ctc import CTCConfig, ctc_volumes
from unetflow.config.patterns import WALLTIME_PATTERN
from unetflow.config.split import SplitConfig, check_split, primary_entry, split_entries, split_keys
from unetflow.config.volumes import (
    FORMAT_NAMES,
    MAX_SYNTHETIC_VOXELS,
    MAX_SYNTHETIC_VOXELS_3D,
    STORE_SCHEMES,
    UNSTATED_VOXEL_SIZE,
    LabelSourceConfig,
    ModelSourceConfig,
    OriginConfig,
    SourceConfig,
    SyntheticConfig,
    VolumeConfig,
    VoxelSize,
)
from unetflow.errors import InputError
from unetflow.geometry import Layout, NetGeometry, anisotropic_layout
from unetflow.stores import REMOTE_SCHEMES, Location, StoreOptions, scheme_of

LossMode = Literal["border", "class", "none"]
"""The loss weighting modes (`train.loss_weights`; what each weighs with: unetflow.model.loss)."""

# the volume sections live in unetflow.config.volumes and are importable from here as before
__all__ = [
    "DEFAULT_SPLIT",
    "DEFAULT_VOLUMES",
    "FORMAT_NAMES",
    "MAX_SYNTHETIC_VOXELS",
    "MAX_SYNTHETIC_VOXELS_3D",
    "STORE_SCHEMES",
    "UNSTATED_VOXEL_SIZE",
    "AugmentConfig",
    "CellsConfig",
    "ClusterConfig",
    "Config",
    "EvaluateConfig",
    "ExportConfig",
    "LabelSourceConfig",
    "LayoutList",
    "LossMode",
    "ModelConfig",
    "ModelSourceConfig",
    "OriginConfig",
    "OutputConfig",
    "Pair",
    "PredictConfig",
    "SegmentConfig",
    "Shape3",
    "SourceConfig",
    "SyntheticConfig",
    "TrainConfig",
    "VolumeConfig",
    "VoxelSize",
    "WeightsConfig",
]


class WeightsConfig(Section):
    """The paper's border weight map w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2))."""

    KEY: ClassVar[str] = "weights"

    w0: Annotated[float, Field(ge=0)] = 10.0
    """Weight of the border term (paper: 10)."""
    sigma: Annotated[float, Field(gt=0)] = 5.0
    """Width of the border term in pixels (paper: ~5)."""
    connectivity: Literal[1, 2] = 1
    """Cells of binary labels: 1 = 4-neighbour, 2 = 8-neighbour components."""


LayoutList = list[Annotated[list[int], Field(min_length=3, max_length=3)]]


class ModelConfig(Section):
    """The valid-convolution U-Net (paper: depth 4, base_channels 64), in 2-D or 3-D."""

    KEY: ClassVar[str] = "model"

    depth: Annotated[int, Field(ge=1, le=6)] = 4
    """Number of 2x2 poolings (paper: 4)."""
    base_channels: Annotated[int, Field(ge=1, le=1024)] = 8
    """Channels of the first level, doubling per level (paper: 64; 8 trains in minutes on a CPU)."""
    dropout: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Drop-out at the end of the contracting path."""
    norm: Literal["none", "batch"] = "none"
    """Normalisation after each convolution: none (the paper) or batch (faster convergence per CPU minute)."""
    dims: Literal[2, 3] = 2
    """2: the paper's net, slice by slice; 3: a 3-D net (valid 3x3x3 convolutions, 2x2x2 pooling, in-plane
    only at the levels where z is much coarser than y and x; Cicek et al. 2016)."""
    context_slices: Annotated[int, Field(ge=0, le=8)] = 0
    """2-D nets: k neighbouring slices on each side read as input channels (2k + 1, mirrored at the
    volume's ends), cheap 3-D context for serial sections; 0: the paper's single slice."""
    kernels: Literal["auto"] | LayoutList = "auto"
    """3-D nets: (z, y, x) kernel widths (1 or 3) per level 0..depth; auto: from the training volumes'
    voxel_size by nnU-Net's rule (an axis joins once its spacing is within 2x of the finest)."""
    pools: Literal["auto"] | LayoutList = "auto"
    """3-D nets: (z, y, x) pooling factors (1 or 2) per pooling 0..depth-1; auto: by the rule, as kernels."""

    @model_validator(mode="after")
    def _layout(self) -> ModelConfig:
        if self.context_slices and self.dims == 3:
            raise ValueError("context_slices are for 2-D nets (a 3-D net sees z itself); set one of them")
        explicit = [name for name in ("kernels", "pools") if getattr(self, name) != "auto"]
        if explicit and self.dims == 2:
            raise ValueError(f"{' and '.join(explicit)} are for 3-D nets (dims: 3); leave them auto")
        if len(explicit) == 1:
            raise ValueError(f"give kernels and pools together (only {explicit[0]} is set), or neither")
        if explicit:
            NetGeometry(self.depth, 3, 0, *self.layout(None))
        return self

    def layout(self, voxel_size: Sequence[float] | None) -> tuple[Layout | None, Layout | None]:
        """A 3-D net's per-level (z, y, x) kernels and pools: as given, or by nnU-Net's rule from the
        training data's `voxel_size` (None for the isotropic 3x3x3 / 2x2x2 net)."""
        if self.kernels != "auto" and self.pools != "auto":
            return tuple(map(tuple, self.kernels)), tuple(map(tuple, self.pools))  # type: ignore[return-value]
        if voxel_size is None:
            raise InputError(
                "model.dims 3 chooses its in-plane-only levels from the training volumes' voxel_size "
                "(model.kernels: auto), and none is stated: give volumes.<name>.voxel_size [z, y, x], or set "
                "model.kernels and model.pools"
            )
        return anisotropic_layout(voxel_size, self.depth)


Pair = Annotated[list[float], Field(min_length=2, max_length=2)]


class AugmentConfig(Section):
    """Data augmentation (paper Sec. 3.1): shift, rotation, gray values, elastic deformation."""

    KEY: ClassVar[str] = "train.augment"

    enabled: bool = True
    """Switch all augmentation off."""
    rotate: bool = True
    """Rotation by any angle."""
    flip: bool = True
    """Flips and transposition."""
    elastic_std: Annotated[float, Field(ge=0)] = 10.0
    """Std in pixels of the coarse-grid displacements (paper: 10; 0 switches it off)."""
    elastic_grid: Annotated[int, Field(ge=2)] = 3
    """Coarse grid of displacement vectors (paper: 3x3)."""
    contrast: Pair = [0.8, 1.2]
    """Range of the gray-value contrast factor ([1, 1] switches it off)."""
    brightness: Pair = [-0.1, 0.1]
    """Range of the brightness offset, in units of the normalised image ([0, 0] switches it off)."""
    gamma: Pair = [0.8, 1.25]
    """Range of the gamma factor ([1, 1] switches it off)."""
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    """Resampling of the raw tile (labels always nearest): bilinear, or the paper's bicubic."""

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        for name in ("contrast", "brightness", "gamma"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} {[low, high]}: low must not exceed high; swap the two values")
            if name != "brightness" and low <= 0:
                raise ValueError(f"{name} {[low, high]}: factors must be > 0 (use [1, 1] to switch it off)")
        return self


class TrainConfig(Section):
    """Training (paper: SGD, momentum 0.99, batch of one large tile, elastic deformation).

    The defaults are the embedded run's: in the few CPU minutes it has, SGD with momentum 0.99 plateaued at
    validation IoU 0.87 and Adam reached 0.92 (1000 steps each); configs/isbi2012.yaml keeps the paper's SGD.
    """

    KEY: ClassVar[str] = "train"

    steps: Annotated[int, Field(ge=1)] = 1000
    """Optimizer steps."""
    tile: Annotated[int, Field(ge=1)] = 196
    """Output tile size asked for; rounded up to a valid size of the net (paper: 388)."""
    batch_size: Annotated[int, Field(ge=1)] = 1
    """Tiles per step (paper: 1)."""
    optimizer: Literal["sgd", "adam"] = "adam"
    """sgd (paper, with momentum) or adam."""
    lr: Annotated[float, Field(gt=0)] = 0.001
    """Learning rate."""
    momentum: Annotated[float, Field(ge=0, le=1)] = 0.99
    """SGD momentum (paper: 0.99; unused by adam)."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    """L2 weight decay."""
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    """Learning-rate schedule: constant, cosine or step decay."""
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    """Linear learning-rate warm-up steps."""
    seed: int = 0
    """Seeds the weights, drop-out and the tile sampler."""
    checkpoint_every: Annotated[int, Field(ge=1)] = 100
    """Steps between resumable checkpoints."""
    val_every: Annotated[int, Field(ge=1)] = 250
    """Steps between validations."""
    device: Device = "auto"
    """auto (GPU when present), cpu, cuda or cuda:N."""
    gpus: Annotated[int, Field(ge=1)] | Literal["auto"] = 1
    """GPUs of the node to train on, one process each (DistributedDataParallel); auto: every GPU the job
    was given. batch_size is the whole step's batch, split over them; lr is not scaled (docs/slurm.md)."""
    cpu_processes: Annotated[int, Field(ge=1)] = 1
    """On the CPU: the same data-parallel training as N processes (gloo), sharing the job's threads."""
    port: Annotated[int, Field(ge=1, le=65535)] | Literal["auto"] = "auto"
    """TCP port on 127.0.0.1 where the processes of a multi-process run meet; auto: a free one."""
    precision: Precision = "float32"
    """float32, or bfloat16 / float16 mixed precision on CUDA."""
    channels_last: bool = True
    """channels_last memory format on CUDA."""
    loss_weights: LossMode = "border"
    """border (paper's w(x)), class (w_c only) or none (plain cross-entropy)."""
    label_offset: Literal["none", "auto"] = "none"
    """auto: measure the labels' sub-pixel offset from the raw image's boundaries on the training slices
    and move the raw onto the labels in training and prediction (ISBI 2012: 0.6 px); none: as the paper."""
    augment: AugmentConfig = AugmentConfig()
    """Data augmentation (paper Sec. 3.1)."""
    init_from: ModelSourceConfig | None = None
    """Fine-tune from this trained model (checkpoint or bioimage.io package): its net, a fresh optimizer."""


class ClusterConfig(Section):
    """The dask.distributed cluster of predict.scheduler distributed."""

    KEY: ClassVar[str] = "predict.cluster"

    kind: Literal["local", "slurm", "address"] = "local"
    """local (worker processes in the predict job), slurm (one SLURM job per worker) or address."""
    address: ScriptSafe = ""
    """Scheduler address for kind address (tcp://host:8786)."""
    workers: Annotated[int, Field(ge=1)] = 2
    """Worker processes (local) or SLURM worker jobs."""
    threads: Annotated[int, Field(ge=1)] = 1
    """Torch CPU threads (SLURM cores) per worker."""
    memory: Annotated[str, Field(pattern=r"^\d+(\.\d+)?(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")] = "4GB"
    """Memory per worker (SLURM job memory), e.g. 4GB."""
    gpus: Annotated[int, Field(ge=0)] = 0
    """GPUs per SLURM worker job (--gres=gpu:N)."""
    queue: ScriptSafe = ""
    """SLURM partition of the worker jobs (empty = the default partition)."""
    account: ScriptSafe = ""
    """SLURM account of the worker jobs (empty = your default account)."""
    walltime: Annotated[str, Field(pattern=WALLTIME_PATTERN)] = "02:00:00"
    """Time limit of each SLURM worker job ([days-]hours:minutes:seconds)."""
    job_extra: list[Annotated[ScriptSafe, Field(min_length=1)]] = []
    """Extra #SBATCH options, one per item, e.g. --constraint=a100."""
    timeout: Annotated[float, Field(gt=0)] = 600.0
    """Seconds to wait for a first worker."""

    @model_validator(mode="after")
    def _address(self) -> ClusterConfig:
        if self.kind == "address" and not self.address:
            raise ValueError("kind address needs address (tcp://host:8786)")
        return self


class OutputConfig(Section):
    """Where predictions are written instead of results/predict: a folder or a URL, written in place."""

    KEY: ClassVar[str] = "predict.output"

    url: str
    """A folder, file:// URL or an object store prefix (s3://bucket/run, gs://bucket/run): each prediction is
    <url>/<model>/<volume>.zarr, its journals beside it, and its segmentation <volume>.segment.zarr with its
    work folder (fragments, journals, region graph) beside them."""
    endpoint_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    """An S3-compatible store that is not AWS (an institute's): its address."""
    profile: ScriptSafe | None = None
    """A named profile of ~/.aws/credentials (null: the standard chain); never credentials in the config."""

    @model_validator(mode="after")
    def _store(self) -> OutputConfig:
        scheme = scheme_of(self.url)
        if scheme in ("http", "https"):
            raise ValueError(
                f"url {self.url}: http(s) is read-only; write to s3://, gs://, file:// or a folder"
            )
        if scheme is not None and scheme not in (*REMOTE_SCHEMES, "file"):
            raise ValueError(f"url {self.url}: use s3://, gs://, file:// or a folder")
        if (self.endpoint_url or self.profile) and scheme != "s3":
            raise ValueError("endpoint_url and profile apply to an s3:// url; drop them")
        return self

    @property
    def options(self) -> StoreOptions:
        """How to reach the output's store."""
        return StoreOptions(endpoint_url=self.endpoint_url, profile=self.profile)

    def location(self) -> Location:
        """The output root as a Location (with the options to reach its store)."""
        return Location(self.url, self.options)


class PredictConfig(Section):
    """Overlap-tile prediction of every volume."""

    KEY: ClassVar[str] = "predict"

    memory_gb: Annotated[float, Field(gt=0)] = 2.0
    """Activation memory budget of a job; picks the largest valid tile that fits."""
    batch_size: Annotated[int, Field(ge=1)] = 1
    """Tiles per net call."""
    tta: bool = False
    """Average the 8 flips/rotations."""
    dtype: Literal["float32", "float16"] = "float32"
    """Probability dtype."""
    precision: Precision = "float32"
    """float32, or bfloat16 / float16 mixed precision on CUDA."""
    block_groups: Annotated[int, Field(ge=1)] | Literal["auto"] = 1
    """Independent jobs splitting each volume's shards (one GPU job each on SLURM); auto: one per group_gb."""
    group_gb: Annotated[float, Field(gt=0)] = 64.0
    """With block_groups auto: GB of output (probability + segmentation) per job."""
    shard_gb: Annotated[float, Field(gt=0)] = 1.0
    """GiB of probability per output shard (NGFF 0.5): larger means fewer files, two in memory per job."""
    workers: Annotated[int, Field(ge=1)] = 2
    """Blocks in flight per job (GPU: one's I/O overlaps another's net; CPU: they share the threads)."""
    scheduler: Literal["threads", "distributed"] = "threads"
    """threads (dask's thread pool inside each predict job) or distributed (a dask cluster: cluster)."""
    cluster: ClusterConfig = ClusterConfig()
    """The dask.distributed cluster of scheduler distributed."""
    threshold: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = "auto"
    """Segmentation threshold; auto: w_fg/(w_bg+w_fg), undoing the loss's class weights (0.5 without)."""
    device: Device = "auto"
    """auto, cpu, cuda or cuda:N."""
    instances: bool = False
    """Also write labels/instances: connected components of the segmentation per slice (uint32)."""
    ngff: Literal["0.5", "0.4"] = "0.5"
    """Output: OME-NGFF 0.5 on Zarr v3 with shards, or 0.4 on Zarr v2 (a file per chunk) for older readers."""
    pyramid: Annotated[int, Field(ge=1, le=12)] = 4
    """Resolution levels of the output (level 0 and N-1 more, each 2x coarser in y and x) for viewers."""
    skip_empty: bool = True
    """Leave regions whose input chunks were never written (no data) at the fill value, unpredicted."""
    output: OutputConfig | None = None
    """Where the predictions (with pyramid and journals) and their segmentations are written: null =
    results/predict and results/segment; or {url: s3://bucket/run} (gs://, file://, a folder), with
    endpoint_url/profile for S3."""


Shape3 = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=3, max_length=3)]


class SegmentConfig(Section):
    """Instance segmentation of every predicted volume: fragments, region graph, one agglomeration."""

    KEY: ClassVar[str] = "segment"

    enabled: bool = True
    """Segment every prediction into objects (results/segment/<model>/<volume>.zarr, uint64 ids; with
    predict.output <output>/<model>/<volume>.segment.zarr, beside the prediction)."""
    block_shape: Shape3 = [32, 512, 512]
    """Blocks (z, y, x) of the blockwise steps: a unit of work and of resume, and a chunk of the output."""
    halo: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=3, max_length=3)] = [32, 32, 32]
    """Voxels each block reads beyond its faces for its fragments (z unused in mode 2d): the seeds reach 22
    voxels, and near a cut face the distance to the boundary is wrong, so 32 keeps the blocks' seeds those
    of a whole-volume pass (24 left a VOI of 0.14 bits between 60 odd blocks and one, 32 left 0.007)."""
    mode: Literal["auto", "2d", "3d"] = "auto"
    """Fragments per slice (2d, anisotropic serial sections) or in 3-D (isotropic); auto: by voxel size."""
    method: Literal["mean", "multicut", "mutex"] = "mutex"
    """Agglomeration of the region graph: mutex watershed, mean-boundary (GASP average) or multicut (GAEC +
    Kernighan-Lin); measured in benchmarks/segment.py (docs/benchmarks.md)."""
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """Mean boundary probability of a contact at which two regions stay apart (every method's bias)."""
    seed_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """Boundary probability from which a voxel is boundary for the fragments' seeds (distance maxima)."""
    block_groups: Annotated[int, Field(ge=1)] = 1
    """Independent jobs that split the blockwise steps of each volume (one SLURM job each)."""
    pyramid: Annotated[int, Field(ge=1, le=12)] = 4
    """Resolution levels of the label image (each 2x coarser in y and x) for napari and neuroglancer."""
    max_edges: Annotated[int, Field(ge=1)] = 10_000_000
    """The largest region graph agglomerated in one pass (about 350 bytes per edge at the peak: 3.4 GB at
    10^7); a larger one is agglomerated per block group first, then the graph of what those merged."""
    isbi_submission: VolumeName | None = None
    """A volume (the ISBI 2012 test slices) whose segmentation is also written as the challenge's
    submission file: results/segment/<model>/<volume>.isbi2012.tif (null: none)."""


class CellsConfig(Section):
    """Cells as objects: each frame's foreground probability split into one id per cell (the cell tracking
    runs; unetflow.segment.cells). Not `segment:`, which segments whole volumes."""

    KEY: ClassVar[str] = "cells"

    method: Literal["watershed", "components"] = "watershed"
    """watershed: seeded on the probability, seeds where it is high (splits cells joined by a faint gap);
    components: connected components of the thresholded foreground (cells joined anywhere stay one)."""
    threshold: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = "auto"
    """Foreground where the probability exceeds it; auto: the prediction's threshold (predict.threshold)."""
    seeds: Literal["maxima", "level"] = "maxima"
    """watershed: its seeds, maxima of the probability that rise `dynamic` above the pass to a higher one
    (h-maxima: a cell the net saw unevenly keeps one seed), or level: connected pixels above seed_threshold
    (benchmarks/cells.py: maxima SEG 0.7939 / 0.7555 against level 0.7931 / 0.7323, fewer cut cells)."""
    dynamic: Annotated[float, Field(gt=0, le=1)] = 0.5
    """seeds maxima: how far the probability must dip between two maxima for them to seed two cells."""
    seed_threshold: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = "auto"
    """watershed with seeds level: seeds are the connected pixels above it; auto: halfway between threshold
    and 1."""
    min_size: Annotated[int, Field(ge=0)] = 30
    """Cells smaller than this (pixels) join the neighbour they share most border with, else are dropped."""
    fill_holes: bool = True
    """Fill each cell's holes (background enclosed by one cell only)."""
    grow: Annotated[int, Field(ge=0)] = 0
    """Pixels every cell grows into the background around it (neighbours meet halfway): gives back the gap
    of separated training labels where the threshold leaves it out (benchmarks/cells.py: no gain at auto)."""
    connectivity: Literal[1, 2] = 1
    """Pixels of one cell: 1 = 4-neighbour, 2 = 8-neighbour."""

    @model_validator(mode="after")
    def _seeds_above_foreground(self) -> CellsConfig:
        numbers = isinstance(self.threshold, float) and isinstance(self.seed_threshold, float)
        if numbers and self.seed_threshold < self.threshold:
            raise ValueError(
                f"seed_threshold {self.seed_threshold} lies below threshold {self.threshold}: seeds must be "
                "foreground; raise seed_threshold (or use auto)"
            )
        return self


class EvaluateConfig(Section):
    """Metrics on the test slices."""

    KEY: ClassVar[str] = "evaluate"

    connectivity: Literal[1, 2] = 1
    """Cells of binary maps for the Rand and information measures (1 = 4-, 2 = 8-neighbour)."""
    warping: bool = True
    """Compute the warping error (Jain et al. 2010)."""


class ExportConfig(Section):
    """What a trained model's bioimage.io package says of itself (rule export; `unetflow export` options)."""

    KEY: ClassVar[str] = "export"
    name: str | None = None
    """The model's name in the package (null: from its depth and width)."""
    description: str | None = None
    """A sentence on what the model does (null: what the net is and outputs)."""
    license: Annotated[str, Field(pattern=r"^[A-Za-z0-9.+-]+$")] = "MIT"
    """SPDX licence of the package (MIT: unetflow's, whose model source the package contains)."""
    authors: list[Annotated[str, Field(min_length=1)]] = []
    """The model's authors (empty: the login name of whoever runs the export)."""
    training_data_license: Annotated[str, Field(pattern=r"^[A-Za-z0-9.+-]+$")] | None = None
    """SPDX licence of the training data (null: not stated in the package)."""
    test: bool = True
    """Run bioimageio.core's test_model on each package before it is written."""


DEFAULT_VOLUMES = {
    "synthetic": VolumeConfig(synthetic=SyntheticConfig(mode="3d"), voxel_size=[50.0, 4.0, 4.0])
}
"""The embedded default: neurites through 16 serial sections (so that its segmentation has objects to
follow through z), sections 12.5x the pixel size."""
DEFAULT_SPLIT = SplitConfig(volume="synthetic", train="0-9", val="10-11", test="12-15")


class Config(Section):
    """The whole configuration (config.yaml). Unknown keys are errors."""

    volumes: Annotated[dict[VolumeName, VolumeConfig], Field(min_length=1)] = DEFAULT_VOLUMES
    """Volumes by name (letters, digits, _ and -): the embedded generator or raw (+ labels) sources."""
    split: SplitConfig | Annotated[list[SplitConfig], Field(min_length=1)] | None = DEFAULT_SPLIT
    """Which slices of which labelled volumes (or regions) train, validate and test: one entry or a list."""
    weights: WeightsConfig = WeightsConfig()
    """The paper's border weight map."""
    model: ModelConfig = ModelConfig()
    """The valid-convolution U-Net."""
    train: TrainConfig = TrainConfig()
    """Training to the paper's recipe."""
    predict: PredictConfig = PredictConfig()
    """Overlap-tile prediction of every volume."""
    segment: SegmentConfig = SegmentConfig()
    """Instance segmentation of every prediction (objects with one id through the volume)."""
    evaluate: EvaluateConfig = EvaluateConfig()
    """Metrics on the test slices."""
    cells: CellsConfig = CellsConfig()
    """Cells as objects: one id per cell in each frame (the cell tracking workflow, ctc)."""
    export: ExportConfig = ExportConfig()
    """The bioimage.io package written for every trained model."""
    ablation: bool = False
    """Also train and evaluate a model with class-balancing weights only (what the border term buys)."""
    pretrained: ModelSourceConfig | None = None
    """A trained model to predict every volume with: nothing is trained, labels and split are optional."""
    ctc: CTCConfig | None = None
    """A Cell Tracking Challenge dataset trained and scored by the challenge's protocol (paper Table 2): its
    sequences are the volumes and its protocol the models, replacing volumes and split."""

    @model_validator(mode="before")
    @classmethod
    def _ctc_volumes(cls, values: object) -> object:
        """With `ctc:`, the volumes are its sequences and the split follows from its protocol."""
        if not isinstance(values, dict) or values.get("ctc") is None:
            return values
        try:
            ctc = CTCConfig.model_validate(values["ctc"])
        except ValueError:
            return values  # the field's own validation names the key
        return {**values, "volumes": ctc_volumes(ctc), "split": None}

    @classmethod
    def section(cls, key: str, values: Any) -> Any:
        """The typed value of top-level key `key` from its plain values, as a rule passes them in params.

        Snakemake records and compares only plain params, so a changed option reruns its rule; a script turns
        them back into the section here.
        """
        return TypeAdapter(cls.model_fields[key].annotation).validate_python(values)

    @model_validator(mode="after")
    def _split_fits(self) -> Config:
        if self.ctc is not None:
            if self.pretrained is not None or self.ablation:
                raise InputError(
                    "ctc: trains and scores its own models; drop pretrained and ablation "
                    "(benchmarks/cells.py measures what the border term and the separating background buy)"
                )
            return self
        if self.split is None:
            if self.pretrained is None:
                raise InputError(
                    "split: training needs a split naming a labelled volume and its slices; give one, or set "
                    "pretrained to predict with a trained model"
                )
        else:
            check_split(self.split, self.volumes)
        submission = self.segment.isbi_submission
        if submission is not None and submission not in self.volumes:
            raise InputError(
                f"segment.isbi_submission names volume {submission!r}, which volumes does not list; name one "
                f"of {', '.join(self.volumes)} or drop it"
            )
        if self.predict.output is not None and any(volume.labelled for volume in self.volumes.values()):
            raise InputError(
                "predict.output: predictions go elsewhere than results/ only in predict-only runs of "
                "unlabelled volumes (evaluation reads them from results/); drop predict.output, or the labels"
            )
        if self.pretrained is not None and self.ablation:
            raise InputError("ablation trains a second model; it does not apply with pretrained: drop one")
        if self.pretrained is not None and self.train.init_from is not None:
            raise InputError(
                "train.init_from fine-tunes a model, pretrained trains none (it only predicts): drop one"
            )
        return self

    @model_validator(mode="after")
    def _three_d(self) -> Config:
        if self.model.dims != 3 or self.pretrained is not None:
            return self
        if self.train.augment.interpolation == "bicubic":
            raise InputError(
                "train.augment.interpolation bicubic is for 2-D tiles; a 3-D net's are interpolated "
                "trilinearly: set it to bilinear"
            )
        if self.model.kernels != "auto":
            return self
        layouts = {}
        for name in self.training_volumes():
            volume = self.volumes[name]
            if volume.voxel_size is None and volume.synthetic is None:
                raise InputError(
                    f"model.dims 3 chooses its in-plane-only levels from the training volumes' voxel_size "
                    f"(model.kernels: auto, nnU-Net's rule), and volumes.{name} states none: give its "
                    "voxel_size [z, y, x], or set model.kernels and model.pools"
                )
            layouts[name] = self.model.layout(volume.voxel_size or UNSTATED_VOXEL_SIZE)
        if len(set(layouts.values())) > 1:
            raise InputError(
                f"the training volumes {sorted(layouts)} have voxel sizes that give 3-D nets of different "
                "layouts (model.kernels: auto); train on volumes of one voxel size, or set model.kernels "
                "and model.pools"
            )
        return self

    def split_entries(self) -> list[SplitConfig]:
        """The split's entries (one for the single-mapping form, none without a split)."""
        return split_entries(self.split)

    def split_keys(self) -> list[str]:
        """The config key of each entry, for messages: `split`, or `split[i]` in the list form."""
        return split_keys(self.split)

    def training_volumes(self) -> list[str]:
        """The volumes that training reads (train or validation slices), in order, once each: each needs
        its import and its weight map."""
        return list(
            dict.fromkeys(
                entry.volume
                for entry in self.split_entries()
                if entry.train not in ("", []) or entry.val not in ("", [])
            )
        )

    def report_volume(self) -> str | None:
        """The volume of the primary entry (the report's figures, the exported model's test image)."""
        entry = primary_entry(self.split_entries())
        return None if entry is None else entry.volume
