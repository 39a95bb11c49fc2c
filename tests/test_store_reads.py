"""Reads that suit a store, counted by the server: one GET per chunk (no HEAD before it), each chunk fetched
once while neighbouring blocks need it (the input cache), tensorstore asked the credential source the
environment names, and a process that read a URL ends without a word on stderr."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import write_n5
from servers import TEST_CREDENTIALS, environment, moto_s3_process, server_counts

from unetflow.readers import open_input
from unetflow.stores import Location, StoreOptions
from unetflow.stores.cache import ObjectCache
from unetflow.stores.clients import aws_credentials

SHAPE = (2, 48, 40)
CHUNKS = (1, 16, 16)
SHARDS = (1, 48, 32)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 255, size=SHAPE, dtype=np.uint8)


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory, volume: np.ndarray) -> str:
    """A counting moto server (its own process) with `lab/plain.zarr` (Zarr v3), `lab/sharded.zarr` (the
    same in shards of 1 x 48 x 32), `lab/stack.n5`, and `lab/sparse.zarr` (plain.zarr without its chunk
    (1, 2, 2))."""
    root = tmp_path_factory.mktemp("counted")
    zarr.create_array(str(root / "plain.zarr"), data=volume, chunks=CHUNKS, zarr_format=3)
    zarr.create_array(str(root / "sharded.zarr"), data=volume, chunks=CHUNKS, shards=SHARDS, zarr_format=3)
    write_n5(root / "stack.n5" / "raw", volume, CHUNKS)
    with environment(TEST_CREDENTIALS), moto_s3_process(root / "moto.log") as endpoint:
        fs = Location("s3://lab", StoreOptions(endpoint_url=endpoint)).fs
        fs.mkdir("lab")
        for name in ("plain.zarr", "sharded.zarr", "stack.n5"):
            fs.put(str(root / name), f"lab/{name}", recursive=True)
        fs.put(str(root / "plain.zarr"), "lab/sparse.zarr", recursive=True)
        fs.rm_file("lab/sparse.zarr/c/1/2/2")  # a chunk never written
        yield endpoint


def served(endpoint: str, before: dict) -> dict[str, int]:
    """Requests by kind since `before` (a server_counts snapshot)."""
    after, earlier = server_counts(endpoint)["requests"], before["requests"]
    return {kind: n - earlier.get(kind, 0) for kind, n in after.items() if n > earlier.get(kind, 0)}


def test_a_read_fetches_each_chunk_with_one_get_and_neighbours_fetch_only_new_chunks(
    counted: str, volume: np.ndarray
) -> None:
    image = open_input("s3://lab/plain.zarr", options=StoreOptions(endpoint_url=counted))
    before = server_counts(counted)
    np.testing.assert_array_equal(image[0, 0:20, 0:20], volume[0, 0:20, 0:20])  # chunks (0..1, 0..1)
    assert served(counted, before) == {"get": 4}  # one GET per chunk, no HEAD before it
    before = server_counts(counted)
    np.testing.assert_array_equal(image[0, 10:30, 5:25], volume[0, 10:30, 5:25])  # rows 0..1, cols 0..1
    assert served(counted, before) == {}
    np.testing.assert_array_equal(image[0, 20:40, 0:20], volume[0, 20:40, 0:20])  # row 2 is new
    assert served(counted, before) == {"get": 2}


@pytest.mark.parametrize("whole", [0, 64, 2**20])
def test_an_array_read_through_fetches_each_shard_in_one_get_where_it_may_hold_it(
    counted: str, volume: np.ndarray, whole: int
) -> None:
    """The pyramid reads the level below chunk by chunk: with `whole` bytes, a shard is fetched once (its
    size, then all of it) and its chunks decoded from memory; without, or where a shard is larger (64
    bytes: after asking its size once), each chunk is a range request."""
    store = Location("s3://lab/sharded.zarr", StoreOptions(endpoint_url=counted)).zarr_store(
        read_only=True, keep=True, whole=whole
    )
    array = zarr.open_array(store=store, mode="r", zarr_format=3)
    before = server_counts(counted)
    for z, y, x in np.ndindex(2, 3, 3):  # every chunk, one at a time, as the pyramid reads them
        region = (z, slice(16 * y, 16 * y + 16), slice(16 * x, 16 * x + 16))
        np.testing.assert_array_equal(array[region], volume[region])
    shards = 2 * 1 * 2
    ranges = shards + 2 * 3 * 3  # each shard's index once (kept), then one range per chunk
    expected = {0: {"get": ranges}, 64: {"head": shards, "get": ranges}}
    expected[2**20] = {"head": shards, "get": shards}
    assert served(counted, before) == expected[whole]


def test_tensorstore_reads_fetch_each_chunk_once_too(counted: str, volume: np.ndarray) -> None:
    stack = open_input("s3://lab/stack.n5", member="raw", options=StoreOptions(endpoint_url=counted))
    before = server_counts(counted)
    np.testing.assert_array_equal(stack[1, 0:20, 0:20], volume[1, 0:20, 0:20])
    assert served(counted, before) == {"get": 4}
    before = server_counts(counted)
    np.testing.assert_array_equal(stack[1, 10:30, 5:25], volume[1, 10:30, 5:25])  # kept, not asked again
    assert served(counted, before) == {}
    np.testing.assert_array_equal(stack[1, 20:40, 5:25], volume[1, 20:40, 5:25])
    assert served(counted, before) == {"get": 2}  # row 2 only


def test_a_missing_chunk_reads_as_fill_value_and_is_asked_once(counted: str) -> None:
    image = open_input("s3://lab/sparse.zarr", options=StoreOptions(endpoint_url=counted))
    before = server_counts(counted)
    assert not image[1, 32:48, 32:40].any() and not image[1, 35:40, 33:36].any()
    assert served(counted, before) == {"get": 1}


def test_tensorstore_reads_n5_from_s3_with_the_environments_keys_quietly(
    counted: str, tmp_path: Path
) -> None:
    """A cloud machine: credentials in the environment, no ~/.aws; the process ends without stderr."""
    script = textwrap.dedent(
        f"""
        from unetflow.readers import open_input
        from unetflow.stores import StoreOptions
        options = StoreOptions(endpoint_url={counted!r})
        print(int(open_input("s3://lab/stack.n5", member="raw", options=options)[1, 5:9, 7:9].sum()))
        print(int(open_input("s3://lab/plain.zarr", options=options)[0, 0:4, 0:4].sum()))
        """
    )
    env = {**TEST_CREDENTIALS, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    del env["AWS_CONFIG_FILE"], env["AWS_SHARED_CREDENTIALS_FILE"]
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "Failed to open file ~/.aws/config", no "Unclosed client session"
    assert len(done.stdout.split()) == 2


def test_tensorstore_is_asked_the_credential_source_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    assert aws_credentials(anon=True, profile="lab") == {"type": "anonymous"}
    assert aws_credentials(anon=False, profile="lab") == {"type": "profile", "profile": "lab"}
    assert aws_credentials(anon=False, profile=None) == {"type": "imds"}  # a cloud machine's role
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    assert aws_credentials(anon=False, profile=None) is None  # the default chain reads the file
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert aws_credentials(anon=False, profile=None) == {"type": "environment"}


class Fetches:
    """Fetch functions for the cache that record which keys reached the "store"."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def of(
        self, key: str, value: bytes | None = None, *, error: Exception | None = None
    ) -> Callable[[], Awaitable[bytes | None]]:
        async def fetch() -> bytes | None:
            self.keys.append(key)
            await asyncio.sleep(0.01)
            if error is not None:
                raise error
            return value

        return fetch


def test_the_object_cache_keeps_recent_objects_within_its_bytes_and_fetches_each_once() -> None:
    fetches = Fetches()
    block = b"x" * 1000

    async def scenario() -> None:
        cache = ObjectCache(limit=3000)
        together = await asyncio.gather(*(cache.get("a", fetches.of("a", block)) for _ in range(3)))
        assert together == [block] * 3 and fetches.keys == ["a"]  # concurrent reads share one request
        for key in ("b", "a", "c", "a", "b"):  # c pushes out b, the least recently used
            assert await cache.get(key, fetches.of(key, block)) == block
        assert fetches.keys == ["a", "b", "c", "b"]
        for _ in range(2):
            assert await cache.get("absent", fetches.of("absent")) is None
        assert fetches.keys.count("absent") == 1  # a missing object is asked once too
        for _ in range(2):
            with pytest.raises(OSError, match="connection reset"):
                await cache.get("bad", fetches.of("bad", error=OSError("connection reset")))
        assert fetches.keys.count("bad") == 2  # a failure is not kept

    asyncio.run(scenario())
