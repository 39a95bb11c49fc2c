"""The one configuration model: a frozen pydantic model per section, with every default stated once.

The Snakefile and the `unetflow` CLI both load a configuration through `merge_config` and `load_config`;
`workflow/schemas/config.schema.yaml` is generated from this model (`unetflow schema`, checked by a test),
and `config.yaml` lists exactly these defaults. An unknown key, a value of the wrong type or out of range,
and the cross-key mistakes a schema cannot express (a split naming a missing volume, overlapping train and
test slices, a string that would break a job script) are one `InputError` that names the key and the fix.

The split is one entry (a mapping) or a list of entries, each a labelled volume or a region of it with its
train / val / test slices: `split_entries` gives the list whatever the form, `source_names` their names.

Light on purpose (pydantic and yaml only): the workflow imports it while parsing the Snakefile, once per job.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import unquote, urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import GenerateJsonSchema

from unetflow.errors import InputError
from unetflow.loss import LossMode
from unetflow.readers.registry import format_names
from unetflow.slices import select_slices

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
SCRIPT_SAFE_PATTERN = r"^[A-Za-z0-9_.:,=/@+%&|~*()\[\]-]*$"
"""Characters allowed in strings that reach a job script or a command line: no spaces, quotes, `$`, `;`,
back-ticks or line breaks, so a value can never add a line or a command to a SLURM script."""
WALLTIME_PATTERN = r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$"
SLICES_PATTERN = r"^\s*(all|\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*)\s*$"
FORMAT_NAMES = format_names(aliases=True)
"""Input formats a source may name (aliases included): the reader registry's (unetflow.readers)."""
MAX_SYNTHETIC_VOXELS = 2**29
"""The embedded generator builds a volume in memory (about 5 bytes a voxel): at most 512 Mi voxels."""

ScriptSafe = Annotated[str, Field(pattern=SCRIPT_SAFE_PATTERN, max_length=200)]
Slices = Annotated[str, Field(pattern=SLICES_PATTERN)] | list[Annotated[int, Field(ge=0)]]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
Precision = Literal["float32", "bfloat16", "float16"]
VolumeName = Annotated[str, Field(pattern=NAME_PATTERN)]


def script_safe(value: str, *, key: str) -> str:
    """`value` if it may go into a job script or a command line (one word, no shell syntax); else an error."""
    if not re.fullmatch(SCRIPT_SAFE_PATTERN, value) or len(value) > 200:
        raise InputError(f"config {key}: {PATTERN_HINTS[SCRIPT_SAFE_PATTERN]} (got {json.dumps(value)})")
    return value


class Section(BaseModel):
    """A config section: unknown keys refused, values checked strictly (YAML's "1e-3" is text, not 0.001).

    Patterns are matched by the rust-regex engine, whose `$` is the end of the text as in the JSON schema
    (Python's `re` also lets `$` match before a final line break: "gpu\\n" would pass as a queue).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)
    KEY: ClassVar[str] = ""
    """Where the section lives in config.yaml (named by errors)."""

    @classmethod
    def from_dict(cls, values: Section | Mapping[str, Any] | None) -> Self:
        """`values` as this section: a mapping is validated (errors name the key), a section passes."""
        if isinstance(values, cls):
            return values
        if values is not None and not isinstance(values, Mapping):
            raise InputError(f"config {cls.KEY}: must be a mapping of options, got {values!r}")
        try:
            return cls.model_validate(dict(values or {}))
        except ValidationError as error:
            raise config_error(error, values, prefix=cls.KEY) from None

    def dump(self) -> dict[str, Any]:
        """Plain JSON-compatible values (what Snakemake rules pass as params and checkpoints store)."""
        return self.model_dump(mode="json")


class OriginConfig(Section):
    """Where a file comes from: a download or a local path."""

    url: str | None = None
    """http(s):// or file:// address, downloaded and checked against sha256."""
    path: str | None = None
    """A local file or folder, used in place (checked against sha256 when given)."""
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)] | None = None
    """Expected SHA-256 of the file; a mismatch stops the run."""
    filename: Annotated[str, Field(pattern=r"^[^/\\]+$")] | None = None
    """url sources only: the local file name of the download (default: the URL's last part)."""

    @property
    def local_name(self) -> str:
        """The file name of a url source's download: `filename`, else the URL's last part."""
        if self.filename:
            return self.filename
        return PurePosixPath(unquote(urlparse(self.url or "").path).rstrip("/")).name

    @model_validator(mode="after")
    def _one_origin(self) -> OriginConfig:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of url and path")
        if self.url is not None and not self.url.startswith(("http://", "https://", "file://")):
            raise ValueError(f"url {self.url!r} must start with http://, https:// or file://")
        if self.filename in (".", ".."):
            raise ValueError(f"filename {self.filename!r} names a folder; give the file's name")
        if self.path is not None and self.filename is not None:
            raise ValueError("filename applies to url sources only (a path is used in place); drop it")
        if self.url is not None and self.local_name in ("", ".", ".."):
            raise ValueError(f"url {self.url!r} ends in no file name; set filename")
        return self


