"""Which protocol a client connection speaks, from its first bytes (etcd tells gRPC and
HTTP apart the same way with cmux).

- HTTP/2 (gRPC) opens with the fixed client preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``.
- HTTP/1.1 opens with a method token: an uppercase ASCII letter (GET, POST, PUT, ...).
- The native protocol opens with a frame's big-endian u32 length. A frame is at most the
  request limit (--max-request-bytes, at most 1 GiB) plus 512 KiB, below 0x41000000, so
  its first byte is never an uppercase letter; every other first byte is native.

Most connections are decided by their first byte; only a first ``P`` waits for enough
bytes to tell the HTTP/2 preface from ``POST``/``PUT``/``PATCH``.
"""

from __future__ import annotations

import enum

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Kind(enum.Enum):
    NATIVE = "native"
    HTTP1 = "http/1.1"
    HTTP2 = "h2"


def classify(head: bytes) -> Kind | None:
    """The protocol ``head`` (the first bytes, at least one) opens, or None while more bytes
    are needed to tell."""
    first = head[0]
    if not 0x41 <= first <= 0x5A:  # not 'A'..'Z'
        return Kind.NATIVE
    if first != 0x50:  # 'P': PRI (HTTP/2) or POST/PUT/PATCH
        return Kind.HTTP1
    common = min(len(head), len(HTTP2_PREFACE))
    if head[:common] != HTTP2_PREFACE[:common]:
        return Kind.HTTP1
    return Kind.HTTP2 if common == len(HTTP2_PREFACE) else None
