"""Peer TLS: members speak TLS to each other (snapshots included); with peer client-cert
auth a connection without a certificate from the trusted CA, or with another CN than
--peer-cert-allowed-cn, is refused before any frame is read, and forged member traffic
changes nothing."""

from __future__ import annotations

import socket
import ssl

import pytest

from pyraftkv.node.peer_transport import ACCEPT, CHANNEL_MESSAGES, HANDSHAKE, encode_handshake
from pyraftkv.proto import rpc_pb2 as rpc

from .harness import Member, free_ports, put_retrying


def _raw_peer_attempt(port: int, context: ssl.SSLContext | None, payload: bytes) -> bytes:
    """Open a connection to a peer port (TLS when ``context``), send ``payload``; return
    what the member answered before closing: b"" when it answered nothing or the TLS layer
    refused us (with TLS 1.3 the refusal of a client certificate can come after our first
    write)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    answer = b""
    try:
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(payload)
        while data := sock.recv(4096):
            answer += data
    except (ssl.SSLError, ConnectionError):
        pass
    finally:
        sock.close()
    return answer


def _client_context(certs, cert=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs.ca)
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    return context


@pytest.fixture
def tls_cluster(make_cluster, certs):
    cluster = make_cluster(
        3,
        snapshot_count=100,
        peer_scheme="https",
        extra_args=[*certs.peer_args(), "--peer-cert-allowed-cn", "member"],
    )
    cluster.start()
    return cluster


def test_a_peer_tls_cluster_replicates_and_sends_snapshots_over_tls(tls_cluster):
    cluster = tls_cluster
    lagging = cluster.members[2]
    cluster.kill(lagging)
    others = cluster.members[:2]
    with cluster.client(others) as c:
        for i in range(300):
            put_retrying(c, f"k{i:03d}", str(i))
        target = c.status().raftIndex
    cluster.start_member(lagging)
    cluster.wait_applied(lagging, target)
    assert "installed snapshot at index" in lagging.log_text()
    with cluster.client([lagging]) as c:
        kvs = c.get("k", prefix=True, serializable=True).kvs
        assert len(kvs) == 300 and kvs[299].value == b"299"
    # A member added later joins over TLS: it asks a peer for the cluster, then catches up.
    client_port, peer_port = free_ports(2)
    url = f"https://127.0.0.1:{peer_port}"
    with cluster.client() as c:
        added = c.call("MemberAdd", rpc.MemberAddRequest(peerURLs=[url]))
    newcomer = Member(
        "m4",
        client_port,
        peer_port,
        str(lagging.data_dir) + "-m4",
        [*lagging.extra_args, "--initial-cluster-state", "existing"],
    )
    cluster.initial_cluster += f",m4={url}"
    cluster.members.append(newcomer)
    cluster.start_member(newcomer)
    assert cluster.status(newcomer).header.member_id == added.member.ID
    cluster.wait_applied(newcomer, cluster.status(cluster.members[0]).raftIndex)


def test_peers_without_a_valid_certificate_are_refused_and_forged_traffic_changes_nothing(
    tls_cluster, certs
):
    cluster = tls_cluster
    leader = cluster.wait_leader()
    target = next(m for m in cluster.members if m is not leader)
    before = cluster.status(target)
    cluster_id, member_id = before.header.cluster_id, before.header.member_id
    # A forged handshake as the leader, then a frame claiming a huge term.
    forged = encode_handshake(CHANNEL_MESSAGES, cluster_id, leader_id := before.leader, member_id)
    forged += b"\x00\x00\x00\x10" + b"\xff" * 16
    port = target.peer_port
    # plaintext on a TLS port: the TLS layer drops it, the member answers nothing
    assert _raw_peer_attempt(port, None, forged) == b""
    # TLS without a client certificate, and with one from a CA nobody trusts
    for cert in (None, certs.issue("member", untrusted=True)):
        assert _raw_peer_attempt(port, _client_context(certs, cert), forged) == b""
    # A certificate from the right CA but not the allowed CN: closed before the handshake
    assert _raw_peer_attempt(port, _client_context(certs, certs.issue("intruder")), forged) == b""
    assert "certificate CN 'intruder' is not 'member'" in target.log_text()
    # The same probe with the members' own certificate is answered (the probe can tell).
    context = _client_context(certs, certs.issue("member"))
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1"
    ) as sock:
        sock.sendall(forged[: HANDSHAKE.size])
        assert sock.recv(1) == ACCEPT
    # Nothing changed: same leader and term, the cluster serves writes on every member.
    after = cluster.status(target)
    assert (after.leader, after.raftTerm) == (leader_id, before.raftTerm)
    with cluster.client() as c:
        c.put("still", "serving")
    for member in cluster.members:
        assert member.running
        with cluster.client([member]) as c:
            assert c.get("still").kvs[0].value == b"serving"
