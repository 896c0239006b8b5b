"""HTTP/2 for gRPC, the server's side, without I/O (RFC 9113; HPACK, RFC 7541, decoded by
header_block.py): bytes in, events out; answers queued, bytes out.

Only what a gRPC server needs: requests arrive as HEADERS (with CONTINUATION) and DATA
carrying length-prefixed messages; answers are a HEADERS block, DATA, and trailers. The
header blocks sent are HPACK literals that are never indexed, so they depend on nothing
the peer's decoder holds and most are constant bytes. Both directions are flow
controlled: what the peer's windows do not admit waits, per stream, for its
WINDOW_UPDATE. Anything that breaks the protocol raises ``ConnectionError2`` (send
``goaway`` and close); a stream's own fault resets that stream only.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

from .header_block import HeaderBlockError, HeaderDecoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 5, 6, 7, 8, 9
ENHANCE_YOUR_CALM = 0xB

SETTINGS_HEADER_TABLE_SIZE, SETTINGS_MAX_CONCURRENT_STREAMS = 1, 3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 4, 5

DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
DEFAULT_MAX_FRAME = 16_384
# What this side lets the peer send: a stream's window, the connection's (opened at once,
# topped up as bytes are taken), and open streams per connection.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
MAX_STREAMS = 10_000
# A request's header block (a token is the largest field) may not pass this.
MAX_HEADER_BLOCK = 64 << 10

_FRAME_HEADER = struct.Struct(">BHBBL")  # length split 8+16 bits, type, flags, stream
_U32 = struct.Struct(">L")


class ConnectionError2(Exception):
    """The peer broke the protocol: the connection ends with GOAWAY(``code``)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class Request:
    """A call's headers: its ``path`` ("/package.Service/Method") and metadata."""

    stream: int
    path: str
    metadata: dict[str, str]


@dataclass
class Message:
    """One whole gRPC message of a call (its 5-byte prefix taken off)."""

    stream: int
    body: bytes


@dataclass
class TooLarge:
    """A message whose prefix declares more than the limit: its bytes are not kept."""

    stream: int
    size: int


@dataclass
class HalfClosed:
    """The client sent all it will on this call (END_STREAM)."""

    stream: int


@dataclass
class Reset:
    """The client cancelled the call (RST_STREAM), or this side reset it."""

    stream: int