class SourceConfig(OriginConfig):
    """Where one image volume comes from: a download or a local file or folder."""

    format: Literal[FORMAT_NAMES] | None = None  # type: ignore[valid-type]
    """File format (a name of unetflow's readers); inferred from the path when null."""
    member: str | None = None
    """HDF5 dataset, or path of an array or image inside a Zarr or N5 store."""
    level: Annotated[int, Field(ge=0)] | str | None = None
    """Resolution level of an OME-Zarr / N5 multiscale image (index or path; null: full resolution)."""


class ModelSourceConfig(OriginConfig):
    """A trained model: a unetflow checkpoint (.pt), downloaded or used in place."""


class LabelSourceConfig(SourceConfig):
    """Where a volume's labels come from (instance ids, or binary with cell interior non-zero)."""

    invert: bool = False
    """Binary labels whose foreground is the membrane: invert so that 0 = membrane."""
    ignore: Annotated[int, Field(ge=1)] | None = None
    """Label value of unannotated pixels (sparse labels): no loss, no class, no border, no metric there."""


class SyntheticConfig(Section):
    """The embedded EM-like generator: touching cells, dark membranes, organelles, blur and noise."""

    KEY: ClassVar[str] = "volumes.<name>.synthetic"

    shape: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=3, max_length=3)] = [16, 256, 256]
    """Slices, height and width."""
    seed: int = 0
    """Random seed; the same seed gives the same data."""
    cell_diameter: Annotated[float, Field(gt=0)] = 40.0
    """Mean cell diameter in pixels."""
    membrane_contrast: Annotated[float, Field(ge=0)] = 1.0
    """Darkness of the membranes against the cytoplasm (1: the default look; 0.5: half as dark, 0: none)."""

    @model_validator(mode="after")
    def _fits_memory(self) -> SyntheticConfig:
        voxels = math.prod(self.shape)
        if voxels > MAX_SYNTHETIC_VOXELS:
            raise ValueError(
                f"shape {self.shape} is {voxels:,} voxels; the generator builds the volume in memory and "
                f"takes at most {MAX_SYNTHETIC_VOXELS:,}: make it smaller"
            )
        if min(self.shape[1:]) < 16:
            raise ValueError(f"shape {self.shape}: height and width must be at least 16 pixels")
        return self


