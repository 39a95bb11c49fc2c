"""Object-store servers on loopback for the tests and benchmarks: moto's S3 API server (in a thread of this
process, or in a child process that counts the requests it serves, optionally with IAM checks on), and TCP
endpoints that drop connections. Each starts on a free port and stops when its context ends; nothing outside
127.0.0.1 is ever contacted."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "unetflow-test",
    "AWS_SECRET_ACCESS_KEY": "unetflow-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    # no ~/.aws of the machine's user: the test server's credentials only
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
"""The credentials the tests give the standard chain (environment variables), as a lab would."""


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration, then restore the previous values."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 API server on 127.0.0.1 (a free port), in a thread of this process: its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with environment(TEST_CREDENTIALS):
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(port: int, *, timeout: float = 30.0) -> None:
    """Wait until something listens on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def moto_s3_process(log: Path, *, auth: bool = False) -> Iterator[str]:
    """moto's S3 server in a child process (`moto_server.py`: it counts what it serves, see
    `server_counts`), the test credentials in its environment; with `auth`, it checks credentials (IAM on):
    keys it does not know are refused as a real store refuses them. A process of its own, it never holds the
    caller's GIL, as a real store would not."""
    port = free_port()
    env = {**os.environ, **TEST_CREDENTIALS}
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    script = Path(__file__).with_name("moto_server.py")
    with log.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, str(script), str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            wait_for(port)
            yield f"http://127.0.0.1:{port}"
        finally:
            child.terminate()
            child.wait(timeout=30)


def moto_s3_with_auth(log: Path) -> contextlib.AbstractContextManager[str]:
    """moto's S3 server in a child process that checks credentials (see `moto_s3_process`)."""
    return moto_s3_process(log, auth=True)


def server_counts(endpoint: str) -> dict[str, Any]:
    """What a `moto_s3_process` server has served so far: requests and bytes sent by kind (get, head, list,
    put, delete, other), and the CPU seconds its process has used."""
    with urllib.request.urlopen(f"{endpoint}/_unetflow/counts", timeout=30) as answer:
        return dict(json.loads(answer.read()))


@contextlib.contextmanager
def dropping_endpoint(
    *, forward_to: str | None = None, drop_first: int | None = None
) -> Iterator[tuple[str, list[int]]]:
    """A TCP endpoint on 127.0.0.1 that accepts connections and closes them at once (a connection dropped
    by a flaky network); with `forward_to` and `drop_first`, only the first `drop_first` are dropped and the
    rest are relayed to `forward_to` (host:port of a real server). Yields its URL and a one-item list counting
    the connections dropped."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    stop = threading.Event()
    dropped = [0]

    def relay(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if forward_to is None or drop_first is None or dropped[0] < drop_first:
                dropped[0] += 1
                conn.close()
                continue
            host, _, port_text = forward_to.rpartition(":")
            upstream = socket.create_connection((host, int(port_text)))
            threading.Thread(target=relay, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=relay, args=(upstream, conn), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", dropped
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
