"""Fetching data from a local HTTP server (127.0.0.1, random port) serving the ISBI files (no internet)."""

from __future__ import annotations

import collections
import logging
import shutil
import socket
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CountingHandler, serve_folder

from unetflow.data import download
from unetflow.errors import InputError

SHA256 = {
    "train-volume.tif": "ffd3f1d01cfe6c11c95a9a68238e20d91d393906710a66d52de75405aaf501ca",
    "train-labels.tif": "b68ad8c084464014b38c6d5966048dabe033df9d0b4fd87ae28c83e1c4db4b57",
    "test-volume.tif": "046fbb869a953f1ffa63a9722849fe0aa693ad7a21aa9278a2bff2397d00b16f",
}
FAST = {"backoff": 0.01, "timeout": 5.0, "progressbar": False}


class Handler(CountingHandler):
    """Serves the folder; /truncated/ cuts the body short, /flaky/ fails twice with 503, /slow/ stalls."""

    def respond(self) -> None:
        kind, _, name = self.path.lstrip("/").partition("/")
        if kind == "truncated":
            body = Path(self.directory, name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "flaky" and self.hits[self.path] <= 2:
            self.send_error(503, "try later")
            return
        if kind == "slow":
            time.sleep(1.5)
            self.send_error(500, "too late")
            return
        if kind in ("flaky",):
            self.path = "/" + name
        super().respond()


@pytest.fixture(scope="module")
def server(isbi_dir: Path) -> Iterator[tuple[str, collections.Counter[str]]]:
    with serve_folder(isbi_dir, Handler) as served:
        yield served


def assert_clean(folder: Path, target: Path) -> None:
    """Nothing under the target name and no temporary siblings or pooch temp files beside it."""
    assert not target.exists()
    assert list(folder.iterdir()) == []


def test_good_download_verified_then_cached(server, isbi_dir: Path, tmp_path: Path) -> None:
    url, hits = server
    target = tmp_path / "data" / "train-labels.tif"
    path = download.fetch(f"{url}/train-labels.tif", target, sha256=SHA256["train-labels.tif"], **FAST)
    assert path == target
    assert target.read_bytes() == (isbi_dir / "train-labels.tif").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["train-labels.tif"]
    before = hits["/train-labels.tif"]
    download.fetch(f"{url}/train-labels.tif", target, sha256="SHA256:" + SHA256["train-labels.tif"].upper())
    assert hits["/train-labels.tif"] == before


def test_wrong_checksum_leaves_nothing_and_rerun_succeeds(server, tmp_path: Path) -> None:
    url, _ = server
    target = tmp_path / "train-labels.tif"
    wrong = "0" * 64
    with pytest.raises(InputError) as error:
        download.fetch(f"{url}/train-labels.tif", target, sha256=wrong, **FAST)
    message = str(error.value)
    assert f"{url}/train-labels.tif" in message and wrong in message and SHA256["train-labels.tif"] in message
    assert "fix sha256 in the config" in message
    assert_clean(tmp_path, target)
    download.fetch(f"{url}/train-labels.tif", target, sha256=SHA256["train-labels.tif"], **FAST)
    assert download.sha256_of(target) == SHA256["train-labels.tif"]


def test_not_found_is_not_retried(server, tmp_path: Path) -> None:
    url, hits = server
    target = tmp_path / "missing.tif"
    with pytest.raises(InputError, match=r"missing\.tif failed: HTTP 404 .*Fix the URL"):
        download.fetch(f"{url}/missing.tif", target, sha256=None, retries=3, **FAST)
    assert hits["/missing.tif"] == 1
    assert_clean(tmp_path, target)


def test_truncated_transfer_retried_then_fails_clean(server, tmp_path: Path) -> None:
    url, hits = server
    target = tmp_path / "train-volume.tif"
    with pytest.raises(InputError, match=r"failed after 2 attempt\(s\): .*IncompleteRead.*run again"):
        download.fetch(f"{url}/truncated/train-volume.tif", target, sha256=None, retries=2, **FAST)
    assert hits["/truncated/train-volume.tif"] == 2
    assert_clean(tmp_path, target)


def test_transient_server_errors_are_retried(server, isbi_dir: Path, tmp_path: Path) -> None:
    url, hits = server
    target = tmp_path / "test-volume.tif"
    download.fetch(
        f"{url}/flaky/test-volume.tif", target, sha256=SHA256["test-volume.tif"], retries=3, **FAST
    )
    assert hits["/flaky/test-volume.tif"] == 3
    assert target.read_bytes() == (isbi_dir / "test-volume.tif").read_bytes()


def test_timeout_and_refused_connection(server, tmp_path: Path) -> None:
    url, _ = server
    target = tmp_path / "x.tif"
    with pytest.raises(InputError, match=r"failed after 1 attempt\(s\): .*Timeout"):
        download.fetch(f"{url}/slow/x.tif", target, sha256=None, retries=1, backoff=0.01, timeout=0.3)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InputError, match=r"failed after 2 attempt\(s\): ConnectionError"):
        download.fetch(f"http://127.0.0.1:{port}/x.tif", target, sha256=None, retries=2, **FAST)
    assert_clean(tmp_path, target)


