"""Unmodified etcdctl 3.4 over etcd's gRPC API on pyraftkv's client port: the same session
against a 3-member pyraftkv and a 3-member etcd 3.4 prints the same (ids normalised)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import pytest

from ..ctl_etcd_cluster import ETCD_LOG_LINE, ETCDCTL, MISSING, EtcdCluster
from .grpc_stubs import stub
from .test_metrics import metrics

pytestmark = pytest.mark.skipif(ETCDCTL is None, reason=MISSING)

IDS = re.compile(rb'("(cluster_id|member_id|raft_term|ClusterID|MemberID|RaftTerm)" ?: ?)\d+')


def etcdctl(endpoint: str, *args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    done = subprocess.run(
        [ETCDCTL, f"--endpoints={endpoint}", "--command-timeout=10s", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=30,
    )
    return done.returncode, IDS.sub(rb"\1N", done.stdout), ETCD_LOG_LINE.sub(b"", done.stderr)


TXN = b'value("k1") = "v1"\n\nput k2 ok\nget k1\n\ndel k1\n\n'

SESSION: list[tuple[tuple[str, ...], bytes]] = [
    (("put", "k1", "v1"), b""),
    (("put", "k2", "v2"), b""),
    (("put", "k3", "v3"), b""),
    (("get", "k1"), b""),
    (("get", "k", "--prefix", "--sort-by=KEY", "--order=DESCEND", "--limit=2"), b""),
    (("get", "k", "--prefix", "--keys-only"), b""),
    (("get", "k1", "--print-value-only", "--rev=2"), b""),
    (("get", "k1", "-w", "json"), b""),
    (("get", "k", "--from-key", "-w", "fields"), b""),
    (("txn",), TXN),
    (("txn",), TXN),
    (("del", "k", "--prefix", "--prev-kv"), b""),
    (("get", "k1", "--rev=99"), b""),
    (("compaction", "3"), b""),
    (("get", "k1", "--rev=2"), b""),
    (("compaction", "2"), b""),
    (("put", "x", "y", "--lease=1234"), b""),
    (("put", "", "y"), b""),
]


def run_session(endpoint: str) -> list[tuple[int, bytes, bytes]]:
    return [etcdctl(endpoint, *args, stdin=stdin) for args, stdin in SESSION]


def on_etcd(tmp_path, run):
    """What ``run(etcd)`` returns from a fresh 3-member etcd 3.4 cluster, stopped after."""
    (tmp_path / "etcd").mkdir()
    etcd = EtcdCluster(tmp_path / "etcd")
    try:
        return run(etcd)
    finally:
        etcd.close()


def test_etcdctl_kv_session_matches_etcd(cluster, tmp_path):
    """put/get (prefix, sort, limit, keys-only, rev, json, fields), txn, del, compaction and
    their errors (future revision, compacted, lease not found, empty key) through etcdctl
    print what etcd 3.4 prints."""
    expected = on_etcd(tmp_path, lambda etcd: run_session(etcd.endpoints[0]))
    got = run_session(cluster.endpoints[0])
    for (args, _), want, have in zip(SESSION, expected, got, strict=True):
        assert have == want, args
    assert any(code != 0 for code, _, _ in got)  # the errors were errors


def test_etcdctl_watch_and_lease(cluster):
    """A watch started through one member sees puts made through another; a lease's key goes
    with its revoke."""
    endpoint = cluster.endpoints[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    watcher = subprocess.Popen(
        [ETCDCTL, f"--endpoints={endpoint}", "watch", "w", "--prefix", "--prev-kv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "ETCDCTL_API": "3"},
    )
    try:
        time.sleep(1.0)
        assert etcdctl(cluster.endpoints[1], "put", "w1", "a")[0] == 0
        assert etcdctl(cluster.endpoints[2], "put", "w1", "b")[0] == 0
        code, out, err = etcdctl(endpoint, "lease", "grant", "60")
        lease = out.split()[1].decode()
        assert etcdctl(endpoint, "put", "w2", "l", f"--lease={lease}")[0] == 0
        code, out, err = etcdctl(endpoint, "lease", "timetolive", lease, "--keys")
        assert b"attached keys([w2])" in out, (out, err)
        assert etcdctl(endpoint, "lease", "revoke", lease)[1] == f"lease {lease} revoked\n".encode()
        assert etcdctl(endpoint, "get", "w2")[1] == b""
        time.sleep(0.5)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    assert out.startswith(b"PUT\nw1\na\nPUT\nw1\na\nw1\nb\nPUT\nw2\nl\nDELETE\n"), out


def test_bad_grpc_input_fails_that_call_only(cluster):
    """An unknown method, a request that is not protobuf, a request over the size limit and
    a connection sending garbage after the HTTP/2 preface each get a clear error; the
    member keeps serving."""
    import grpc

    from pyraftkv.proto import rpc_pb2 as rpc

    def unary(channel, path: str):
        return channel.unary_unary(path, request_serializer=None, response_deserializer=None)

    with grpc.insecure_channel(
        cluster.endpoints[0], options=(("grpc.max_send_message_length", 64 << 20),)
    ) as channel:
        with pytest.raises(grpc.RpcError) as unknown:
            unary(channel, "/etcdserverpb.KV/Nope")(b"", timeout=10)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as garbage:
            unary(channel, "/etcdserverpb.KV/Put")(b"\xff\xff\xff", timeout=10)
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert garbage.value.details() == "etcdserver: malformed Put request message"
        huge = rpc.PutRequest(key=b"h", value=b"x" * 2_200_000).SerializeToString()
        with pytest.raises(grpc.RpcError) as too_large:
            unary(channel, "/etcdserverpb.KV/Put")(huge, timeout=10)
        assert too_large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # etcd 3.4's answer, word for word (its limit: --max-request-bytes + 512 KiB).
        assert too_large.value.details() == (
            "grpc: received message larger than max (2200008 vs. 2097152)"
        )
        huge = rpc.PutRequest(key=b"h", value=b"x" * 9_000_000).SerializeToString()
        with pytest.raises(grpc.RpcError) as far_too_large:  # the same, however large
            unary(channel, "/etcdserverpb.KV/Put")(huge, timeout=10)
        assert far_too_large.value.details() == (
            "grpc: received message larger than max (9000008 vs. 2097152)"
        )
        big = rpc.PutRequest(key=b"h", value=b"x" * 1_600_000).SerializeToString()
        with pytest.raises(grpc.RpcError) as over_request_bytes:
            unary(channel, "/etcdserverpb.KV/Put")(big, timeout=10)
        assert over_request_bytes.value.details() == "etcdserver: request is too large"
        put = rpc.PutRequest(key=b"still", value=b"here").SerializeToString()
        answer = rpc.PutResponse.FromString(unary(channel, "/etcdserverpb.KV/Put")(put, timeout=10))
        assert answer.header.revision > 1
        health = unary(channel, "/grpc.health.v1.Health/Check")(b"", timeout=10)
        assert health == b"\x08\x01"  # HealthCheckResponse{status: SERVING}
        with pytest.raises(grpc.RpcError) as unknown_service:  # etcd's answers, as below
            unary(channel, "/grpc.health.v1.Health/Check")(b"\n\x03foo", timeout=10)
        assert unknown_service.value.code() == grpc.StatusCode.NOT_FOUND
        assert unknown_service.value.details() == "unknown service"
        for request, status in ((b"", b"\x08\x01"), (b"\n\x03foo", b"\x08\x03")):
            watch = channel.unary_stream(
                "/grpc.health.v1.Health/Watch",
                request_serializer=None,
                response_deserializer=None,
            )(request, timeout=10)
            assert next(watch) == status  # SERVING / SERVICE_UNKNOWN, and the stream stays
            watch.cancel()
    assert etcdctl(cluster.endpoints[0], "get", "still", "--print-value-only")[1] == b"here\n"
    host, port = cluster.endpoints[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    types = []
    while len(data) >= 9:  # HTTP/2 frames: 3-byte length, type, flags, stream id
        length = int.from_bytes(data[:3], "big")
        types.append(data[3])
        data = data[9 + length :]
    assert types and types[0] == 4 and types[-1] == 7  # SETTINGS, ..., GOAWAY, then closed
    assert etcdctl(cluster.endpoints[0], "put", "after", "ok")[1] == b"OK\n"


def test_maintenance_alarm_defragment_and_hash_over_grpc(cluster):
    """etcdctl's alarm list/disarm and defrag go over gRPC; Maintenance Hash answers with
    the revision it hashed, and members holding the same data give the same hash."""
    import grpc

    from pyraftkv.proto import rpc_pb2 as rpc

    endpoints = ",".join(cluster.endpoints)
    with cluster.client() as client:
        client.put("h", "v")
        member_id = client.status().header.member_id
        raise_alarm = rpc.AlarmRequest(
            action=rpc.AlarmRequest.ACTIVATE, memberID=member_id, alarm=rpc.NOSPACE
        )
        client.call("Alarm", raise_alarm)
    line = f"memberID:{member_id} alarm:NOSPACE \n".encode()
    assert etcdctl(cluster.endpoints[1], "alarm", "list")[:2] == (0, line)
    assert etcdctl(cluster.endpoints[2], "put", "h", "w")[2] == (
        b"Error: etcdserver: mvcc: database space exceeded\n"
    )
    assert etcdctl(cluster.endpoints[2], "alarm", "disarm")[:2] == (0, line)
    assert etcdctl(cluster.endpoints[0], "alarm", "list")[:2] == (0, b"")
    code, out, err = etcdctl(endpoints, "defrag")
    assert (code, err) == (0, b"")
    assert out == b"".join(
        f"Finished defragmenting etcd member[{e}]\n".encode() for e in cluster.endpoints
    )
    code, out, _ = etcdctl(cluster.endpoints[0], "put", "h", "after-defrag")
    assert (code, out) == (0, b"OK\n")

    def hashes() -> list[rpc.HashResponse]:
        answers = []
        for endpoint in cluster.endpoints:
            with grpc.insecure_channel(endpoint) as channel:
                call = channel.unary_unary(
                    "/etcdserverpb.Maintenance/Hash",
                    request_serializer=rpc.HashRequest.SerializeToString,
                    response_deserializer=rpc.HashResponse.FromString,
                )
                answers.append(call(rpc.HashRequest(), timeout=10))
        return answers

    deadline = time.monotonic() + 10
    while len({(a.header.revision, a.hash) for a in hashes()}) != 1:
        assert time.monotonic() < deadline, hashes()
        time.sleep(0.1)
    answer = hashes()[0]
    assert answer.hash != 0 and answer.header.member_id != 0
    with cluster.client() as client:
        assert answer.header.revision == client.get("h").header.revision
        client.put("h", "changed")
    assert hashes()[0].hash != answer.hash


def test_watch_fragments_large_responses_when_asked(cluster):
    """A Watch with fragment=true gets a response over --max-request-bytes as pieces marked
    fragment=true but the last (etcd 3.4); without it, one response."""
    import queue

    import grpc

    from pyraftkv.proto import rpc_pb2 as rpc

    with grpc.insecure_channel(
        cluster.endpoints[0], options=(("grpc.max_receive_message_length", 64 << 20),)
    ) as channel:
        put = channel.unary_unary(
            "/etcdserverpb.KV/Put", request_serializer=None, response_deserializer=None
        )
        revisions = []
        for key in (b"f1", b"f2", b"f3"):
            request = rpc.PutRequest(key=key, value=b"x" * 700_000).SerializeToString()
            revisions.append(rpc.PutResponse.FromString(put(request, timeout=10)).header.revision)
        first = revisions[0]

        def responses(fragment: bool) -> list[rpc.WatchResponse]:
            requests: queue.Queue = queue.Queue()
            create = rpc.WatchCreateRequest(
                key=b"f", range_end=b"g", start_revision=first, fragment=fragment
            )
            requests.put(rpc.WatchRequest(create_request=create).SerializeToString())
            call = channel.stream_stream(
                "/etcdserverpb.Watch/Watch", request_serializer=None, response_deserializer=None
            )(iter(requests.get, None), timeout=20)
            got = []
            for body in call:
                response = rpc.WatchResponse.FromString(body)
                if response.events:
                    got.append(response)
                    if not response.fragment and sum(len(r.events) for r in got) == 3:
                        break
            call.cancel()
            return got

        whole = responses(False)
        assert [(len(r.events), r.fragment) for r in whole] == [(3, False)]
        pieces = responses(True)
        assert [(len(r.events), r.fragment) for r in pieces] == [(2, True), (1, False)]
        assert [e.kv.key for r in pieces for e in r.events] == [b"f1", b"f2", b"f3"]


def test_a_grpc_client_that_never_takes_its_answers_is_cut_off(cluster):
    """A client whose HTTP/2 windows stay shut while it asks for 1 MiB answers: once the
    member holds more than MAX_UNREAD_BYTES for it, the connection ends with GOAWAY
    (ENHANCE_YOUR_CALM) and the member goes on serving everyone else."""
    from hpack import Encoder

    from pyraftkv.proto import rpc_pb2 as rpc

    endpoint = cluster.endpoints[0]
    assert etcdctl(endpoint, "put", "big", stdin=b"x" * 1_000_000)[0] == 0
    encoder = Encoder()

    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return (
            len(payload).to_bytes(3, "big")
            + bytes((kind, flags))
            + stream.to_bytes(4, "big")
            + payload
        )

    body = rpc.RangeRequest(key=b"big").SerializeToString()
    message = b"\0" + len(body).to_bytes(4, "big") + body
    host, port = endpoint.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        # SETTINGS: INITIAL_WINDOW_SIZE 0, so no answer's DATA may be sent
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"\0\x04\0\0\0\0"))
        for n in range(80):
            headers = encoder.encode(
                [(":method", "POST"), (":scheme", "http"), (":path", "/etcdserverpb.KV/Range"),
                 (":authority", endpoint), ("content-type", "application/grpc"), ("te", "trailers")]
            )  # fmt: skip
            sock.sendall(frame(1, 4, 2 * n + 1, headers) + frame(0, 1, 2 * n + 1, message))
            time.sleep(0.005)  # requests keep coming after the member has had enough
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    goaways = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if data[3] == 7:
            goaways.append(int.from_bytes(data[13:17], "big"))
        data = data[9 + length :]
    assert goaways == [0xB]  # ENHANCE_YOUR_CALM
    assert etcdctl(endpoint, "put", "after", "ok")[1] == b"OK\n"


def test_a_watch_stream_its_client_half_closes_still_delivers_events(cluster, tmp_path):
    """A gRPC client that sends its create request and closes its side of the stream (a
    request iterator of one) goes on getting events, as from etcd 3.4, which ends a watch
    stream only when its client cancels it."""
    import grpc

    from pyraftkv.proto import rpc_pb2 as rpc

    def events_after_half_close(endpoint: str) -> list[bytes]:
        with grpc.insecure_channel(endpoint) as channel:
            watch = stub(channel, "Watch")
            put = stub(channel, "Put")
            create = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(key=b"hc"))
            answers = watch(iter([create]), timeout=10)
            assert next(answers).created
            time.sleep(0.3)  # the half-close has arrived
            put(rpc.PutRequest(key=b"hc", value=b"1"), timeout=10)
            put(rpc.PutRequest(key=b"hc", value=b"2"), timeout=10)
            values: list[bytes] = []
            while len(values) < 2:
                values += [event.kv.value for event in next(answers).events]
            answers.cancel()
            return values

    on_etcd_side = on_etcd(tmp_path, lambda etcd: events_after_half_close(etcd.endpoints[0]))
    assert on_etcd_side == [b"1", b"2"]
    assert events_after_half_close(cluster.endpoints[0]) == [b"1", b"2"]


def ranges_started(endpoint: str) -> int:
    """grpc_server_started_total of KV.Range on the member's /metrics (a loopback one)."""
    samples = metrics(int(endpoint.rsplit(":", 1)[1]))
    started = 'grpc_server_started_total{grpc_method="Range",'
    return int(sum(v for name, v in samples.items() if name.startswith(started)))


