"""TCP transport between the Raft processes of a cluster's members.

Each member dials every peer once and sends on that connection; it receives on the
connections its peers dialled. A connection starts with a handshake that names the
cluster, the sender and the receiver, so a member of another cluster (or a stale member
id) is refused at once. After it come length-prefixed frames, each holding one encoded
Raft message. Messages queued for a peer during one event-loop iteration leave in one
write; a peer that cannot be reached is retried with capped exponential backoff while the
Raft core is told it is unreachable (Raft tolerates lost messages, so a full queue drops).

Snapshots travel on a connection of their own (see snapshot_transfer.py), so a large
transfer never delays heartbeats.

With peer TLS (https peer URLs) every connection, snapshots included, is TLS; with peer
client-certificate auth the TLS layer refuses a peer without a certificate from the trusted
CA before any byte reaches this module, and --peer-cert-allowed-cn is checked before the
handshake is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from ssl import SSLContext

from ..errors import PyraftkvError
from .peer_faults import FAULTS
from .tls import common_name

log = logging.getLogger("pyraftkv.peers")

MAGIC = b"PRKV"
VERSION = 1
HANDSHAKE = struct.Struct("!4sBBQQQ")  # magic, version, channel, cluster, sender, receiver
CHANNEL_MESSAGES = 1
CHANNEL_SNAPSHOT = 2
# A member joining a running cluster asks a peer which cluster it is and who is in it
# (cluster and receiver ids are 0 in its handshake: it does not know them yet).
CHANNEL_QUERY = 3
# A member's corruption check asks a peer for HashKV (corrupt_check.py): one request
# frame (a HashKVRequest), one answer frame (HASH_OK + HashKVResponse, or HASH_FAILED +
# the error's text). Peer TLS and the peer's identity checks apply; client auth does not.
CHANNEL_HASHKV = 4
HASH_OK, HASH_FAILED = b"\x01", b"\x00"
HASH_REQUEST_LIMIT = 64
MEMBERS_REPLY = struct.Struct("!QI")  # cluster id, count; then count u64 member ids
ACCEPT = b"\x01"
FRAME = struct.Struct("!I")
MAX_FRAME_BYTES = 64 << 20
# host, port, and whether to speak TLS there (an https URL)
Address = tuple[str, int, bool]
# Bytes waiting in the socket buffer for one peer; past this new messages are dropped
# (Raft resends what matters).
MAX_QUEUED_BYTES = 32 << 20
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0


class PeerProtocolError(PyraftkvError):
    """A peer broke the transport protocol (bad handshake or frame)."""


def encode_handshake(channel: int, cluster_id: int, sender: int, receiver: int) -> bytes:
    return HANDSHAKE.pack(MAGIC, VERSION, channel, cluster_id, sender, receiver)


def check_handshake(data: bytes, cluster_id: int, me: int) -> tuple[int, int]:
    """Validate a handshake; returns (channel, sender)."""
    magic, version, channel, cluster, sender, receiver = HANDSHAKE.unpack(data)
    if magic != MAGIC or version != VERSION:
        raise PeerProtocolError("not a pyraftkv peer (bad magic or version)")
    if channel == CHANNEL_QUERY:
        return channel, sender
    if cluster != cluster_id:
        raise PeerProtocolError(
            f"peer {sender:x} belongs to cluster {cluster:x}, not {cluster_id:x}"
        )
    if receiver != me:
        raise PeerProtocolError(f"peer {sender:x} wants member {receiver:x}, this is {me:x}")
    if channel not in (CHANNEL_MESSAGES, CHANNEL_SNAPSHOT, CHANNEL_HASHKV):
        raise PeerProtocolError(f"unknown channel {channel}")
    return channel, sender


async def read_frame(reader: asyncio.StreamReader, limit: int = MAX_FRAME_BYTES) -> bytes:
    """One length-prefixed frame; raises PeerProtocolError when it is too large."""
    (length,) = FRAME.unpack(await reader.readexactly(FRAME.size))
    if length > limit:
        raise PeerProtocolError(f"frame of {length} bytes is over the {limit} byte limit")
    return await reader.readexactly(length)


class _Outgoing(asyncio.Protocol):
    """The client side of one connection to a peer: handshake, then write only."""

    def __init__(self, sender: PeerSender) -> None:
        self.sender = sender
        self.transport: asyncio.Transport | None = None
        self.accepted = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = self.sender.transport
        transport.write(  # type: ignore[attr-defined]
            encode_handshake(CHANNEL_MESSAGES, t.cluster_id, t.member_id, self.sender.peer_id)
        )

    def data_received(self, data: bytes) -> None:
        if not self.accepted.done():
            if data[:1] == ACCEPT:
                self.accepted.set_result(None)
            else:
                reason = data[1:].decode(errors="replace") or "no reason given"
                self.accepted.set_exception(PeerProtocolError(f"peer refused us: {reason}"))
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sender._connection is self:
            self.sender._connection = None  # nothing more may be written to it
        error = ConnectionError(str(exc) if exc else "peer closed the connection")
        if not self.accepted.done():
            self.accepted.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(error)


class _Incoming(asyncio.Protocol):
    """The receiving side of a peer's message connection, after its handshake: each frame
    goes to ``on_message`` as it arrives, then ``on_frames_done`` once per read."""

    def __init__(
        self,
        sender: int,
        on_message: Callable[[int, bytes], None],
        on_frames_done: Callable[[], None],
    ) -> None:
        self.sender = sender
        self.on_message = on_message
        self.on_frames_done = on_frames_done
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        try:
            while len(buffer) - offset >= FRAME.size:
                (length,) = FRAME.unpack_from(buffer, offset)
                if length > MAX_FRAME_BYTES:
                    raise PeerProtocolError(f"frame of {length} bytes is over the limit")
                end = offset + FRAME.size + length
                if end > len(buffer):
                    break
                self.on_message(self.sender, bytes(buffer[offset + FRAME.size : end]))
                offset = end
        except PeerProtocolError as exc:
            log.warning("closing a peer connection: %s", exc)
            self.transport.close()
        except Exception:
            # Handling one peer's message failed: that connection ends, the member goes on.
            log.exception("closing a peer connection: error handling what it sent")
            self.transport.close()
        finally:
            del buffer[:offset]
            self.on_frames_done()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class PeerSender:
    """The outgoing connection to one peer: writes coalesced per loop iteration, reconnects
    with backoff. While disconnected, messages are dropped (Raft sends again)."""

    def __init__(self, transport: PeerTransport, peer_id: int, addresses: list[Address]):
        self.transport = transport
        self.peer_id = peer_id
        self.addresses = addresses
        self.loop = asyncio.get_running_loop()
        self._connection: _Outgoing | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.connected = False
        self.dropped = 0
        self._woken = asyncio.Event()
        self._task = self.loop.create_task(self._run())

    def send(self, frames: list[bytes]) -> bool:
        """Queue encoded messages for this iteration's write; False when they were dropped."""
        connection = self._connection
        if connection is None or connection.transport.get_write_buffer_size() > MAX_QUEUED_BYTES:
            self.dropped += len(frames)
            return False
        out = self._out
        for frame in frames:
            out.append(FRAME.pack(len(frame)))
            out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        connection = self._connection
        if self._out and connection is not None and not connection.transport.is_closing():
            connection.transport.write(b"".join(self._out))
        self._out.clear()

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        attempt = 0
        while True:
            host, port, tls = self.addresses[attempt % len(self.addresses)]
            attempt += 1
            connection = None
            self._woken.clear()  # a wake from here on cuts the next backoff short
            try:
                _, connection = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: _Outgoing(self),
                        host,
                        port,
                        ssl=self.transport.client_ssl if tls else None,
                        server_hostname=host if tls else None,
                    ),
                    2.0,
                )
                await asyncio.wait_for(connection.accepted, 2.0)
                self._connection = connection
                self._set_connected(True)
                backoff = BACKOFF_FIRST_S
                raise await connection.lost
            except asyncio.CancelledError:
                if connection is not None and connection.transport is not None:
                    connection.transport.close()
                raise
            except (OSError, ConnectionError, asyncio.TimeoutError, PeerProtocolError) as exc:
                if self.connected:
                    log.warning("lost connection to member %x: %s", self.peer_id, exc)
                self._connection = None
                self._out.clear()
                self._set_connected(False)
                if connection is not None and connection.transport is not None:
                    connection.transport.close()
                self.transport.on_unreachable(self.peer_id)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            if connected:
                log.info("connected to member %x", self.peer_id)

    def wake(self) -> None:
        """End a backoff wait early (the peer was just heard from)."""
        self._woken.set()

    def close(self) -> None:
        self._task.cancel()


