"""Bad input against real members: clear errors, nothing changed, everyone else served."""

import socket
import struct
import subprocess
import sys
import time

import pytest

from pyraftkv import errors
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.frames import (
    END,
    ERROR,
    FLAG_END,
    FLAG_TOKEN,
    FLAG_USER,
    MESSAGE,
    REPLY,
    FrameDecoder,
    decode_error,
    encode_frame,
    with_token,
)
from pyraftkv.protocol.methods import BY_NAME

from .harness import free_ports


def raw_connection(member) -> socket.socket:
    return socket.create_connection(("127.0.0.1", member.client_port), timeout=5)


def read_frames(sock: socket.socket, count: int = 1):
    decoder, frames = FrameDecoder(1 << 24), []
    while len(frames) < count:
        data = sock.recv(65536)
        if not data:
            break
        frames.extend(decoder.feed(data))
    return frames


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, TimeoutError):
        return False


@pytest.mark.parametrize(
    "garbage, reason",
    [
        (struct.pack("!IQBB", 3, 1, 2, 0), "outside"),  # length shorter than the header
        (struct.pack("!IQBB", 1 << 30, 1, 2, 0), "outside"),  # far beyond the request limit
        (encode_frame(0, BY_NAME["Put"].number, b""), "stream id 0"),
        # an auth token flag on a frame with no room for the token, or a token cut short
        (encode_frame(1, BY_NAME["Put"].number, b"\x00", FLAG_TOKEN), "without a token"),
        (encode_frame(1, BY_NAME["Put"].number, b"\x00\x09ab", FLAG_TOKEN), "longer than"),
    ],
)
def test_a_malformed_frame_closes_that_connection_and_others_are_served(cluster, garbage, reason):
    member = cluster.members[0]
    bystander = cluster.client([member])
    bystander.put("before", "1")
    sock = raw_connection(member)
    sock.sendall(garbage)
    (frame,) = read_frames(sock)
    assert (frame.stream, frame.code) == (0, ERROR)
    code, message, _ = decode_error(frame.body)
    assert code == errors.INVALID_ARGUMENT and reason in message
    assert closed_by_peer(sock)
    assert bystander.put("after", "2").header.revision > 0
    assert bystander.get("before").kvs[0].value == b"1"


def test_a_malformed_frame_s_error_reaches_a_client_that_goes_on_sending(cluster):
    """The member reads and drops what follows a malformed frame until the client ends its
    side: closing with those bytes unread would reset the connection, which can destroy the
    error before it leaves."""
    sock = raw_connection(cluster.members[0])
    sock.sendall(bytes(4 << 20))  # a frame of length 0, then more
    (frame,) = read_frames(sock)
    assert (frame.stream, frame.code) == (0, ERROR)
    assert "frame length 0 is outside" in decode_error(frame.body)[1]
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(1) == b""  # an end of stream, no reset


def test_unknown_method_and_unparsable_body_get_errors_and_the_connection_lives_on(cluster):
    sock = raw_connection(cluster.members[0])
    sock.sendall(
        encode_frame(1, 250, b"") + encode_frame(2, BY_NAME["Put"].number, b"\xff\xff\xff")
    )
    frames = {f.stream: f for f in read_frames(sock, 2)}
    assert decode_error(frames[1].body)[0] == errors.UNIMPLEMENTED
    code, message, _ = decode_error(frames[2].body)
    assert code == errors.INVALID_ARGUMENT and "malformed Put" in message
    from pyraftkv.proto import rpc_pb2

    ok = rpc_pb2.PutRequest(key=b"still", value=b"works").SerializeToString()
    sock.sendall(encode_frame(3, BY_NAME["Put"].number, ok))
    (frame,) = read_frames(sock)
    assert frame.code != ERROR
    sock.close()


def test_oversized_value_and_empty_key_are_refused_and_change_nothing(cluster):
    with cluster.client() as c:
        revision = c.put("k", "v").header.revision
        with pytest.raises(errors.RequestTooLarge):
            c.put("big", b"x" * (1536 * 1024 + 1))
        with pytest.raises(errors.EmptyKey):
            c.put("", "v")
        with pytest.raises(errors.EmptyKey):
            c.get("")
        after = c.get("big")
        assert after.count == 0 and after.header.revision == revision


