"""A place that holds a volume or an output: a local path, or a URL on an object store or web server.

Local paths (and file:// URLs) go through the operating system as before; s3://, gs:// and http(s):// go
through fsspec (s3fs, gcsfs, aiohttp), whose credential chains are the ecosystem's: AWS_* environment
variables, AWS_PROFILE or `profile`, ~/.aws files and instance roles for s3://; Google's application default
credentials for gs://. A `Location` holds only the URL and `StoreOptions` (anon, endpoint_url, profile),
never a secret, so it can be logged, pickled to a dask worker and stored in a prediction's attributes.

Every request is retried on transient failures with exponential backoff (`unetflow.stores.retry`) and a
final failure is one InputError saying what to set (`unetflow.stores.errors`).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse, urlunparse

from unetflow.errors import InputError
from unetflow.stores import cache
from unetflow.stores.clients import aws_credentials, track_session
from unetflow.stores.errors import store_error
from unetflow.stores.retry import ATTEMPTS, FIRST_DELAY, RetryingStore, retrying

REMOTE_SCHEMES = ("s3", "gs", "gcs", "http", "https")
"""URL schemes read (and, where the store allows, written) in place; file:// is a local path."""
CONNECT_TIMEOUT = 10
"""Seconds to wait for a connection to a store before the attempt counts as failed (then retried)."""
READ_TIMEOUT = 60
"""Seconds to wait for a response body."""

T = TypeVar("T")


def scheme_of(text: str | os.PathLike[str]) -> str | None:
    """The lower-case scheme of a URL (`s3` of s3://...), or None for a plain path."""
    value = os.fspath(text)
    head, sep, _ = value.partition("://")
    if not sep or not head or not head.replace("+", "").replace("-", "").isalnum():
        return None
    return head.lower()


def is_url(text: str | os.PathLike[str] | Location) -> bool:
    """Whether `text` is a URL unetflow reads in place (s3, gs, http(s)) or a file:// URL."""
    if isinstance(text, Location):
        return not text.is_local
    return scheme_of(text) in (*REMOTE_SCHEMES, "file")


@dataclass(frozen=True)
class StoreOptions:
    """How to reach a store, as a config may say it: never credentials, only where and whether to sign.

    `anon`: unsigned requests (public buckets); `endpoint_url`: an S3-compatible store's address (an
    institute's, or a test server); `profile`: a named profile of ~/.aws/credentials.
    """

    anon: bool = False
    endpoint_url: str | None = None
    profile: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain form (for a prediction's attributes)."""
        return asdict(self)


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=32)
def filesystem(scheme: str, options: StoreOptions, *, asynchronous: bool = False) -> Any:
    """The fsspec filesystem of a scheme with these options (one per process, shared by threads; an
    asynchronous one, zarr's, has its HTTP session closed at exit).

    The libraries' own retries are switched off: `unetflow.stores.retry` retries every request with
    backoff, the same way for every scheme, and names the problem when it gives up.
    """
    fs = _new_filesystem(scheme, options, asynchronous=asynchronous)
    if asynchronous:
        track_session(fs)
    return fs


def _new_filesystem(scheme: str, options: StoreOptions, *, asynchronous: bool) -> Any:
    with _LOCK:
        if scheme == "s3":
            from unetflow.stores.s3 import ChunkS3FileSystem

            fs = ChunkS3FileSystem(
                anon=options.anon,
                endpoint_url=options.endpoint_url,
                profile=options.profile,
                asynchronous=asynchronous,
                skip_instance_cache=True,
                config_kwargs={
                    "retries": {"max_attempts": 1, "mode": "standard"},
                    "connect_timeout": CONNECT_TIMEOUT,
                    "read_timeout": READ_TIMEOUT,
                },
            )
            fs.retries = 1  # s3fs's own retry loop: ours does it for every scheme
            return fs
        if scheme == "gs":
            import gcsfs

            return gcsfs.GCSFileSystem(
                token="anon" if options.anon else None,
                asynchronous=asynchronous,
                skip_instance_cache=True,
            )
        from fsspec.implementations.http import HTTPFileSystem

        return HTTPFileSystem(asynchronous=asynchronous, skip_instance_cache=True)


