"""Helpers shared by test modules: a copy of the workflow to run in, and a local HTTP server."""

from __future__ import annotations

import collections
import contextlib
import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_workflow(folder: Path) -> Path:
    """Copy the Snakefile, config.yaml, workflow/, envs/ and the workflow profile (profiles/default, which
    Snakemake loads by itself) into `folder` (created); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, folder / name)
    for name in ("workflow", "envs", "profiles/default"):
        shutil.copytree(ROOT / name, folder / name)
    return folder


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder quietly and counts the requests per path; subclasses change `respond`."""

    hits: collections.Counter[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        self.respond()

    def respond(self) -> None:
        """Answer the counted request (by default: the file under the served folder)."""
        super().do_GET()


@contextlib.contextmanager
def serve_folder(
    folder: Path, handler: type[CountingHandler] = CountingHandler
) -> Iterator[tuple[str, collections.Counter[str]]]:
    """An HTTP server on 127.0.0.1 (a free port) serving `folder`: its base URL and the request counts."""
    hits: collections.Counter[str] = collections.Counter()
    bound = functools.partial(type("Bound", (handler,), {"hits": hits}), directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), bound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
