"""Write-then-rename helpers so that no output is ever left half-written under its final name, and no
step ever writes over, into or around one of its own inputs.

Every step names its inputs and outputs with `protect_inputs`: an output that is, contains or lies inside
an input is refused before anything is touched, and while the step runs `atomic_path` and `remove` refuse
to replace or delete anything that overlaps an input. A disk that fills up while writing is one
`InputError` naming the path, with the temporary output removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path

from unetflow.errors import InputError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
TEMPORARY_MARK = ".tmp-"
"""Temporary siblings are named `.<name>.tmp-<random>`: hidden, and found again after a killed run."""
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

_PROTECTED: ContextVar[tuple[Path, ...]] = ContextVar("unetflow_protected_inputs", default=())


def _resolved(path: PathLike) -> Path:
    """`path` made absolute with symbolic links followed (so a link to an input is that input)."""
    return Path(path).expanduser().resolve()


def _relation(output: Path, source: Path) -> str | None:
    """How `output` overlaps `source` ("is", "lies inside", "contains"), or None when they are apart."""
    if output == source:
        return "is"
    if source in output.parents:
        return "lies inside"
    if output in source.parents:
        return "contains"
    return None


def check_apart(outputs: Iterable[PathLike | None], inputs: Iterable[PathLike | None]) -> None:
    """Refuse outputs that are, contain or lie inside one of the inputs (writing them would destroy it)."""
    sources = [(item, _resolved(item)) for item in inputs if item is not None]
    for output in outputs:
        if output is None:
            continue
        target = _resolved(output)
        for given, source in sources:
            relation = _relation(target, source)
            if relation is not None:
                raise InputError(
                    f"output {output} {relation} the input {given}: writing it would destroy that input. "
                    "Nothing was written; choose an output path outside the inputs (and not around them)"
                )


@contextlib.contextmanager
def protect_inputs(
    inputs: Iterable[PathLike | None], *, outputs: Iterable[PathLike | None] = ()
) -> Iterator[None]:
    """Check `outputs` against `inputs`, then guard the inputs from `atomic_path` and `remove` meanwhile."""
    sources = [item for item in inputs if item is not None]
    check_apart(outputs, sources)
    token = _PROTECTED.set(_PROTECTED.get() + tuple(_resolved(item) for item in sources))
    try:
        yield
    finally:
        _PROTECTED.reset(token)


def _refuse_protected(path: PathLike, action: str) -> None:
    target = _resolved(path)
    for source in _PROTECTED.get():
        relation = _relation(target, source)
        if relation is not None:
            raise InputError(
                f"refusing to {action} {path}: it {relation} the input {source} of this step. "
                "Choose an output path outside the inputs"
            )


def temporary_sibling(path: PathLike) -> Path:
    """A unique temporary name in the same folder as `path` (same filesystem, so rename is atomic)."""
    target = Path(path)
    return target.with_name(f".{target.name}{TEMPORARY_MARK}{uuid.uuid4().hex[:8]}")


def _temporary_of(candidate: str, name: str) -> bool:
    """Whether `candidate` names a temporary sibling of `name`, or one of a temporary (`..<name>.tmp-a.tmp-b`:
    an atomic write inside another, as an import writes its store)."""
    dots = len(candidate) - len(candidate.lstrip("."))
    return any(candidate[depth:].startswith(f"{name}{TEMPORARY_MARK}") for depth in range(1, dots + 1))


def stale_temporaries(path: PathLike) -> list[Path]:
    """Temporary siblings of `path` left behind by a killed run (they are never completed later)."""
    target = Path(path)
    if not target.parent.is_dir():
        return []
    return sorted(item for item in target.parent.iterdir() if _temporary_of(item.name, target.name))


def remove_stale_temporaries(path: PathLike) -> None:
    """Delete what killed earlier attempts at writing `path` left behind (one log line each)."""
    for stale in stale_temporaries(path):
        log.info("removing %s, left behind by an interrupted run", stale)
        _delete(stale)


def _delete(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()


def remove(path: PathLike) -> None:
    """Remove a file or a folder tree if it exists (never one of the running step's inputs)."""
    _refuse_protected(path, "delete")
    _delete(Path(path))


def final_path(path: PathLike) -> Path:
    """The path a temporary sibling (`.<name>.tmp-<random>`, or one of a temporary) is written for."""
    target = Path(path)
    pattern = re.compile(rf"\.(.+){re.escape(TEMPORARY_MARK)}[0-9a-f]{{8}}")
    while (match := pattern.fullmatch(target.name)) is not None:
        target = target.with_name(match.group(1))
    return target


def disk_full_error(path: PathLike, error: OSError) -> InputError:
    """The message for a write that ran out of space (or quota): which path, what to do."""
    return InputError(
        f"no space left on the device while writing {final_path(path)} ({error.strerror}); nothing was "
        "written under that name. Free space there (or raise the quota), or write the results elsewhere, "
        "and run again"
    )


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write a file or folder to; on success it replaces `path`, else vanishes.

    Temporaries of `path` left by a killed earlier run are removed first; `path` must not overlap an input
    of the running step (see `protect_inputs`).
    """
    target = Path(path)
    _refuse_protected(target, "replace")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
    except OSError as error:
        if error.errno in DISK_FULL:
            raise disk_full_error(target, error) from error
        raise
    tmp = temporary_sibling(target)
    try:
        yield tmp
    except OSError as error:
        _delete(tmp)
        if error.errno in DISK_FULL:
            raise disk_full_error(target, error) from error
        raise
    except BaseException:
        _delete(tmp)
        raise
    if target.exists() or target.is_symlink():
        _delete(target)
    os.replace(tmp, target)
