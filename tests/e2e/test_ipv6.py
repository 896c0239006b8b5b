"""A 3-member cluster on IPv6 loopback: bracketed literals in every URL flag, pyraftkvctl
endpoints, the member list, and the clients' failover between members."""

from __future__ import annotations

import socket

import pytest

from .harness import LocalCluster
from .test_ctl_node import ctl, ok


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)"
)


def test_three_members_on_ipv6_loopback(tmp_path):
    cluster = LocalCluster(str(tmp_path), 3, host="::1")
    try:
        cluster.start()
        first, second, third = cluster.members
        assert first.endpoint.startswith("[::1]:")
        assert ok(ctl(cluster, "put", "v6", "yes", members=[second])) == b"OK\n"
        assert ok(ctl(cluster, "get", "v6", "--print-value-only", members=[third])) == b"yes\n"
        cluster.wait_published(first)
        listed = ok(ctl(cluster, "member", "list", members=[first])).decode()
        for member in cluster.members:
            assert f"http://[::1]:{member.peer_port}" in listed
            assert f"http://[::1]:{member.client_port}" in listed
        # The Python client fails over between bracketed endpoints.
        client = cluster.client()
        cluster.kill(first)
        assert client.get("v6").kvs[0].value == b"yes"
        assert client.put("after", "1").header.revision > 0
    finally:
        cluster.stop_all()
