"""The Auth calls and the permission check every client request passes while auth is on,
with etcd 3.4's rules: who the caller is (the request's token, else the verified client
certificate's CN), which key ranges each call reads or writes, and which calls are for
the root role only.

Passwords are hashed with bcrypt by the member that takes the request, before it is
proposed: the log and the store hold hashes only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import bcrypt

from .. import errors
from ..mvcc.ranges import prefix_end
from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc
from ..proto import v3election_pb2 as election_pb2
from ..proto import v3lock_pb2 as lock_pb2
from ..protocol.methods import BY_NAME
from .apply import AUTH_TOKEN
from .auth_store import APPLIED, READ, WRITE, AuthStore
from .reply import LocalCaller, Reply

# Calls for the root role only while auth is on.
_ADMIN = (
    "Hash",
    "HashKV",
    "MoveLeader",
    "Defragment",
    "Snapshot",
    "MemberAdd",
    "MemberRemove",
    "MemberUpdate",
    "MemberPromote",
    "AuthDisable",
    "UserGet",
    "UserList",
    "RoleGet",
    "RoleList",
    *(name for name in APPLIED if name != "AuthEnable"),
)
# What a failed password check costs a guesser even for an unknown user (a hash to check).
_DUMMY_HASH = bcrypt.hashpw(b"", bcrypt.gensalt(4))
# Password checks an Authenticate runs while the auth state keeps changing under it.
_AUTHENTICATE_ATTEMPTS = 5
# bcrypt reads at most 72 bytes of a password; like etcd 3.4 (whose bcrypt ignored the
# rest), longer passwords are cut there rather than refused.
BCRYPT_MAX_BYTES = 72


class TokenAhead(Exception):
    """A simple token granted at a log index this member has not applied yet: the request
    waits for that index (etcd's simple tokens do the same)."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class AuthService:
    """Auth calls of one member and the check in front of every other call."""

    def __init__(self, app: Any, tokens: Any, bcrypt_cost: int) -> None:
        self.app = app
        self.tokens = tokens
        self.bcrypt_cost = bcrypt_cost
        self._checks: dict[int, Callable[[AuthStore, str, bytes], None]] = {
            BY_NAME[name].number: check for name, check in _KEY_CHECKS.items()
        }
        for name in _ADMIN:
            self._checks[BY_NAME[name].number] = lambda auth, user, body: auth.check_admin(user)
        self._checks[BY_NAME["LeaseRevoke"].number] = self._check_lease_revoke
        # Calls whose keys are checked (etcd's isOpPermitted): these also need a user and an
        # auth revision no older than the store's; the root-only calls need neither.
        self._key_methods = frozenset(BY_NAME[name].number for name in _KEY_CHECKS)
        self._lease_revoke = BY_NAME["LeaseRevoke"].number
        self._range = BY_NAME["Range"].number
        self._authenticate = BY_NAME["Authenticate"].number
        for name in APPLIED:
            app.add_apply(BY_NAME[name].number, lambda b, body, n=name: self._apply(b, n, body))
        app.add_apply(AUTH_TOKEN, self._apply_token)
        app.recheck = self.recheck

    # -- the gate -------------------------------------------------------------------------------

    def admit(
        self, connection: Any, method: int, token: str, body: bytes, relayed: str | None = None
    ) -> tuple[str, int, int]:
        """The user a request runs as (its token's, else the one a trusted relay named
        (``relayed``), else the connection's certificate's), the auth revision it is
        checked at (the member's current one; a JWT token's own), and that JWT revision
        again (0 without a JWT token: later checks of the call use the current revision);
        raises etcd's error when it may not run."""
        auth: AuthStore = self.app.auth
        revision = auth.revision
        if not auth.enabled or method == self._authenticate:
            return "", revision, 0
        if token:
            try:
                user, revision = self.tokens.info(token, revision)
            except errors.InvalidAuthToken:
                index = self.tokens.index_of(token)
                if index > self.app.applied_index:
                    raise TokenAhead(index) from None
                raise
        else:
            user = relayed if relayed is not None else connection.cert_user
        self._check(auth, user, revision, method, body)
        pinned = revision if token and not self.tokens.replicated else 0
        return user, revision, pinned

    def recheck(self, user: str, revision: int, method: int, body: bytes) -> None:
        """At apply, with auth on: the check again, against the auth state of that moment.
        A request checked at an older auth revision fails with etcd's "revision of auth
        store is old" (the client authenticates again and retries); a request taken
        while auth was off has no user. The member's own writes (no user, no revision)
        are not checked."""
        if user or revision:
            self._check(self.app.auth, user, revision, method, body)

    def check_read_again(self, user: str, pinned: int, body: bytes) -> None:
        """A Range whose wait for a ReadIndex round saw the auth state change: checked
        again against the state it is served from (etcd checks reads after that wait), at
        its JWT token's revision (``pinned``), else at the current one."""
        auth = self.app.auth
        if auth.enabled:
            self._check(auth, user, pinned or auth.revision, self._range, body)

    def _check(self, auth: AuthStore, user: str, revision: int, method: int, body: bytes):
        check = self._checks.get(method)
        if check is None:
            return
        if method in self._key_methods:
            if not user:
                raise errors.UserEmpty()
            if revision < auth.revision:
                raise errors.AuthOldRevision()
        elif method == self._lease_revoke and user and revision < auth.revision:
            # etcd checks the revision with each of the lease's keys: none, no check
            lease = self.app.lessor.leases.get(rpc.LeaseRevokeRequest.FromString(body).ID)
            if lease is not None and lease.keys:
                raise errors.AuthOldRevision()
        check(auth, user, body)

    def check_watch(self, user: str, revision: int, create: rpc.WatchCreateRequest) -> None:
        """A watch reads its range: refused (as a canceled watch) without that permission,
        or when checked at an older auth revision (a JWT token from before a change)."""
        auth = self.app.auth
        if auth.enabled and user and revision < auth.revision:
            raise errors.AuthOldRevision()
        auth.check(user, create.key, create.range_end, READ)

    def _check_lease_revoke(self, auth: AuthStore, user: str, body: bytes) -> None:
        """Revoking deletes the lease's keys: each needs write permission (as etcd 3.4, a
        lease without keys may be revoked by anyone, even without a user)."""
        lease = self.app.lessor.leases.get(rpc.LeaseRevokeRequest.FromString(body).ID)
        if not auth.enabled:
            return
        for key in sorted(lease.keys) if lease is not None else ():
            auth.check(user, key, b"", WRITE)

    # -- the calls ------------------------------------------------------------------------------

    def register(self, server: Any) -> None:
        """Route the Auth calls of ``server`` (a ClientServer) here."""
        for name in APPLIED:
            if name not in ("UserAdd", "UserChangePassword"):
                server.register(name, self._proposer(name))
        for name in ("UserAdd", "UserChangePassword"):
            server.register(name, self._password_setter(name))
        server.register("Authenticate", self._authenticate_call)
        for name, serve in (
            ("AuthStatus", self._status),
            ("UserGet", self._user_get),
            ("UserList", self._user_list),
            ("RoleGet", self._role_get),
            ("RoleList", self._role_list),
        ):
            server.register(name, self._reader(name, serve))

    def _proposer(self, name: str) -> Callable:
        number, request_type = BY_NAME[name].number, BY_NAME[name].request

        def handler(connection, stream: int, flags: int, body: bytes) -> None:
            request_type.FromString(body)
            self.app.propose(
                Reply(connection, stream), number, body, connection.user, connection.auth_revision
            )

        return handler

    def _password_setter(self, name: str) -> Callable:
        spec = BY_NAME[name]

        def handler(connection, stream: int, flags: int, body: bytes) -> None:
            request = spec.request.FromString(body)
            if name == "UserAdd" and not request.name:
                raise errors.UserEmpty()
            connection.start_task(
                stream,
                self._with_hash(request, spec, connection.user, connection.auth_revision),
            )

        return handler

    async def _with_hash(self, request, spec, user: str, auth_revision: int):
        hashed = await asyncio.get_running_loop().run_in_executor(
            None,
            bcrypt.hashpw,
            request.password.encode()[:BCRYPT_MAX_BYTES],
            bcrypt.gensalt(self.bcrypt_cost),
        )
        request.password = hashed.decode()
        body = request.SerializeToString()
        return await self._propose(spec.number, body, spec.response, user, auth_revision)

    async def _propose(
        self, number: int, body: bytes, response_type, user: str = "", auth_revision: int = 0
    ):
        future = self.app.loop.create_future()
        reply = Reply(LocalCaller(future, response_type.FromString), 0)
        self.app.propose(reply, number, body, user, auth_revision)
        return await future

    def _authenticate_call(self, connection, stream: int, flags: int, body: bytes) -> None:
        request = rpc.AuthenticateRequest.FromString(body)
        connection.start_task(stream, self._authenticate_user(request))

    async def _authenticate_user(self, request: rpc.AuthenticateRequest):
        """Check the password, then hand out a token. A simple token goes through the log
        (every member learns it); as etcd's, it is granted only if the auth state is still
        the one the password was checked against, else the check runs again."""
        for _ in range(_AUTHENTICATE_ATTEMPTS):
            auth: AuthStore = self.app.auth
            if not auth.enabled:
                raise errors.AuthNotEnabled()
            checked_at = auth.revision
            found = auth.users.get(request.name)
            hashed = found.password if found is not None else _DUMMY_HASH
            ok = await asyncio.get_running_loop().run_in_executor(
                None, _password_matches, request.password.encode(), hashed
            )
            if not ok or found is None or found.options.no_password:
                raise errors.AuthFailed()
            if self.app.auth.revision != checked_at:
                continue  # the user or the password changed while bcrypt ran
            token = self.tokens.new(request.name, checked_at)
            if not self.tokens.replicated:
                return rpc.AuthenticateResponse(token=token)
            grant = internal.AuthTokenGrant(user=request.name, token=token, revision=checked_at)
            try:
                return await self._propose(
                    AUTH_TOKEN, grant.SerializeToString(), rpc.AuthenticateResponse
                )
            except errors.AuthOldRevision:
                continue
        raise errors.AuthOldRevision()

    def _apply(self, batch: Any, name: str, body: bytes):
        """Apply an auth change; tokens of a deleted user, or one with a new password, and
        every token when auth is turned off, stop working on every member."""
        response = self.app.auth.apply(batch, name, body)
        if name in ("UserDelete", "UserChangePassword"):
            self.tokens.forget_user(APPLIED[name][0].FromString(body).name)
        elif name == "AuthDisable":
            self.tokens.clear()
        return response, None

    def _apply_token(self, batch: Any, body: bytes):
        """Apply an AuthTokenGrant: every member learns the simple token, unless the auth
        state moved since the password was checked (then no member does)."""
        grant = internal.AuthTokenGrant.FromString(body)
        auth: AuthStore = self.app.auth
        if not auth.enabled:
            raise errors.AuthNotEnabled()
        if grant.revision != auth.revision or grant.user not in auth.users:
            raise errors.AuthOldRevision()
        token = f"{grant.token}.{self.app.applying_index}"
        self.tokens.add(token, grant.user)
        return rpc.AuthenticateResponse(token=token), None

    def _reader(self, name: str, serve: Callable) -> Callable:
        request_type = BY_NAME[name].request

        def handler(connection, stream: int, flags: int, body: bytes) -> None:
            request = request_type.FromString(body)
            self.app.read(Reply(connection, stream), lambda: serve(request), True)

        return handler

    def _status(self, request) -> rpc.AuthStatusResponse:
        auth = self.app.auth
        return rpc.AuthStatusResponse(enabled=auth.enabled, authRevision=auth.revision)

    def _user_get(self, request: rpc.AuthUserGetRequest) -> rpc.AuthUserGetResponse:
        return rpc.AuthUserGetResponse(roles=self.app.auth.user(request.name).roles)

    def _user_list(self, request) -> rpc.AuthUserListResponse:
        return rpc.AuthUserListResponse(users=sorted(self.app.auth.users))

    def _role_get(self, request: rpc.AuthRoleGetRequest) -> rpc.AuthRoleGetResponse:
        return rpc.AuthRoleGetResponse(perm=self.app.auth.role(request.role).keyPermission)

    def _role_list(self, request) -> rpc.AuthRoleListResponse:
        return rpc.AuthRoleListResponse(roles=sorted(self.app.auth.roles))


def _password_matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password[:BCRYPT_MAX_BYTES], hashed)
    except ValueError:  # not a bcrypt hash (a user added without a password)
        return False


