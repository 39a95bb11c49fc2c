"""The read interface every input format gives: a lazy (z, y, x) `Volume`, and the errors readers share.

A reader class per format (one module each) subclasses `Volume`: it states its name, aliases and how it
recognises a path, and it reads a box of its native array on demand. The base class maps the native axes
to (z, y, x) once for all formats: a 2-D image is one slice, leading axes of size one (OME's t and c) are
dropped, anything else is refused with an InputError.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from unetflow.errors import InputError
from unetflow.stores import Location, kind_of, store_error

if TYPE_CHECKING:
    import dask.array as da

Box = tuple[slice, slice, slice]
"""A region of a (z, y, x) volume: three slices with step 1, inside the volume."""
Index = int | slice
ChunkSet = set[tuple[int, int, int]]


def colour_error(source: str | Path, shape: tuple[int, ...]) -> InputError:
    """The error for an RGB/RGBA image where one grey-value channel is needed."""
    return InputError(
        f"{source}: a colour (RGB/RGBA) image of shape {shape}; unetflow needs single-channel grey values. "
        "Fix: convert it to greyscale (e.g. keep one channel) and save it again"
    )


def unreadable_error(source: str | Path, what: str, exc: Exception) -> InputError:
    """The error for a file that its format's library cannot parse (empty, corrupt, truncated, other)."""
    if "truncated" in str(exc).lower():
        return truncated_error(source, f"{type(exc).__name__}: {exc}")
    return InputError(
        f"{source}: cannot be read as {what} ({type(exc).__name__}: {exc}); the file is empty, corrupt or "
        "of another format. Fix: download or export it again, or name its real format"
    )


def read_failure(source: Location, what: str, exc: Exception) -> InputError:
    """The error for a read that failed: the store's problem (denied, missing, unreachable) at a URL, else
    a file its format's library cannot parse."""
    if isinstance(exc, InputError):
        return exc
    if not source.is_local and kind_of(exc) is not None:
        return store_error(source, exc)
    return unreadable_error(source, what, exc)


def open_tensorstore(driver: dict[str, Any], location: Location, what: str) -> Any:
    """Open a tensorstore `driver` spec (N5, neuroglancer precomputed) on `location` for reading, its
    requests retried with backoff and, at a URL, the chunks it fetched kept for the next blocks without
    asking again; a failure is the store's problem named, or an unreadable volume."""
    try:
        import tensorstore as ts

        spec = {**driver, "kvstore": location.kvstore()}
        if not location.is_local:
            spec["recheck_cached_data"] = "open"  # an input does not change while read: chunks kept are fresh
        return ts.open(spec, read=True, context=ts.Context(location.tensorstore_context())).result()
    except Exception as exc:
        raise read_failure(location, what, exc) from exc


def truncated_error(source: str | Path, detail: str) -> InputError:
    """The error for a file cut short (an interrupted download or export): never read it partially."""
    return InputError(
        f"{source}: the file is truncated ({detail}); it ends before all the data it declares. "
        "Fix: download or export it again"
    )


def zyx_shape(shape: Sequence[int], source: str | Path) -> tuple[int, int, int]:
    """`shape` as (z, y, x): 2-D gets one slice, leading size-1 axes go; else an InputError."""
    dims = tuple(int(s) for s in shape)
    while len(dims) > 3 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) == 2:
        return (1, dims[0], dims[1])
    if len(dims) == 3:
        return (dims[0], dims[1], dims[2])
    raise InputError(
        f"{source}: a {len(dims)}-D array of shape {dims}; unetflow needs one grey-value channel as a "
        "(z, y, x) volume. Fix: save a single channel / time point (e.g. as a multi-page TIFF), or point "
        "member to a 3-D dataset"
    )


def zyx_of(values: Sequence[Any], ndim: int, *, pad: Any = 1) -> tuple[Any, Any, Any]:
    """The (z, y, x) entries of per-axis `values` of an `ndim`-D native array (z is `pad` for 2-D)."""
    items = list(values)
    if ndim == 2:
        return (pad, items[0], items[1])
    return (items[-3], items[-2], items[-1])


def _normalise(index: Index, size: int, axis: str) -> slice:
    if isinstance(index, slice):
        start, stop, step = index.indices(size)
        if step != 1:
            raise IndexError(f"axis {axis}: only contiguous slices (step 1) can be read, got step {step}")
        return slice(start, max(start, stop))
    position = int(index)
    if not -size <= position < size:
        raise IndexError(f"axis {axis}: index {position} is outside 0..{size - 1}")
    position %= size
    return slice(position, position + 1)


