"""Client TLS: the native protocol over TLS with client-certificate auth, from Client,
AsyncClient and pyraftkvctl; plaintext, a missing certificate, a certificate from another
CA and a client that does not trust the member's CA are each refused with a clear error,
and the member keeps serving."""

from __future__ import annotations

import asyncio
import io

import pytest

from pyraftkv import TLS, AsyncClient, Client
from pyraftkv.client.connection import Connection, ConnectionLost
from pyraftkv.ctl import run

from ..ctl_etcd_cluster import Result
from .harness import LocalCluster


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certs):
    cluster = LocalCluster(
        str(tmp_path_factory.mktemp("client-tls")),
        3,
        peer_scheme="https",
        client_scheme="https",
        extra_args=[*certs.peer_args(), *certs.client_args()],
        client_options={"tls": certs.tls("root")},
    )
    cluster.start()
    with cluster.client() as c:
        c.put("a", "1")  # what every test here reads back, whichever runs alone
    yield cluster
    cluster.stop_all()


def ctl(cluster: LocalCluster, *args: str, scheme: str = "https://") -> Result:
    endpoints = ",".join(f"{scheme}{m.endpoint}" for m in cluster.members)
    out, err = io.BytesIO(), io.BytesIO()
    code = run([f"--endpoints={endpoints}", *args], io.BytesIO(), out, err, environ={})
    return Result(code, out.getvalue(), err.getvalue())


def test_clients_and_pyraftkvctl_work_over_tls_with_certificates(tls_cluster, certs):
    with tls_cluster.client() as c:
        c.put("a", "1")

    async def async_round_trip() -> bytes:
        async with AsyncClient(tls_cluster.endpoints, tls=certs.tls("alice")) as c:
            await c.put("b", "2")
            return (await c.get("a")).kvs[0].value

    assert asyncio.run(async_round_trip()) == b"1"
    files = certs.issue("root")
    tls_flags = [f"--cacert={certs.ca}", f"--cert={files.cert}", f"--key={files.key}"]
    assert ctl(tls_cluster, *tls_flags, "put", "c", "3") == Result(0, b"OK\n", b"")
    assert ctl(tls_cluster, *tls_flags, "get", "b").out == b"b\n2\n"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"tls": False}, "a TLS port? connect with https:// or tls="),
        ({"tls": "no-cert"}, "does the member require a client certificate signed by its CA?"),
        ({"tls": "other-ca-cert"}, "require a client certificate signed by its CA?"),
        ({"tls": "distrust-server"}, "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_bad_clients_get_a_clear_error_and_the_member_keeps_serving(
    tls_cluster, certs, options, message
):
    tls = {
        False: False,
        "no-cert": certs.tls(None),
        "other-ca-cert": certs.tls("root", ca=certs.ca) and _other_ca_cert(certs),
        "distrust-server": certs.tls("root", ca=certs.other_ca),
    }[options["tls"]]
    member = tls_cluster.members[0]
    with Client([member.endpoint], tls=tls, timeout=2) as c, pytest.raises(ConnectionLost) as exc:
        c.get("a")
    assert message in str(exc.value)
    with tls_cluster.client([member]) as c:
        assert c.get("a").kvs[0].value == b"1"
    assert member.running


@pytest.mark.parametrize("exc", [None, ConnectionResetError(104, "Connection reset by peer")])
def test_a_refused_handshake_names_the_likely_cause_closed_or_reset(exc):
    # TLS 1.3 checks the client's certificate after the client sent its request: the
    # member's close then reaches the client as a clean close or, with the request
    # unread, as a reset (which one is timing); both get the hint.
    async def lost() -> str:
        connection = Connection("127.0.0.1:1")
        connection._tls = True
        future = asyncio.get_running_loop().create_future()
        connection._calls[1] = future
        connection.connection_lost(exc)
        return str(future.exception())

    assert "require a client certificate signed by its CA?" in asyncio.run(lost())


def _other_ca_cert(certs):
    files = certs.issue("root", untrusted=True)
    return TLS(ca_file=certs.ca, cert_file=files.cert, key_file=files.key)


def test_pyraftkvctl_tls_flags_as_etcdctls(tls_cluster, certs):
    # without any TLS flag, plaintext (etcdctl's --insecure-transport=true) is refused
    plain = ctl(tls_cluster, "get", "a", scheme="")
    assert plain.code != 0 and b"a TLS port?" in plain.err
    # an https endpoint and no certificate: the member asks for one
    files = certs.issue("root")
    missing = ctl(tls_cluster, f"--cacert={certs.ca}", "get", "a")
    assert missing.code != 0 and b"require a client certificate" in missing.err
    # --insecure-skip-tls-verify accepts a server nobody vouches for
    skip = ctl(
        tls_cluster,
        f"--cacert={certs.other_ca}",
        f"--cert={files.cert}",
        f"--key={files.key}",
        "--insecure-skip-tls-verify",
        "get",
        "a",
    )
    assert skip == Result(0, b"a\n1\n", b"")


