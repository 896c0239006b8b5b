"""HTTP connections on the client port under the member's connection rules: an idle
keep-alive connection is closed after --client-idle-timeout, a streaming watch is not, and
the member goes on serving."""

from __future__ import annotations

import socket
import time

from .gateway_http import Stream, b64, call


def test_idle_http_connections_close_and_watches_stay(make_cluster):
    cluster = make_cluster(1, extra_args=["--client-idle-timeout", "1s"])
    cluster.start()
    member = cluster.members[0]
    watch = Stream(member.endpoint, "/v3/watch", {"create_request": {"key": b64("k")}})
    try:
        assert watch.line()["result"]["created"]
        with socket.create_connection(("127.0.0.1", member.client_port), timeout=10) as idle:
            idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"health":"true"}'):
                answer += idle.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            started = time.monotonic()
            assert idle.recv(65536) == b""  # closed by the member
            assert 0.5 < time.monotonic() - started < 8
        time.sleep(1.5)
        call(member.endpoint, "/v3/kv/put", {"key": b64("k"), "value": b64("v")})
        assert watch.line()["result"]["events"][0]["kv"]["value"] == b64("v")
    finally:
        watch.close()
    assert member.running
    assert "Traceback" not in member.log_text()


def test_a_bad_request_s_answer_reaches_a_client_that_goes_on_sending(make_cluster):
    """Bytes that are not HTTP/1.1 get a 400, then the member ends its side and drops what
    still arrives until the client ends its own: closing with those bytes unread would
    reset the connection, which can destroy the answer before the client reads it."""
    cluster = make_cluster(1)
    cluster.start()
    member = cluster.members[0]
    with socket.create_connection(("127.0.0.1", member.client_port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n" + bytes(4 << 20))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass  # the rest of the answer, then an end of stream (a reset would raise)
    assert call(member.endpoint, "/v3/kv/range", {"key": b64("k")}).status == 200
    assert member.running
