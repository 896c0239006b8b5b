"""The blocking Client's direct path (pyraftkv/client/direct.py): unary calls made on the
calling thread, against a real member and against loopback servers that misbehave."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from pyraftkv import Client
from pyraftkv.client.connection import ConnectionLost
from pyraftkv.client.requests import put_request
from pyraftkv.errors import AuthFailed, PermissionDenied, TimedOut
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.frames import HEADER, REPLY, FrameDecoder, encode_frame

from .harness import LocalCluster
from .test_auth import FAST, set_up_auth


def loop_side_connected(client: Client) -> bool:
    """Whether the client's event-loop side ever opened a connection."""
    return client._client._connection is not None


def test_kv_calls_take_the_direct_path_and_survive_a_member_restart(tmp_path) -> None:
    cluster = LocalCluster(str(tmp_path), 1)
    cluster.start()
    try:
        client = cluster.client()
        first = client.put("k", "v1")
        assert client.get("k").kvs[0].value == b"v1"
        txn = client.txn(success=[rpc.RequestOp(request_put=put_request(b"k", b"v2"))])
        assert txn.succeeded and txn.header.revision == first.header.revision + 1
        assert client.delete("k").deleted == 1
        assert not loop_side_connected(client)

        # The member restarts while the client is idle: its next write notices the closed
        # connection before sending and goes out on a new one (no ConnectionLost).
        member = cluster.members[0]
        assert cluster.terminate(member) == 0
        cluster.start_member(member)
        cluster.wait_leader()
        assert client.put("k", "after restart").header.revision > txn.header.revision
        assert not loop_side_connected(client)
    finally:
        cluster.stop_all()


def test_calls_from_several_threads_share_one_client(tmp_path) -> None:
    cluster = LocalCluster(str(tmp_path), 1)
    cluster.start()
    try:
        client = cluster.client()
        with client._direct.lock:  # another thread is on the direct path: use the loop
            client.put("held", "1")
        assert loop_side_connected(client)

        def write(thread: int) -> None:
            for i in range(50):
                client.put(f"t{thread}/{i}", str(i))

        threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert client.get("t", prefix=True, count_only=True).count == 200
    finally:
        cluster.stop_all()


def test_a_user_s_calls_carry_a_token_on_the_direct_path(tmp_path) -> None:
    cluster = LocalCluster(str(tmp_path), 1, extra_args=FAST)
    cluster.start()
    try:
        with cluster.client() as admin:
            set_up_auth(admin)
        alice = cluster.client(user="alice", password="alicepw")
        alice.put("foo", "bar")
        assert alice.get("foo").kvs[0].value == b"bar"
        with pytest.raises(PermissionDenied):
            alice.put("aaa", "x")  # outside [foo, zoo)
        assert not loop_side_connected(alice)
        with pytest.raises(AuthFailed):
            cluster.client(user="alice", password="wrong").put("foo", "x")
    finally:
        cluster.stop_all()


class Server:
    """A loopback server that reads request frames and answers each as ``answer`` says."""

    def __init__(self, answer) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.answer = answer
        self.connections = 0
        self.requests: list[tuple[int, int]] = []  # (connection number, method)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock, self.connections), daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        decoder = FrameDecoder(1 << 20)
        with sock:
            while data := sock.recv(65536):
                for stream, method, _flags, _body in decoder.feed(data):
                    self.requests.append((number, method))
                    if not self.answer(sock, stream, number):
                        return

    def close(self) -> None:
        self.listener.close()


def reply_with_revision(sock: socket.socket, stream: int, revision: int) -> None:
    body = rpc.PutResponse(header=rpc.ResponseHeader(revision=revision)).SerializeToString()
    sock.sendall(encode_frame(stream, REPLY, body))


def test_a_write_whose_connection_dies_after_sending_is_not_repeated() -> None:
    server = Server(lambda sock, stream, number: False)  # read the request, then close
    try:
        with Client([server.endpoint], timeout=2) as client:
            with pytest.raises(ConnectionLost):
                client.put("k", "v")
            assert len(server.requests) == 1  # sent once, never again
    finally:
        server.close()


def test_a_malformed_reply_is_a_clear_error_and_the_next_call_starts_afresh() -> None:
    def answer(sock: socket.socket, stream: int, number: int) -> bool:
        if number == 1:
            sock.sendall(HEADER.pack(10, stream, 99, 0))  # 99: no reply kind
            time.sleep(0.5)  # the client reads it before the connection ends
            return False
        reply_with_revision(sock, stream, number)
        return True

    server = Server(answer)
    try:
        with Client([server.endpoint], timeout=2) as client:
            with pytest.raises(ConnectionLost, match="bad reply"):
                client.put("k", "v")
            assert client.put("k", "v").header.revision == 2  # on a new connection
    finally:
        server.close()


def test_closing_the_client_ends_a_call_in_progress_on_another_thread() -> None:
    server = Server(lambda sock, stream, number: True)  # never answers
    client = Client([server.endpoint], timeout=30)
    outcome: list[BaseException] = []

    def put() -> None:
        try:
            client.put("k", "v")
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    caller = threading.Thread(target=put)
    caller.start()
    deadline = time.monotonic() + 5
    while not server.requests:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    client.close()
    caller.join(5)
    assert not caller.is_alive() and time.monotonic() - started < 5
    assert [type(exc) for exc in outcome] == [ConnectionLost]
    with pytest.raises(RuntimeError, match="the client is closed"):
        client.put("k", "v")
    assert len(server.requests) == 1
    server.close()


def test_a_late_reply_does_not_answer_the_next_call() -> None:
    def answer(sock: socket.socket, stream: int, number: int) -> bool:
        if number == 1:
            time.sleep(1.0)  # past the client's timeout
        reply_with_revision(sock, stream, number)
        return True

    server = Server(answer)
    try:
        with Client([server.endpoint], timeout=0.3) as client:
            with pytest.raises(TimedOut):
                client.put("k", "v")
            # The timed-out connection was dropped: the next call has its own reply.
            assert client.put("k", "v").header.revision == 2
    finally:
        server.close()