def test_auto_tls_encrypts_without_verifying(make_cluster):
    cluster = make_cluster(1, client_scheme="https", extra_args=["--auto-tls"])
    cluster.client_options = {"tls": TLS(insecure_skip_verify=True)}
    cluster.start()
    with cluster.client() as c:
        c.put("k", "v")
        assert c.get("k").kvs[0].value == b"v"
    # A client that verifies cannot: nothing vouches for a self-signed certificate.
    with Client(cluster.endpoints, tls=True, timeout=2) as c, pytest.raises(ConnectionLost) as exc:
        c.get("k")
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)


def test_etcdctl_grpc_over_tls_with_certificates(tls_cluster, certs):
    """etcd's gRPC API over the client port's TLS: etcdctl with a certificate from the
    trusted CA writes and reads; without a certificate it is refused."""
    import os
    import subprocess

    from ..ctl_etcd_cluster import ETCDCTL

    if ETCDCTL is None:
        pytest.skip("etcdctl not installed")
    files = certs.issue("root")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    base = [ETCDCTL, f"--endpoints=https://{tls_cluster.endpoints[0]}", "--dial-timeout=3s"]
    auth = [f"--cacert={certs.ca}", f"--cert={files.cert}", f"--key={files.key}"]

    def etcdctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*base, *args], capture_output=True, env={**env, "ETCDCTL_API": "3"}, timeout=30
        )

    assert etcdctl(*auth, "put", "grpc-tls", "yes").stdout == b"OK\n"
    assert etcdctl(*auth, "get", "grpc-tls", "--print-value-only").stdout == b"yes\n"
    refused = etcdctl(f"--cacert={certs.ca}", "get", "grpc-tls")
    assert refused.returncode != 0 and refused.stdout == b""
    # With auth on, a call without a token runs as its certificate's CN (as etcd's).
    alice = certs.issue("alice")
    as_alice = [f"--cacert={certs.ca}", f"--cert={alice.cert}", f"--key={alice.key}"]
    assert etcdctl(*auth, "user", "add", "root:rootpw").returncode == 0
    assert etcdctl(*auth, "user", "add", "alice:alicepw").returncode == 0
    assert etcdctl(*auth, "auth", "enable").returncode == 0
    try:
        denied = etcdctl(*as_alice, "get", "grpc-tls")
        assert b"etcdserver: permission denied" in denied.stderr, denied.stderr
        assert etcdctl(*auth, "get", "grpc-tls", "--print-value-only").stdout == b"yes\n"
    finally:
        assert etcdctl(*auth, "auth", "disable").returncode == 0


def test_a_follower_passes_lease_calls_to_an_https_leader(tls_cluster, certs):
    """Keep-alive and time-to-live answered by a follower over gRPC (etcdctl) and the JSON
    gateway when every client URL is https: the follower dials the leader over TLS with its
    own certificate (as etcd's members do), and the lease is revoked through it."""
    import base64
    import json
    import os
    import ssl
    import subprocess
    import urllib.request

    from ..ctl_etcd_cluster import ETCDCTL

    if ETCDCTL is None:
        pytest.skip("etcdctl not installed")
    leader = tls_cluster.wait_leader()
    follower = next(m for m in tls_cluster.members if m is not leader)
    files = certs.issue("root")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    base = [ETCDCTL, f"--endpoints=https://{follower.endpoint}", "--dial-timeout=3s"]
    base += [f"--cacert={certs.ca}", f"--cert={files.cert}", f"--key={files.key}"]

    def etcdctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*base, *args], capture_output=True, env={**env, "ETCDCTL_API": "3"}, timeout=30
        )

    granted = etcdctl("lease", "grant", "60")
    lease = granted.stdout.split()[1].decode()
    assert etcdctl("put", "tls-leased", "v", f"--lease={lease}").returncode == 0
    kept = etcdctl("lease", "keep-alive", "--once", lease)
    assert kept.stdout == f"lease {lease} keepalived with TTL(60)\n".encode(), kept.stderr
    ttl = etcdctl("lease", "timetolive", lease, "--keys")
    assert b"attached keys([tls-leased])" in ttl.stdout, ttl.stderr

    context = ssl.create_default_context(cafile=certs.ca)
    context.load_cert_chain(files.cert, files.key)

    def gateway(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"https://{follower.endpoint}{path}", data=json.dumps(body).encode()
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return json.loads(answer.read().splitlines()[0])

    lease_id = str(int(lease, 16))
    assert gateway("/v3/lease/keepalive", {"ID": lease_id})["result"]["TTL"] == "60"
    answer = gateway("/v3/lease/timetolive", {"ID": lease_id, "keys": True})
    assert answer["grantedTTL"] == "60"
    assert answer["keys"] == [base64.b64encode(b"tls-leased").decode()]
    revoked = etcdctl("lease", "revoke", lease)
    assert revoked.stdout == f"lease {lease} revoked\n".encode(), revoked.stderr
    assert etcdctl("get", "tls-leased").stdout == b""
