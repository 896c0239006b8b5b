"""A structure-aware fuzzer for a member's client port, and the checks that follow a run.

Inputs: requests of every native-protocol method with fields drawn from boundary and random
values (negative and huge revisions and limits, empty, odd and oversized keys and values,
range_end edge cases, unknown enum values, deep and wide transactions), framed with
colliding stream ids and every flag; streams cancelled in every state; random bytes,
truncated frames and frames longer than any limit. Each session sends a batch of inputs on a
fresh connection to one member and reads whatever comes back.

After a run (``check_cluster``): every member still runs and answers, each write
acknowledged before the run is still there on every member at its revision, and the
members' HashKV agree at a common revision. And (``peer_links_closed``) no member closed
a peer connection: after client inputs only, a member broke the peer protocol then (e.g.
forwarded a request its own checks let through).

Membership, leader moves and enabling auth are left out of the structured inputs: they are
legitimate requests that change who serves (a voter added at a made-up URL costs the
cluster its quorum), not bad input. Compactions are drawn below the first tracked write's
revision or outside the valid range, so the history the checks read stays.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from dataclasses import dataclass, field

from google.protobuf.descriptor import FieldDescriptor as FD

from pyraftkv.client import Client
from pyraftkv.client.connection import ConnectionLost
from pyraftkv.errors import ApiError
from pyraftkv.protocol.frames import (
    FLAG_END,
    FLAG_TOKEN,
    FLAG_USER,
    REPLY_KINDS,
    FrameDecoder,
    encode_frame,
)
from pyraftkv.protocol.methods import METHODS

from ..e2e.harness import put_retrying

LEFT_OUT = {
    "MemberAdd", "MemberRemove", "MemberPromote", "MemberUpdate", "MoveLeader",
    "AuthEnable", "AuthDisable", "Compact",
}  # fmt: skip
FUZZED = [m for m in METHODS if m.name not in LEFT_OUT]
COMPACT = next(m for m in METHODS if m.name == "Compact")
STATUS = next(m for m in METHODS if m.name == "Status")
MARKER_STREAM = 2**64 - 2
# What a member logs when a peer broke the peer protocol (peer_transport.py).
PEER_CLOSED = "closing a peer connection"

INTS = [0, 1, -1, 2, 3, 7, 100, 2**31 - 1, -(2**31), 2**32, 2**53, 2**63 - 1, -(2**63)]
UINTS = [0, 1, 2, 100, 2**32 - 1, 2**63, 2**64 - 1]


def _bytes_pool(rng: random.Random) -> bytes:
    choice = rng.randrange(12)
    if choice == 0:
        return b""
    if choice == 1:
        return b"\x00"
    if choice == 2:
        return b"\xff" * rng.randrange(1, 5)
    if choice == 3:
        return b"fz/" + bytes([rng.randrange(256)])
    if choice == 4:
        return rng.randbytes(rng.randrange(1, 40))
    if choice == 5:
        return b"fz/" + b"k" * rng.choice((1, 100, 4096, 70000))
    if choice == 6 and rng.random() < 0.05:
        return b"v" * rng.choice((1 << 20, (3 << 19) + 1, 2 << 20))  # around the request limit
    return b"fz/" + str(rng.randrange(50)).encode()


def _string_pool(rng: random.Random) -> str:
    return rng.choice(["", "a", "root", "fz", "ü" * 3, "x" * 300, "\x00", str(rng.random())])


def fill(message, rng: random.Random, depth: int = 0) -> None:
    """Set a random subset of ``message``'s fields to boundary and random values."""
    for f in message.DESCRIPTOR.fields:
        if rng.random() < 0.45:
            continue
        repeated = f.is_repeated
        count = rng.choice((0, 1, 2, 3, 200 if depth == 0 and rng.random() < 0.05 else 1))
        for _ in range(count if repeated else 1):
            if f.type == FD.TYPE_MESSAGE:
                if depth >= 4:
                    break
                child = getattr(message, f.name).add() if repeated else getattr(message, f.name)
                fill(child, rng, depth + 1)
                if not repeated:
                    child.SetInParent()
                continue
            value = _scalar(f, rng)
            try:
                if repeated:
                    getattr(message, f.name).append(value)
                else:
                    setattr(message, f.name, value)
            except (ValueError, TypeError):
                pass  # out of the field's range: try another field


