"""A fuzzer for a member's peer port, with the client-port fuzzer's checks after a run.

Inputs, one connection each: handshakes of every shape (wrong magic or version, unknown
channels, other clusters, made-up, zero and real member ids, wrong receivers), then frames
of every kind: Raft messages as random bytes, cut short, or well formed with random fields
but a stale term (so they test the checks, not Raft's trust in its members); proposals
forwarded as a follower would, garbage or valid; refusals; unknown kinds; frame lengths past
the limit; snapshot channels carrying garbage; the query channel.

Forging a member's current-term messages is left out: a member believes what its peers
say, which is why peer TLS with client certificates exists. The membership check stops
accidents and stale members; these inputs show no bytes from the port stop a member.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from dataclasses import dataclass

from pyraftkv.node.peer_transport import (
    CHANNEL_MESSAGES,
    CHANNEL_QUERY,
    CHANNEL_SNAPSHOT,
    FRAME,
    HANDSHAKE,
    MAGIC,
    VERSION,
    query_cluster,
)
from pyraftkv.proto import raft_internal_pb2 as internal
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.methods import BY_NAME
from pyraftkv.raft import codec
from pyraftkv.raft.types import Entry, EntryType, Message, MessageType

from .client_port import INTS, UINTS

FRAME_RAFT, FRAME_FORWARD, FRAME_REFUSED = 1, 2, 3


@dataclass
class Target:
    host: str
    port: int
    cluster_id: int
    member_id: int  # the member listening there
    members: list[int]


def discover(host: str, port: int) -> tuple[int, list[int]]:
    """The cluster id and member ids, from the query channel anyone may use."""
    return asyncio.run(query_cluster(host, port, 1))


def _u64(rng: random.Random) -> int:
    return rng.choice(UINTS + [rng.getrandbits(64)])


def handshake(rng: random.Random, target: Target) -> bytes:
    """A handshake: mostly a member's, else anything."""
    others = [m for m in target.members if m != target.member_id]
    sender = rng.choice(others) if rng.random() < 0.7 else _u64(rng)
    roll = rng.random()
    if roll < 0.6:
        return HANDSHAKE.pack(
            MAGIC, VERSION, CHANNEL_MESSAGES, target.cluster_id, sender, target.member_id
        )
    magic = rng.choice([MAGIC, b"PRKW", b"\x00" * 4])
    version = rng.choice([VERSION, 0, 2, 255])
    channel = rng.choice([0, CHANNEL_MESSAGES, CHANNEL_SNAPSHOT, CHANNEL_QUERY, 4, 255])
    cluster = rng.choice([target.cluster_id, 0, _u64(rng)])
    receiver = rng.choice([target.member_id, 0, _u64(rng)])
    return HANDSHAKE.pack(magic, version, channel, cluster, sender, receiver)


def raft_message(rng: random.Random, target: Target) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return rng.randbytes(rng.randrange(0, 80))
    entries = tuple(
        Entry(rng.choice([0, 1]), _u64(rng) % 1000, rng.choice(list(EntryType)), rng.randbytes(8))
        for _ in range(rng.choice([0, 0, 1, 3]))
    )
    message = Message(
        rng.choice(list(MessageType)),
        rng.choice([target.member_id, 0, _u64(rng)]),
        rng.choice(target.members + [0, _u64(rng)]),
        rng.choice([0, 1]),  # stale: every running cluster is past term 1
        log_term=rng.choice([0, 1]),
        index=rng.choice(INTS[:9]) % 2**63,
        commit=rng.choice(INTS[:9]) % 2**63,
        entries=entries,
        reject=rng.random() < 0.5,
        reject_hint=rng.choice(INTS[:9]) % 2**63,
        context=rng.randbytes(rng.choice([0, 8, 9])),
    )
    try:
        encoded = codec.encode_message(message)
    except (ValueError, OverflowError, struct.error, codec.CodecError):
        return rng.randbytes(20)
    return encoded[: rng.randrange(len(encoded) + 1)] if roll < 0.45 else encoded


def forwarded(rng: random.Random, sender: int) -> bytes:
    """A follower's forwarded proposal: garbage, or a batch with a real or made-up request."""
    if rng.random() < 0.3:
        payload = rng.randbytes(rng.randrange(0, 60))
    else:
        batch = internal.RequestBatch()
        for _ in range(rng.choice([0, 1, 2])):
            body = rpc.PutRequest(key=b"fz-peer/" + rng.randbytes(2), value=b"v")
            batch.requests.add(
                member=rng.choice([0, sender, _u64(rng)]),
                id=_u64(rng),
                method=rng.choice([BY_NAME["Put"].number, 0, 99, 100, 101, 102, 250]),
                body=body.SerializeToString() if rng.random() < 0.8 else rng.randbytes(5),
            )
        payload = batch.SerializeToString()
    return bytes((FRAME_FORWARD,)) + sender.to_bytes(8, "big") + payload


def frames(rng: random.Random, target: Target, sender: int, count: int) -> bytes:
    out = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.55:
            body = bytes((FRAME_RAFT,)) + raft_message(rng, target)
        elif roll < 0.8:
            body = forwarded(rng, sender)
        elif roll < 0.9:
            body = bytes((FRAME_REFUSED, rng.randrange(256))) + rng.randbytes(rng.randrange(20))
        else:
            body = bytes((rng.randrange(256),)) + rng.randbytes(rng.randrange(10))
        out.append(FRAME.pack(len(body)) + body)
    if rng.random() < 0.05:
        out.append(FRAME.pack(rng.choice([2**32 - 1, 1 << 30])) + b"x")  # past the limit
    return b"".join(out)


@dataclass
class PeerFuzzStats:
    inputs: int = 0
    sessions: int = 0
    accepted: int = 0
    seconds: float = 0.0


def session(target: Target, rng: random.Random, inputs: int) -> bool:
    """One connection; True if the member accepted its handshake."""
    hello = handshake(rng, target)
    with socket.create_connection((target.host, target.port), timeout=5) as sock:
        sock.settimeout(2)
        try:
            sock.sendall(hello)
            if sock.recv(1) != b"\x01":
                return False
            channel = hello[5]
            if channel == CHANNEL_MESSAGES:
                sender = struct.unpack_from("!Q", hello, 14)[0]
                sock.sendall(frames(rng, target, sender, inputs))
            elif channel == CHANNEL_SNAPSHOT:
                sock.sendall(rng.randbytes(rng.randrange(1, 2000)))
            time.sleep(0.01)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
    return True


def run(targets: list[Target], seed: int, inputs: int, per_session: int = 30) -> PeerFuzzStats:
    rng = random.Random(seed)
    stats = PeerFuzzStats()
    began = time.monotonic()
    while stats.inputs < inputs:
        n = min(per_session, inputs - stats.inputs)
        stats.accepted += session(rng.choice(targets), rng, n)
        stats.inputs += n
        stats.sessions += 1
    stats.seconds = time.monotonic() - began
    return stats
