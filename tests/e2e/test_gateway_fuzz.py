"""Seeded random input on the client port's HTTP side: gateway calls with random JSON built
from each request message's own field names (boundary numbers, wrong types, deep nesting),
bodies that are not JSON, lying Content-Lengths, broken chunking and header lines,
pipelined bursts, WebSocket calls with valid and broken frames. Afterwards the member
still runs, answers HTTP and native requests, and logged no traceback. (Membership, leader
moves, auth enable and compaction are left out: legitimate calls that change who serves,
not bad input.)"""

from __future__ import annotations

import json
import random
import socket

from google.protobuf.descriptor import FieldDescriptor as FD

from pyraftkv import Client
from pyraftkv.protocol.gateway import ROUTES

from .gateway_http import b64, call

LEFT_OUT = {
    "MemberAdd", "MemberRemove", "MemberPromote", "MemberUpdate", "MoveLeader",
    "AuthEnable", "Compact",
}  # fmt: skip
PATHS = sorted(path for path, method in ROUTES.items() if method.name not in LEFT_OUT)
SCALARS = [0, -1, 1, 2**31, 2**63 - 1, -(2**63), 2**64, 1e300, "", "x", "!!", "AAAA", True, None]


def _value(rng: random.Random, field, depth: int):
    if rng.random() < 0.2:
        return rng.choice(SCALARS)
    if field.type == FD.TYPE_MESSAGE:
        return _object(rng, field.message_type, depth + 1) if depth < 4 else {}
    if field.type == FD.TYPE_BYTES:
        return b64(rng.choice(["", "a", "\0", "\xff" * 3, "k" * rng.randrange(300)]))
    if field.type == FD.TYPE_ENUM:
        return rng.choice([v.name for v in field.enum_type.values] + [99, -1])
    if field.type == FD.TYPE_BOOL:
        return rng.choice([True, False])
    return str(rng.choice([0, 1, -1, 5, 2**31, 2**63 - 1, -(2**63)]))


def _object(rng: random.Random, descriptor, depth: int = 0) -> dict:
    body = {}
    for field in descriptor.fields:
        if rng.random() < 0.5:
            value = _value(rng, field, depth)
            repeated = field.is_repeated
            body[field.name] = [value] * rng.randrange(3) if repeated else value
    return body


def _request(rng: random.Random, last: bool) -> bytes:
    path = rng.choice(PATHS)
    choice = rng.randrange(10)
    if choice < 6:
        body = json.dumps(_object(rng, ROUTES[path].request.DESCRIPTOR)).encode()
    elif choice == 6:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    elif choice == 7:
        body = json.dumps(_object(rng, ROUTES[path].request.DESCRIPTOR)).encode()[:-3]
    else:
        body = b'{"key":"YQ=="}' * rng.randrange(1, 4)
    close = b"Connection: close\r\n" if last else b""
    framing = rng.randrange(9)
    if framing == 8:  # the call over a WebSocket: frames valid or not, whatever follows
        return WS_UPGRADE % path.encode() + _frames(rng, body)
    if framing == 0:  # a Content-Length that lies (shorter)
        return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (
            path.encode(), max(0, len(body) - 2), close, body)  # fmt: skip
    if framing == 1:  # chunked, sometimes broken
        size = b"%x" % len(body) if rng.random() < 0.7 else b"zz"
        head = b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" % path.encode()
        return head + close + b"\r\n" + size + b"\r\n" + body + b"\r\n0\r\n\r\n"
    if framing == 2:  # a broken header or request line
        return rng.choice([b"POST %s HTTP/1.1\r\nbad header\r\n\r\n" % path.encode(),
                           b"POST\r\n\r\n", b"GET / HTTP/1.1\r\nHost: \x00\r\n\r\n"])  # fmt: skip
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (
        path.encode(), len(body), close, body)  # fmt: skip


WS_UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _frame(rng: random.Random, opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One client frame (masked, as RFC 6455 asks of clients)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    mask = bytes(rng.randrange(256) for _ in range(4))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _frames(rng: random.Random, body: bytes) -> bytes:
    choice = rng.randrange(7)
    if choice < 3:  # the request as one text frame, maybe twice
        return _frame(rng, 1, body) * rng.randrange(1, 3)
    if choice == 3:  # in fragments, a ping between them
        half = len(body) // 2
        first, ping = _frame(rng, 1, body[:half], False), _frame(rng, 9, b"p")
        return first + ping + _frame(rng, 0, body[half:])
    if choice == 4:  # a close frame, valid or with a bad code
        return _frame(rng, 8, rng.choice([b"\x03\xe8", b"\x00\x01", b"x"]))
    if choice == 5:  # a frame that claims more than anything sent, or an unmasked one
        return rng.choice([b"\x81\xff" + (2**62).to_bytes(8, "big"), b"\x81\x05hello"])
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))


def _session(endpoint: tuple[str, int], rng: random.Random) -> bytes:
    """One connection's burst of requests; what came back."""
    count = rng.randrange(1, 6)
    data = b"".join(_request(rng, i == count - 1) for i in range(count))
    answers = b""
    with socket.create_connection(endpoint, timeout=0.3) as sock:
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                answers += chunk
        except OSError:  # a timeout (a lock waiting, a watch streaming) or a reset
            pass
    return answers


def test_random_http_input_leaves_the_member_serving(make_cluster):
    cluster = make_cluster(1)
    cluster.start()
    member = cluster.members[0]
    rng = random.Random(12)
    answers = b"".join(_session(("127.0.0.1", member.client_port), rng) for _ in range(150))
    for status in (b"200 OK", b"400 Bad Request", b"404 Not Found", b"101 Switching Protocols"):
        assert answers.count(b"HTTP/1.1 " + status) >= 5, status  # the input reached calls
    assert member.running
    assert call(member.endpoint, "/health", method="GET").status == 200
    assert call(member.endpoint, "/v3/kv/put", {"key": b64("z"), "value": b64("1")}).status == 200
    with Client([member.endpoint]) as client:
        assert client.get("z").kvs[0].value == b"1"
    assert "Traceback" not in member.log_text()