class VolumeConfig(Section):
    """One volume: the embedded generator, or raw (and optional labels) sources."""

    KEY: ClassVar[str] = "volumes.<name>"

    synthetic: SyntheticConfig | None = None
    """The embedded EM-like generator (no download)."""
    raw: SourceConfig | None = None
    """The image volume."""
    labels: LabelSourceConfig | None = None
    """Its labels (instance ids or binary interior); volumes without labels are only predicted."""
    voxel_size: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=3, max_length=3)] = [
        1.0,
        1.0,
        1.0,
    ]
    """Voxel size (z, y, x) written to the OME-Zarr metadata."""
    unit: Annotated[str, Field(pattern=r"^[a-z]+$")] = "nanometer"
    """Unit of voxel_size (an OME-NGFF space unit)."""

    @model_validator(mode="after")
    def _one_kind(self) -> VolumeConfig:
        if (self.synthetic is None) == (self.raw is None):
            raise ValueError("give exactly one of synthetic and raw")
        if self.synthetic is not None and self.labels is not None:
            raise ValueError("a synthetic volume makes its own labels; drop labels")
        if self.raw is not None and self.labels is not None and self.raw.url and self.labels.url:
            same_file = self.raw.local_name == self.labels.local_name
            if same_file and self.raw.url != self.labels.url:
                raise ValueError(
                    f"raw and labels download different URLs to the same file {self.raw.local_name}; "
                    "give one of them its own filename"
                )
            if same_file and self.raw.sha256 != self.labels.sha256:
                raise ValueError(
                    "raw and labels are the same URL (one download) with different sha256; give both the "
                    "file's sha256"
                )
        return self

    def downloads(self) -> dict[str, SourceConfig]:
        """The url sources of this volume by local file name (raw and labels of one URL share one)."""
        found: dict[str, SourceConfig] = {}
        for source in (self.raw, self.labels):
            if source is not None and source.url is not None:
                found.setdefault(source.local_name, source)
        return found

    @property
    def labelled(self) -> bool:
        """Whether the volume has ground truth (synthetic volumes always do)."""
        return self.synthetic is not None or self.labels is not None


Span = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]
Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


class RegionConfig(Section):
    """A box of a volume: [start, stop) pixels per axis (start included, stop excluded, as NumPy slices)."""

    KEY: ClassVar[str] = "split.region"

    z: Span | None = None
    """Slices [start, stop) (default: every slice)."""
    y: Span | None = None
    """Rows [start, stop) (default: every row)."""
    x: Span | None = None
    """Columns [start, stop) (default: every column)."""

    @model_validator(mode="after")
    def _ordered(self) -> RegionConfig:
        for axis in ("z", "y", "x"):
            span = getattr(self, axis)
            if span is not None and span[0] >= span[1]:
                raise ValueError(f"{axis} {span}: start must be below stop ([start, stop), stop excluded)")
        return self

    def box(self, shape: Sequence[int], *, key: str = "split") -> Box:
        """(start, stop) per axis (z, y, x) in a volume of `shape`; a stop beyond the volume is an error."""
        spans = []
        for axis, size in zip(("z", "y", "x"), shape, strict=True):
            span = getattr(self, axis)
            if span is None:
                spans.append((0, int(size)))
                continue
            if span[1] > size:
                raise InputError(
                    f"config {key}.region.{axis} {span} reaches past the volume's {size} {AXIS_WORDS[axis]}; "
                    f"keep stop <= {size}"
                )
            spans.append((span[0], span[1]))
        return spans[0], spans[1], spans[2]


AXIS_WORDS = {"z": "slices", "y": "rows", "x": "columns"}
ROLES = ("train", "val", "test")
ROLE_WORDS = {
    "train": "the net trains on them",
    "val": "validation",
    "test": "the metrics are reported on them",
}


class SplitConfig(Section):
    """One source of the split: a labelled volume (or a region of it) and which slices train, validate, test.

    `split:` is one such entry or a list of them (several volumes, several annotated crops of one).
    """

    KEY: ClassVar[str] = "split"

    volume: VolumeName
    """Name of the labelled volume (a key of volumes)."""
    name: VolumeName | None = None
    """This source's name in logs, metrics and the report (default: the volume's, numbered where several)."""
    region: RegionConfig | None = None
    """Only this box of the volume is used, e.g. an annotated crop (default: the whole volume)."""
    train: Slices = []
    """Training slices ("a-b", "0,3,5-7", "all" or a list; volume indices, within region.z)."""
    val: Slices = []
    """Validation slices (best checkpoint by IoU); may be empty."""
    test: Slices = []
    """Held-out slices the metrics are reported on; may be empty where another entry has some."""

    def box(self, shape: Sequence[int], *, key: str = "split") -> Box:
        """(start, stop) per axis (z, y, x) of the entry's part of a volume of `shape`."""
        region = self.region if self.region is not None else RegionConfig()
        return region.box(shape, key=key)


