"""moto's S3 API server on 127.0.0.1 that counts what it serves, run as its own process by `servers.py`.

    python tests/moto_server.py PORT

Every request is counted by kind (get: an object or a byte range of one, head, list, put, delete, other)
with the bytes of the bodies it sent, and by the first part of its key with its kind ("raw.zarr get");
`GET /_unetflow/counts` answers them as JSON with the CPU seconds this process has used, so a benchmark
can say how many requests a block took and what serving them cost the server. With
INITIAL_NO_AUTH_ACTION_COUNT=0 in the environment, moto checks credentials (IAM).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

COUNTS_PATH = "/_unetflow/counts"
"""The path that answers the counts (never forwarded to moto)."""


def request_prefix(environ: dict[str, Any]) -> str:
    """The first part of the key a request names (a listing: of its prefix), e.g. "raw.zarr"; "" if none."""
    parts = environ.get("PATH_INFO", "/").strip("/").split("/")
    if len(parts) > 1:
        return parts[1]
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return query.get("prefix", [""])[0].split("/")[0]


def request_kind(environ: dict[str, Any]) -> str:
    """What a request of path-style S3 asks: get, head, list, put, delete or other."""
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "/").strip("/")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    has_key = "/" in path
    if method == "GET":
        if has_key:
            return "get"
        return "list" if "list-type" in query or "prefix" in query or not query else "other"
    if method == "HEAD":
        return "head"
    if method == "PUT":
        return "put" if has_key else "other"
    if method == "DELETE" or (method == "POST" and "delete" in query):
        return "delete"
    return "other"


class Counting:
    """A WSGI middleware that counts requests and bytes sent, and answers them at COUNTS_PATH."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.places: dict[str, int] = {}

    def snapshot(self) -> bytes:
        """The counts so far and this process's CPU seconds, as JSON."""
        times = os.times()
        with self.lock:
            state = {"requests": dict(self.requests), "bytes": dict(self.sent), "places": dict(self.places)}
        return json.dumps({**state, "cpu_seconds": times.user + times.system}).encode()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == COUNTS_PATH:
            body = self.snapshot()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        kind = request_kind(environ)
        place = f"{request_prefix(environ)} {kind}"
        body = list(self.app(environ, start_response))
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            self.places[place] = self.places.get(place, 0) + 1
            self.sent[kind] = self.sent.get(kind, 0) + sum(len(part) for part in body)
        return body


def main(port: int) -> None:
    """Serve moto on 127.0.0.1:`port` (threaded) until SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = make_server(
        "127.0.0.1",
        port,
        Counting(DomainDispatcherApplication(create_backend_app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
