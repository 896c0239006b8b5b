"""The client keeps a backup only if it arrived whole: checked against its SHA-256."""

import asyncio
import hashlib

import pytest

from pyraftkv.client.aio import AsyncClient
from pyraftkv.errors import PyraftkvError
from pyraftkv.proto import rpc_pb2 as rpc


class FakeStream:
    def __init__(self, bodies):
        self._bodies = list(bodies)

    def send(self, body):
        pass

    async def receive(self):
        return self._bodies.pop(0)

    def close(self):
        pass


class FakeConnection:
    endpoint = "fake:1"

    def __init__(self, bodies):
        self._bodies = bodies

    def open_stream(self, method):
        return FakeStream(self._bodies)


def replies(data: bytes, digest: bytes, chunk: int = 7):
    blobs = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [digest]
    left = len(data) + len(digest)
    for blob in blobs:
        left -= len(blob)
        yield rpc.SnapshotResponse(remaining_bytes=left, blob=blob).SerializeToString()


def save(tmp_path, bodies):
    client = AsyncClient(["fake:1"])

    async def connection():
        return FakeConnection(list(bodies))

    client.connection = connection
    return asyncio.run(client.snapshot(str(tmp_path / "backup.db")))


def test_a_whole_backup_is_kept_without_its_digest(tmp_path):
    data = bytes(range(256)) * 3
    assert save(tmp_path, replies(data, hashlib.sha256(data).digest())) == len(data)
    assert (tmp_path / "backup.db").read_bytes() == data
    assert not (tmp_path / "backup.db.part").exists()


def test_a_damaged_backup_is_refused_and_nothing_is_left(tmp_path):
    data = bytes(range(256)) * 3
    damaged = data[:100] + b"X" + data[101:]
    with pytest.raises(PyraftkvError, match="damaged"):
        save(tmp_path, replies(damaged, hashlib.sha256(data).digest()))
    assert list(tmp_path.iterdir()) == []
