"""Lease calls that only the leader answers (keep-alive, time-to-live), passed on to it for
HTTP clients: a native client follows the "not leader" error to the leader's URL by
itself, an etcd gateway client cannot, and etcd's members forward these calls too.

One short native-protocol connection per call: the request frames (with the caller's
token), then the answer frames until the call ends. To an https client URL the connection
is TLS, presenting this member's client-port certificate (``--cert-file``) and checking the
leader's against ``--trusted-ca-file``, as etcd's members dial each other's client URLs.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from .. import errors
from ..protocol.frames import (
    DEFAULT_MAX_REPLY_FRAME_BYTES,
    END,
    ERROR,
    FLAG_END,
    FLAG_TOKEN,
    REPLY,
    FrameDecoder,
    ProtocolError,
    decode_error,
    encode_frame,
    with_token,
)

RELAY_TIMEOUT_S = 5.0
_STREAM = 1


async def call_leader(
    url: str,
    method: int,
    bodies: list[bytes],
    token: str,
    streaming: bool,
    tls: ssl.SSLContext | None = None,
) -> list[tuple[int, bytes]]:
    """Send ``bodies`` as one call of ``method`` to the member at client URL ``url`` (over
    ``tls`` for an https URL); its answer frames as (kind, body) up to and including the
    last (REPLY, END or ERROR). Raises NoLeader when the leader cannot be reached in time,
    NotLeader when its URL cannot be dialled (https without this member's TLS settings)."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    if not (parts.scheme == "http" or secure and tls) or not parts.hostname or parts.port is None:
        raise errors.NotLeader()
    flags = FLAG_TOKEN if token else 0
    request = b"".join(
        encode_frame(_STREAM, method, with_token(token.encode(), body) if token else body, flags)
        for body in bodies
    )
    if streaming:
        request += encode_frame(_STREAM, method, b"", FLAG_END)
    try:
        return await asyncio.wait_for(
            _exchange(parts.hostname, parts.port, request, tls if secure else None),
            RELAY_TIMEOUT_S,
        )
    except (OSError, asyncio.TimeoutError, ProtocolError, EOFError):
        raise errors.NoLeader() from None


async def _exchange(
    host: str, port: int, request: bytes, tls: ssl.SSLContext | None
) -> list[tuple[int, bytes]]:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        writer.write(request)
        decoder = FrameDecoder(DEFAULT_MAX_REPLY_FRAME_BYTES)
        answers: list[tuple[int, bytes]] = []
        while True:
            data = await reader.read(65536)
            if not data:
                raise EOFError("the leader closed the connection")
            for _stream, kind, _flags, body in decoder.feed(data):
                answers.append((kind, body))
                if kind in (REPLY, END, ERROR):
                    return answers
    finally:
        writer.close()


def raise_if_error(kind: int, body: bytes) -> None:
    """An ERROR frame from the leader as the error it carries."""
    if kind == ERROR:
        code, message, _ = decode_error(body)
        raise errors.error_from_wire(code, message)