@dataclass
class _Stream:
    send_window: int
    recv_unacked: int = 0
    message: bytearray = field(default_factory=bytearray)  # a message's bytes so far
    skip: int = 0  # bytes of a too-large message still to drop
    remote_closed: bool = False
    headers_sent: bool = False
    pending: deque = field(default_factory=deque)  # DATA payloads the window holds back
    pending_bytes: int = 0
    trailers: bytes | None = None  # to send once ``pending`` is out


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return _FRAME_HEADER.pack(size >> 16, size & 0xFFFF, kind, flags, stream) + payload


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer with an N-bit prefix (RFC 7541, 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header field as an HPACK literal never indexed, its name not from a table."""
    return b"\x10" + _integer(len(name), 7) + name + _integer(len(value), 7) + value


def percent_encode(message: str) -> bytes:
    """grpc-message's encoding: printable ASCII but '%' as is, every other byte %XX."""
    out = bytearray()
    for byte in message.encode("utf-8", "replace"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


_STATUS_200 = b"\x88"  # :status 200, static table entry 8
RESPONSE_HEADERS = _STATUS_200 + literal(b"content-type", b"application/grpc")
OK_TRAILERS = literal(b"grpc-status", b"0")


def _trailers(code: int, message: str, headers_sent: bool) -> bytes:
    block = b"" if headers_sent else RESPONSE_HEADERS  # else a "Trailers-Only" answer
    block += literal(b"grpc-status", str(code).encode())
    if message:
        block += literal(b"grpc-message", percent_encode(message)[:8192])
    return block


class Http2Server:
    """One server connection's protocol state; ``receive`` and the ``send_*`` calls queue
    bytes that ``data_to_send`` hands out."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._decoder = HeaderDecoder(max_list_size=MAX_HEADER_BLOCK)
        self._buffer = bytearray()
        self._preface_seen = False
        self._out: list[bytes] = []
        self._streams: dict[int, _Stream] = {}
        self._last_stream = 0
        self._peer_window = DEFAULT_WINDOW  # what the peer's connection window admits
        self._peer_stream_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._recv_unacked = 0
        self._headers: tuple[int, int, bytearray] | None = None  # stream, flags, block so far
        self._blocked: deque[int] = deque()  # streams with DATA waiting for a window
        self._pending_total = 0  # bytes in every stream's ``pending``
        self.going_away = False
        settings = struct.pack(
            ">HLHL",
            SETTINGS_MAX_CONCURRENT_STREAMS,
            MAX_STREAMS,
            SETTINGS_INITIAL_WINDOW_SIZE,
            STREAM_WINDOW,
        )
        self._out.append(_frame(SETTINGS, 0, 0, settings))
        self._out.append(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(CONNECTION_WINDOW - DEFAULT_WINDOW)))

    # -- out ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    @property
    def pending_bytes(self) -> int:
        """DATA bytes held back by the peer's windows, over every stream."""
        return self._pending_total

    def send_message(self, stream: int, body: bytes) -> None:
        """One gRPC message on a call (its response headers first, once)."""
        state = self._streams.get(stream)
        if state is None or state.trailers is not None:
            return
        if not state.headers_sent:
            state.headers_sent = True
            self._out.append(_frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS))
        data = b"\x00" + _U32.pack(len(body)) + body
        if state.pending:
            state.pending.append(data)
            state.pending_bytes += len(data)
            self._pending_total += len(data)
            return
        self._send_data(stream, state, data)

    def send_trailers(self, stream: int, code: int = 0, message: str = "") -> None:
        """End a call with its status (after the DATA the windows still hold back)."""
        state = self._streams.get(stream)
        if state is None or state.trailers is not None:
            return
        if code == 0 and state.headers_sent:
            block = OK_TRAILERS
        else:
            block = _trailers(code, message, state.headers_sent)
        state.headers_sent = True
        state.trailers = block
        if not state.pending:
            self._finish(stream, state)

    def reset(self, stream: int, code: int = CANCEL) -> None:
        if self._drop(stream):
            self._out.append(_frame(RST_STREAM, 0, stream, _U32.pack(code)))

    def _drop(self, stream: int) -> bool:
        state = self._streams.pop(stream, None)
        if state is None:
            return False
        self._pending_total -= state.pending_bytes
        return True

    def goaway(self, code: int, reason: str = "") -> bytes:
        """The bytes of a GOAWAY ending the connection (after what is queued)."""
        self.going_away = True
        payload = _U32.pack(self._last_stream) + _U32.pack(code) + reason.encode()[:256]
        self._out.append(_frame(GOAWAY, 0, 0, payload))
        return self.data_to_send()

    def _send_data(self, stream: int, state: _Stream, data: bytes) -> None:
        """Send as much of ``data`` as the windows admit; keep the rest in order."""
        offset = 0
        while offset < len(data):
            room = min(self._peer_window, state.send_window, self._peer_max_frame)
            if room <= 0:
                rest = data[offset:]
                state.pending.appendleft(rest)
                state.pending_bytes += len(rest)
                self._pending_total += len(rest)
                if stream not in self._blocked:
                    self._blocked.append(stream)
                return
            chunk = data[offset : offset + room]
            offset += len(chunk)
            self._peer_window -= len(chunk)
            state.send_window -= len(chunk)
            self._out.append(_frame(DATA, 0, stream, chunk))

    def _drain(self) -> None:
        """Windows opened: send what waited, stream by stream in the order they blocked."""
        for _ in range(len(self._blocked)):
            if self._peer_window <= 0:
                return
            stream = self._blocked.popleft()
            state = self._streams.get(stream)
            if state is None:
                continue
            while state.pending and state.send_window > 0 and self._peer_window > 0:
                data = state.pending.popleft()
                state.pending_bytes -= len(data)
                self._pending_total -= len(data)
                self._send_data(stream, state, data)
                if stream in self._blocked:
                    break
            if not state.pending:
                if stream in self._blocked:
                    self._blocked.remove(stream)
                if state.trailers is not None:
                    self._finish(stream, state)
            elif stream not in self._blocked:
                self._blocked.append(stream)

    def _finish(self, stream: int, state: _Stream) -> None:
        assert state.trailers is not None
        self._out.append(_frame(HEADERS, END_HEADERS | END_STREAM, stream, state.trailers))
        if not state.remote_closed:  # the call ends here; what the client still sends is dropped
            self._out.append(_frame(RST_STREAM, 0, stream, _U32.pack(NO_ERROR)))
        del self._streams[stream]

    # -- in -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> list:
        """Take bytes from the peer; the events they complete, in order."""
        buffer = self._buffer
        buffer += data
        if not self._preface_seen:
            if len(buffer) < len(PREFACE):
                if not PREFACE.startswith(bytes(buffer)):
                    raise ConnectionError2(PROTOCOL_ERROR, "not the HTTP/2 preface")
                return []
            if bytes(buffer[: len(PREFACE)]) != PREFACE:
                raise ConnectionError2(PROTOCOL_ERROR, "not the HTTP/2 preface")
            del buffer[: len(PREFACE)]
            self._preface_seen = True
        events: list = []
        offset, size = 0, len(buffer)
        try:
            while size - offset >= 9:
                high, low, kind, flags, stream = _FRAME_HEADER.unpack_from(buffer, offset)
                length = (high << 16) | low
                if length > DEFAULT_MAX_FRAME:
                    raise ConnectionError2(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
                end = offset + 9 + length
                if end > size:
                    break
                payload = bytes(buffer[offset + 9 : end])
                offset = end
                self._frame(kind, flags, stream & 0x7FFFFFFF, payload, events)
        finally:
            del buffer[:offset]
        if self._recv_unacked >= CONNECTION_WINDOW // 2:
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_unacked)))
            self._recv_unacked = 0
        return events

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes, events: list) -> None:
        if self._headers is not None and kind != CONTINUATION:
            raise ConnectionError2(PROTOCOL_ERROR, "a frame inside a header block")
        if kind == DATA:
            self._data(flags, stream, payload, events)
        elif kind == HEADERS:
            self._headers_frame(flags, stream, payload, events)
        elif kind == CONTINUATION:
            if self._headers is None or self._headers[0] != stream:
                raise ConnectionError2(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
            self._block(payload, flags, events)
        elif kind == RST_STREAM:
            if stream == 0 or len(payload) != 4:
                raise ConnectionError2(PROTOCOL_ERROR, "a malformed RST_STREAM")
            if self._drop(stream):
                events.append(Reset(stream))
        elif kind == SETTINGS:
            self._settings(flags, stream, payload)
        elif kind == PING:
            if stream != 0 or len(payload) != 8:
                raise ConnectionError2(PROTOCOL_ERROR, "a malformed PING")
            if not flags & ACK:
                self._out.append(_frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            self._window_update(stream, payload)
        elif kind == GOAWAY:
            self.going_away = True
        elif kind == PRIORITY:
            if stream == 0 or len(payload) != 5:
                raise ConnectionError2(PROTOCOL_ERROR, "a malformed PRIORITY")
        elif kind == PUSH_PROMISE:
            raise ConnectionError2(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # Frames of unknown types are ignored (RFC 9113, 4.1).

    def _settings(self, flags: int, stream: int, payload: bytes) -> None:
        if stream != 0 or len(payload) % 6 or (flags & ACK and payload):
            raise ConnectionError2(PROTOCOL_ERROR, "a malformed SETTINGS")
        if flags & ACK:
            return
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HL", payload, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError2(FLOW_CONTROL_ERROR, "a window over 2^31-1")
                delta = value - self._peer_stream_window
                self._peer_stream_window = value
                for state in self._streams.values():
                    state.send_window += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value < 1 << 24:
                    raise ConnectionError2(PROTOCOL_ERROR, f"a max frame size of {value}")
                self._peer_max_frame = value
        self._out.append(_frame(SETTINGS, ACK, 0))
        self._drain()

    def _window_update(self, stream: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError2(FRAME_SIZE_ERROR, "a malformed WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream == 0:
            if increment == 0:
                raise ConnectionError2(PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self._peer_window += increment
            if self._peer_window > MAX_WINDOW:
                raise ConnectionError2(FLOW_CONTROL_ERROR, "the connection window overflowed")
        else:
            state = self._streams.get(stream)
            if state is None:
                return
            state.send_window += increment
            if increment == 0 or state.send_window > MAX_WINDOW:
                self.reset(stream, PROTOCOL_ERROR if increment == 0 else FLOW_CONTROL_ERROR)
                return
        if self._blocked:
            self._drain()

    def _headers_frame(self, flags: int, stream: int, payload: bytes, events: list) -> None:
        if stream == 0 or stream % 2 == 0:
            raise ConnectionError2(PROTOCOL_ERROR, f"HEADERS on stream {stream}")
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise ConnectionError2(PROTOCOL_ERROR, "bad padding")
            payload = payload[1 : len(payload) - payload[0]]
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        self._headers = (stream, flags, bytearray())
        self._block(payload, flags, events)

    def _block(self, fragment: bytes, flags: int, events: list) -> None:
        assert self._headers is not None
        stream, first_flags, block = self._headers
        block += fragment
        if len(block) > MAX_HEADER_BLOCK:
            raise ConnectionError2(PROTOCOL_ERROR, "a header block over 64 KiB")
        if not flags & END_HEADERS:
            return
        self._headers = None
        try:
            fields = self._decoder.decode(bytes(block))
        except HeaderBlockError as exc:
            raise ConnectionError2(COMPRESSION_ERROR, f"a bad header block: {exc}") from None
        state = self._streams.get(stream)
        end_stream = bool(first_flags & END_STREAM)
        if stream <= self._last_stream:
            if state is None:
                return  # a stream this side ended or reset: frames in flight are ignored
            if not end_stream:  # trailers must end the stream
                raise ConnectionError2(PROTOCOL_ERROR, "trailers without END_STREAM")
            self._remote_close(stream, state, events)
            return
        self._last_stream = stream
        if self.going_away or len(self._streams) >= MAX_STREAMS:
            self._out.append(_frame(RST_STREAM, 0, stream, _U32.pack(REFUSED_STREAM)))
            return
        path = ""
        metadata: dict[str, str] = {}
        for name, value in fields:
            if name == b":path":
                path = value.decode("latin-1")
            elif not name.startswith(b":"):
                metadata[name.decode("latin-1")] = value.decode("latin-1")
        state = _Stream(send_window=self._peer_stream_window)
        self._streams[stream] = state
        events.append(Request(stream, path, metadata))
        if end_stream:
            self._remote_close(stream, state, events)

    def _remote_close(self, stream: int, state: _Stream, events: list) -> None:
        state.remote_closed = True
        if state.message or state.skip:
            self.reset(stream, PROTOCOL_ERROR)  # the call ended mid-message
            events.append(Reset(stream))
            return
        events.append(HalfClosed(stream))

    def _data(self, flags: int, stream: int, payload: bytes, events: list) -> None:
        if stream == 0:
            raise ConnectionError2(PROTOCOL_ERROR, "DATA on stream 0")
        self._recv_unacked += len(payload)  # padding counts toward the window too
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise ConnectionError2(PROTOCOL_ERROR, "bad padding")
            payload = payload[1 : len(payload) - payload[0]]
        state = self._streams.get(stream)
        if state is None or state.remote_closed:
            if stream > self._last_stream:
                raise ConnectionError2(PROTOCOL_ERROR, f"DATA on idle stream {stream}")
            if state is not None:
                self.reset(stream, STREAM_CLOSED)
            return
        state.recv_unacked += len(payload)
        if state.recv_unacked > STREAM_WINDOW:
            self.reset(stream, FLOW_CONTROL_ERROR)
            events.append(Reset(stream))
            return
        self._messages(stream, state, payload, events)
        if flags & END_STREAM:
            self._remote_close(stream, state, events)
        elif state.recv_unacked >= STREAM_WINDOW // 2 and stream in self._streams:
            self._out.append(_frame(WINDOW_UPDATE, 0, stream, _U32.pack(state.recv_unacked)))
            state.recv_unacked = 0

    def _messages(self, stream: int, state: _Stream, data: bytes, events: list) -> None:
        """Cut DATA into gRPC messages (1-byte compressed flag, 4-byte length, body)."""
        offset = 0
        while offset < len(data):
            if state.skip:
                taken = min(state.skip, len(data) - offset)
                state.skip -= taken
                offset += taken
                continue
            message = state.message
            if len(message) < 5:
                need = 5 - len(message)
                message += data[offset : offset + need]
                offset += need
                if len(message) < 5:
                    return
                size = _U32.unpack_from(message, 1)[0]
                if message[0] != 0:  # no grpc-encoding is offered, so none may be used
                    self.reset(stream, PROTOCOL_ERROR)
                    events.append(Reset(stream))
                    return
                if size > self.max_message:
                    state.message = bytearray()
                    state.skip = size
                    events.append(TooLarge(stream, size))
                    continue
                if size == 0:
                    state.message = bytearray()
                    events.append(Message(stream, b""))
                    continue
            size = _U32.unpack_from(message, 1)[0]
            need = 5 + size - len(message)
            message += data[offset : offset + need]
            offset += min(need, len(data) - offset)
            if len(message) == 5 + size:
                events.append(Message(stream, bytes(message[5:])))
                state.message = bytearray()
