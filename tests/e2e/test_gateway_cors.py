"""--cors and --host-whitelist on the client port's HTTP side, next to etcd 3.4 started
with the same flags: the same status and the same CORS headers for the same requests."""

from __future__ import annotations

import pytest

from ..ctl_etcd_cluster import ETCD, MISSING
from .gateway_http import b64, call, start_etcd

pytestmark = pytest.mark.skipif(ETCD is None, reason=MISSING)

FLAGS = [
    "--cors", "http://a.example:80,https://b.example:443",
    "--host-whitelist", "ok.example,127.0.0.1",
]  # fmt: skip
CASES = [
    ("POST", "/v3/kv/range", {"Origin": "http://a.example:80"}),
    ("OPTIONS", "/v3/kv/range", {"Origin": "http://a.example:80"}),
    ("POST", "/v3/kv/range", {"Origin": "http://c.example:80"}),  # not listed: no CORS
    ("OPTIONS", "/v3/kv/range", {"Origin": "http://c.example:80"}),
    ("POST", "/v3/kv/range", {}),  # no Origin: no CORS headers either
    ("POST", "/v3/kv/range", {"Host": "ok.example:2379", "Origin": "https://b.example:443"}),
    ("POST", "/v3/kv/range", {"Host": "evil.example"}),  # not listed: 421
    ("GET", "/health", {"Host": "evil.example:2379"}),
    ("GET", "/version", {"Host": "ok.example"}),
]


def cors(answer) -> dict:
    return {k: v for k, v in answer.headers.items() if k.startswith("access-control-")}


def test_cors_and_host_whitelist_answer_as_etcds(make_cluster, tmp_path):
    etcd, theirs = start_etcd(tmp_path, *FLAGS)
    try:
        cluster = make_cluster(1, extra_args=FLAGS)
        cluster.start()
        ours = cluster.endpoints[0]
        for method, path, headers in CASES:
            body = {"key": b64("k")} if method == "POST" else None
            expected = call(theirs, path, body, method=method, headers=headers)
            got = call(ours, path, body, method=method, headers=headers)
            case = (method, path, headers)
            assert got.status == expected.status, case
            assert cors(got) == cors(expected), case
            if expected.status == 421:
                assert got.headers["x-content-type-options"] == "nosniff"
        # Without the flags, every answer carries CORS headers for any origin (etcd's default).
        plain = make_cluster(1)
        plain.start()
        answer = call(plain.endpoints[0], "/v3/kv/range", {"key": b64("k")}, headers={})
        assert cors(answer)["access-control-allow-origin"] == "*"
    finally:
        etcd.kill()
        etcd.wait()
