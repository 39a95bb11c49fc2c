"""Write-then-rename helpers so that no output is ever left half-written under its final name."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: str | os.PathLike[str]) -> Path:
    """A unique temporary name in the same folder as `path` (same filesystem, so rename is atomic)."""
    target = Path(path)
    return target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")


def remove(path: str | os.PathLike[str]) -> None:
    """Remove a file or a folder tree if it exists."""
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write a file or folder to; on success it replaces `path`, else vanishes."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    if target.exists():
        remove(target)
    os.replace(tmp, target)
