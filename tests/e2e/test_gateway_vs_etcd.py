"""etcd 3.4's JSON gateway on the client port: the same HTTP requests to a real etcd 3.4
member and to a pyraftkv member give the same status and the same JSON (after blanking
the cluster id, member id and term), revisions included."""

from __future__ import annotations

import base64
import hashlib
import json
import socket

import h11
import pytest

from pyraftkv import Client

from ..ctl_etcd_cluster import ETCD, MISSING
from .gateway_http import Stream, b64, call, normalise, raw_exchange, start_etcd
from .harness import LocalCluster

pytestmark = pytest.mark.skipif(ETCD is None, reason=MISSING)

A, B, C = b64("a"), b64("b"), b64("c")
LEASE = "7587862110283464715"

# (path, body): each answered the same by both. Bodies are JSON unless str.
KV_SESSION: list[tuple[str, object]] = [
    ("/v3/kv/put", {"key": A, "value": B}),
    ("/v3/kv/range", {"key": A}),
    ("/v3/kv/put", {"key": A, "value": C, "prev_kv": True}),
    ("/v3/kv/put", {"key": b64("a/1"), "value": B}),
    ("/v3/kv/put", {"key": b64("a/2"), "value": C}),
    ("/v3/kv/range", {"key": A, "range_end": b64("b"), "sort_order": "DESCEND", "limit": 2}),
    ("/v3/kv/range", {"key": A, "range_end": b64("b"), "keys_only": True}),
    ("/v3/kv/range", {"key": A, "range_end": b64("b"), "count_only": True}),
    ("/v3/kv/range", {"key": b64("\0"), "range_end": b64("\0"), "sortTarget": "MOD"}),
    ("/v3/kv/range", {"key": A, "revision": 2}),
    ("/v3/kv/range", {"key": A, "bogus_field": 1}),
    ("/v3beta/kv/range", {"key": A}),
    ("/v3/kv/range?x=1", {"key": A}),
    ("/v3/kv/deleterange", {"key": b64("a/1"), "prev_kv": True}),
    ("/v3/kv/deleterange", {"key": b64("zz")}),
    (
        "/v3/kv/txn",
        {
            "compare": [{"key": A, "target": "VALUE", "result": "EQUAL", "value": C}],
            "success": [
                {"request_put": {"key": A, "value": B}},
                {"request_range": {"key": b64("a/2")}},
            ],
            "failure": [{"request_delete_range": {"key": A}}],
        },
    ),
    (
        "/v3/kv/txn",
        {
            "compare": [{"key": A, "target": "VERSION", "result": "GREATER", "version": "100"}],
            "success": [{"request_put": {"key": A, "value": B}}],
            "failure": [{"request_range": {"key": A}}],
        },
    ),
    ("/v3/kv/txn", {"success": [{"request_put": {"key": A}}, {"request_put": {"key": A}}]}),
    ("/v3/kv/compaction", {"revision": 3}),
    ("/v3/kv/range", {"key": A, "revision": 2}),
    ("/v3/kv/range", {"key": A, "revision": 1000}),
    ("/v3/kv/compaction", {"revision": 3}),
    ("/v3/kv/range", {"key": ""}),
    ("/v3/kv/range", ""),
    ("/v3/kv/range", "null"),
    ("/v3/kv/put", {"key": "", "value": B}),
    ("/v3/kv/put", {"key": A, "lease": "12345"}),
    ("/v3/lease/grant", {"TTL": 60, "ID": LEASE}),
    ("/v3/lease/grant", {"TTL": 60, "ID": LEASE}),
    ("/v3/kv/put", {"key": b64("leased"), "value": B, "lease": LEASE}),
    ("/v3/lease/leases", {}),
    ("/v3/kv/lease/leases", {}),
    ("/v3/lease/revoke", {"ID": "5"}),
    ("/v3/kv/range", {"key": b64("leased")}),
    ("/v3/lease/revoke", {"ID": LEASE}),
    ("/v3/kv/range", {"key": b64("leased")}),
]

# Answered with the same status and gRPC code; the messages are the JSON parsers' own.
BAD_JSON = ['{"key":', "[]", '{"key": 1}', '{"key": "!!"}', '{"limit": "x"}']

