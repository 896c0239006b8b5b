"""Auth on a real pyraftkv cluster: permissions refused with etcd's errors and nothing
changed, simple tokens valid on every member and refreshed by the client when they
expire, forged and wrong credentials refused, a revoked role taking effect at once, auth
state surviving a restart and reaching a member by snapshot, the certificate's CN as the
user with --client-cert-auth, and JWT tokens."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import termios
import threading
import time

import pytest

from pyraftkv import Client
from pyraftkv.client.connection import Connection
from pyraftkv.errors import (
    ApiError,
    AuthFailed,
    AuthOldRevision,
    InvalidAuthToken,
    PermissionDenied,
    RootUserNotExist,
    UserEmpty,
)
from pyraftkv.proto import auth_pb2 as authpb
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.methods import BY_NAME

from .harness import put_retrying

FAST = ["--bcrypt-cost", "4"]


def call(client: Client, method: str, request):
    return client._run(client._client.call(method, request))


def set_up_auth(client: Client) -> None:
    """root (root role), auth on, alice with role reader: readwrite [foo, zoo)."""
    call(client, "UserAdd", rpc.AuthUserAddRequest(name="root", password="rootpw"))
    with pytest.raises(ApiError, match="root user does not have root role"):
        call(client, "AuthEnable", rpc.AuthEnableRequest())
    call(client, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user="root", role="root"))
    call(client, "UserAdd", rpc.AuthUserAddRequest(name="alice", password="alicepw"))
    call(client, "RoleAdd", rpc.AuthRoleAddRequest(name="reader"))
    perm = authpb.Permission(permType=authpb.Permission.READWRITE, key=b"foo", range_end=b"zoo")
    call(
        client, "RoleGrantPermission", rpc.AuthRoleGrantPermissionRequest(name="reader", perm=perm)
    )
    call(client, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user="alice", role="reader"))
    call(client, "AuthEnable", rpc.AuthEnableRequest())


def raw_call(endpoint: str, token: bytes, method: str, request):
    """One call on a connection of our own that carries ``token``."""

    async def go():
        connection = await Connection.open(endpoint, 2.0)
        try:
            connection.token = token
            body = await asyncio.wait_for(
                connection.call(BY_NAME[method].number, request.SerializeToString()), 5
            )
            return BY_NAME[method].response.FromString(body)
        finally:
            connection.close()

    return asyncio.run(go())


def test_enabling_needs_root(make_cluster):
    cluster = make_cluster(1, extra_args=FAST)
    cluster.start()
    with cluster.client() as c, pytest.raises(RootUserNotExist):
        call(c, "AuthEnable", rpc.AuthEnableRequest())


def test_auth_rules_tokens_and_state_across_restart_and_snapshot(make_cluster):
    cluster = make_cluster(3, snapshot_count=60, extra_args=[*FAST, "--auth-token-ttl", "2"])
    cluster.start()
    with cluster.client() as c:
        set_up_auth(c)
        with pytest.raises(UserEmpty):
            c.get("foo")
    m1, m2, m3 = cluster.members
    root = cluster.client(user="root", password="rootpw")
    alice = cluster.client(user="alice", password="alicepw")
    alice.put("foo", "1")
    # refused writes, reads and txns change nothing
    with pytest.raises(PermissionDenied):
        alice.put("zz", "1")
    with pytest.raises(PermissionDenied):
        alice.get("a", "zzz")
    txn = rpc.TxnRequest(
        compare=[rpc.Compare(key=b"zz", target=rpc.Compare.VERSION, version=0)],
        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=b"goo", value=b"2"))],
    )
    with pytest.raises(PermissionDenied):
        call(alice, "Txn", txn)
    assert root.get("zz").kvs == [] and root.get("goo").kvs == []
    # lock and lease calls are checked too
    with pytest.raises(PermissionDenied):
        alice.lock("a-lock", ttl=5).acquire()
    lease = root.lease_grant(30).ID
    root.put("zz", "held", lease=lease)
    with pytest.raises(PermissionDenied):
        alice.lease_revoke(lease)
    assert root.get("zz").kvs[0].value == b"held"
    # a token from one member works on another; forged and wrong credentials are refused
    token = call(alice, "Authenticate", rpc.AuthenticateRequest(name="alice", password="alicepw"))
    token = token.token.encode()
    got = raw_call(m3.endpoint, token, "Range", rpc.RangeRequest(key=b"foo"))
    assert got.kvs[0].value == b"1"
    with pytest.raises(InvalidAuthToken, match="etcdserver: invalid auth token"):
        raw_call(m1.endpoint, token + b"x", "Range", rpc.RangeRequest(key=b"foo"))
    with pytest.raises(AuthFailed), Client([m1.endpoint], user="alice", password="no") as bad:
        bad.get("foo")
    # an idle token expires after --auth-token-ttl; the client gets a new one by itself
    time.sleep(3)
    with pytest.raises(InvalidAuthToken):
        raw_call(m1.endpoint, token, "Range", rpc.RangeRequest(key=b"foo"))
    assert alice.get("foo").kvs[0].value == b"1"
    # auth state survives a restart of every member
    for member in cluster.members:
        cluster.kill(member)
    cluster.start()
    alice = cluster.client(user="alice", password="alicepw")
    root = cluster.client(user="root", password="rootpw")
    with pytest.raises(PermissionDenied):
        alice.put("zz", "2")
    # ... and reaches a member that catches up by snapshot
    cluster.kill(m3)
    for i in range(150):
        put_retrying(root, f"foo{i:03d}", "v")
    call(root, "UserRevokeRole", rpc.AuthUserRevokeRoleRequest(name="alice", role="reader"))
    target = root.status().raftIndex
    cluster.start_member(m3)
    cluster.wait_applied(m3, target)
    assert "installed snapshot at index" in m3.log_text()
    with (
        Client([m3.endpoint], user="alice", password="alicepw") as late,
        pytest.raises(PermissionDenied),
    ):
        late.get("foo", serializable=True)
    with Client([m3.endpoint], user="root", password="rootpw") as late:
        assert late.get("foo", serializable=True).kvs[0].value == b"1"
        listed = call(late, "UserList", rpc.AuthUserListRequest()).users
        assert list(listed) == ["alice", "root"]


def test_the_client_certificate_names_the_user(make_cluster, certs):
    cluster = make_cluster(
        1,
        client_scheme="https",
        extra_args=[*FAST, *certs.client_args()],
        client_options={"tls": certs.tls("root")},
    )
    cluster.start()
    with cluster.client() as c:
        set_up_auth(c)  # as root (no password asked: the CN says who)
        c.put("zz", "root may")
    with cluster.client(tls=certs.tls("alice")) as alice:
        alice.put("foo", "1")
        with pytest.raises(PermissionDenied):
            alice.put("zz", "1")
    with cluster.client(tls=certs.tls("mallory")) as unknown, pytest.raises(PermissionDenied):
        unknown.get("foo")


def test_jwt_tokens(make_cluster, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    def key_files(name: str) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        private, public = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
        private.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return str(private), str(public)

    private, public = key_files("member")
    spec = f"jwt,pub-key={public},priv-key={private},sign-method=ES256"
    cluster = make_cluster(1, extra_args=[*FAST, "--auth-token", spec])
    cluster.start()
    with cluster.client() as c:
        set_up_auth(c)
    with cluster.client(user="alice", password="alicepw") as alice:
        alice.put("foo", "jwt")
        token = call(
            alice, "Authenticate", rpc.AuthenticateRequest(name="alice", password="alicepw")
        )
    assert token.token.count(".") == 2  # header.claims.signature
    endpoint = cluster.members[0].endpoint
    got = raw_call(endpoint, token.token.encode(), "Range", rpc.RangeRequest(key=b"foo"))
    assert got.kvs[0].value == b"jwt"
    # a token signed with another key names root but is refused
    import jwt

    other_private, _ = key_files("other")
    with open(other_private, "rb") as f:
        forged = jwt.encode(
            {"username": "root", "revision": 1, "exp": time.time() + 60}, f.read(), "ES256"
        )
    with pytest.raises(InvalidAuthToken):
        raw_call(endpoint, forged.encode(), "Range", rpc.RangeRequest(key=b"foo"))
    # as etcd's, a JWT token carries the auth revision it was signed at: after any auth
    # change its requests are refused until the client authenticates again (ours does)
    with cluster.client(user="alice", password="alicepw") as alice:
        alice.put("foo", "before the change")
        with cluster.client(user="root", password="rootpw") as root:
            call(root, "RoleAdd", rpc.AuthRoleAddRequest(name="other"))
        with pytest.raises(AuthOldRevision, match="revision of auth store is old"):
            raw_call(endpoint, token.token.encode(), "Range", rpc.RangeRequest(key=b"foo"))
        with pytest.raises(AuthOldRevision):
            raw_call(endpoint, token.token.encode(), "Put", rpc.PutRequest(key=b"foo"))
        alice.put("foo", "after the change")  # refreshed its token by itself
        assert alice.get("foo").kvs[0].value == b"after the change"
    # a Lock call waits with its JWT token: an auth change while it waits ends it
    from pyraftkv.proto import v3lock_pb2 as lockpb

    with cluster.client(user="root", password="rootpw") as root:
        held = call(root, "Lock", lockpb.LockRequest(name=b"lk", lease=root.lease_grant(30).ID))
        lease = root.lease_grant(30).ID
        fresh = call(
            root, "Authenticate", rpc.AuthenticateRequest(name="alice", password="alicepw")
        )
        outcome: list = []

        def wait_for_lock() -> None:
            try:
                request = lockpb.LockRequest(name=b"lk", lease=lease)
                outcome.append(raw_call(endpoint, fresh.token.encode(), "Lock", request))
            except ApiError as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait_for_lock)
        waiter.start()
        deadline = time.monotonic() + 5
        while len(root.get("lk/", prefix=True).kvs) < 2:  # alice's key is in line
            assert time.monotonic() < deadline, outcome
            time.sleep(0.05)
        call(root, "RoleAdd", rpc.AuthRoleAddRequest(name="another"))
        call(root, "Unlock", lockpb.UnlockRequest(key=held.key))
        waiter.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], AuthOldRevision), outcome
        assert root.get("lk/", prefix=True).kvs == []


def test_auth_state_travels_in_a_backup(tmp_path):
    from .harness import LocalCluster
    from .test_backup import ctl, restore_args

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = LocalCluster(str(tmp_path / "old"), 1, token="old", extra_args=FAST)
    new = LocalCluster(str(tmp_path / "new"), 1, token="new", extra_args=FAST)
    backup = str(tmp_path / "backup.db")
    try:
        old.start()
        with old.client() as c:
            set_up_auth(c)
        endpoint = old.members[0].endpoint
        # Snapshot is for root only
        code, _, err = ctl("--user=alice:alicepw", "snapshot", "save", backup, endpoints=endpoint)
        assert (code, err) == (1, "Error: etcdserver: permission denied\n")
        code, _, err = ctl("--user=root:rootpw", "snapshot", "save", backup, endpoints=endpoint)
        assert (code, err) == (0, "")
        old.stop_all()
        member = new.members[0]
        code, _, err = ctl("snapshot", "restore", backup, *restore_args(new, member))
        assert code == 0, err
        new.start()
        with new.client() as anonymous, pytest.raises(UserEmpty):
            anonymous.get("foo")
        with new.client(user="alice", password="alicepw") as alice:
            alice.put("foo", "restored")
            with pytest.raises(PermissionDenied):
                alice.put("zz", "1")
    finally:
        old.stop_all()
        new.stop_all()


def test_passwords_past_bcrypts_72_bytes_are_cut_there_as_etcd_34_does(make_cluster):
    """Found by the client-port fuzzer: a long password stopped the member."""
    cluster = make_cluster(1)
    cluster.start()
    client = cluster.client()
    long_password = "p" * 100
    call(client, "UserAdd", rpc.AuthUserAddRequest(name="root", password=long_password))
    call(client, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user="root", role="root"))
    call(client, "AuthEnable", rpc.AuthEnableRequest())
    for password in (long_password, "p" * 72, "p" * 72 + "anything"):
        with Client([cluster.members[0].endpoint], user="root", password=password) as root:
            assert root.put("k", "v").header.revision > 0
    with (
        pytest.raises(AuthFailed),
        Client([cluster.members[0].endpoint], user="root", password="p" * 71) as c,
    ):
        c.put("k", "v")


def _ctl_on_a_terminal(endpoint: str, user: str, answer: bytes) -> tuple[int, bytes]:
    """pyraftkvctl --user <user> get foo in its own session, stdin/stdout/stderr on a new
    pseudo-terminal; ``answer`` typed once the prompt shows. (exit code, all it printed)"""
    primary, secondary = pty.openpty()
    argv = [sys.executable, "-m", "pyraftkv.ctl", f"--endpoints={endpoint}"]
    proc = subprocess.Popen(
        [*argv, f"--user={user}", "get", "foo", "--print-value-only"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        typed = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not typed and seen.endswith(b"Password: "):
                # the terminal's echo is off once the prompt is written (getpass turns it
                # off first): what we type must not come back
                assert not termios.tcgetattr(primary)[3] & termios.ECHO
                os.write(primary, answer + b"\n")
                typed = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(10), seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)


def test_ctl_asks_for_the_password_on_the_terminal(make_cluster):
    cluster = make_cluster(1, extra_args=FAST)
    cluster.start()
    with cluster.client() as c:
        set_up_auth(c)
    with cluster.client(user="alice", password="alicepw") as alice:
        alice.put("foo", "typed")
    endpoint = cluster.members[0].endpoint
    code, seen = _ctl_on_a_terminal(endpoint, "alice", b"alicepw")
    assert code == 0, seen
    assert seen.startswith(b"Password: ") and b"typed" in seen
    assert b"alicepw" not in seen  # not echoed
    code, seen = _ctl_on_a_terminal(endpoint, "alice", b"wrong")
    assert code != 0
    assert b"authentication failed, invalid user ID or password" in seen
    assert b"wrong" not in seen and b"typed" not in seen


def test_a_lock_waiter_whose_permission_is_revoked_gets_no_lock(make_cluster):
    """etcd's lock service waits with the caller's credentials: a permission revoked while
    a Lock call waits ends the call with etcd's error, and leaves no key behind."""
    from pyraftkv.proto import v3lock_pb2 as lockpb

    cluster = make_cluster(1, extra_args=FAST)
    cluster.start()
    with cluster.client() as c:
        set_up_auth(c)
    endpoint = cluster.members[0].endpoint
    with cluster.client(user="root", password="rootpw") as root:
        held = call(root, "Lock", lockpb.LockRequest(name=b"lk", lease=root.lease_grant(30).ID))
        lease = root.lease_grant(30).ID
        token = call(
            root, "Authenticate", rpc.AuthenticateRequest(name="alice", password="alicepw")
        )
        outcome: list = []

        def wait_for_lock() -> None:
            try:
                request = lockpb.LockRequest(name=b"lk", lease=lease)
                outcome.append(raw_call(endpoint, token.token.encode(), "Lock", request))
            except ApiError as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait_for_lock)
        waiter.start()
        deadline = time.monotonic() + 5
        while len(root.get("lk/", prefix=True).kvs) < 2:  # alice's key is in line
            assert time.monotonic() < deadline, outcome
            time.sleep(0.05)
        revoke = rpc.AuthRoleRevokePermissionRequest(role="reader", key=b"foo", range_end=b"zoo")
        call(root, "RoleRevokePermission", revoke)
        call(root, "Unlock", lockpb.UnlockRequest(key=held.key))
        waiter.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], PermissionDenied), outcome
        assert root.get("lk/", prefix=True).kvs == []
