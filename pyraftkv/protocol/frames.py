"""Frame codec of the native client protocol.

Every frame is a 14-byte header followed by a body::

    u32  length     bytes after this field (10 + len(body)), big-endian
    u64  stream     request id chosen by the client, nonzero; the reply carries the same id
    u8   code       client -> server: the method (see methods.py)
                    server -> client: the reply kind (REPLY, ERROR, MESSAGE, END)
    u8   flags      client -> server: FLAG_END closes the client's side of a stream;
                    FLAG_TOKEN: the body starts with an auth token (u16 length, token),
                    so one connection can carry requests of many users;
                    FLAG_USER: the body starts with a user name (same encoding, before
                    any token): a local relay (the gRPC front end) forwarding a request
                    of a client whose certificate named that user; refused unless the
                    connection is marked as a trusted relay;
                    FLAG_LEADER, on a Watch stream's first frame: end the stream with
                    "no leader" when the member loses its leader (etcd's require-leader)
    body            client -> server: the request message (protobuf)
                    REPLY / MESSAGE: the response message (protobuf); ERROR: see encode_error

A unary call is one request frame and one REPLY or ERROR frame. A stream (Watch,
LeaseKeepAlive, Observe) is any number of request frames on one stream id, answered by
MESSAGE frames; it ends with END or ERROR from the server. Many calls are in flight on one
connection at once (pipelined, multiplexed); replies come in any order.

A frame that breaks these rules is a ProtocolError: the peer that reads it closes the
connection (the server first sends an ERROR frame on stream 0 saying why).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import PyraftkvError

HEADER = struct.Struct("!IQBB")
HEADER_BYTES = HEADER.size  # 14
_LENGTH_COVERS = HEADER_BYTES - 4  # the length field counts the stream, code and flags too
_ERROR_HEAD = struct.Struct("!HH")

# Reply kinds (server -> client).
REPLY = 0
ERROR = 1
MESSAGE = 2
END = 3
REPLY_KINDS = frozenset((REPLY, ERROR, MESSAGE, END))

FLAG_END = 0x01
FLAG_TOKEN = 0x02
FLAG_USER = 0x04
FLAG_LEADER = 0x08
_TOKEN_LENGTH = struct.Struct("!H")

# etcd accepts requests up to --max-request-bytes and frames with 512 KiB of overhead on
# top; a body between the two gets a "request is too large" error, a larger frame closes
# the connection.
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
FRAME_OVERHEAD_BYTES = 512 * 1024
# Replies can be much larger (a big range); clients accept up to this by default.
DEFAULT_MAX_REPLY_FRAME_BYTES = 1 << 30


class ProtocolError(PyraftkvError):
    """The byte stream broke the frame rules; the connection cannot be trusted any more."""


class Frame(NamedTuple):
    """One decoded frame. ``code`` is a method (requests) or a reply kind (replies)."""

    stream: int
    code: int
    flags: int
    body: bytes


def encode_frame(stream: int, code: int, body: bytes = b"", flags: int = 0) -> bytes:
    """Return the bytes of one frame."""
    return HEADER.pack(_LENGTH_COVERS + len(body), stream, code, flags) + body


def with_token(token: bytes, body: bytes) -> bytes:
    """A FLAG_TOKEN frame's body: the token, then the request message."""
    return _TOKEN_LENGTH.pack(len(token)) + token + body


def split_token(body: bytes) -> tuple[str, bytes]:
    """(token, request message) of a FLAG_TOKEN frame's body; ProtocolError if malformed."""
    if len(body) < _TOKEN_LENGTH.size:
        raise ProtocolError("a FLAG_TOKEN frame without a token")
    (length,) = _TOKEN_LENGTH.unpack_from(body)
    end = _TOKEN_LENGTH.size + length
    if end > len(body):
        raise ProtocolError("a FLAG_TOKEN frame's token is longer than its body")
    try:
        token = body[_TOKEN_LENGTH.size : end].decode()
    except UnicodeDecodeError:
        raise ProtocolError("an auth token that is not UTF-8") from None
    return token, body[end:]


def encode_error(stream: int, code: int, message: str, leader_url: str = "") -> bytes:
    """An ERROR frame: u16 gRPC status code, u16 message length, message, leader URL (rest)."""
    text = message.encode()[:0xFFFF]
    body = _ERROR_HEAD.pack(code, len(text)) + text + leader_url.encode()
    return encode_frame(stream, ERROR, body)


def decode_error(body: bytes) -> tuple[int, str, str]:
    """Split an ERROR body into (status code, message, leader URL or "")."""
    if len(body) < _ERROR_HEAD.size:
        raise ProtocolError(f"error body of {len(body)} bytes is shorter than its header")
    code, size = _ERROR_HEAD.unpack_from(body)
    end = _ERROR_HEAD.size + size
    if end > len(body):
        raise ProtocolError("error message runs past the end of its frame")
    try:
        return code, body[_ERROR_HEAD.size : end].decode(), body[end:].decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("error text is not UTF-8") from exc


class FrameDecoder:
    """Turns a byte stream into frames; feed it whatever the socket gave.

    ``max_frame_bytes`` bounds the body so a hostile or broken peer cannot make us buffer
    without limit; ``valid_codes`` (if given) is the set of codes the peer may send.
    """

    __slots__ = ("_buffer", "_max_length", "_valid_codes")

    def __init__(self, max_frame_bytes: int, valid_codes: frozenset[int] | None = None) -> None:
        self._buffer = bytearray()
        self._max_length = max_frame_bytes + _LENGTH_COVERS
        self._valid_codes = valid_codes

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame now complete. Raises ProtocolError on a bad frame."""
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        available = len(buffer)
        unpack = HEADER.unpack_from
        while available - offset >= HEADER_BYTES:
            length, stream, code, flags = unpack(buffer, offset)
            if length < _LENGTH_COVERS or length > self._max_length:
                raise ProtocolError(
                    f"frame length {length} is outside [{_LENGTH_COVERS}, {self._max_length}]"
                )
            if self._valid_codes is not None and code not in self._valid_codes:
                raise ProtocolError(f"unknown frame code {code}")
            end = offset + 4 + length
            if end > available:
                break
            frames.append(Frame(stream, code, flags, bytes(buffer[offset + HEADER_BYTES : end])))
            offset = end
        if offset:
            del buffer[:offset]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buffer)