# Not gateway calls: the same status and body (Content-Type too).
HTTP_SESSION: list[tuple[str, str]] = [
    ("POST", "/v3/kv/nothing"),
    ("GET", "/v3/kv/range"),
    ("POST", "/nothing"),
    ("GET", "/health"),
    ("POST", "/health"),
    ("POST", "/version"),
    ("OPTIONS", "/v3/kv/range"),
]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A real etcd 3.4 member and a pyraftkv member, both fresh: (etcd, pyraftkv) endpoints."""
    directory = tmp_path_factory.mktemp("gateway")
    etcd, etcd_endpoint = start_etcd(directory)
    cluster = LocalCluster(str(directory), 1)
    try:
        cluster.start()
        yield etcd_endpoint, cluster.members[0].endpoint
    finally:
        cluster.stop_all()
        etcd.kill()
        etcd.wait(10)


def _compare(both, path: str, body, **options) -> list[str]:
    etcd, ours = (call(endpoint, path, body, **options) for endpoint in both)
    theirs_json = normalise(etcd.json) if etcd.content_type == "application/json" else etcd.body
    mine_json = normalise(ours.json) if ours.content_type == "application/json" else ours.body
    if (etcd.status, etcd.content_type, theirs_json) != (ours.status, ours.content_type, mine_json):
        return [
            f"{path} {body!r}\n  etcd:     {etcd.status} {etcd.content_type} {etcd.body!r}"
            f"\n  pyraftkv: {ours.status} {ours.content_type} {ours.body!r}"
        ]
    return []


def test_kv_and_lease_calls_answer_as_etcd(both):
    differences = []
    for path, body in KV_SESSION:
        differences += _compare(both, path, body)
    assert not differences, "\n".join(differences)


def test_bad_json_gets_etcds_status_and_code(both):
    for body in BAD_JSON:
        etcd, ours = (call(endpoint, "/v3/kv/range", body) for endpoint in both)
        assert (ours.status, ours.json["code"]) == (etcd.status, etcd.json["code"]) == (400, 3)
        assert ours.json["error"] == ours.json["message"] != ""
    # a bidirectional stream decodes its requests inside the stream: Unknown, 500
    for path in ("/v3/watch", "/v3/lease/keepalive", "/v3/election/observe"):
        etcd, ours = (call(endpoint, path, "not json") for endpoint in both)
        assert (ours.status, ours.json["code"]) == (etcd.status, etcd.json["code"]), path
    # and the member keeps serving
    assert call(both[1], "/v3/kv/range", {"key": A}).status == 200


def test_plain_http_paths_answer_as_etcd(both):
    differences = []
    for method, path in HTTP_SESSION:
        differences += _compare(both, path, None, method=method)
    assert not differences, "\n".join(differences)


def test_version_and_metrics_on_the_client_port(both):
    etcd, ours = (call(endpoint, "/version", method="GET") for endpoint in both)
    assert ours.status == etcd.status == 200
    assert set(ours.json) == set(etcd.json) == {"etcdserver", "etcdcluster"}
    assert ours.json["etcdserver"].startswith("3.4.")
    etcd, ours = (call(endpoint, "/metrics", method="GET") for endpoint in both)
    assert ours.status == etcd.status == 200
    assert ours.content_type == etcd.content_type
    for name in (b"etcd_disk_wal_fsync_duration_seconds_bucket", b"etcd_server_has_leader 1"):
        assert name in ours.body and name in etcd.body


LEASE2 = "7587862110283464716"
LOCK_SESSION: list[tuple[str, object]] = [
    ("/v3/lease/grant", {"TTL": 60, "ID": LEASE2}),
    ("/v3/lease/timetolive", {"ID": LEASE2, "keys": True}),
    ("/v3/kv/lease/timetolive", {"ID": "99"}),
    ("/v3/lock/lock", {"name": b64("lk"), "lease": LEASE2}),
    ("/v3/lock/unlock", {"key": b64("lk/694d9b1a3d3e3a0c")}),
    ("/v3/election/leader", {"name": b64("el")}),
    ("/v3/election/campaign", {"name": b64("el"), "lease": LEASE2, "value": b64("v1")}),
    ("/v3/election/leader", {"name": b64("el")}),
    ("/v3/election/proclaim", {"value": b64("v2")}),
    ("/v3/maintenance/transfer-leadership", {"targetID": "1"}),
    ("/v3/cluster/member/remove", {"ID": "1"}),
    ("/v3/cluster/member/promote", {"ID": "1"}),
    ("/v3/cluster/member/update", {"ID": "1", "peerURLs": ["http://127.0.0.1:1"]}),
]


def test_watch_streams_as_etcd(both):
    watches = [
        Stream(endpoint, "/v3/watch", {"create_request": {"key": A, "prev_kv": True}})
        for endpoint in both
    ]
    try:
        created = [w.line() for w in watches]
        assert normalise(created[0]) == normalise(created[1])
        for endpoint in both:
            call(endpoint, "/v3/kv/put", {"key": A, "value": C})
            deleted = call(endpoint, "/v3/kv/deleterange", {"key": A}).json
            # compacted here, whatever ran before (both stores have had the same writes)
            revision = deleted["header"]["revision"]
            call(endpoint, "/v3/kv/compaction", {"revision": revision})
        for _ in range(2):
            theirs, mine = (normalise(w.line()) for w in watches)
            assert mine == theirs
            assert "events" in mine["result"]
    finally:
        for w in watches:
            w.close()
    # below the compaction: created, then canceled with the compact revision
    compacted = [
        Stream(endpoint, "/v3/watch", {"create_request": {"key": A, "start_revision": 1}})
        for endpoint in both
    ]
    try:
        theirs, mine = (normalise(w.line()) for w in compacted)
        assert mine == theirs
        # (pyraftkv's cancel also carries a reason and the revision, as etcd 3.5 does)
        theirs, mine = (w.line()["result"] for w in compacted)
        assert (mine["canceled"], mine["compact_revision"]) == (True, theirs["compact_revision"])
    finally:
        for w in compacted:
            w.close()


def test_one_watch_body_may_create_and_cancel_several_watchers(both):
    body = json.dumps({"create_request": {"key": b64("w1")}}) + json.dumps(
        {"create_request": {"key": b64("w2"), "watch_id": 7, "filters": ["NODELETE"]}}
    )
    body += json.dumps({"cancel_request": {"watch_id": 0}})
    streams = [Stream(endpoint, "/v3/watch", body) for endpoint in both]
    try:
        lines = [[normalise(s.line()) for _ in range(3)] for s in streams]
        assert lines[0] == lines[1]
        assert [line["result"].get("watch_id", "0") for line in lines[1]] == ["0", "7", "0"]
        for endpoint in both:
            call(endpoint, "/v3/kv/put", {"key": b64("w2"), "value": B})
        theirs, mine = (normalise(s.line()) for s in streams)
        assert mine == theirs and mine["result"]["watch_id"] == "7"
    finally:
        for s in streams:
            s.close()


def test_lease_keep_alive_streams_one_answer_per_request(both):
    for endpoint in both:
        call(endpoint, "/v3/lease/grant", {"TTL": 30, "ID": "77"})
    body = '{"ID": "77"}\n{"ID": "77"} {"ID": "78"}'
    etcd, ours = (call(endpoint, "/v3/lease/keepalive", body) for endpoint in both)
    assert ours.status == etcd.status == 200
    assert normalise(ours.lines()) == normalise(etcd.lines())
    assert len(ours.lines()) == 3
    etcd, ours = (call(endpoint, "/v3/lease/keepalive", "") for endpoint in both)
    assert (ours.status, ours.body) == (etcd.status, etcd.body) == (200, b"")


def test_lease_lock_election_cluster_calls_answer_as_etcd(both):
    differences = []
    for path, body in LOCK_SESSION:
        if path == "/v3/election/proclaim":  # the leader key the campaign returned
            leader = call(both[0], "/v3/election/leader", {"name": b64("el")}).json["kv"]
            body = {
                **body,
                "leader": {
                    "name": b64("el"),
                    "key": leader["key"],
                    "rev": leader["create_revision"],
                    "lease": LEASE2,
                },
            }
        differences += _compare(both, path, body)
    assert not differences, "\n".join(differences)
    observers = [Stream(e, "/v3/election/observe", {"name": b64("el")}) for e in both]
    try:
        theirs, mine = (normalise(o.line()) for o in observers)
        assert mine == theirs
        assert base64.b64decode(mine["result"]["kv"]["value"]) == b"v2"
    finally:
        for o in observers:
            o.close()
    for endpoint in both:
        assert call(endpoint, "/v3/lease/revoke", {"ID": LEASE2}).status == 200


def test_cluster_and_maintenance_answers_have_etcds_fields(both):
    etcd, ours = (call(e, "/v3/cluster/member/list", {}) for e in both)
    assert ours.status == etcd.status == 200
    (theirs,), (mine,) = etcd.json["members"], ours.json["members"]
    assert set(mine) == set(theirs) == {"ID", "name", "peerURLs", "clientURLs"}
    assert mine["clientURLs"] == [f"http://{both[1]}"]
    etcd, ours = (call(e, "/v3/maintenance/status", {}) for e in both)
    assert ours.status == etcd.status == 200
    assert set(etcd.json) <= set(ours.json)
    assert ours.json["leader"] == ours.json["header"]["member_id"]


# Alarm (on an id that names no member, then cleared) and Defragment: the same answers.
MAINTENANCE_SESSION: list[tuple[str, object]] = [
    ("/v3/maintenance/alarm", {}),
    ("/v3/maintenance/alarm", {"action": "ACTIVATE", "memberID": "1", "alarm": "NOSPACE"}),
    ("/v3/maintenance/alarm", {"action": "GET"}),
    ("/v3/maintenance/alarm", {"action": "GET", "alarm": "CORRUPT"}),
    ("/v3/maintenance/alarm", {"action": "DEACTIVATE", "memberID": "1", "alarm": "NOSPACE"}),
    ("/v3/maintenance/alarm", {"action": "DEACTIVATE", "memberID": "1", "alarm": "NOSPACE"}),
    ("/v3/maintenance/alarm", {}),
    ("/v3/maintenance/defragment", {}),
    ("/v3beta/maintenance/defragment", {}),
]


def test_alarm_defragment_and_hash_answer_as_etcd(both):
    differences = []
    for path, body in MAINTENANCE_SESSION:
        differences += _compare(both, path, body)
    assert not differences, "\n".join(differences)
    for path in ("alarm", "defragment", "hash"):
        etcd, ours = (call(e, f"/v3/maintenance/{path}", "x") for e in both)
        assert (ours.status, ours.json["code"]) == (etcd.status, etcd.json["code"]) == (400, 3)
    etcd, ours = (call(e, "/v3/maintenance/hash", {}) for e in both)
    assert ours.status == etcd.status == 200
    assert set(ours.json) == set(etcd.json) == {"header", "hash"}
    # A hash of each member's own backend (their files differ); the revision is the same.
    assert normalise(ours.json["header"]) == normalise(etcd.json["header"])
    assert ours.json["hash"] == call(both[1], "/v3/maintenance/hash", {}).json["hash"]
    call(both[1], "/v3/kv/put", {"key": b64("hashed"), "value": B})
    assert call(both[1], "/v3/maintenance/hash", {}).json["hash"] != ours.json["hash"]
    call(both[1], "/v3/kv/deleterange", {"key": b64("hashed")})
    call(both[0], "/v3/kv/put", {"key": b64("hashed"), "value": B})
    call(both[0], "/v3/kv/deleterange", {"key": b64("hashed")})


def test_snapshot_streams_the_database_and_its_digest(both):
    for endpoint in both:
        answer = call(endpoint, "/v3/maintenance/snapshot", {})
        assert answer.status == 200
        blob = b"".join(base64.b64decode(line["result"]["blob"]) for line in answer.lines())
        assert hashlib.sha256(blob[:-32]).digest() == blob[-32:]
        assert len(blob) > 4096


def test_auth_over_the_gateway_with_the_token_header(both):
    setup = [
        ("/v3/auth/user/add", {"name": "root", "password": "rootpw"}),
        ("/v3/auth/role/add", {"name": "root"}),
        ("/v3/auth/authenticate", {"name": "root", "password": "rootpw"}),
        ("/v3/auth/enable", {}),
        ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
        ("/v3/auth/enable", {}),
        ("/v3/kv/range", {"key": A}),
        ("/v3/auth/authenticate", {"name": "root", "password": "wrong"}),
    ]
    differences = []
    for path, body in setup:
        differences += _compare(both, path, body)
    assert not differences, "\n".join(differences)
    tokens = [
        call(e, "/v3/auth/authenticate", {"name": "root", "password": "rootpw"}).json["token"]
        for e in both
    ]
    session = [
        ("Authorization", "/v3/kv/put", {"key": A, "value": B}),
        ("Grpc-Metadata-Token", "/v3/kv/range", {"key": A}),
        ("Authorization", "/v3/auth/user/add", {"name": "alice", "password": "pw"}),
        ("Authorization", "/v3/auth/user/list", {}),
        ("Authorization", "/v3/auth/role/get", {"role": "root"}),
        ("Authorization", "/v3/auth/user/get", {"name": "alice"}),
        ("Authorization", "/v3/auth/user/delete", {"name": "alice"}),
        ("Authorization", "/v3/auth/disable", {}),
    ]
    for header, path, body in session:
        etcd, ours = (
            call(e, path, body, headers={header: token})
            for e, token in zip(both, tokens, strict=True)
        )
        assert (ours.status, normalise(ours.json)) == (etcd.status, normalise(etcd.json)), path
    differences = _compare(both, "/v3/kv/range", {"key": A})  # auth is off again
    assert not differences, "\n".join(differences)


# -- bad input -----------------------------------------------------------------------------


def _put_of(value_bytes: int) -> str:
    return json.dumps({"key": A, "value": base64.b64encode(b"x" * value_bytes).decode()})


def test_request_size_limits_as_etcds(both):
    """Up to --max-request-bytes (1.5 MiB): served; above it: etcd's "request is too
    large"; above it plus 512 KiB: etcd's gRPC "larger than max"; a body far larger is
    refused before it is read."""
    for size, status, code in ((1_200_000, 200, None), (1_700_000, 400, 3), (2_200_000, 429, 8)):
        etcd, ours = (call(e, "/v3/kv/put", _put_of(size)) for e in both)
        assert ours.status == etcd.status == status, size
        if code is not None:
            assert ours.json["code"] == etcd.json["code"] == code
            if code == 3:
                assert ours.json == etcd.json
            else:
                assert ours.json["error"].startswith("grpc: received message larger than max (")
    answer = call(both[1], "/v3/kv/put", b"{" + b" " * 20_000_000 + b"}")
    assert answer.status == 429 and answer.json["code"] == 8
    assert call(both[1], "/v3/kv/range", {"key": A}).status == 200
    with Client([both[1]]) as client:  # the native protocol on the same port too
        assert client.get(b"a").header.revision > 0


@pytest.mark.parametrize(
    "data, status",
    [
        (b"GARBAGE\r\n\r\n", b"400 Bad Request"),  # etcd hangs up without a word
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", b"400 Bad Request"),
        (b"POST /v3/kv/range HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400 Bad Request"),
        (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", b"505 HTTP Version Not Supported"),
    ],
)
def test_malformed_http_gets_an_error_and_the_member_keeps_serving(both, data, status):
    etcd, ours = (raw_exchange(e, data) for e in both)
    assert ours.startswith(b"HTTP/1.1 " + status + b"\r\n"), ours
    assert not etcd or etcd.split(b"\r\n", 1)[0] == ours.split(b"\r\n", 1)[0]
    assert call(both[1], "/v3/kv/range", {"key": A}).status == 200


def test_expect_100_continue_is_answered_before_the_body(both):
    """curl sends bodies over 1 KiB only after "100 Continue" (or a second's wait)."""
    body = json.dumps({"key": A, "value": base64.b64encode(b"v" * 4000).decode()}).encode()
    head = (
        b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    for endpoint in both:
        host, port = endpoint.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=0.5) as sock:
            sock.sendall(head)
            assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n"), endpoint


def _request(method: str, path: str, body: object = None, close: bool = False) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + (b"Connection: close\r\n" if close else b"") + b"\r\n" + data


def _pipelined(endpoint: str, requests: list[bytes]) -> list[tuple[int, object]]:
    """The requests in one write on one connection; the answers, parsed in order."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(raw_exchange(endpoint, b"".join(requests)))
    client.receive_data(b"")
    answers: list[tuple[int, object]] = []
    for _ in requests:
        # the client's own bookkeeping: these bytes were sent above
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        status, body = 0, b""
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            assert isinstance(event, h11.Response | h11.Data), event
            if isinstance(event, h11.Response):
                status = event.status_code
            else:
                body += event.data
        answers.append((status, normalise(json.loads(body)) if body[:1] == b"{" else body))
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
    return answers


def test_keep_alive_and_pipelined_requests_are_answered_in_order(both):
    requests = [
        _request("POST", "/v3/kv/put", {"key": b64("p"), "value": B}),
        _request("POST", "/v3/kv/range", {"key": b64("p")}),
        _request("GET", "/nothing"),
        _request("POST", "/v3/kv/range", {"key": ""}),
        _request("GET", "/health", close=True),
    ]
    etcd, ours = (_pipelined(e, requests) for e in both)
    assert [status for status, _ in ours] == [200, 200, 404, 400, 200]
    assert ours == etcd