def split_entries(split: SplitConfig | Mapping[str, Any] | Sequence[Any] | None) -> list[SplitConfig]:
    """The entries of a split in order, whatever its form (one entry, a list, None for none)."""
    if split is None:
        return []
    if isinstance(split, SplitConfig | Mapping):
        return [SplitConfig.from_dict(split)]
    return [SplitConfig.from_dict(entry) for entry in split]


def source_names(entries: Sequence[SplitConfig]) -> list[str]:
    """The name of each entry: its `name`, else its volume's, numbered (volume-1, ...) where a volume has
    several entries; two entries of one name are an InputError."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.volume] = counts.get(entry.volume, 0) + 1
    seen: dict[str, int] = {}
    names = []
    for entry in entries:
        seen[entry.volume] = seen.get(entry.volume, 0) + 1
        names.append(
            entry.name
            or (entry.volume if counts[entry.volume] == 1 else f"{entry.volume}-{seen[entry.volume]}")
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"split: two entries are named {repeated[0]!r}; give each entry its own name")
    return names


def primary_entry(entries: Sequence[SplitConfig]) -> SplitConfig | None:
    """The entry the report's figures and the exported model's test image come from: the first with test
    slices (else the first)."""
    return next((entry for entry in entries if entry.test not in ("", [])), entries[0] if entries else None)


class WeightsConfig(Section):
    """The paper's border weight map w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2))."""

    KEY: ClassVar[str] = "weights"

    w0: Annotated[float, Field(ge=0)] = 10.0
    """Weight of the border term (paper: 10)."""
    sigma: Annotated[float, Field(gt=0)] = 5.0
    """Width of the border term in pixels (paper: ~5)."""
    connectivity: Literal[1, 2] = 1
    """Cells of binary labels: 1 = 4-neighbour, 2 = 8-neighbour components."""


class ModelConfig(Section):
    """The valid-convolution U-Net (paper: depth 4, base_channels 64)."""

    KEY: ClassVar[str] = "model"

    depth: Annotated[int, Field(ge=1, le=6)] = 4
    """Number of 2x2 poolings (paper: 4)."""
    base_channels: Annotated[int, Field(ge=1, le=1024)] = 8
    """Channels of the first level, doubling per level (paper: 64; 8 trains in minutes on a CPU)."""
    dropout: Annotated[float, Field(ge=0, le=1)] = 0.5
    """Drop-out at the end of the contracting path."""
    norm: Literal["none", "batch"] = "none"
    """Normalisation after each convolution: none (the paper) or batch (faster convergence per CPU minute)."""


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


DEFAULT_VOLUMES = {"synthetic": VolumeConfig(synthetic=SyntheticConfig(), voxel_size=[50.0, 4.0, 4.0])}
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
    evaluate: EvaluateConfig = EvaluateConfig()
    """Metrics on the test slices."""
    export: ExportConfig = ExportConfig()
    """The bioimage.io package written for every trained model."""
    ablation: bool = False
    """Also train and evaluate a model with class-balancing weights only (what the border term buys)."""
    pretrained: ModelSourceConfig | None = None
    """A trained model to predict every volume with: nothing is trained, labels and split are optional."""

    @model_validator(mode="after")
    def _split_fits(self) -> Config:
        if self.split is None:
            if self.pretrained is None:
                raise InputError(
                    "split: training needs a split naming a labelled volume and its slices; give one, or set "
                    "pretrained to predict with a trained model"
                )
        else:
            check_split(self)
        if self.pretrained is not None and self.ablation:
            raise InputError("ablation trains a second model; it does not apply with pretrained: drop one")
        if self.pretrained is not None and self.train.init_from is not None:
            raise InputError(
                "train.init_from fine-tunes a model, pretrained trains none (it only predicts): drop one"
            )
        return self

    def split_entries(self) -> list[SplitConfig]:
        """The split's entries (one for the single-mapping form, none without a split)."""
        return split_entries(self.split)

    def split_keys(self) -> list[str]:
        """The config key of each entry, for messages: `split`, or `split[i]` in the list form."""
        return split_keys(self.split)

    def split_volumes(self) -> list[str]:
        """Every volume the split names, in order, once each."""
        return list(dict.fromkeys(entry.volume for entry in self.split_entries()))

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


