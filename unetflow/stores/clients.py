"""The store libraries' clients, quiet where nothing is wrong: tensorstore's AWS credential source, and the
HTTP sessions of zarr's asynchronous filesystems closed when the process ends.

tensorstore's default AWS credential chain logs an error for every source it tries and does not find
("Failed to open file. path:'~/.aws/config'", "sts web identity provider"), to stderr, even when the next
source has the credentials: a lab's job log on a cloud machine (credentials from the environment or the
instance role, no ~/.aws) would show five errors before every volume that reads fine. Where the environment
says which source holds them, tensorstore is asked that one source.

zarr reads a URL through an asynchronous fsspec filesystem whose aiohttp session lives in zarr's event loop;
nothing closes it, and aiohttp prints "Unclosed client session" at exit. `track_session` closes it then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from pathlib import Path
from typing import Any

HINTS = (
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
"""Variables that send the AWS chain to a profile, a web identity (EKS) or a container role (ECS)."""


def aws_credentials(*, anon: bool, profile: str | None) -> dict[str, Any] | None:
    """tensorstore's `aws_credentials` for these options and this environment: anonymous, a named profile,
    the environment's keys, the instance role (no ~/.aws files and no other hint), else None (its default
    chain, which finds the files or hints that are there)."""
    if anon:
        return {"type": "anonymous"}
    if profile:
        return {"type": "profile", "profile": profile}
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return {"type": "environment"}
    files = (
        env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials",
        env.get("AWS_CONFIG_FILE") or "~/.aws/config",
    )
    if not any(env.get(name) for name in HINTS) and not any(Path(f).expanduser().is_file() for f in files):
        return {"type": "imds"}
    return None


_SESSIONS: list[Any] = []
_REGISTERED: list[bool] = []
_LOCK = threading.Lock()


def track_session(fs: Any) -> None:
    """Close the HTTP session of asynchronous filesystem `fs` (zarr's) when the process ends."""
    with _LOCK:
        if not _REGISTERED:
            import zarr.core.sync  # noqa: F401  its clean-up is registered first, so it runs after ours

            atexit.register(close_sessions)
            _REGISTERED.append(True)
        _SESSIONS.append(fs)


async def _close(fs: Any) -> None:
    """Close the clients an fsspec filesystem opened: s3fs's aiobotocore client, or the aiohttp session of
    gcsfs and of fsspec's HTTP filesystem."""
    state = vars(fs)
    client = state.get("_s3")
    if client is not None:
        await client.close()
    session = state.get("_session")
    if session is not None and not getattr(session, "closed", True):
        await session.close()


def close_sessions() -> None:
    """Close every tracked filesystem's session in zarr's event loop (at exit: the filesystems are done)."""
    from zarr.core.sync import sync

    with _LOCK:
        tracked, _SESSIONS[:] = list(_SESSIONS), []
    for fs in tracked:
        state = vars(fs)
        if state.get("_s3") is None and state.get("_session") is None:
            continue
        with contextlib.suppress(Exception):
            sync(_close(fs), timeout=5)
