"""The objects (chunks, byte ranges of shards, metadata) an input volume's reads fetched, kept in memory.

A block reads its context window, a margin wider than the block on every side, so neighbouring blocks
share chunks: with chunks of the block's size, each chunk lies in the windows of the 3 x 3 blocks around
it and was fetched from the store nine times. Blocks are predicted row by row, so a cache that holds a few
rows of chunks fetches each one about once. It is bounded in bytes (least recently used out first), and
concurrent reads of one object (two blocks in flight) wait for the same request. It serves read-only
stores only (an input volume): nothing it holds can change while a prediction reads it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

CHUNK_CACHE_BYTES = 128 * 2**20
"""Bytes of fetched objects an input volume keeps (e.g. two rows of 64 chunks of 1024^2 uint8)."""
ENTRY_OVERHEAD = 256
"""Bytes an entry counts beyond its data (a missing object is cached too: it costs a request as well)."""


class ObjectCache:
    """Fetched objects by key, least recently used first out above `limit` bytes; thread-safe."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = CHUNK_CACHE_BYTES if limit is None else limit
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self._size = 0
        self._pending: dict[Hashable, asyncio.Future[Any]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _lookup(self, key: Hashable) -> tuple[bool, Any]:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return True, self._entries[key]
            return False, None

    def _store(self, key: Hashable, value: Any) -> None:
        size = ENTRY_OVERHEAD + (len(value) if value is not None else 0)
        if size > self.limit:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self._sizes[key] = size
            self._size += size
            while self._size > self.limit:
                old, _ = self._entries.popitem(last=False)
                self._size -= self._sizes.pop(old)

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """The object `key`: from memory, from a fetch in flight for it, or fetched now by `fetch()`."""
        found, value = self._lookup(key)
        if found:
            return value
        loop = asyncio.get_running_loop()
        pending = self._pending.get(key)
        if pending is not None and pending.get_loop() is loop:
            with self._lock:
                self.hits += 1
            return await asyncio.shield(pending)
        with self._lock:
            self.misses += 1
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[key] = future
        try:
            value = await fetch()
        except Exception as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
        future.set_result(value)
        self._store(key, value)
        return value
