"""Fetch input data (http(s) with pooch, `file://` URLs, local paths), checksum-verified and atomic.

A download goes to a private temporary folder beside the target, is verified against its sha256, and only
then renamed to the target name: a failed or interrupted fetch leaves nothing under that name, and a re-run
starts clean. Network failures (timeouts, refused connections, truncated transfers, HTTP 5xx) are retried
with exponential backoff; client errors (404...) and checksum mismatches fail at once with an InputError.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import pooch
import requests

from unetflow.atomic import atomic_path, remove, remove_stale_temporaries, temporary_sibling
from unetflow.errors import InputError

LOG = logging.getLogger(__name__)
RETRYABLE_STATUS = frozenset({408, 425, 429})
"""HTTP client errors worth retrying (timeouts, rate limits); every 5xx is retried as well."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file (streamed)."""
    return str(pooch.file_hash(str(path), alg="sha256"))


def _expected_hash(sha256: str | None, source: str) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise InputError(
            f"sha256 for {source} is {sha256!r}, not a sha256 hex digest (64 hex characters). "
            "Fix sha256 in the config (or leave it empty to log the actual hash)"
        )
    return value


def _verify(path: Path, expected: str | None, source: str, *, delete_hint: Path | None = None) -> str:
    """Check the file's sha256 against `expected`; without one, log the actual hash so the user can pin it."""
    actual = sha256_of(path)
    if expected is None:
        LOG.warning(
            "%s has sha256 %s; pin it (sha256: %s) in the config to verify future fetches",
            source,
            actual,
            actual,
        )
    elif actual != expected:
        hint = f"delete {delete_hint} if it is stale, or " if delete_hint is not None else ""
        raise InputError(
            f"checksum mismatch for {source}: expected sha256 {expected}, got {actual}. "
            f"The source changed or is damaged: {hint}fix sha256 in the config"
        )
    return actual


def _local_source(source: str) -> Path | None:
    """The local path of a plain path or `file://` URL; None for a remote URL."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(url2pathname(unquote(parsed.path)))
    if parsed.scheme in ("", "localhost") or len(parsed.scheme) == 1:
        return Path(source).expanduser()
    return None


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Hold pooch's own INFO messages back (its advice names pooch.retrieve); unetflow logs its own."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _download(
    url: str, folder: Path, name: str, *, retries: int, timeout: float, backoff: float, progressbar: bool
) -> Path:
    """Download `url` to folder/name with pooch, retrying transient failures with exponential backoff."""
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with _quiet_pooch():
                fetched = pooch.retrieve(
                    url,
                    known_hash=None,
                    fname=name,
                    path=folder,
                    downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=progressbar),
                )
            return Path(fetched)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if 400 <= status < 500 and status not in RETRYABLE_STATUS:
                raise InputError(
                    f"download of {url} failed: HTTP {status} {exc.response.reason}. "
                    "Fix the URL in the config (or place the file at the target yourself)"
                ) from exc
            last = exc
        except (requests.RequestException, OSError) as exc:
            last = exc
        remove(folder / name)
        if attempt < retries:
            delay = backoff * 2 ** (attempt - 1)
            LOG.warning(
                "download of %s failed (%s); retry %d/%d in %.1f s", url, last, attempt, retries - 1, delay
            )
            time.sleep(delay)
    raise InputError(
        f"download of {url} failed after {retries} attempt(s): {type(last).__name__}: {last}. "
        "Check the URL and the network (timeout, proxy, firewall) and run again; nothing was kept"
    )


def fetch(
    source: str,
    target: str | os.PathLike[str],
    *,
    sha256: str | None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progressbar: bool = True,
    copy_local: bool = True,
) -> Path:
    """Fetch `source` (http(s) URL, `file://` URL or local path) to `target`, verified against `sha256`.

    Returns the path of the verified file: `target`, or the source itself for a plain local path with
    `copy_local=False`. An existing target with the right hash is kept without downloading again.
    """
    if retries < 1:
        raise ValueError(f"retries must be at least 1, got {retries}")
    destination = Path(target)
    expected = _expected_hash(sha256, source)
    remove_stale_temporaries(destination)
    local = _local_source(source)
    if local is not None:
        if not local.is_file():
            raise InputError(f"{source}: no such file; fix the path/URL in the config or download it there")
        _verify(local, expected, source)
        plain = urlparse(source).scheme != "file"
        if (plain and not copy_local) or (destination.exists() and local.resolve() == destination.resolve()):
            return local
        with atomic_path(destination) as tmp:
            shutil.copyfile(local, tmp)
        return destination
    if urlparse(source).scheme not in ("http", "https"):
        raise InputError(
            f"{source}: unsupported URL scheme; use an http(s):// or file:// URL or a local path"
        )
    if destination.is_file():
        if expected is None:
            _verify(destination, None, str(destination))
            return destination
        if sha256_of(destination) == expected:
            LOG.info("%s is present and verified; not downloading %s again", destination, source)
            return destination
        LOG.warning("%s does not match sha256 %s; downloading %s again", destination, expected, source)
    folder = temporary_sibling(destination)
    folder.mkdir(parents=True)
    try:
        LOG.info("downloading %s to %s", source, destination)
        fetched = _download(
            source,
            folder,
            destination.name,
            retries=retries,
            timeout=timeout,
            backoff=backoff,
            progressbar=progressbar,
        )
        _verify(fetched, expected, source)
        if destination.exists():
            remove(destination)
        os.replace(fetched, destination)
    finally:
        remove(folder)
    return destination


def _archive_members(archive: Path) -> tuple[list[str], type[pooch.processors.ExtractorProcessor]]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return [n for n in zf.namelist() if not n.endswith("/")], pooch.Unzip
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            return [m.name for m in tf.getmembers() if m.isfile()], pooch.Untar
    raise InputError(f"{archive}: not a zip or tar archive; point member only at a .zip/.tar(.gz) file")


def extract(
    archive: str | os.PathLike[str], member: str, *, target: str | os.PathLike[str] | None = None
) -> Path:
    """Extract one file `member` of a zip/tar archive (pooch's Unzip/Untar) atomically to `target`.

    `target` defaults to the member's file name beside the archive.
    """
    path = Path(archive)
    if not path.is_file():
        raise InputError(f"{path}: no such archive; fetch it first")
    members, processor = _archive_members(path)
    if member not in members:
        shown = ", ".join(members[:20]) + (" ..." if len(members) > 20 else "")
        raise InputError(f"{path}: has no file {member!r}; its files are: {shown}. Fix member in the config")
    destination = Path(target) if target is not None else path.parent / PurePosixPath(member).name
    remove_stale_temporaries(destination)
    folder = temporary_sibling(destination)
    try:
        with _quiet_pooch():
            processor(members=[member], extract_dir=str(folder.resolve()))(
                str(path.resolve()), "download", None
            )
        os.replace(folder / PurePosixPath(member), destination)  # one folder: an atomic rename
    finally:
        remove(folder)
    return destination


def verify_file(path: str | os.PathLike[str], sha256: str | None, *, what: str) -> None:
    """Check a local (`path:`) source file against its configured sha256; a mismatch is an InputError."""
    if sha256 is None:
        return
    if Path(path).is_dir():
        raise InputError(
            f"{path} ({what}): sha256 checks one file, this is a folder; drop sha256 or point path at a file"
        )
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise InputError(
            f"checksum mismatch for {path} ({what}): expected sha256 {sha256}, got {actual}. The file "
            "changed or is another one: point path at the right file, or fix sha256 in the config"
        )
    LOG.info("%s matches its sha256", path)