def test_a_range_with_the_largest_limit_reads_every_key_and_the_member_serves_on(cluster):
    """limit = 2^63-1 means no limit, as in etcd (it once overflowed the key index's int64
    and stopped the member), on the linearizable and the serializable path."""
    with cluster.client() as c:
        for key in ("a", "b", "c"):
            c.put(key, "v")
        for serializable in (False, True):
            resp = c.get("a", "\0", limit=2**63 - 1, serializable=serializable)
            assert [kv.key for kv in resp.kvs] == [b"a", b"b", b"c"] and not resp.more
        c.put("d", "still served")
    assert all(m.running for m in cluster.members)


def run_server(argv, cwd):
    return subprocess.run(
        [sys.executable, "-m", "pyraftkv", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--no-such-flag"], "unrecognized arguments"),
        (["--name", "x", "--initial-cluster", "y=http://127.0.0.1:1"], "no member named 'x'"),
        (["--heartbeat-interval", "fast"], "not an integer"),
        (["--initial-cluster-state", "maybe"], "'new' or 'existing'"),
    ],
)
def test_wrong_flags_exit_non_zero_with_a_clear_message(tmp_path, argv, message):
    result = run_server(argv, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "default.pyraftkv").exists()


def test_a_data_dir_of_another_member_is_refused(cluster, tmp_path):
    m1, m2 = cluster.members[0], cluster.members[1]
    cluster.kill(m1)
    argv = cluster.argv(m1)[3:]
    argv[argv.index("--data-dir") + 1] = m2.data_dir  # m1's flags on m2's directory
    cluster.kill(m2)
    result = run_server(argv, tmp_path)
    assert result.returncode == 2
    assert "belongs to member" in result.stderr


def test_a_data_dir_of_another_cluster_is_refused(cluster, tmp_path):
    m1 = cluster.members[0]
    cluster.kill(m1)
    argv = cluster.argv(m1)[3:]
    argv[argv.index("--initial-cluster-token") + 1] = "another-cluster"
    result = run_server(argv, tmp_path)
    assert result.returncode == 2
    assert "belongs to cluster" in result.stderr


def test_a_port_in_use_is_a_clear_startup_error(tmp_path):
    client_port, peer_port = free_ports(2)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", client_port))
    blocker.listen()
    try:
        result = run_server(
            [
                "--data-dir",
                str(tmp_path / "d"),
                "--listen-client-urls",
                f"http://127.0.0.1:{client_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
            ],
            tmp_path,
        )
    finally:
        blocker.close()
    assert result.returncode == 2
    assert "cannot listen for clients" in result.stderr


def test_a_full_store_refuses_writes_that_add_data_until_the_alarm_is_disarmed(make_cluster):
    from pyraftkv import Op

    cluster = make_cluster(1, extra_args=["--quota-backend-bytes", str(2 << 20)])
    cluster.start()
    value = b"x" * 100_000
    with cluster.client() as client:
        written = []
        with pytest.raises(errors.NoSpace, match="database space exceeded"):
            for i in range(100):
                client.put(f"big/{i}", value)
                written.append(i)
        assert 10 < len(written) < 100
        revision = client.get("big/0").header.revision
        with pytest.raises(errors.NoSpace):
            client.txn(success=[Op.put("other", "x")])
        with pytest.raises(errors.NoSpace):
            client.lease_grant(10)
        # Nothing else changed; reads, deletes and compaction still go through.
        assert client.get("big/", prefix=True).count == len(written)
        assert client.get("other").count == 0
        assert client.txn(success=[Op.get("big/0")]).succeeded
        deleted = client.delete("big/", prefix=True)
        assert deleted.deleted == len(written)
        client.compact(deleted.header.revision)
        assert client.get("big/", prefix=True).header.revision == revision + 1
        with pytest.raises(errors.NoSpace):  # the NOSPACE alarm stays until disarmed
            client.put("after", "compaction")
        (alarm,) = client.alarm_disarm().alarms
        assert alarm.alarm == rpc.NOSPACE and alarm.memberID == client.status().header.member_id
        client.put("after", "compaction")  # the space is back
        assert client.get("after").kvs[0].value == b"compaction"
    log = cluster.members[0].log_text()
    assert "raising the NOSPACE alarm" in log and "back under its quota" in log


