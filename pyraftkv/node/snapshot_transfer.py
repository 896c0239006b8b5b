"""Streaming a state-machine snapshot to a lagging follower: zstd-compressed, checksummed.

On its own connection (channel SNAPSHOT of the peer transport) the sender writes:

    frame: the encoded Raft snapshot message (names index, term, membership)
    frames: zstd-compressed chunks of the snapshot file, in order
    frame: empty (end of data)
    frame: u64 uncompressed size, u32 CRC32C of the uncompressed bytes

The receiver decompresses into a temporary file as the chunks arrive, checks size and
checksum, fsyncs, renames it into place and answers one byte (1 = stored). Only then does
the Raft core of the follower see the snapshot message. A broken transfer leaves nothing
behind but a removed temporary file, and the leader's core is told it failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from ssl import SSLContext

import zstandard

from ..crc32c import crc32c
from ..failpoints import ENABLED as FAILPOINTS
from ..failpoints import hit
from .peer_faults import FAULTS
from .peer_transport import (
    ACCEPT,
    CHANNEL_SNAPSHOT,
    FRAME,
    MAX_FRAME_BYTES,
    PeerProtocolError,
    encode_handshake,
    read_frame,
)

log = logging.getLogger("pyraftkv.snapshot")

CHUNK_BYTES = 1 << 20
TRAILER = struct.Struct("!QI")
# A compressed chunk of 1 MiB input never grows past this.
MAX_CHUNK_FRAME = 2 << 20
# A receiver gives up on a sender that sends nothing for this long.
IDLE_TIMEOUT_S = 30.0


class SnapshotTransferError(Exception):
    """The snapshot did not arrive intact."""


def _chunks(path: str):
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK_BYTES)
            if not data:
                return
            yield data


async def send_snapshot(
    host: str,
    port: int,
    *,
    ssl: SSLContext | None,
    cluster_id: int,
    sender: int,
    receiver: int,
    message: bytes,
    path: str,
    timeout_s: float = 600.0,
) -> int:
    """Stream the file at ``path`` to a peer; returns bytes sent. Raises on any failure."""
    if FAULTS is not None:
        await FAULTS.on_stream(receiver)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ssl, server_hostname=host if ssl else None), 5.0
    )
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(encode_handshake(CHANNEL_SNAPSHOT, cluster_id, sender, receiver))
        if await asyncio.wait_for(reader.readexactly(1), 5.0) != ACCEPT:
            raise SnapshotTransferError(f"member {receiver:x} refused the snapshot connection")
        writer.write(FRAME.pack(len(message)) + message)
        compressor = zstandard.ZstdCompressor(level=3)
        loop = asyncio.get_running_loop()
        crc, size, sent = 0, 0, 0
        for chunk in _chunks(path):
            crc = crc32c(chunk, crc)
            size += len(chunk)
            packed = await loop.run_in_executor(None, compressor.compress, chunk)
            if FAULTS is not None:
                await FAULTS.on_stream(receiver)
            writer.write(FRAME.pack(len(packed)) + packed)
            if FAILPOINTS:
                hit("raftSnapshotSendChunk")
            sent += len(packed)
            await writer.drain()
        writer.write(FRAME.pack(0))
        trailer = TRAILER.pack(size, crc)
        writer.write(FRAME.pack(len(trailer)) + trailer)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readexactly(1), timeout_s)
        if answer != b"\x01":
            raise SnapshotTransferError(f"member {receiver:x} did not store the snapshot")
        return sent
    finally:
        writer.close()


async def receive_snapshot(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    directory: str,
    on_stored: Callable[[bytes, str], Awaitable[None] | None],
    *,
    max_bytes: int,
    sender: int = 0,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> None:
    """Receive one snapshot from member ``sender`` into ``directory``; then call
    on_stored(message, path). SnapshotTransferError when it would be larger than
    ``max_bytes`` uncompressed (no store this member can open is larger) or nothing arrives
    for ``idle_timeout_s``; LinkCut when the peer fault rules (tests) cut the link."""

    async def next_frame(limit: int = MAX_FRAME_BYTES) -> bytes:
        if FAULTS is not None:
            await FAULTS.on_stream(sender)
        try:
            return await asyncio.wait_for(read_frame(reader, limit), idle_timeout_s)
        except asyncio.TimeoutError:
            raise SnapshotTransferError(
                f"nothing arrived for {idle_timeout_s:g} s; giving up"
            ) from None

    message = await next_frame()
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f"receiving-{os.getpid()}-{id(writer):x}.tmp")
    decompressor = zstandard.ZstdDecompressor()
    crc, size = 0, 0
    try:
        with open(temporary, "wb") as out:
            while True:
                packed = await next_frame(MAX_CHUNK_FRAME)
                if not packed:
                    break
                try:
                    chunk = decompressor.decompress(packed)
                except zstandard.ZstdError as exc:
                    raise SnapshotTransferError(f"corrupt compressed chunk: {exc}") from exc
                crc = crc32c(chunk, crc)
                size += len(chunk)
                if size > max_bytes:
                    raise SnapshotTransferError(
                        f"snapshot larger than the {max_bytes} byte limit; refused"
                    )
                out.write(chunk)
                if FAILPOINTS:
                    hit("raftSnapshotReceiveChunk")
            trailer = await next_frame(TRAILER.size)
            if len(trailer) != TRAILER.size:
                raise SnapshotTransferError(f"a trailer of {len(trailer)} bytes")
            expected_size, expected_crc = TRAILER.unpack(trailer)
            if (expected_size, expected_crc) != (size, crc):
                raise SnapshotTransferError(
                    f"snapshot damaged in transit: got {size} bytes crc {crc:08x}, "
                    f"sender says {expected_size} bytes crc {expected_crc:08x}"
                )
            out.flush()
            os.fsync(out.fileno())
        final = os.path.join(directory, f"received-{crc:08x}-{size:x}.db")
        os.replace(temporary, final)
        _fsync_dir(directory)
    except (SnapshotTransferError, PeerProtocolError) as exc:
        log.warning("snapshot receive failed: %s", exc)
        writer.write(b"\x00")
        raise
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    log.info("received snapshot (%d bytes)", size)
    result = on_stored(message, final)
    if asyncio.iscoroutine(result):
        await result
    writer.write(b"\x01")
    await writer.drain()


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