# -- which keys each call reads or writes ----------------------------------------------------


def _check_range(auth: AuthStore, user: str, body: bytes) -> None:
    request = rpc.RangeRequest.FromString(body)
    auth.check(user, request.key, request.range_end, READ)


def _check_put(auth: AuthStore, user: str, body: bytes) -> None:
    _put(auth, user, rpc.PutRequest.FromString(body))


def _put(auth: AuthStore, user: str, request: rpc.PutRequest) -> None:
    auth.check(user, request.key, b"", WRITE)
    if request.prev_kv:
        auth.check(user, request.key, b"", READ)


def _check_delete(auth: AuthStore, user: str, body: bytes) -> None:
    _delete(auth, user, rpc.DeleteRangeRequest.FromString(body))


def _delete(auth: AuthStore, user: str, request: rpc.DeleteRangeRequest) -> None:
    auth.check(user, request.key, request.range_end, WRITE)
    if request.prev_kv:
        auth.check(user, request.key, request.range_end, READ)


def _check_txn(auth: AuthStore, user: str, body: bytes) -> None:
    _txn(auth, user, rpc.TxnRequest.FromString(body))


def _txn(auth: AuthStore, user: str, request: rpc.TxnRequest) -> None:
    """Every compare reads its key; every op of both branches, nested ones too, is checked."""
    for compare in request.compare:
        auth.check(user, compare.key, compare.range_end, READ)
    for op in (*request.success, *request.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            auth.check(user, op.request_range.key, op.request_range.range_end, READ)
        elif kind == "request_put":
            _put(auth, user, op.request_put)
        elif kind == "request_delete_range":
            _delete(auth, user, op.request_delete_range)
        elif kind == "request_txn":
            _txn(auth, user, op.request_txn)


def _readwrite_prefix(auth: AuthStore, user: str, name: bytes) -> None:
    prefix = name + b"/"
    auth.check(user, prefix, prefix_end(prefix), READ)
    auth.check(user, prefix, prefix_end(prefix), WRITE)


def _check_lock(auth: AuthStore, user: str, body: bytes) -> None:
    _readwrite_prefix(auth, user, lock_pb2.LockRequest.FromString(body).name)


def _check_unlock(auth: AuthStore, user: str, body: bytes) -> None:
    auth.check(user, lock_pb2.UnlockRequest.FromString(body).key, b"", WRITE)


def _check_campaign(auth: AuthStore, user: str, body: bytes) -> None:
    _readwrite_prefix(auth, user, election_pb2.CampaignRequest.FromString(body).name)


def _check_proclaim(auth: AuthStore, user: str, body: bytes) -> None:
    auth.check(user, election_pb2.ProclaimRequest.FromString(body).leader.key, b"", WRITE)


def _check_resign(auth: AuthStore, user: str, body: bytes) -> None:
    auth.check(user, election_pb2.ResignRequest.FromString(body).leader.key, b"", WRITE)


def _check_leader(auth: AuthStore, user: str, body: bytes) -> None:
    if not body:
        return
    prefix = election_pb2.LeaderRequest.FromString(body).name + b"/"
    auth.check(user, prefix, prefix_end(prefix), READ)


_KEY_CHECKS: dict[str, Callable[[AuthStore, str, bytes], None]] = {
    "Range": _check_range,
    "Put": _check_put,
    "DeleteRange": _check_delete,
    "Txn": _check_txn,
    "Lock": _check_lock,
    "Unlock": _check_unlock,
    "Campaign": _check_campaign,
    "Proclaim": _check_proclaim,
    "Resign": _check_resign,
    "Leader": _check_leader,
    "Observe": _check_leader,
}