class Volume(ABC):
    """A (z, y, x) volume of any numeric dtype read lazily from its source: only the chunks a read needs.

    Attributes: `shape`, `dtype` (native byte order), `chunks` (storage chunk shape in z, y, x; None when
    unchunked), `fill_value` (value of never-written regions), `voxel_size` (z, y, x from the source's
    metadata; None when unknown), `source` (path[/member] for messages). Class attributes: `name`,
    `label` (for messages), `aliases`, `suffixes`, `chunked` (True: read in place; False: must be
    imported), `remote` (True: a URL of this format is read in place too), `takes_member`, `takes_level`,
    `description`.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    suffixes: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str]
    chunked: ClassVar[bool]
    remote: ClassVar[bool] = False
    takes_member: ClassVar[bool] = False
    takes_level: ClassVar[bool] = False

    _handle: Any = None
    _transient: ClassVar[tuple[str, ...]] = ("_handle", "_lock")
    """Attributes that are not pickled (open files, caches, the lock)."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    chunks: tuple[int, int, int] | None
    fill_value: int | float
    voxel_size: tuple[float, float, float] | None
    source: str

    @classmethod
    @abstractmethod
    def detect(cls, path: Path) -> bool:
        """Whether `path` (which exists) is of this format, from its suffix or its marker files."""

    def _init_geometry(
        self,
        *,
        source: str | Path,
        native_shape: Sequence[int],
        dtype: Any,
        native_chunks: Sequence[int] | None,
        fill_value: Any = 0,
        voxel_size: Sequence[float] | None = None,
    ) -> None:
        """Set the (z, y, x) view of a native array: its shape, chunks, fill value, voxel size."""
        self.source = str(source)
        self._handle = None
        self._native_ndim = len(native_shape)
        self.shape = zyx_shape(native_shape, source)
        self.dtype = np.dtype(dtype).newbyteorder("=")
        if self.dtype.kind not in "biuf":
            raise InputError(
                f"{source}: pixel type {self.dtype} is not supported (grey values must be real numbers); "
                "point to the grey-value image (member, for a container) or convert it to an integer or "
                "floating-point type"
            )
        self.chunks = None
        if native_chunks is not None:
            self.chunks = tuple(int(c) for c in zyx_of(native_chunks, self._native_ndim))  # type: ignore[assignment]
        self.fill_value = (
            0 if fill_value is None else fill_value.item() if hasattr(fill_value, "item") else fill_value
        )
        self.voxel_size = None
        if voxel_size is not None and len(voxel_size) >= 3:
            values = tuple(float(v) for v in voxel_size[-3:])
            if all(math.isfinite(v) and v > 0 for v in values):
                self.voxel_size = values  # type: ignore[assignment]
        self._lock = threading.RLock()

    @property
    def ndim(self) -> int:
        """Always 3: (z, y, x)."""
        return 3

    def native_key(self, box: Box) -> tuple[Any, ...]:
        """The index of `box` into the native array (leading size-1 axes at 0, a 2-D array without z)."""
        if self._native_ndim == 2:
            return (box[1], box[2])
        return (0,) * (self._native_ndim - 3) + box

    @abstractmethod
    def _read_box(self, box: Box) -> np.ndarray:
        """The values of `box` as a (z, y, x) array (any layout; the caller makes it native)."""

    def read(self, z: Index = slice(None), y: Index = slice(None), x: Index = slice(None)) -> np.ndarray:
        """The values of a region, reading only the chunks it touches; an int index drops its axis."""
        box = (
            _normalise(z, self.shape[0], "z"),
            _normalise(y, self.shape[1], "y"),
            _normalise(x, self.shape[2], "x"),
        )
        size = tuple(s.stop - s.start for s in box)
        if 0 in size:
            data = np.full(size, self.fill_value, dtype=self.dtype)
        else:
            data = np.asarray(self._read_box(box)).reshape(size)
            data = np.ascontiguousarray(data, dtype=self.dtype)
        drop = tuple(0 if isinstance(index, int | np.integer) else slice(None) for index in (z, y, x))
        return data[drop]

    def __getitem__(self, key: Index | tuple[Index, ...]) -> np.ndarray:
        """numpy-style basic indexing (ints and step-1 slices) over (z, y, x)."""
        items = key if isinstance(key, tuple) else (key,)
        if Ellipsis in items:
            at = items.index(Ellipsis)
            items = items[:at] + (slice(None),) * (4 - len(items)) + items[at + 1 :]
        if len(items) > 3:
            raise IndexError(f"{self.source}: a (z, y, x) volume takes at most 3 indices, got {len(items)}")
        return self.read(*items)

    def stored_chunks(self, z_range: tuple[int, int] | None = None) -> ChunkSet | None:
        """Grid coordinates (z, y, x) of the chunks physically stored, optionally only those overlapping
        voxels z_range = (start, stop); None where the format cannot tell (then read everything)."""
        return None

    def _z_chunk_range(self, z_range: tuple[int, int] | None) -> range | None:
        """The chunk rows along z that overlap the voxel interval `z_range` (None: all)."""
        if z_range is None or self.chunks is None:
            return None
        start, stop = max(0, int(z_range[0])), min(self.shape[0], int(z_range[1]))
        if stop <= start:
            return range(0)
        return range(start // self.chunks[0], (stop - 1) // self.chunks[0] + 1)

    def to_dask(self, *, chunks: tuple[int, int, int] | None = None) -> da.Array:
        """A dask array over the volume: by default one task per storage chunk (per slice when unchunked)."""
        blocks = chunks or self.chunks or (1, self.shape[1], self.shape[2])
        import dask.array as da

        return da.from_array(
            self, chunks=blocks, asarray=False, fancy=False, meta=np.empty((0, 0, 0), self.dtype)
        )

    def _open_handle(self) -> Any:
        """Open the native handle reads go through (a file, an array); readers that keep one override it."""
        raise NotImplementedError(f"{type(self).__name__} keeps no open handle")

    def _opened(self) -> Any:
        """The native handle, opened on first use (and again after `close` or unpickling)."""
        with self._lock:
            if self._handle is None:
                self._handle = self._open_handle()
            return self._handle

    def close(self) -> None:
        """Release open file handles; a later read opens them again."""
        self._release()

    def _release(self) -> None:
        """Drop the cached handle, closing it where it is a file."""
        handle, self._handle = self._handle, None
        close = getattr(handle, "close", None)
        if callable(close):
            close()

    def __del__(self) -> None:
        self._release()

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without open handles (for dask's distributed workers): each copy opens its own."""
        return {key: value for key, value in self.__dict__.items() if key not in self._transient}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.update(dict.fromkeys(self._transient))
        self._lock = threading.RLock()

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.source, self.shape, str(self.dtype))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.source!r}, shape={self.shape}, dtype={self.dtype}, "
            f"chunks={self.chunks}, voxel_size={self.voxel_size})"
        )