def test_calls_that_require_a_leader_fail_on_a_member_without_one(cluster, tmp_path):
    """etcd's clientv3.WithRequireLeader (metadata hasleader=true): once a member has lost
    its quorum, such a watch stream ends "etcdserver: no leader" (its client can move to a
    member that has a leader) and new such calls are refused, even serializable reads;
    calls without it go on as before. The same against etcd 3.4 and pyraftkv."""
    import threading

    import grpc

    from pyraftkv.proto import rpc_pb2 as rpc

    require = (("hasleader", "true"),)

    def leaderless(endpoint: str, lose_quorum) -> list:
        seen: list = []
        release = threading.Event()

        def requests():
            yield rpc.WatchRequest(create_request=rpc.WatchCreateRequest(key=b"rl"))
            release.wait(30)

        with grpc.insecure_channel(endpoint) as channel:
            watch = stub(channel, "Watch")
            get = stub(channel, "Range")
            bound = watch(requests(), metadata=require, timeout=20)
            free = watch(requests(), timeout=20)
            seen += [next(bound).created, next(free).created]
            lose_quorum()
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as ended:
                next(bound)
            seen += [ended.value.code(), ended.value.details(), time.monotonic() - started < 15]
            ranges_before = ranges_started(endpoint)
            for metadata in (require, ()):
                try:
                    seen.append(
                        get(
                            rpc.RangeRequest(key=b"rl", serializable=True),
                            metadata=metadata,
                            timeout=5,
                        ).count
                    )
                except grpc.RpcError as error:
                    seen += [error.code(), error.details()]
            # a call refused for want of a leader is not counted (etcd's order of interceptors)
            seen.append(ranges_started(endpoint) - ranges_before)
            with pytest.raises(grpc.RpcError) as refused:
                next(watch(requests(), metadata=require, timeout=5))
            seen += [refused.value.code(), refused.value.details()]
            free.cancel()  # it was still open: cancelling it ends it as Canceled
            with pytest.raises(grpc.RpcError) as cancelled:
                next(free)
            seen.append(cancelled.value.code())
            release.set()
        return seen

    expected = on_etcd(
        tmp_path,
        lambda etcd: leaderless(etcd.endpoints[0], lambda: [p.kill() for p in etcd.processes[1:]]),
    )
    assert expected == [
        True, True,
        grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader", True,
        grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader",
        0,
        1,
        grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader",
        grpc.StatusCode.CANCELLED,
    ]  # fmt: skip
    kept = cluster.members[0]
    got = leaderless(kept.endpoint, lambda: [cluster.kill(m) for m in cluster.members[1:]])
    assert got == expected


