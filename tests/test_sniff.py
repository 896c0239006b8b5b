"""The first bytes of a client connection pick its protocol (protocol/sniff.py)."""

from __future__ import annotations

import pytest

from pyraftkv.protocol.frames import encode_frame
from pyraftkv.protocol.sniff import HTTP2_PREFACE, Kind, classify


def test_a_native_frame_is_decided_by_its_first_byte():
    frame = encode_frame(1, 2, b"x" * 2_000_000)
    assert classify(frame[:1]) is Kind.NATIVE
    assert classify(b"\x00") is Kind.NATIVE
    assert classify(b"\x16\x03\x01") is Kind.NATIVE  # not ours to guess: the native codec refuses


@pytest.mark.parametrize("method", [b"GET", b"POST", b"PUT", b"PATCH", b"OPTIONS", b"HEAD"])
def test_http1_methods(method):
    request = method + b" /v3/kv/range HTTP/1.1\r\n"
    assert classify(request) is Kind.HTTP1


def test_http2_preface_needs_all_its_bytes_and_p_methods_wait_for_theirs():
    for end in range(1, len(HTTP2_PREFACE)):
        assert classify(HTTP2_PREFACE[:end]) is None, end
    assert classify(HTTP2_PREFACE) is Kind.HTTP2
    assert classify(HTTP2_PREFACE + b"\x00\x00\x00\x04") is Kind.HTTP2
    assert classify(b"P") is None
    assert classify(b"PO") is Kind.HTTP1
    assert classify(b"PRI * HTTP/1.1\r\n") is Kind.HTTP1
