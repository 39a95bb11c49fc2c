"""The cell tracking run (the paper's Table 2): a Cell Tracking Challenge dataset and the protocol it is
scored by, as one config section, `ctc:`.

The challenge's test gold is secret, so the run trains on one sequence's gold frames and scores the other
(both directions: a model per training sequence, `train01` scored on 02 and `train02` on 01), and trains a
`final` model on every training sequence that predicts the challenge's test sequences (`test_archive`) in
the submission layout. The section names the dataset and its archive; the volumes (one per sequence) and the
models follow from it (`ctc_volumes`, `fold_models`), replacing `volumes:` and `split:`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from unetflow.config.base import Section
from unetflow.config.patterns import SHA256_PATTERN
from unetflow.config.split import SplitConfig

SequenceName = Annotated[str, Field(pattern=r"^\d{2}$")]
FINAL_MODEL = "final"
"""The model trained on every training sequence, which predicts the challenge's test sequences."""
TEST_PREFIX = "test-"
"""Volumes of the challenge's test sequences are named test-01, test-02."""


def fold_model(sequence: str) -> str:
    """The model trained on `sequence` alone (scored on the others)."""
    return f"train{sequence}"


class CTCSequenceConfig(Section):
    """One sequence of the dataset of `ctc:` as a volume (made by the `ctc:` section, not by hand)."""

    KEY: ClassVar[str] = "volumes.<name>.ctc"

    sequence: SequenceName
    """The sequence's folder in the dataset (01, 02)."""
    role: Literal["training", "test"] = "training"
    """training: of the training archive, with gold; test: of the test archive (predicted only)."""


class CTCConfig(Section):
    """A Cell Tracking Challenge dataset, trained and scored as the challenge scores (paper Table 2)."""

    KEY: ClassVar[str] = "ctc"

    dataset: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.+-]+$")]
    """The dataset's name, e.g. DIC-C2DH-HeLa or PhC-C2DH-U373 (its folder; Table 2's row)."""
    archive: Annotated[str, Field(min_length=1)]
    """The training archive: an http(s):// or file:// URL of the .zip, a local .zip or its unpacked folder."""
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)] | None = None
    """Expected SHA-256 of the archive (null: not checked, the one fetched is recorded in the results)."""
    test_archive: str | None = None
    """The challenge's test archive (sequences without gold), predicted by the final model; null: none."""
    test_sha256: Annotated[str, Field(pattern=SHA256_PATTERN)] | None = None
    """Expected SHA-256 of the test archive."""
    sequences: Annotated[list[SequenceName], Field(min_length=2)] = ["01", "02"]
    """The training sequences: each trains a model scored on the others."""
    frame_shape: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=2)] | None = None
    """Frame height and width the dataset must have (null: not checked)."""
    pixel_size: Annotated[float, Field(gt=0)] | None = None
    """Micrometres per pixel, written to the imported volumes' metadata."""
    separate: Annotated[int, Field(ge=0, le=64)] = 2
    """Background forced this many px wide where two gold cells touch (paper Fig. 3); 0: none."""
    partial: Literal["tra", "none"] = "tra"
    """tra: a tracking marker of a gold frame that overlaps no gold cell marks a cell nobody traced, whose
    pixels are unannotated (not background); none: every pixel a gold frame leaves 0 is background."""
    partial_margin: Annotated[int, Field(ge=0)] = 15
    """With partial tra: px an untraced cell's marker grows into unannotated space (not into gold cells)."""
    normalize: Literal["percentile", "zscore"] = "percentile"
    """Input normalisation of each sequence: percentile (the `percentiles` mapped to 0 and 1, robust to
    saturated and dead pixels of 8- and 16-bit cameras) or zscore (mean and std, as the EM volumes)."""
    percentiles: Annotated[list[Annotated[float, Field(ge=0, le=100)]], Field(min_length=2, max_length=2)] = [
        1.0,
        99.8,
    ]
    """The low and high percentiles of each sequence's grey values that normalise it to 0 and 1."""
    final: bool = True
    """Also train a model on every training sequence (it predicts the test sequences, where given)."""

    @model_validator(mode="after")
    def _checked(self) -> CTCConfig:
        if len(set(self.sequences)) != len(self.sequences):
            raise ValueError(f"sequences {self.sequences} name a sequence twice")
        low, high = self.percentiles
        if low >= high:
            raise ValueError(f"percentiles {self.percentiles}: the low one must be below the high one")
        if self.test_sha256 is not None and self.test_archive is None:
            raise ValueError("test_sha256 without test_archive; give the test archive or drop its sha256")
        return self

    def fold_models(self) -> list[str]:
        """The cross-sequence models, one per training sequence."""
        return [fold_model(sequence) for sequence in self.sequences]

    def models(self) -> list[str]:
        """Every model the run trains: the folds, and the final one."""
        return [*self.fold_models(), *([FINAL_MODEL] if self.final else [])]

    def training_sequences(self, model: str) -> list[str]:
        """The sequences a model trains on."""
        if model == FINAL_MODEL:
            return list(self.sequences)
        return [sequence for sequence in self.sequences if fold_model(sequence) == model]

    def model_split(self, model: str) -> list[SplitConfig]:
        """What a model trains on: every gold frame of its training sequences ("all": frames without gold
        hold no annotated pixel and are left out). No frame validates: a sequence has few gold frames (9 of
        DIC-HeLa's), each one trains, and the model is the last step's."""
        return [SplitConfig(volume=sequence, train="all") for sequence in self.training_sequences(model)]

    def scored_sequences(self, model: str) -> list[str]:
        """The sequences a fold model is scored on (none for the final model: the test gold is secret)."""
        if model == FINAL_MODEL:
            return []
        trained = self.training_sequences(model)
        return [sequence for sequence in self.sequences if sequence not in trained]

    def test_sequences(self) -> list[str]:
        """The challenge's test sequences the final model predicts (the same names as the training ones)."""
        return list(self.sequences) if self.test_archive is not None and self.final else []

    def predictions(self) -> list[tuple[str, str]]:
        """Every (model, volume) the run predicts: each fold on its scored sequences, the final model on the
        test sequences."""
        found = [(model, seq) for model in self.fold_models() for seq in self.scored_sequences(model)]
        found += [(FINAL_MODEL, f"{TEST_PREFIX}{sequence}") for sequence in self.test_sequences()]
        return found


def ctc_volumes(ctc: CTCConfig) -> dict[str, dict[str, object]]:
    """The volumes of a `ctc:` section (as config mappings): its training sequences by name, its test
    sequences as test-NN."""
    size = ctc.pixel_size
    common: dict[str, object] = {"unit": "micrometer"}
    if size is not None:
        common["voxel_size"] = [1.0, size, size]
    volumes: dict[str, dict[str, object]] = {
        sequence: {"ctc": {"sequence": sequence, "role": "training"}, **common} for sequence in ctc.sequences
    }
    for sequence in ctc.test_sequences():
        volumes[f"{TEST_PREFIX}{sequence}"] = {"ctc": {"sequence": sequence, "role": "test"}, **common}
    return volumes
