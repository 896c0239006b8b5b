"""etcd 3.4's JSON gateway on the client port: the same HTTP requests to a real etcd 3.4
member and to a pyraftkv member give the same status and the same JSON (after blanking
the cluster id, member id and term), revisions included."""

from __future__ import annotations

import pytest

from ..ctl_etcd_cluster import ETCD, MISSING
from .gateway_http import b64, call, normalise, start_etcd
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