def _scalar(f, rng: random.Random):
    if f.type == FD.TYPE_BOOL:
        return rng.random() < 0.5
    if f.type == FD.TYPE_BYTES:
        return _bytes_pool(rng)
    if f.type == FD.TYPE_STRING:
        return _string_pool(rng)
    if f.type == FD.TYPE_ENUM:
        return rng.choice([v.number for v in f.enum_type.values] + [-1, 7, 99, 2**31 - 1])
    if f.type in (FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64):
        return rng.choice(UINTS + [rng.randrange(1000)])
    if f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return rng.choice([0.0, -1.0, 1e308, float("nan")])
    return rng.choice(INTS + [rng.randrange(-5, 1000)])


def structured(rng: random.Random, compact_below: int) -> bytes:
    """One request frame of a random method (or a compaction that keeps tracked history)."""
    if rng.random() < 0.03:
        revision = rng.choice([-1, 0, 2**63 - 1, 10**12, rng.randrange(1, max(2, compact_below))])
        body = COMPACT.request(revision=revision, physical=rng.random() < 0.5).SerializeToString()
        return encode_frame(rng.randrange(1, 9), COMPACT.number, body)
    method = rng.choice(FUZZED)
    request = method.request()
    fill(request, rng)
    body = request.SerializeToString()
    if rng.random() < 0.05:
        body = body[: rng.randrange(len(body) + 1)] + rng.randbytes(rng.randrange(4))
    flags = rng.choice([0] * 12 + [FLAG_END, FLAG_END | 0x80, 0x40])
    stream = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 2**64 - 1, rng.randrange(1, 2**63)])
    return encode_frame(stream, method.number, body, flags)


def cancelled_streams(rng: random.Random) -> bytes:
    """Streams opened and ended in every order: a watch, a keep-alive, a unary call."""
    stream = rng.randrange(1, 9)
    watch = next(m for m in METHODS if m.name == "Watch")
    keepalive = next(m for m in METHODS if m.name == "LeaseKeepAlive")
    put = next(m for m in METHODS if m.name == "Put")
    create = watch.request()
    create.create_request.key = _bytes_pool(rng)
    create.create_request.start_revision = rng.choice(INTS)
    frames = [
        encode_frame(stream, watch.number, create.SerializeToString()),
        encode_frame(stream, watch.number, b"", FLAG_END),
        encode_frame(stream, watch.number, b"", FLAG_END),
        encode_frame(stream, keepalive.number, keepalive.request(ID=1).SerializeToString()),
        encode_frame(stream, keepalive.number, b"", FLAG_END),
        encode_frame(stream, put.number, put.request(key=b"fz/c").SerializeToString()),
        encode_frame(stream, put.number, b"", FLAG_END),
    ]
    rng.shuffle(frames)
    return b"".join(frames)


def malformed(rng: random.Random) -> bytes:
    """Bytes that break the framing (the member closes that connection)."""
    choice = rng.randrange(5)
    if choice == 0:
        return rng.randbytes(rng.randrange(1, 64))
    if choice == 1:
        return struct.pack("!IQBB", rng.choice([0, 3, 9, 2**32 - 1, 1 << 30]), 1, 1, 0)
    if choice == 2:
        return encode_frame(0, rng.randrange(256), b"")
    if choice == 3:
        return encode_frame(rng.randrange(1, 9), 2, b"\x00", rng.choice([FLAG_TOKEN, FLAG_USER]))
    frame = encode_frame(1, 2, b"x" * 20)
    return frame[: rng.randrange(1, len(frame))]


@dataclass
class FuzzStats:
    inputs: int = 0
    sessions: int = 0
    closed_by_member: int = 0
    bytes_back: int = 0
    seconds: float = 0.0
    refused: list[str] = field(default_factory=list)  # endpoints that stopped accepting


@dataclass
class Tracked:
    """Writes acknowledged before the run: (key, value, revision)."""

    writes: list[tuple[bytes, bytes, int]] = field(default_factory=list)


