"""One HTTP/1.1 gateway connection driven directly with a fake transport: requests go to
the server's dispatch as the native ones do, and while the member is paused a request that
would add to its backlog waits (with the connection unread) while keep-alives go on."""

from __future__ import annotations

import asyncio
import json

from pyraftkv.node.http_gateway import HttpConnection
from pyraftkv.protocol.methods import BY_NAME

from .test_client_connection import Server, Transport


def _post(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        len(data),
        data,
    )


def _connection(loop) -> tuple[HttpConnection, Server, Transport]:
    server, transport = Server(loop), Transport()
    server.app.leader_id = server.app.member_id = 1
    conn = HttpConnection(server)
    conn.connection_made(transport)
    return conn, server, transport


def test_a_write_waits_while_the_member_is_paused_and_keep_alives_do_not():
    loop = asyncio.new_event_loop()
    try:
        conn, server, transport = _connection(loop)
        server.paused = True
        conn.data_received(_post("/v3/lease/keepalive", {"ID": "5"}))
        assert [m for _, m in server.dispatched] == [BY_NAME["LeaseKeepAlive"].number] * 2
        assert transport.reading
        conn.end(server.dispatched[0][0])  # the keep-alive stream ends: next request
        loop.run_until_complete(asyncio.sleep(0))
        server.dispatched.clear()
        conn.data_received(_post("/v3/kv/put", {"key": "YQ=="}))
        assert server.dispatched == [] and not transport.reading and not conn.idle
        server.paused = False
        conn.pause(False)
        assert [m for _, m in server.dispatched] == [BY_NAME["Put"].number]
        assert transport.reading
    finally:
        loop.close()