def test_a_watch_id_taken_twice_on_one_stream_gets_etcds_answer(cluster, tmp_path):
    """A create naming a watch id already open on the stream: etcd 3.4 answers created and
    canceled, watch id -1, "mvcc: duplicate watch ID provided on the WatchStream"; the
    first watch goes on. pyraftkv answers the same."""
    import queue

    import grpc

    from pyraftkv.proto import rpc_pb2 as rpc

    def answers(endpoint: str) -> list[rpc.WatchResponse]:
        requests: queue.Queue = queue.Queue()
        with grpc.insecure_channel(endpoint) as channel:
            watch = stub(channel, "Watch")
            put = stub(channel, "Put")
            stream = watch(iter(requests.get, None), timeout=20)
            got = []
            for key in (b"first", b"second"):
                create = rpc.WatchCreateRequest(key=key, watch_id=5)
                requests.put(rpc.WatchRequest(create_request=create))
                got.append(next(stream))
            put(rpc.PutRequest(key=b"first", value=b"1"), timeout=10)
            got.append(next(stream))
            stream.cancel()
        for answer in got:
            answer.ClearField("header")
            for event in answer.events:
                event.kv.ClearField("create_revision")
                event.kv.ClearField("mod_revision")
        return got

    expected = on_etcd(tmp_path, lambda etcd: answers(etcd.endpoints[0]))
    assert expected[1].watch_id == -1 and expected[1].canceled
    assert answers(cluster.endpoints[0]) == expected