def track_writes(client: Client, count: int = 20) -> Tracked:
    tracked = Tracked()
    for i in range(count):
        key, value = f"tracked/{i}".encode(), f"value-{i}".encode()
        tracked.writes.append((key, value, client.put(key, value).header.revision))
    return tracked


def session(endpoint: tuple[str, int], rng: random.Random, inputs: int, compact_below: int):
    """One connection: ``inputs`` inputs sent in a few writes, the answers drained."""
    # Bytes that break the framing end a connection, so they come last in a session (one
    # session in five), after the inputs the member should answer one by one.
    tail = [malformed(rng)] if rng.random() < 0.2 else []
    parts = [
        structured(rng, compact_below) if rng.random() < 0.9 else cancelled_streams(rng)
        for _ in range(inputs - len(tail))
    ]
    # A last request whose answer says the member has read everything before it.
    parts += [encode_frame(MARKER_STREAM, STATUS.number, b""), *tail]
    back, closed = 0, False
    decoder = FrameDecoder(1 << 31, REPLY_KINDS)
    with socket.create_connection(endpoint, timeout=5) as sock:  # refused: the caller's
        sock.settimeout(5)
        try:
            for i in range(0, len(parts), 16):
                sock.sendall(b"".join(parts[i : i + 16]))
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    closed = True
                    break
                back += len(data)
                if any(f.stream == MARKER_STREAM for f in decoder.feed(data)):
                    break
        except TimeoutError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            closed = True
    return back, closed


def run(endpoints: list[tuple[str, int]], seed: int, inputs: int, compact_below: int,
        per_session: int = 40) -> FuzzStats:  # fmt: skip
    rng = random.Random(seed)
    stats = FuzzStats()
    began = time.monotonic()
    endpoints = list(endpoints)
    while stats.inputs < inputs and endpoints:
        n = min(per_session, inputs - stats.inputs)
        endpoint = rng.choice(endpoints)
        try:
            back, closed = session(endpoint, rng, n, compact_below)
        except ConnectionRefusedError:
            stats.refused.append(f"{endpoint[0]}:{endpoint[1]}")  # check_cluster says why
            endpoints.remove(endpoint)
            continue
        stats.inputs += n
        stats.sessions += 1
        stats.bytes_back += back
        stats.closed_by_member += closed
    stats.seconds = time.monotonic() - began
    return stats


def peer_links_closed(cluster) -> list[str]:
    """The peer connections members closed, from their logs: after client inputs only, a
    member broke the peer protocol (forwarded a request its own checks let through)."""
    problems = []
    for member in cluster.members:
        closed = [line for line in member.log_text().splitlines() if PEER_CLOSED in line]
        problems += [f"member {member.name}: {line.strip()}" for line in closed[:3]]
    return problems


def check_cluster(cluster, tracked: Tracked) -> list[str]:
    """What is wrong with the cluster after a run (empty: nothing), peer links aside."""
    problems = []
    for member in cluster.members:
        if not member.running:
            problems.append(f"member {member.name} is down (exit {member.process.poll()})")
    if problems:
        return problems
    clients = {m.name: cluster.client([m], timeout=10) for m in cluster.members}
    for name, client in clients.items():
        try:
            for key, value, revision in tracked.writes:
                got = client.get(key, revision=revision, serializable=True).kvs
                if [kv.value for kv in got] != [value]:
                    problems.append(f"{name}: acknowledged {key!r}@{revision} reads {got!r}")
        except (ConnectionLost, ApiError) as exc:
            problems.append(f"member {name} does not answer: {exc}")
    if problems:
        return problems
    any_client = next(iter(clients.values()))
    any_client.alarm_disarm()  # an Alarm ACTIVATE among the inputs is a legitimate request
    revision = put_retrying(any_client, "fz-check", "end").header.revision
    hashes = {}
    for name, client in clients.items():
        deadline = time.monotonic() + 20
        while client.status().raftAppliedIndex < any_client.status().raftAppliedIndex:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        hashes[name] = client.hash_kv(revision).hash
    if len(set(hashes.values())) != 1:
        problems.append(f"HashKV at revision {revision} differs: {hashes}")
    return problems
