"""The split: which slices of which labelled volumes (or regions of them) train, validate and test.

`split:` is one entry (a mapping) or a list of entries, each a labelled volume or a region of it with its
train / val / test slices: `split_entries` gives the list whatever the form, `source_names` their names, and
the checks refuse slices outside a volume and pixels shared between roles, naming the keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import Field, model_validator

from unetflow.config.base import Section, Slices, VolumeName
from unetflow.config.slices import select_slices
from unetflow.errors import InputError

if TYPE_CHECKING:
    from unetflow.config.model import VolumeConfig

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


Split = SplitConfig | list[SplitConfig]
"""A split as the config holds it: one entry, or a list of entries."""


def split_entries(split: Split | None) -> list[SplitConfig]:
    """The entries of a split in order, whatever its form (one entry, a list, None for none)."""
    if split is None:
        return []
    if isinstance(split, SplitConfig):
        return [split]
    return list(split)


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


def split_keys(split: Split | None) -> list[str]:
    """The config key of each entry of a split: `split` for the single-mapping form, else `split[i]`."""
    if split is None:
        return []
    if isinstance(split, SplitConfig):
        return ["split"]
    return [f"split[{index}]" for index in range(len(split))]


def check_split(split: Split, volumes: Mapping[str, VolumeConfig]) -> None:
    """Every entry names a labelled volume; the slices and regions of synthetic volumes (whose shapes the
    config states) are checked here, the others' once their shapes are known (`check_entries`)."""
    entries, keys = split_entries(split), split_keys(split)
    source_names(entries)
    for entry, key in zip(entries, keys, strict=True):
        if entry.volume not in volumes:
            raise InputError(
                f"{key}.volume {entry.volume!r} is not a key of volumes ({', '.join(volumes)}); "
                "name one of them"
            )
        volume = volumes[entry.volume]
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
        for name, volume in volumes.items()
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
