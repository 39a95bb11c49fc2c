"""The volume sections of the configuration: where a volume comes from (a download, a local file or
folder, a chunked volume read in place), its labels, the embedded generator, and the volume itself with its
voxel size. Re-exported by unetflow.config.model, which holds every other section and Config."""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Annotated, ClassVar, Literal
from urllib.parse import unquote, urlparse

from pydantic import Field, model_validator

from unetflow.config.base import ScriptSafe, Section
from unetflow.config.ctc import CTCSequenceConfig
from unetflow.config.patterns import SHA256_PATTERN
from unetflow.readers.registry import format_from_suffix, format_names, reader_for
from unetflow.stores import StoreOptions

FORMAT_NAMES = format_names(aliases=True)
"""Input formats a source may name (aliases included): the reader registry's (unetflow.readers)."""
MAX_SYNTHETIC_VOXELS = 2**29
"""The embedded generator builds a volume in memory (about 5 bytes a voxel): at most 512 Mi voxels."""
MAX_SYNTHETIC_VOXELS_3D = 2**27
"""Its 3-D mode keeps the whole volume's geometry at once (about 25 bytes a voxel): at most 128 Mi voxels."""

VoxelSize = Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=3, max_length=3)]
UNSTATED_VOXEL_SIZE = (1.0, 1.0, 1.0)
"""The voxel size of an imported volume whose config states none and whose file carries none."""


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
        volume = isinstance(self, SourceConfig)
        schemes = ("http://", "https://", "file://", *(STORE_SCHEMES if volume else ()))
        if self.url is not None and not self.url.startswith(schemes):
            also = " (s3:// and gs:// for a chunked volume read in place)" if volume else ""
            raise ValueError(f"url {self.url!r} must start with http://, https:// or file://{also}")
        if volume and self.in_place:  # type: ignore[attr-defined]
            return self
        if self.filename in (".", ".."):
            raise ValueError(f"filename {self.filename!r} names a folder; give the file's name")
        if self.path is not None and self.filename is not None:
            raise ValueError("filename applies to url sources only (a path is used in place); drop it")
        if self.url is not None and self.local_name in ("", ".", ".."):
            raise ValueError(f"url {self.url!r} ends in no file name; set filename")
        return self


STORE_SCHEMES = ("s3://", "gs://")
"""URL schemes only a chunked volume read in place may have (nothing is downloaded from them)."""


class SourceConfig(OriginConfig):
    """Where one image volume comes from: a download, a local file or folder, or a chunked volume at a URL
    (s3://, gs://, https://, file://) read in place chunk by chunk."""

    format: Literal[FORMAT_NAMES] | None = None  # type: ignore[valid-type]
    """File format (a name of unetflow's readers); inferred from the path or URL when null."""
    member: str | None = None
    """HDF5 dataset, or path of an array or image inside a Zarr or N5 store."""
    level: Annotated[int, Field(ge=0)] | str | None = None
    """Resolution level of an OME-Zarr / N5 multiscale image or precomputed scale (index, path or key)."""
    anon: bool = False
    """url read in place from a public bucket: unsigned requests, no credentials needed."""
    endpoint_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    """url on an S3-compatible store that is not AWS (an institute's): its address, e.g. https://s3.lab.org."""
    profile: ScriptSafe | None = None
    """url on S3: a named profile of ~/.aws/credentials (null: the standard chain: AWS_* variables,
    AWS_PROFILE, ~/.aws, the instance role). Credentials never go in the config."""

    @property
    def in_place(self) -> bool:
        """Whether this is a url read where it is (a Zarr, N5 or precomputed volume; s3:// and gs:// always),
        not downloaded: the format named, else the URL's suffix (.zarr, .n5) or precomputed:// prefix."""
        if self.url is None:
            return False
        if self.url.startswith(STORE_SCHEMES):
            return True
        name = self.format or format_from_suffix(self.url)
        return name is not None and reader_for(name).remote

    @property
    def store_options(self) -> StoreOptions:
        """How to reach the url's store (no secrets: the credential chains supply those)."""
        return StoreOptions(anon=self.anon, endpoint_url=self.endpoint_url, profile=self.profile)

    @model_validator(mode="after")
    def _in_place(self) -> SourceConfig:
        reach = [k for k in ("anon", "endpoint_url", "profile") if getattr(self, k) not in (False, None)]
        if not self.in_place:
            if reach:
                raise ValueError(f"{', '.join(reach)}: only for a url read in place (s3://, gs://); drop it")
            return self
        if self.sha256 is not None:
            raise ValueError(
                f"url {self.url} is a chunked volume read in place, chunk by chunk, never downloaded whole: "
                "drop sha256 (it applies to single files such as TIFF or HDF5, which are downloaded)"
            )
        if self.filename is not None:
            raise ValueError(f"url {self.url} is read in place, not downloaded to a file: drop filename")
        name = self.format or format_from_suffix(self.url)  # type: ignore[arg-type]
        if name is not None and not reader_for(name).remote:
            raise ValueError(
                f"url {self.url}: {name} is not read from a URL in place (Zarr, N5 and precomputed are); "
                "give a http(s):// or file:// url with sha256 to download it, or convert it to OME-Zarr"
            )
        if self.endpoint_url is not None and not self.url.startswith("s3://"):  # type: ignore[union-attr]
            raise ValueError("endpoint_url applies to s3:// urls (S3-compatible stores); drop it")
        return self


