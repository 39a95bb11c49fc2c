"""Requests to a store retried on transient failures with exponential backoff, and counted.

One policy for every scheme and library: a dropped or refused connection, a time-out, throttling (SlowDown,
429) or a server error (5xx) is tried again after 0.2, 0.4, 0.8, 1.6 s (with jitter), five tries in all; a
denial or a missing object is not (the answer would be the same). `RetryingStore` applies it to every
request zarr-python makes, and counts them (`requests`), which the benchmarks report per block; with a
`cache` (an input volume), an object fetched once is served from memory (`unetflow.stores.cache`), and
with `whole` bytes too (an array read through, as the pyramid reads the level below it) the first byte range
read of an object up to that size fetches all of it, so that a shard costs two requests, not one per chunk.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from zarr.storage import WrapperStore

from unetflow.stores.cache import ObjectCache
from unetflow.stores.errors import store_error, transient

if TYPE_CHECKING:
    from unetflow.stores.location import Location

T = TypeVar("T")

ATTEMPTS = int(os.environ.get("UNETFLOW_STORE_ATTEMPTS", "5"))
"""Tries of one request in all (environment UNETFLOW_STORE_ATTEMPTS; at least 1)."""
FIRST_DELAY = 0.2
"""Seconds before the second try; each further one waits twice as long (jittered by up to 50%)."""


def delay(attempt: int) -> float:
    """Seconds to wait after failed try number `attempt` (0-based): exponential, with jitter."""
    return FIRST_DELAY * 2**attempt * (1 + 0.5 * random.random())


def retrying(function: Callable[[], T], *, attempts: int | None = None) -> T:
    """`function()`, tried again after a transient failure (see the module); the last failure is raised."""
    attempts = ATTEMPTS if attempts is None else attempts
    attempt = 0
    while True:
        try:
            return function()
        except Exception as error:
            if not transient(error) or attempt + 1 >= attempts:
                raise
            REQUESTS.add("retry")
            time.sleep(delay(attempt))
            attempt += 1


async def retrying_async(function: Callable[[], Awaitable[T]], *, attempts: int | None = None) -> T:
    """The coroutine `function()` with the same retries, waiting without blocking the event loop."""
    attempts = ATTEMPTS if attempts is None else attempts
    attempt = 0
    while True:
        try:
            return await function()
        except Exception as error:
            if not transient(error) or attempt + 1 >= attempts:
                raise
            REQUESTS.add("retry")
            await asyncio.sleep(delay(attempt))
            attempt += 1


class RequestCounter:
    """Requests made through the stores of one process (thread-safe), by kind (get, put, ...; "retry": a
    try repeated after a transient failure, by any store or `Location` call)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, kind: str, count: int = 1) -> None:
        """Count `count` requests of `kind`."""
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + count

    def total(self) -> int:
        """Every request counted so far."""
        with self._lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self.counts.clear()


class _TooBig(bytes):
    """Marks an object too big to fetch whole (kept in the cache as a few bytes: asked once)."""


_TOO_BIG = _TooBig()


def _byte_range(whole: Any, byte_range: Any) -> Any:
    """The bytes `byte_range` (zarr's range, offset or suffix request) of a whole object's buffer."""
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest

    size = len(whole)
    if isinstance(byte_range, RangeByteRequest):
        return whole[byte_range.start : min(byte_range.end, size)]
    if isinstance(byte_range, OffsetByteRequest):
        return whole[byte_range.offset : size]
    if isinstance(byte_range, SuffixByteRequest):
        return whole[max(size - byte_range.suffix, 0) : size]
    raise TypeError(f"unknown byte range {byte_range!r}")


REQUESTS = RequestCounter()
"""Every request made through a RetryingStore in this process."""


class RetryingStore(WrapperStore[Any]):
    """A zarr store whose requests are retried on transient failures and counted; a final failure is one
    InputError naming the problem and what to set (the location's URL, never a credential)."""

    def __init__(
        self,
        store: Any,
        *,
        location: Location | None = None,
        cache: ObjectCache | None = None,
        whole: int = 0,
    ) -> None:
        super().__init__(store)
        self.location = location
        self.cache = cache
        self.whole = whole if cache is not None else 0

    def _with_store(self, store: Any) -> RetryingStore:
        return type(self)(store, location=self.location, cache=self.cache, whole=self.whole)

    async def _call(self, kind: str, function: Callable[[], Awaitable[T]], *, action: str = "read") -> T:
        REQUESTS.add(kind)
        try:
            return await retrying_async(function)
        except Exception as error:
            if self.location is None or not (transient(error) or _store_problem(error)):
                raise
            raise store_error(self.location, error, action=action) from error

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        def fetch() -> Awaitable[Any]:
            return self._call("get", lambda: self._store.get(key, prototype, byte_range))

        if self.cache is None:
            return await fetch()
        if self.whole and byte_range is not None:
            found = await self.cache.get((key, None), lambda: self._whole_object(key, prototype))
            if found is not _TOO_BIG:
                return None if found is None else _byte_range(found, byte_range)
        return await self.cache.get((key, byte_range), fetch)

    async def _whole_object(self, key: str, prototype: Any) -> Any:
        """All of object `key` when it has at most `whole` bytes (one size request first), else `_TOO_BIG`."""
        try:
            size = await self._call("head", lambda: self._store.getsize(key))
        except FileNotFoundError:
            return None
        if size > self.whole:
            return _TOO_BIG
        return await self._call("get", lambda: self._store.get(key, prototype))

    async def get_partial_values(self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]) -> list[Any]:
        ranges = list(key_ranges)
        REQUESTS.add("get", len(ranges) - 1)
        return await self._call("get", lambda: self._store.get_partial_values(prototype, ranges))

    async def exists(self, key: str) -> bool:
        return await self._call("head", lambda: self._store.exists(key))

    async def set(self, key: str, value: Any) -> None:
        await self._call("put", lambda: self._store.set(key, value), action="write")

    async def delete(self, key: str) -> None:
        await self._call("delete", lambda: self._store.delete(key), action="delete")


def _store_problem(error: BaseException) -> bool:
    """Whether a failure is the store's answer (denied, missing bucket) rather than a bug of ours."""
    from unetflow.stores.errors import kind_of

    return kind_of(error) in ("denied", "bucket")