def test_unpinned_hash_is_logged(server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url, _ = server
    with caplog.at_level(logging.WARNING, logger="unetflow.data.download"):
        download.fetch(f"{url}/train-labels.tif", tmp_path / "t.tif", sha256=None, **FAST)
    assert SHA256["train-labels.tif"] in caplog.text and "pin it" in caplog.text


def test_stale_temporaries_are_cleaned(server, tmp_path: Path) -> None:
    url, _ = server
    stale = tmp_path / ".train-labels.tif.tmp-deadbeef"
    stale.mkdir()
    (stale / "tmpabc").write_bytes(b"half")
    download.fetch(
        f"{url}/train-labels.tif", tmp_path / "train-labels.tif", sha256=SHA256["train-labels.tif"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-labels.tif"]


def test_local_paths_and_file_urls(isbi_dir: Path, tmp_path: Path) -> None:
    source = isbi_dir / "train-labels.tif"
    sha = SHA256["train-labels.tif"]
    assert download.fetch(str(source), tmp_path / "a.tif", sha256=sha, copy_local=False) == source
    assert not (tmp_path / "a.tif").exists()
    copied = download.fetch(str(source), tmp_path / "b.tif", sha256=sha)
    assert copied.read_bytes() == source.read_bytes()
    via_url = download.fetch(source.as_uri(), tmp_path / "c.tif", sha256=sha)
    assert via_url == tmp_path / "c.tif" and download.sha256_of(via_url) == sha
    with pytest.raises(InputError, match=r"checksum mismatch .*expected sha256 0{64}, got " + sha):
        download.fetch(source.as_uri(), tmp_path / "d.tif", sha256="0" * 64)
    assert not (tmp_path / "d.tif").exists()
    with pytest.raises(InputError, match="no such file"):
        download.fetch(str(tmp_path / "nope.tif"), tmp_path / "e.tif", sha256=None)
    with pytest.raises(InputError, match="not a sha256 hex digest"):
        download.fetch(str(source), tmp_path / "f.tif", sha256="abc")
    with pytest.raises(InputError, match="unsupported URL scheme"):
        download.fetch("ftp://example.org/x.tif", tmp_path / "g.tif", sha256=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tif", "c.tif"]


def test_extract_member_from_zip_and_tar(tmp_path: Path) -> None:
    source = tmp_path / "train-labels.tif"
    source.write_bytes(bytes(range(256)) * 400)
    archive = tmp_path / "isbi.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(source, "isbi/train-labels.tif")
        zf.writestr("isbi/README", "hello")
    expected = source.read_bytes()
    source.unlink()
    out = download.extract(archive, "isbi/train-labels.tif")
    assert out == tmp_path / "train-labels.tif" and out.read_bytes() == expected
    with pytest.raises(InputError, match=r"has no file 'train.tif'; its files are: isbi/train-labels.tif"):
        download.extract(archive, "train.tif")
    tar = tmp_path / "isbi.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(source, "train-labels.tif")
    target = tmp_path / "out" / "labels.tif"
    assert download.extract(tar, "train-labels.tif", target=target) == target
    assert target.read_bytes() == expected
    shutil.copy(source, tmp_path / "plain.tif")
    with pytest.raises(InputError, match="not a zip or tar archive"):
        download.extract(tmp_path / "plain.tif", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "isbi.tar.gz",
        "isbi.zip",
        "out",
        "plain.tif",
        "train-labels.tif",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["labels.tif"]