class ModelSourceConfig(OriginConfig):
    """A trained model: a unetflow checkpoint (.pt), downloaded or used in place."""


class LabelSourceConfig(SourceConfig):
    """Where a volume's labels come from (instance ids, or binary with cell interior non-zero)."""

    invert: bool = False
    """Binary labels whose foreground is the membrane: invert so that 0 = membrane."""
    ignore: Annotated[int, Field(ge=1)] | None = None
    """Label value of unannotated pixels (sparse labels): no loss, no class, no border, no metric there."""
    separate: Annotated[int, Field(ge=0, le=64)] | None = None
    """Instance ids whose cells touch: background forced this many pixels wide where two ids meet (the
    paper's Fig. 3; unetflow.data.instances), at import; 0: none. null: none, and the import warns where
    cells touch and refuses dense ids (connectomics ground truth without membrane pixels)."""
    separate_in: Literal["slice", "volume"] = "slice"
    """Where `separate` finds touching cells: in each 2-D slice (serial sections, time-lapse frames) or in
    3-D (isotropic volumes; also across slices)."""


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
    mode: Literal["2d", "3d"] = "2d"
    """2d: every slice a tessellation of its own; 3d: neurites that run through the volume, cut as the
    volume's voxel_size says (z over y: 1 isotropic, 12.5 for 50 nm sections of 4 nm pixels; null: 1)."""
    tilt: Annotated[float, Field(ge=0, le=90)] = 30.0
    """3d: degrees between the neurites' main direction and z (0: along z; 90: lying in the slices)."""
    wander: Annotated[float, Field(ge=0)] = 0.6
    """3d: how far a neurite drifts sideways over two diameters of its length, in diameters."""

    @model_validator(mode="after")
    def _fits_memory(self) -> SyntheticConfig:
        voxels = math.prod(self.shape)
        limit = MAX_SYNTHETIC_VOXELS_3D if self.mode == "3d" else MAX_SYNTHETIC_VOXELS
        if voxels > limit:
            raise ValueError(
                f"shape {self.shape} is {voxels:,} voxels; the {self.mode} generator builds the volume in "
                f"memory and takes at most {limit:,}: make it smaller"
            )
        if min(self.shape[1:]) < 16:
            raise ValueError(f"shape {self.shape}: height and width must be at least 16 pixels")
        return self


class VolumeConfig(Section):
    """One volume: the embedded generator, or raw (and optional labels) sources."""

    KEY: ClassVar[str] = "volumes.<name>"

    synthetic: SyntheticConfig | None = None
    """The embedded EM-like generator (no download)."""
    ctc: CTCSequenceConfig | None = None
    """A sequence of the Cell Tracking Challenge dataset of `ctc:` (made by that section)."""
    raw: SourceConfig | None = None
    """The image volume."""
    labels: LabelSourceConfig | None = None
    """Its labels (instance ids or binary interior); volumes without labels are only predicted."""
    voxel_size: VoxelSize | None = None
    """Voxel size (z, y, x) written to the OME-Zarr metadata (null: not stated, the volume's own metadata
    where it is read in place, else 1 x 1 x 1)."""
    unit: Annotated[str, Field(pattern=r"^[a-z]+$")] = "nanometer"
    """Unit of voxel_size (an OME-NGFF space unit)."""

    @model_validator(mode="after")
    def _one_kind(self) -> VolumeConfig:
        if (self.synthetic is not None) + (self.raw is not None) + (self.ctc is not None) != 1:
            raise ValueError("give exactly one of synthetic and raw")
        if self.ctc is not None and self.labels is not None:
            raise ValueError("a sequence of a ctc dataset takes its labels from the dataset; drop labels")
        if self.synthetic is not None and self.labels is not None:
            raise ValueError("a synthetic volume makes its own labels; drop labels")
        if self.labels is not None and self.labels.in_place:
            raise ValueError(
                "labels are imported for training and evaluation: give them as a path, or as a url with "
                "sha256 to download (a url read in place is for raw volumes that are only predicted)"
            )
        three_d = self.synthetic is not None and self.synthetic.mode == "3d"
        if three_d and self.voxel_size and not math.isclose(*self.voxel_size[1:], rel_tol=1e-6):
            raise ValueError(
                f"voxel_size {self.voxel_size}: a 3d synthetic volume has square pixels in-plane; give y = x "
                "(z sets the section spacing)"
            )
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
        """The url sources of this volume downloaded, by local file name (raw and labels of one URL share
        one); a url read in place is not among them."""
        found: dict[str, SourceConfig] = {}
        for source in (self.raw, self.labels):
            if source is not None and source.url is not None and not source.in_place:
                found.setdefault(source.local_name, source)
        return found

    @property
    def labelled(self) -> bool:
        """Whether the volume has ground truth (synthetic volumes always do, ctc training sequences too)."""
        training = self.ctc is not None and self.ctc.role == "training"
        return self.synthetic is not None or self.labels is not None or training