def split_keys(split: Any) -> list[str]:
    """The config key of each entry of a split: `split` for the single-mapping form, else `split[i]`."""
    if split is None:
        return []
    if isinstance(split, SplitConfig | Mapping):
        return ["split"]
    return [f"split[{index}]" for index in range(len(split))]


def check_split(config: Config) -> None:
    """Every entry names a labelled volume; the slices and regions of synthetic volumes (whose shapes the
    config states) are checked here, the others' once their shapes are known (`check_entries`)."""
    entries, keys = config.split_entries(), config.split_keys()
    source_names(entries)
    for entry, key in zip(entries, keys, strict=True):
        if entry.volume not in config.volumes:
            raise InputError(
                f"{key}.volume {entry.volume!r} is not a key of volumes ({', '.join(config.volumes)}); "
                "name one of them"
            )
        volume = config.volumes[entry.volume]
        if not volume.labelled:
            raise InputError(
                f"{key}.volume {entry.volume!r} has no labels; add volumes.{entry.volume}.labels"
            )
    for role, example in (("train", "0-9"), ("test", "12-15")):
        if all(getattr(entry, role) in ("", []) for entry in entries):
            single = keys == ["split"]
            what = f"split.{role} names no slices" if single else f"no entry of split has {role} slices"
            raise InputError(f'{what}; give some, e.g. {role}: "{example}" ({ROLE_WORDS[role]})')
    shapes = {
        name: tuple(volume.synthetic.shape)
        for name, volume in config.volumes.items()
        if volume.synthetic is not None
    }
    check_entries(entries, keys, shapes)


def check_entries(
    entries: Sequence[SplitConfig],
    keys: Sequence[str],
    shapes: Mapping[str, Sequence[int]],
    *,
    files: Mapping[str, str] | None = None,
) -> list[dict[str, list[int]] | None]:
    """The slices of each entry whose volume's (z, y, x) shape is in `shapes` (None for the others).

    Out-of-range slices or regions, and train / val / test pixels shared within an entry or between two
    entries of one volume, are InputErrors naming the keys (and the volume's file, from `files`).
    """
    chosen: list[dict[str, list[int]] | None] = []
    for entry, key in zip(entries, keys, strict=True):
        shape = shapes.get(entry.volume)
        where = (files or {}).get(entry.volume)
        what = f"volume {entry.volume!r}" + (f" ({where})" if where else "")
        chosen.append(
            None if shape is None else check_slices(entry, shape, what=what, key=key, need_train=False)
        )
    for first, second in itertools.combinations(range(len(entries)), 2):
        a, b, slices_a, slices_b = entries[first], entries[second], chosen[first], chosen[second]
        if a.volume != b.volume or slices_a is None or slices_b is None:
            continue
        shape = shapes[a.volume]
        if not _boxes_meet(a.box(shape, key=keys[first])[1:], b.box(shape, key=keys[second])[1:]):
            continue
        for role_a, role_b in itertools.permutations(ROLES, 2):
            shared = sorted(set(slices_a[role_a]) & set(slices_b[role_b]))
            if shared:
                where = (files or {}).get(a.volume)
                raise InputError(
                    f"{keys[first]}.{role_a} and {keys[second]}.{role_b} share pixels of slices "
                    f"{shared[:5]} of volume {a.volume!r}" + (f" ({where})" if where else "") + ": held-out "
                    "pixels must not be trained or validated on; make the slices or the regions disjoint"
                )
    return chosen


def _boxes_meet(first: Sequence[tuple[int, int]], second: Sequence[tuple[int, int]]) -> bool:
    """Whether two boxes of [start, stop) spans share a pixel."""
    return all(a < d and c < b for (a, b), (c, d) in zip(first, second, strict=True))