def test_a_user_field_from_a_connection_that_is_no_relay_is_refused(cluster):
    member = cluster.members[0]
    sock = raw_connection(member)
    body = with_token(b"root", rpc.PutRequest(key=b"k", value=b"v").SerializeToString())
    sock.sendall(encode_frame(7, BY_NAME["Put"].number, body, FLAG_USER))
    (frame,) = read_frames(sock)
    assert (frame.stream, frame.code) == (7, ERROR)
    code, message, _ = decode_error(frame.body)
    assert code == errors.PERMISSION_DENIED and "not a trusted relay" in message
    with cluster.client([member]) as c:
        assert c.get("k").kvs == []


def test_illegal_stream_moves_are_errors_on_that_stream_only(cluster):
    """A second request on a call in flight is an error on that stream; the first call is
    answered, the connection and the member go on; a stream id is reusable once ended."""
    put = BY_NAME["Put"].number
    watch = BY_NAME["Watch"].number
    body = rpc.PutRequest(key=b"moves", value=b"1").SerializeToString()
    create = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(key=b"w")).SerializeToString()
    sock = raw_connection(cluster.members[0])
    sock.sendall(
        encode_frame(5, put, body)
        + encode_frame(5, put, body)  # while stream 5 awaits its reply
        + encode_frame(9, watch, create)
        + encode_frame(9, watch, b"", FLAG_END)
        + encode_frame(9, watch, create)  # after the half-close
    )
    frames = read_frames(sock, 5)
    errors_by_stream = {
        f.stream: decode_error(f.body)[1] for f in frames if f.code == ERROR and f.stream
    }
    assert "protocol error: CALL on a stream that is AWAITING_REPLY" in errors_by_stream[5]
    assert [f.code for f in frames if f.stream == 5 and f.code != ERROR] == [REPLY]
    # The server ends a watch stream as soon as the client half-closes it, so the third
    # watch frame finds the id idle again and opens a new stream (created, no error).
    assert [f.code for f in frames if f.stream == 9] == [MESSAGE, END, MESSAGE]
    sock.sendall(encode_frame(11, put, body))
    (answer,) = [f for f in read_frames(sock, 1) if f.stream == 11]
    assert answer.code == REPLY


def test_a_backup_asked_for_again_on_the_same_stream_keeps_the_member_up(cluster):
    """Found by the client-port fuzzer: a Snapshot cancelled and asked for again on the
    same stream id wrote the same scratch file twice and stopped the member."""
    snapshot = BY_NAME["Snapshot"].number
    body = rpc.SnapshotRequest().SerializeToString()
    member = cluster.members[0]
    client = cluster.client([member])
    for i in range(300):  # a store that takes a moment to copy
        client.put(f"bulk/{i}", "x" * 20000)
    sock = raw_connection(member)
    for _ in range(5):  # cancelled while the copy is being made, then asked for again
        sock.sendall(encode_frame(1, snapshot, body))
        time.sleep(0.003)
        sock.sendall(encode_frame(1, snapshot, b"", FLAG_END))
    sock.sendall(encode_frame(1, snapshot, body))
    frames = read_frames(sock, 3)
    assert frames and all(f.stream == 1 for f in frames)
    sock.close()
    assert client.put("after-backups", "1").header.revision > 0
    assert member.running


def test_idle_connections_are_closed_but_watchers_are_spared(make_cluster):
    """--client-idle-timeout closes a connection with nothing in flight; one holding a
    watch stays however long it is quiet, and the Python client reconnects by itself."""
    cluster = make_cluster(1, extra_args=["--client-idle-timeout", "1s"])
    cluster.start()
    (member,) = cluster.members
    client = cluster.client()
    assert client.put("before", "1").header.revision > 0
    idle, watching = raw_connection(member), raw_connection(member)
    create = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(key=b"w"))
    watching.sendall(encode_frame(1, BY_NAME["Watch"].number, create.SerializeToString()))
    assert read_frames(watching, 1)[0].code == MESSAGE  # created
    idle.sendall(encode_frame(1, BY_NAME["Status"].number, b""))
    assert read_frames(idle, 1)[0].code == REPLY  # then nothing more from it
    idle.settimeout(10)
    (closing,) = read_frames(idle, 1)
    assert (closing.stream, closing.code) == (0, ERROR)
    assert "idle connection closed" in decode_error(closing.body)[1]
    assert closed_by_peer(idle)
    time.sleep(2)
    client.put("w", "event")  # the client's own idle connection was closed: it reconnects
    watching.settimeout(5)
    (event,) = read_frames(watching, 1)
    assert rpc.WatchResponse.FromString(event.body).events[0].kv.value == b"event"
