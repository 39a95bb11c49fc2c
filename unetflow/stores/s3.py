"""s3fs's filesystem with one GET per chunk: the whole-object read without a HEAD before it.

s3fs (since 2025) asks an object's size (a HEAD) before every whole-object read, to fetch objects larger
than its block size (50 MB) in concurrent ranges. A Zarr chunk or a metadata file is far smaller, so each
chunk read cost two requests one after the other: twice the requests per block and twice the latency.
Here a whole-object read is one GET; large uploads keep their concurrent parts (`max_concurrency`).
"""

from __future__ import annotations

import inspect
from typing import Any

import s3fs

_TAKES_CONCURRENCY = "max_concurrency" in inspect.signature(s3fs.S3FileSystem._cat_file).parameters
"""Whether this s3fs's whole-object read may split an object (and so asks its size first)."""


class ChunkS3FileSystem(s3fs.S3FileSystem):
    """An S3FileSystem whose whole-object reads are one GET each (no HEAD first)."""

    async def _cat_file(self, path: str, *args: Any, **kwargs: Any) -> bytes:
        if _TAKES_CONCURRENCY:
            kwargs.setdefault("max_concurrency", 1)
        return await super()._cat_file(path, *args, **kwargs)