def check_slices(
    split: SplitConfig, shape: Sequence[int], *, what: str, key: str = "split", need_train: bool = True
) -> dict[str, list[int]]:
    """The entry's slices in a volume of (z, y, x) `shape`: a region or slices outside it and roles that
    share slices are InputErrors naming `key`. "all" means every slice of the entry's region."""
    (z_start, z_stop), _, _ = split.box(shape, key=key)
    slices = int(shape[0])
    chosen: dict[str, list[int]] = {}
    for role in ROLES:
        spec = getattr(split, role)
        try:
            if isinstance(spec, str) and spec.strip().lower() == "all":
                chosen[role] = list(range(z_start, z_stop))
            else:
                chosen[role] = select_slices(spec, slices, what=f"{key}.{role}")
        except InputError as error:
            raise InputError(f"{error} ({what} has {slices} slices)") from None
        outside = [index for index in chosen[role] if not z_start <= index < z_stop]
        if outside:
            raise InputError(
                f"{key}.{role}: slices {outside[:5]} lie outside {key}.region.z [{z_start}, {z_stop}); name "
                "slices inside the region"
            )
    if need_train and not chosen["train"]:
        raise InputError(f'{key}.train names no slices; give some, e.g. "0-9"')
    for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = sorted(set(chosen[first]) & set(chosen[second]))
        if shared:
            raise InputError(
                f"{key}.{first} and {key}.{second} share slices {shared[:5]} of {what}: held-out slices must "
                f"not be trained or validated on; make the ranges disjoint"
            )
    return chosen


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` merged into `base` as Snakemake merges a --configfile into config.yaml, except volumes.

    Sections merge key by key; `volumes` of the override replace the base's (a user's volumes are the run's
    only ones), and with them the base's `split`, which names the base's volumes (none, unless the
    override gives one). The Snakefile applies this to Snakemake's own merge (idempotent), the CLI to its
    files.
    """
    merged = _deep_merge(copy.deepcopy(dict(base)), override)
    if "volumes" in override:
        merged["volumes"] = copy.deepcopy(override["volumes"])
        merged["split"] = copy.deepcopy(override.get("split"))
    return merged


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_config(values: Mapping[str, Any], *, origin: str = "config") -> Config:
    """Validate a merged config mapping; errors name each key (prefixed `origin`) and what to do."""
    if "volumes" in values and not values["volumes"]:
        raise InputError(f"{origin} volumes: names no volume; give at least one (see config.yaml)")
    try:
        return Config.model_validate(dict(values))
    except ValidationError as error:
        raise config_error(error, values, prefix="", origin=origin) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping; a missing, unreadable or non-mapping file is an InputError."""
    target = Path(path)
    if not target.is_file():
        raise InputError(f"config file {target} does not exist; check the path")
    try:
        values = yaml.safe_load(target.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InputError(f"config file {target} cannot be read as YAML ({error}); fix its syntax") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(f"config file {target} holds a {type(values).__name__}, not a mapping of sections")
    return values


def load_config_files(paths: Sequence[str | Path]) -> Config:
    """The model's defaults with each file merged in turn (as `snakemake --configfile a.yaml b.yaml`)."""
    merged: dict[str, Any] = Config().dump()
    for path in paths:
        merged = merge_config(merged, read_config_file(path))
    names = ", ".join(str(p) for p in paths) or "the defaults"
    return load_config(merged, origin=f"config ({names})")


def config_error(error: ValidationError, values: Any, *, prefix: str, origin: str = "config") -> InputError:
    """One InputError for a pydantic ValidationError: a line per offending key, its value and the fix."""
    lines: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    alternatives: set[str] = set()  # keys whose messages only say the value is not another union member
    for item in error.errors():
        path = _key_path(item["loc"], values)
        key = ".".join(([prefix] if prefix else []) + path)
        messages = lines.setdefault(key, [])
        message = _explain(item)
        if item["type"] in UNION_ALTERNATIVES:
            if messages:
                continue  # the list alternative of a value that was meant as text
            alternatives.add(key)
        else:
            alternatives.discard(key)
        if message not in messages:
            messages.append(message)
        shown.setdefault(key, _shown(item))
    for key in alternatives:  # a mapping meant as one split entry need not be told it is no list
        if any(other.startswith(f"{key}.") for other in lines):
            del lines[key]
    body = "; ".join(
        f"{key}: {' or '.join(messages)}{shown[key]}" if key else " ".join(messages)
        for key, messages in lines.items()
    )
    return InputError(f"{origin} {body}")


def _key_path(loc: Iterable[Any], values: Any) -> list[str]:
    """The config keys of a pydantic error location (its union-member tags dropped)."""
    path: list[str] = []
    node = values
    parts = list(loc)
    for index, part in enumerate(parts):
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            path.append(str(part))
            node = node[part]
        elif isinstance(part, str) and isinstance(node, Mapping) and part in node:
            path.append(part)
            node = node[part]
        elif (
            isinstance(part, str)
            and isinstance(node, Mapping | None)
            and index == len(parts) - 1
            and "[" not in part
        ):
            path.append(part)  # a key that is missing or unknown
        # anything else is a union member's tag such as "list[int]" or "constrained-float"
    return path


UNION_ALTERNATIVES = {"list_type", "model_type", "dict_type", "model_attributes_type"}
"""Pydantic's error types that only say a value is not of another member of a union (a list for a mapping)."""

PATTERN_HINTS = {
    SCRIPT_SAFE_PATTERN: (
        "must be one word of letters, digits and _.:,=/@+%&|~*()[]- (no spaces, quotes, $, ; or line breaks: "
        "it goes into a job script)"
    ),
    SLICES_PATTERN: 'must be slices such as "0-19" or "0,3,5-7" (inclusive ranges), "all", or a list',
    WALLTIME_PATTERN: "must be a time limit such as 02:00:00 or 1-12:00:00 ([days-]hours[:min[:sec]])",
    SHA256_PATTERN: "must be 64 lower-case hexadecimal digits (sha256sum prints them)",
    NAME_PATTERN: "must be letters, digits, _ and - only",
}


def _explain(item: Mapping[str, Any]) -> str:
    """What is wrong with one value and how to fix it."""
    kind = item["type"]
    if kind == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") in PATTERN_HINTS:
        return PATTERN_HINTS[item["ctx"]["pattern"]]
    if kind == "extra_forbidden":
        return "unknown key; remove or rename it (config.yaml lists every key with its meaning)"
    if kind == "missing":
        return "required; add it (see config.yaml)"
    message = str(item["msg"]).removeprefix("Value error, ")
    value = item.get("input")
    if kind in ("float_type", "int_type") and isinstance(value, str) and _is_number(value):
        return f"{message} (YAML reads {value} as text: write it with a dot, e.g. 1.0e-3)"
    if kind == "bool_type" and isinstance(value, str) and value.lower() in ("true", "false"):
        return f"{message} (snakemake's --config reads {value} as text: write {value.capitalize()} there)"
    return message


def _shown(item: Mapping[str, Any]) -> str:
    """The offending value, when it is short enough to quote."""
    value = item.get("input")
    if item["type"] in ("missing", "extra_forbidden") or not (
        isinstance(value, str | int | float | bool) or value is None
    ):
        return ""
    return f" (got {json.dumps(value)})"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Schema(GenerateJsonSchema):
    """Pydantic's JSON schema without the generated titles (the descriptions say it all)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: Any) -> Any:
        generated = super().model_schema(schema)
        generated.pop("title", None)
        return generated


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config (what workflow/schemas/config.schema.yaml holds)."""
    schema = Config.model_json_schema(schema_generator=_Schema)
    return {"$schema": SCHEMA_URI, **schema}


def schema_yaml() -> str:
    """The schema file's text: a header, then the schema as YAML (keys in the model's order)."""
    header = "# Generated from unetflow/config.py by `unetflow schema`; a test keeps the two equal.\n"
    return header + yaml.safe_dump(json_schema(), sort_keys=False, width=110)