class Location:
    """A local path or a URL, with the options to reach it; joins, reads, writes, lists and removes."""

    def __init__(self, target: str | os.PathLike[str], options: StoreOptions | None = None) -> None:
        text = os.fspath(target)
        scheme = scheme_of(text)
        self.options = options or StoreOptions()
        self.scheme: str | None = None
        self._path: Path | None = None
        self._key = ""
        if scheme is None:
            self._path = Path(text)
        elif scheme == "file":
            self._path = Path(unquote(urlparse(text).path))
        elif scheme in REMOTE_SCHEMES:
            self.scheme = "gs" if scheme == "gcs" else scheme
            self._key = text.split("://", 1)[1].rstrip("/")
            if not self._key:
                raise InputError(f"{text}: the URL names no bucket or host; give {scheme}://<bucket>/<path>")
        else:
            raise InputError(
                f"{text}: unetflow does not read {scheme}:// URLs; use s3://, gs://, https:// or file:// "
                "(or a local path)"
            )
        if self.options != StoreOptions() and self.scheme is None:
            raise InputError(f"{text}: anon, endpoint_url and profile apply to s3:// and gs:// URLs only")
        if self.options.endpoint_url and self.scheme != "s3":
            raise InputError(f"{text}: endpoint_url applies to s3:// URLs only (S3-compatible stores)")

    @classmethod
    def of(cls, value: str | os.PathLike[str] | Location, options: StoreOptions | None = None) -> Location:
        """`value` as a Location (itself when it is one)."""
        if isinstance(value, Location):
            return value
        return cls(value, options)

    # what it is
    @property
    def is_local(self) -> bool:
        """Whether this is a path on a local (or mounted) file system."""
        return self._path is not None

    @property
    def path(self) -> Path:
        """The local path (a URL has none: an error for the caller's bug)."""
        if self._path is None:
            raise ValueError(f"{self.url} is a URL, not a local path")
        return self._path

    @property
    def url(self) -> str:
        """The full URL (for a local place, its path)."""
        return str(self._path) if self._path is not None else f"{self.scheme}://{self._key}"

    @property
    def display(self) -> str:
        """The URL for messages: without any user:password@ or query a web address may carry."""
        if self.scheme not in ("http", "https"):
            return self.url
        parts = urlparse(self.url)
        return urlunparse(parts._replace(netloc=parts.hostname or "", query="", params=""))

    @property
    def bucket(self) -> str:
        """The bucket (s3, gs) or host (http) of a URL; "" for a local path."""
        if self._path is not None:
            return ""
        if self.scheme in ("http", "https"):
            return urlparse(self.url).hostname or ""
        return self._key.split("/", 1)[0]

    @property
    def endpoint_text(self) -> str:
        """Where requests go, for messages."""
        if self.scheme == "s3":
            return self.options.endpoint_url or "AWS S3"
        if self.scheme == "gs":
            return "Google Cloud Storage"
        if self.scheme in ("http", "https"):
            parts = urlparse(self.url)
            return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return "the local file system"

    @property
    def name(self) -> str:
        """The last part of the path."""
        return self.path.name if self._path is not None else PurePosixPath(self._key).name

    @property
    def stem(self) -> str:
        """The last part without its suffix."""
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        """The last part's suffix (".zarr")."""
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> Location:
        """The place one level up."""
        if self._path is not None:
            return Location(self._path.parent)
        return Location(f"{self.scheme}://{self._key.rsplit('/', 1)[0]}", self.options)

    def __truediv__(self, part: str) -> Location:
        part = str(part).strip("/")
        if not part:
            return self
        if self._path is not None:
            return Location(self._path / part)
        return Location(f"{self.scheme}://{self._key}/{part}", self.options)

    def with_name(self, name: str) -> Location:
        """The sibling called `name`."""
        return self.parent / name

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:
        if self._path is None:
            raise TypeError(f"{self.url} is a URL, not a local path")
        return os.fspath(self._path)

    def __repr__(self) -> str:
        return f"Location({self.url!r}, {self.options})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.url, self.options) == (other.url, other.options)

    def __hash__(self) -> int:
        return hash((self.url, self.options))

    # requests
    @property
    def fs(self) -> Any:
        """The (synchronous) fsspec filesystem of a URL."""
        return filesystem(str(self.scheme), self.options)

    @property
    def fspath(self) -> str:
        """The path fsspec takes: bucket/key for s3 and gs, the whole URL for http(s)."""
        return self.url if self.scheme in ("http", "https") else self._key

    def call(self, function: Callable[..., T], *args: Any, action: str = "read", **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on this store, retried on transient failures; else an InputError."""
        try:
            return retrying(lambda: function(*args, **kwargs))
        except (FileNotFoundError, InputError):
            raise
        except Exception as error:
            raise store_error(self, error, action=action) from error

    def missing_error(self, what: str = "volume") -> InputError:
        """The error for a `what` that is not here: a missing bucket told from a missing key (one request)."""
        if self._path is not None:
            return InputError(f"{self.url}: no such {what} (file or folder); check the path in the config")
        if self.scheme in ("s3", "gs"):
            bucket = Location(f"{self.scheme}://{self.bucket}", self.options)
            try:
                present = bool(retrying(lambda: self.fs.exists(bucket.fspath)))
            except Exception as error:
                return store_error(self, error)
            if not present:
                return store_error(
                    self, FileNotFoundError("NoSuchBucket: the specified bucket does not exist")
                )
        return store_error(self, FileNotFoundError(f"NoSuchKey: no {what} at {self.display}"))

    def exists(self) -> bool:
        """Whether an object or a prefix with objects below it is there."""
        if self._path is not None:
            return self._path.exists()
        return bool(self.call(self.fs.exists, self.fspath))

    def is_file(self) -> bool:
        """Whether a single object (file) is there."""
        if self._path is not None:
            return self._path.is_file()
        try:
            return bool(self.call(self.fs.isfile, self.fspath))
        except FileNotFoundError:
            return False

    def read_bytes(self) -> bytes:
        """The object's bytes; FileNotFoundError where there is none."""
        if self._path is not None:
            return self._path.read_bytes()
        return self.call(self.fs.cat_file, self.fspath)

    def read_text(self) -> str:
        """The object as UTF-8 text; FileNotFoundError where there is none."""
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Write the object whole: to a temporary name then renamed (a file), or one PUT (an object store
        shows an object only once all of it has arrived)."""
        if self._path is not None:
            from unetflow.atomic import atomic_path

            with atomic_path(self._path) as tmp:
                tmp.write_bytes(data)
            return
        self.call(self.fs.pipe_file, self.fspath, data, action="write")

    def write_text(self, text: str) -> None:
        """Write UTF-8 text whole (see write_bytes)."""
        self.write_bytes(text.encode())

    def unlink(self) -> None:
        """Delete the one object or file (nothing where there is none)."""
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            return
        try:
            self.call(self.fs.rm_file, self.fspath, action="delete")
        except FileNotFoundError:
            return

    def remove(self) -> None:
        """Delete the object or everything below the prefix (a folder, recursively); nothing where none."""
        if self._path is not None:
            from unetflow.atomic import remove

            remove(self._path)
            return
        keys = list(self.sizes(absolute=True))
        if keys:
            self.call(self.fs.rm, keys, action="delete")
        self.fs.invalidate_cache()

    def size(self) -> int | None:
        """Byte size of the object or file (None where there is none)."""
        if self._path is not None:
            try:
                return self._path.stat().st_size
            except (FileNotFoundError, NotADirectoryError):
                return None
        try:
            info = self.call(self.fs.info, self.fspath)
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("type") == "file" else None

    def listdir(self) -> list[str]:
        """Names directly below (files and folders, or objects and common prefixes); [] where none."""
        if self._path is not None:
            try:
                return sorted(entry.name for entry in os.scandir(self._path))
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            entries = self.call(self.fs.ls, self.fspath, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    def sizes(self, *, absolute: bool = False) -> dict[str, int]:
        """Every object (file) below, by its key relative to here (or its fsspec path), with its byte size:
        one listing of the prefix (pages of 1000 keys on S3), never a request per object."""
        if self._path is not None:
            found: dict[str, int] = {}
            root = self._path
            if root.is_file():
                return {"": root.stat().st_size}
            for folder, _, files in os.walk(root):
                for name in files:
                    path = Path(folder) / name
                    found[str(path) if absolute else path.relative_to(root).as_posix()] = path.stat().st_size
            return found
        try:
            listing = self.call(self.fs.find, self.fspath, detail=True, withdirs=False)
        except FileNotFoundError:
            return {}
        start = len(self.fspath.rstrip("/")) + 1
        return {
            (key if absolute else key[start:]): int(info.get("size") or 0)
            for key, info in listing.items()
            if info.get("type", "file") == "file"
        }

    # the libraries that read and write arrays
    def zarr_store(self, *, read_only: bool = True, keep: bool = False, whole: int = 0) -> Any:
        """A zarr-python store here: the local one, or fsspec's (asynchronous: a block's chunks are fetched
        concurrently) wrapped so that every request is retried and a final failure is named; with `keep`
        (a read-only input), what it fetched is kept in memory for the next blocks (`stores.cache`), and an
        object of at most `whole` bytes (a shard of an array read through) is fetched in one request, not
        chunk by chunk."""
        from zarr.storage import FsspecStore, LocalStore

        if self._path is not None:
            return LocalStore(self._path, read_only=read_only)
        fs = filesystem(str(self.scheme), self.options, asynchronous=True)
        limit = max(cache.CHUNK_CACHE_BYTES, whole + cache.ENTRY_OVERHEAD)
        kept = cache.ObjectCache(limit) if keep and read_only else None
        store = FsspecStore(fs, path=self.fspath, read_only=read_only)
        return RetryingStore(store, location=self, cache=kept, whole=whole)

    def tensorstore_context(self) -> dict[str, Any]:
        """tensorstore's context for this place: its requests retried with backoff like zarr's, and at a
        URL a chunk cache of the size of zarr's (`stores.cache`: neighbouring blocks share chunks)."""
        retries = {"max_retries": max(0, ATTEMPTS - 1), "initial_delay": f"{FIRST_DELAY}s", "max_delay": "5s"}
        context: dict[str, Any] = {f"{kind}_request_retries": retries for kind in ("s3", "gcs", "http")}
        if self._path is None:
            context["cache_pool"] = {"total_bytes_limit": cache.CHUNK_CACHE_BYTES}
        return context

    def kvstore(self) -> dict[str, Any]:
        """tensorstore's key-value store spec of this place (N5, neuroglancer precomputed)."""
        if self._path is not None:
            return {"driver": "file", "path": os.fspath(self._path) + "/"}
        if self.scheme in ("http", "https"):
            return {"driver": "http", "base_url": self.url.rstrip("/") + "/"}
        bucket, _, key = self._key.partition("/")
        spec: dict[str, Any] = {"driver": "gcs" if self.scheme == "gs" else "s3", "bucket": bucket}
        spec["path"] = f"{key}/" if key else ""
        if self.scheme == "s3":
            if self.options.endpoint_url:
                spec["endpoint"] = self.options.endpoint_url
                spec["aws_region"] = os.environ.get("AWS_REGION") or os.environ.get(
                    "AWS_DEFAULT_REGION", "us-east-1"
                )
            credentials = aws_credentials(anon=self.options.anon, profile=self.options.profile)
            if credentials is not None:
                spec["aws_credentials"] = credentials
        return spec