class PeerTransport:
    """Peer connections of one member's Raft process."""

    def __init__(
        self,
        *,
        member_id: int,
        cluster_id: int,
        server_ssl: SSLContext | None = None,
        client_ssl: SSLContext | None = None,
        allowed_cn: str = "",
        on_message: Callable[[int, bytes], None],
        on_frames_done: Callable[[], None] = lambda: None,
        on_unreachable: Callable[[int], None],
        on_snapshot_connection: Callable[
            [int, asyncio.StreamReader, asyncio.StreamWriter], asyncio.Future
        ]
        | None = None,
        members: Callable[[], list[int]] | None = None,
        is_peer: Callable[[int], bool] | None = None,
        on_hash_kv: Callable[[bytes], Awaitable[bytes]] | None = None,
    ) -> None:
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.allowed_cn = allowed_cn
        self.on_message = on_message
        self.on_frames_done = on_frames_done
        self.on_unreachable = on_unreachable
        self.on_snapshot_connection = on_snapshot_connection
        self.members = members
        self.is_peer = is_peer
        self.on_hash_kv = on_hash_kv
        self.senders: dict[int, PeerSender] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._readers: set[asyncio.Task] = set()

    async def listen(self, addresses: list[Address]) -> None:
        for host, port, tls in addresses:
            self._servers.append(
                await asyncio.start_server(
                    self._accept, host, port, ssl=self.server_ssl if tls else None
                )
            )

    def set_peer(self, peer_id: int, addresses: list[Address]) -> None:
        """Start (or keep) sending to a peer at these addresses."""
        if peer_id == self.member_id:
            return
        sender = self.senders.get(peer_id)
        if sender is not None and sender.addresses == addresses:
            return
        if sender is not None:
            sender.close()
        self.senders[peer_id] = PeerSender(self, peer_id, addresses)

    def remove_peer(self, peer_id: int) -> None:
        sender = self.senders.pop(peer_id, None)
        if sender is not None:
            sender.close()

    def send(self, peer_id: int, frames: list[bytes], faulted: bool = True) -> bool:
        """Queue frames for a peer; False when they were dropped (no connection yet, or
        its buffer is full)."""
        if faulted and FAULTS is not None and FAULTS.intercept(peer_id, frames, self._late):
            return True  # (tests only: dropped, or delivered later, as if on the wire)
        sender = self.senders.get(peer_id)
        if sender is None or not sender.send(frames):
            self.on_unreachable(peer_id)
            return False
        return True

    def _late(self, peer_id: int, frames: list[bytes]) -> None:
        self.send(peer_id, frames, faulted=False)

    def flush(self) -> None:
        """Write every peer's queued frames now rather than later in this loop iteration
        (before the loop blocks on a WAL fdatasync, so the peers work meanwhile)."""
        for sender in self.senders.values():
            if sender._flush_scheduled:
                sender._flush()

    def is_connected(self, peer_id: int) -> bool:
        sender = self.senders.get(peer_id)
        return sender is not None and sender.connected

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._readers.add(task)
        try:
            if self.allowed_cn:
                name = common_name(writer.get_extra_info("peercert"))
                if name != self.allowed_cn:
                    log.warning(
                        "refused a peer connection: certificate CN %r is not %r",
                        name,
                        self.allowed_cn,
                    )
                    return
            data = await asyncio.wait_for(reader.readexactly(HANDSHAKE.size), 5.0)
            try:
                channel, sender = check_handshake(data, self.cluster_id, self.member_id)
            except PeerProtocolError as exc:
                log.warning("refused a peer connection: %s", exc)
                writer.write(b"\x00" + str(exc).encode()[:255])
                return
            if channel != CHANNEL_QUERY and self.is_peer is not None and not self.is_peer(sender):
                log.warning("refused a peer connection: %x is not a member", sender)
                writer.write(b"\x00" + f"{sender:x} is not a member of this cluster".encode())
                return
            if channel != CHANNEL_MESSAGES:
                writer.write(ACCEPT)
            if channel == CHANNEL_QUERY:
                members = self.members() if self.members is not None else []
                writer.write(
                    MEMBERS_REPLY.pack(self.cluster_id, len(members))
                    + b"".join(struct.pack("!Q", m) for m in members)
                )
                await writer.drain()
                return
            if channel == CHANNEL_SNAPSHOT:
                if self.on_snapshot_connection is not None:
                    await self.on_snapshot_connection(sender, reader, writer)
                return
            if channel == CHANNEL_HASHKV:
                request = await asyncio.wait_for(read_frame(reader, HASH_REQUEST_LIMIT), 5.0)
                if self.on_hash_kv is None:
                    answer = HASH_FAILED + b"this member does not answer hash queries"
                else:
                    answer = await self.on_hash_kv(request)
                writer.write(FRAME.pack(len(answer)) + answer)
                await writer.drain()
                return
            outgoing = self.senders.get(sender)
            if outgoing is not None:
                outgoing.wake()  # the peer is up: a sender waiting out its backoff dials now
            # Frames from here on go straight from the transport to the Raft process (no
            # task switch per read). The peer sends nothing before our ACCEPT; if it did,
            # those bytes are frames like the rest.
            if reader.at_eof() or writer.transport.is_closing():
                return
            incoming = _Incoming(sender, self.on_message, self.on_frames_done)
            buffered = bytes(reader._buffer)  # noqa: SLF001 (StreamReader keeps no public one)
            writer.transport.set_protocol(incoming)
            writer.write(ACCEPT)
            incoming.connection_made(writer.transport)
            if buffered:
                incoming.data_received(buffered)
            await incoming.closed
        except (asyncio.IncompleteReadError, OSError, asyncio.TimeoutError):
            pass  # the peer went away (ConnectionError is an OSError)
        except RuntimeError as exc:  # uvloop: writing to a transport the peer closed
            log.info("peer connection closed under us: %s", exc)
        except PeerProtocolError as exc:
            log.warning("closing a peer connection: %s", exc)
        except asyncio.CancelledError:
            pass  # closing: ending quietly keeps asyncio from logging the cancellation
        except Exception:
            # Handling one peer's message failed: that connection ends, the member goes on.
            log.exception("closing a peer connection: error handling what it sent")
        finally:
            self._readers.discard(task)
            writer.close()

    async def close(self) -> None:
        for sender in self.senders.values():
            sender.close()
        self.senders.clear()
        for server in self._servers:
            server.close()
        for task in list(self._readers):
            task.cancel()
        for server in self._servers:
            await server.wait_closed()


