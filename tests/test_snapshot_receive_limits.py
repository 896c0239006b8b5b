"""A received snapshot has a size limit and an idle timeout (real sockets on loopback)."""

from __future__ import annotations

import asyncio
import os

import pytest
import zstandard

from pyraftkv.node.peer_transport import FRAME
from pyraftkv.node.snapshot_transfer import SnapshotTransferError, receive_snapshot


async def _receive(tmp_path, send, **limits) -> tuple[BaseException | None, bytes]:
    """Run receive_snapshot on one accepted connection while ``send`` writes to it;
    returns what it raised and what the sender read back."""
    outcome: list[BaseException | None] = []

    async def accept(reader, writer) -> None:
        try:
            await receive_snapshot(reader, writer, str(tmp_path), lambda m, p: None, **limits)
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await send(writer)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    server.close()
    await server.wait_closed()
    return outcome[0], answer


def _frame(data: bytes) -> bytes:
    return FRAME.pack(len(data)) + data


def test_a_snapshot_over_the_size_limit_is_refused_and_leaves_nothing(tmp_path) -> None:
    async def send(writer) -> None:
        chunk = zstandard.ZstdCompressor().compress(b"x" * 5000)
        writer.write(_frame(b"message") + _frame(chunk))

    error, answer = asyncio.run(_receive(tmp_path, send, max_bytes=4096))
    assert isinstance(error, SnapshotTransferError) and "limit" in str(error)
    assert answer == b"\x00"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("stall_after", ["handshake", "message"])
def test_a_sender_that_stops_sending_is_given_up_on(tmp_path, stall_after) -> None:
    async def send(writer) -> None:
        if stall_after == "message":
            writer.write(_frame(b"message"))

    error, _answer = asyncio.run(_receive(tmp_path, send, max_bytes=1 << 20, idle_timeout_s=0.2))
    assert isinstance(error, SnapshotTransferError) and "nothing arrived" in str(error)
    assert os.listdir(tmp_path) == []
