"""etcd3gw 2.7 (an unmodified etcd JSON-gateway client from PyPI) against a 3-member
pyraftkv cluster, through a follower: KV, transactions, watch, leases (keep-alive and
time-to-live go to the leader through the follower), locks, and the same client going on
after its member is restarted."""

from __future__ import annotations

import threading

import pytest
import requests

etcd3gw = pytest.importorskip("etcd3gw")
from etcd3gw.client import Etcd3Client  # noqa: E402


def _client(member) -> Etcd3Client:
    return Etcd3Client(host="127.0.0.1", port=member.client_port, timeout=10)


def _kv_round(client: Etcd3Client, tag: str) -> None:
    assert client.put(f"{tag}/a", "1") and client.put(f"{tag}/b", "2")
    assert client.get(f"{tag}/a") == [b"1"]
    assert sorted(value for value, _ in client.get_prefix(f"{tag}/")) == [b"1", b"2"]
    assert client.create(f"{tag}/a", "x") is False
    assert client.replace(f"{tag}/a", "1", "3") is True
    assert client.get(f"{tag}/a") == [b"3"]
    assert client.delete(f"{tag}/b") is True
    assert client.delete_prefix(f"{tag}/") is True
    assert client.get(f"{tag}/a") == []


def test_etcd3gw_through_a_follower_and_across_its_restart(cluster):
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    client = _client(follower)
    assert client.api_path == "/v3/"
    assert len(client.members()) == 3
    assert int(client.status()["leader"]) != 0
    _kv_round(client, "before")

    events, cancel = client.watch_prefix("watched/")
    got: list = []
    reader = threading.Thread(target=lambda: got.extend([next(events), next(events)]))
    reader.start()
    client.put("watched/x", "1")
    client.delete("watched/x")
    reader.join(10)
    cancel()
    assert [e.get("type", "PUT") for e in got] == ["PUT", "DELETE"]
    assert got[0]["kv"]["key"] == b"watched/x" and got[0]["kv"]["value"] == b"1"

    lease = client.lease(ttl=30)
    client.put("leased", "v", lease=lease)
    assert 0 < lease.ttl() <= 30  # time-to-live: answered by the leader
    assert lease.refresh() == 30  # keep-alive: answered by the leader
    assert lease.keys() == [b"leased"]
    assert lease.revoke()
    assert client.get("leased") == []

    lock = client.lock("job", ttl=30)
    other = client.lock("job", ttl=30)
    assert lock.acquire() and lock.is_acquired()
    assert not other.acquire()
    assert lock.refresh() == 30
    assert lock.release()
    assert other.acquire() and other.release()

    cluster.kill(follower)
    cluster.start_member(follower)
    cluster.wait_leader()
    _kv_round(client, "after")
    assert client.lease(ttl=30).refresh() == 30


def test_etcd3gw_over_tls_with_the_certificates_name_as_its_user(make_cluster, certs):
    """TLS ends at the listener, below HTTP: the verified client certificate's CN reaches
    auth for gateway requests as for native ones (--client-cert-auth)."""
    cluster = make_cluster(
        1,
        client_scheme="https",
        extra_args=certs.client_args(),
        client_options={"tls": certs.tls("root")},
    )
    cluster.start()
    port = cluster.members[0].client_port

    def client(name: str) -> Etcd3Client:
        files = certs.issue(name)
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA
        session.verify, session.cert = certs.ca, (files.cert, files.key)
        return Etcd3Client(
            host="127.0.0.1", port=port, protocol="https", session=session, timeout=10
        )

    root, alice = client("root"), client("alice")
    for path, body in (
        ("/auth/user/add", {"name": "root", "password": "pw"}),
        ("/auth/user/add", {"name": "alice", "password": "pw"}),
        ("/auth/role/add", {"name": "root"}),
        ("/auth/user/grant", {"user": "root", "role": "root"}),
        ("/auth/enable", {}),
    ):
        root.post(root.get_url(path), json=body)
    assert root.put("secret", "1") and root.get("secret") == [b"1"]
    with pytest.raises(etcd3gw.exceptions.Etcd3Exception) as refused:
        alice.get("secret")
    assert "etcdserver: permission denied" in refused.value.detail_text