async def query_cluster(
    host: str, port: int, member_id: int, ssl: SSLContext | None = None
) -> tuple[int, list[int]]:
    """Ask the peer at host:port for its cluster id and the ids of its members."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ssl, server_hostname=host if ssl else None), 3.0
    )
    try:
        writer.write(encode_handshake(CHANNEL_QUERY, 0, member_id, 0))
        if await asyncio.wait_for(reader.readexactly(1), 3.0) != ACCEPT:
            raise PeerProtocolError(f"{host}:{port} refused the query")
        cluster, count = MEMBERS_REPLY.unpack(
            await asyncio.wait_for(reader.readexactly(MEMBERS_REPLY.size), 3.0)
        )
        data = await asyncio.wait_for(reader.readexactly(8 * count), 3.0)
        return cluster, [struct.unpack_from("!Q", data, 8 * i)[0] for i in range(count)]
    finally:
        writer.close()


async def ask_hash_kv(
    address: Address,
    ssl: SSLContext | None,
    cluster_id: int,
    member_id: int,
    peer_id: int,
    request: bytes,
    timeout: float,
) -> bytes:
    """Send a HashKVRequest to the peer at ``address`` over the peer channel; its answer
    (HASH_OK + HashKVResponse, or HASH_FAILED + the error). OSError, PeerProtocolError or
    TimeoutError when it cannot be asked."""
    host, port, tls = address

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl if tls else None, server_hostname=host if tls else None
        )
        try:
            writer.write(encode_handshake(CHANNEL_HASHKV, cluster_id, member_id, peer_id))
            writer.write(FRAME.pack(len(request)) + request)
            accepted = await reader.readexactly(1)
            if accepted != ACCEPT:
                reason = (await reader.read(255)).decode(errors="replace") or "no reason given"
                raise PeerProtocolError(f"peer refused the hash query: {reason}")
            return await read_frame(reader, 1 << 16)
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except asyncio.IncompleteReadError:
        raise PeerProtocolError("the peer closed the connection before answering") from None