def kv_and_lease_calls(endpoint: str) -> list[str]:
    """Puts, ranges (sorts, filters, revisions), puts that ignore value or lease, lease
    grants and lookups, txns (duplicate keys, too many ops, compares, nested), deletes and
    compactions over raw gRPC: each call's answer (header left out) or status and message."""
    import grpc

    from pyraftkv.proto import rpc_pb2 as rpc

    Op = rpc.RequestOp
    out: list[str] = []
    with grpc.insecure_channel(endpoint) as channel:
        put, get, delete, txn, compact = (
            stub(channel, name) for name in ("Put", "Range", "DeleteRange", "Txn", "Compact")
        )
        grant, revoke, ttl, leases = (
            stub(channel, name)
            for name in ("LeaseGrant", "LeaseRevoke", "LeaseTimeToLive", "LeaseLeases")
        )

        def call(f, request) -> None:
            try:
                answer = f(request, timeout=10)
            except grpc.RpcError as error:
                out.append(f"{error.code()} {error.details()}")
                return
            answer.ClearField("header")
            if isinstance(answer, rpc.LeaseTimeToLiveResponse):
                answer.ClearField("TTL")  # seconds left: a matter of timing
            if isinstance(answer, rpc.LeaseLeasesResponse):  # etcd's order is a Go map's
                out.append(f"leases {sorted(lease.ID for lease in answer.leases)}")
                return
            out.append(str(answer))

        base = put(rpc.PutRequest(key=b"base", value=b"0"), timeout=10).header.revision
        for key, value in ((b"a", b"3"), (b"b", b"1"), (b"c", b"2"), (b"a", b"4")):
            call(put, rpc.PutRequest(key=key, value=value))
        for request in (
            rpc.RangeRequest(key=b"a", revision=base + 100),
            rpc.RangeRequest(key=b"a", range_end=b"z", sort_order=2, sort_target=4, limit=2),
            rpc.RangeRequest(key=b"a", range_end=b"z", sort_order=1, sort_target=1, keys_only=True),
            rpc.RangeRequest(key=b"a", range_end=b"z", sort_order=2, sort_target=2, keys_only=True),
            rpc.RangeRequest(key=b"a", range_end=b"z", sort_order=1, sort_target=3, keys_only=True),
            rpc.RangeRequest(key=b"a", range_end=b"z", count_only=True, limit=1),
            rpc.RangeRequest(key=b"a", range_end=b"z", min_mod_revision=base + 3, keys_only=True),
            rpc.RangeRequest(key=b"a", range_end=b"z", max_create_revision=base + 2),
            rpc.RangeRequest(key=b"b", range_end=b"\0", keys_only=True),
            rpc.RangeRequest(key=b"\0", range_end=b"\0", count_only=True),
            rpc.RangeRequest(key=b"a", revision=base + 1),
            rpc.RangeRequest(key=b"a", limit=-1),
        ):
            call(get, request)
        for request in (
            rpc.PutRequest(key=b"zz", ignore_value=True),
            rpc.PutRequest(key=b"a", ignore_value=True, prev_kv=True),
            rpc.PutRequest(key=b"zz", value=b"x", ignore_lease=True),
            rpc.PutRequest(key=b"zz", value=b"x", lease=12345),
            rpc.PutRequest(key=b"a", value=b"x", ignore_value=True),
        ):
            call(put, request)
        for request in (
            rpc.LeaseGrantRequest(TTL=60, ID=777),
            rpc.LeaseGrantRequest(TTL=60, ID=777),
            rpc.LeaseGrantRequest(TTL=0, ID=778),
            rpc.LeaseGrantRequest(TTL=-5, ID=779),
            rpc.LeaseGrantRequest(TTL=10**12, ID=780),
        ):
            call(grant, request)
        call(put, rpc.PutRequest(key=b"l1", value=b"x", lease=777))
        call(ttl, rpc.LeaseTimeToLiveRequest(ID=777, keys=True))
        call(ttl, rpc.LeaseTimeToLiveRequest(ID=999))
        call(revoke, rpc.LeaseRevokeRequest(ID=999))
        d1, d2 = (Op(request_put=rpc.PutRequest(key=b"d", value=v)) for v in (b"1", b"2"))
        e1, e2 = (Op(request_put=rpc.PutRequest(key=b"e", value=v)) for v in (b"1", b"2"))
        everything = Op(request_delete_range=rpc.DeleteRangeRequest(key=b"a", range_end=b"z"))
        for request in (
            rpc.TxnRequest(success=[d1, d2]),
            rpc.TxnRequest(success=[d1, everything]),
            rpc.TxnRequest(success=[Op(request_range=rpc.RangeRequest(key=b"a"))] * 129),
            rpc.TxnRequest(
                compare=[rpc.Compare(key=b"l1", target=rpc.Compare.LEASE, lease=777)],
                success=[Op(request_range=rpc.RangeRequest(key=b"l1", keys_only=True))],
            ),
            rpc.TxnRequest(
                compare=[
                    rpc.Compare(key=b"a", range_end=b"z", result=rpc.Compare.GREATER, version=0)
                ],
                success=[Op(request_range=rpc.RangeRequest(key=b"a", count_only=True))],
            ),
            rpc.TxnRequest(compare=[rpc.Compare(key=b"nokey", version=0)]),
            rpc.TxnRequest(compare=[rpc.Compare(key=b"nokey", target=rpc.Compare.VALUE)]),
            rpc.TxnRequest(success=[e1, Op(request_txn=rpc.TxnRequest(success=[e2]))]),
            rpc.TxnRequest(success=[e1, Op(request_txn=rpc.TxnRequest(failure=[e2]))]),
        ):
            call(txn, request)
        call(delete, rpc.DeleteRangeRequest(key=b"b", range_end=b"d", prev_kv=True))
        call(delete, rpc.DeleteRangeRequest(key=b"e", range_end=b"\0"))
        for revision, physical in ((base + 1000, False), (base + 3, True), (base + 2, False)):
            call(compact, rpc.CompactionRequest(revision=revision, physical=physical))
        call(get, rpc.RangeRequest(key=b"a", revision=base + 2))
        call(get, rpc.RangeRequest(key=b"a", revision=base + 3))
        call(revoke, rpc.LeaseRevokeRequest(ID=777))
        call(leases, rpc.LeaseLeasesRequest())
    return out


def test_kv_and_lease_calls_over_grpc_answer_as_etcd(cluster, tmp_path):
    """The same calls against a fresh etcd 3.4 and a fresh pyraftkv: the same answers,
    status codes and messages (a too large lease TTL is OUT_OF_RANGE, as etcd's)."""
    expected = on_etcd(tmp_path, lambda etcd: kv_and_lease_calls(etcd.endpoints[0]))
    assert "StatusCode.OUT_OF_RANGE etcdserver: too large lease TTL" in expected
    got = kv_and_lease_calls(cluster.endpoints[0])
    assert got == expected, [(e, g) for e, g in zip(expected, got, strict=True) if e != g]
