"""What an object store answered, as one InputError that says which problem it is and what to set.

Four problems a user can act on, whatever library met them (s3fs/botocore, gcsfs, fsspec's HTTP, aiohttp,
tensorstore): access denied (credentials missing, wrong or without the right), no such bucket, no such key
(object or prefix), and an endpoint that cannot be reached. `transient` tells the failures worth a retry
(connection dropped, time-outs, throttling, 5xx) from the final ones.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from unetflow.errors import InputError

if TYPE_CHECKING:
    from unetflow.stores.location import Location

CREDENTIALS_HELP = (
    "for a public bucket set anon: true on the source; otherwise give credentials the standard way, never "
    "in the config: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, profile: <name> of "
    "~/.aws/credentials, or the machine's instance role) for s3://, GOOGLE_APPLICATION_CREDENTIALS or "
    "`gcloud auth application-default login` for gs://"
)
_DENIED = re.compile(
    r"AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken|InvalidToken|Forbidden|"
    r"PERMISSION_DENIED|UNAUTHENTICATED|Unable to locate credentials|NoCredentials|"
    r"(status|code|HTTP)\W{0,3}40[13]\b|\b40[13],? (Forbidden|Unauthorized)",
    re.IGNORECASE,
)
_NO_BUCKET = re.compile(r"NoSuchBucket|bucket does not exist|bucket.*not found", re.IGNORECASE)
_NO_KEY = re.compile(
    r"NoSuchKey|NOT_FOUND|Not Found|(status|code|HTTP)\W{0,3}404\b|does not exist|No such file", re.IGNORECASE
)
_UNREACHABLE = re.compile(
    r"Could not connect|Cannot connect|Connect call failed|Connection refused|connection reset|"
    r"Server disconnected|timed? ?out|UNAVAILABLE|DEADLINE_EXCEEDED|Failed to connect|Couldn't connect|"
    r"Name or service not known|Temporary failure in name resolution|Remote end closed|Connection aborted|"
    r"Connection closed|Broken pipe|Payload|IncompleteRead|Response ended prematurely",
    re.IGNORECASE,
)
_THROTTLED = re.compile(
    r"SlowDown|Throttl|TooManyRequests|RequestTimeout|InternalError|ServiceUnavailable|"
    r"(status|code|HTTP)\W{0,3}(429|50[0234])\b|"
    r"RESOURCE_EXHAUSTED",
    re.IGNORECASE,
)


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and its causes and contexts (the library's own error is often wrapped once or twice)."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found and len(found) < 8:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _text(error: BaseException) -> str:
    return " | ".join(f"{type(item).__name__}: {item}" for item in _chain(error))


def _names(error: BaseException) -> set[str]:
    return {klass.__name__ for item in _chain(error) for klass in type(item).__mro__}


def kind_of(error: BaseException) -> str | None:
    """Which problem `error` is: "denied", "bucket", "key", "unreachable", "transient", or None (other)."""
    names, text = _names(error), _text(error)
    if names & {"PermissionError", "NoCredentialsError", "PartialCredentialsError"} or _DENIED.search(text):
        return "denied"
    if _NO_BUCKET.search(text):
        return "bucket"
    unreachable = {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ConnectionError",
        "TimeoutError",
        "FSTimeoutError",
        "ClientPayloadError",
        "IncompleteRead",
    }
    if names & unreachable or _UNREACHABLE.search(text):
        return "unreachable"
    if names & {"FileNotFoundError", "NodeNotFoundError"} or _NO_KEY.search(text):
        return "key"
    if _THROTTLED.search(text):
        return "transient"
    return None


def transient(error: BaseException) -> bool:
    """Whether a failed request is worth repeating: a dropped or refused connection, a time-out, throttling
    or a server error; never a denial or a missing object (the answer would be the same)."""
    if isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return False
    return kind_of(error) in ("unreachable", "transient")


def _detail(error: BaseException) -> str:
    """The library's own words, on one line and short (never carries credentials: they are not in it)."""
    text = re.sub(r"\s+", " ", f"{type(error).__name__}: {error}").strip()
    return text if len(text) <= 240 else text[:237] + "..."


def store_error(location: Location, error: BaseException, *, action: str = "read") -> InputError:
    """One InputError for a failed store request at `location`: which problem, and what to set."""
    where = location.display
    endpoint = location.endpoint_text
    detail = _detail(error)
    kind = kind_of(error)
    if kind == "denied":
        return InputError(
            f"{where}: access denied while trying to {action} it ({detail}); the store at {endpoint} refused "
            f"the credentials found (or found none). Fix: {CREDENTIALS_HELP}"
        )
    if kind == "bucket":
        return InputError(
            f"{where}: no such bucket {location.bucket!r} at {endpoint} ({detail}). Fix: check the bucket in "
            "the URL, and set endpoint_url to your institute's S3 address when the bucket is not on AWS"
        )
    if kind == "key":
        return InputError(
            f"{where}: no such object or prefix in {location.bucket or 'the store'} at {endpoint} "
            f"({detail}). "
            "Fix: check the path after the bucket in the URL (and member or level inside the volume)"
        )
    if kind in ("unreachable", "transient"):
        return InputError(
            f"{where}: the store at {endpoint} cannot be reached or keeps failing ({detail}), after retries "
            "with backoff. Fix: check endpoint_url (the store's address and port), the network and any "
            "proxy (HTTPS_PROXY), then run the same command again: finished work is kept"
        )
    return InputError(f"{where}: the store at {endpoint} failed to {action} it ({detail})")
