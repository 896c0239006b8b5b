"""The replicated auth state as etcd v3 keeps it: users (bcrypt password hashes, roles),
roles (key permissions), the enabled flag and the auth revision.

It changes only by applying committed log entries, identically on every member, and is
stored in the store's meta table in the same write transaction, so it survives restarts
and travels with snapshots and backups. Every rule and error here is etcd 3.4's.
"""

from __future__ import annotations

import bisect
from typing import Any

from .. import errors
from ..proto import auth_pb2 as authpb
from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc

META_KEY = b"auth"
ROOT = "root"
READ, WRITE, READWRITE = (
    authpb.Permission.READ,
    authpb.Permission.WRITE,
    authpb.Permission.READWRITE,
)
# An interval's end when the range reaches past every key.
_INFINITE = None
Interval = tuple[bytes, "bytes | None"]


def interval(key: bytes, range_end: bytes) -> Interval:
    """[start, end) of a key (empty range_end), a range, or everything from key ("\\0")."""
    if not range_end:
        return key, key + b"\x00"
    if range_end == b"\x00":
        return key, _INFINITE
    return key, range_end


def _covers(
    intervals: list[tuple[bytes, bytes | None]], wanted: tuple[bytes, bytes | None]
) -> bool:
    """Whether the union of ``intervals`` holds all of ``wanted`` (as etcd's merged tree)."""
    start, end = wanted
    reach = start
    for low, high in sorted(intervals, key=lambda i: i[0]):
        if low > reach:
            break
        if high is _INFINITE:
            return True
        if high > reach:
            reach = high
        if end is not _INFINITE and reach >= end:
            return True
    return end is not _INFINITE and reach >= end


class AuthStore:
    """Users, roles, the enabled flag and the revision; see the module docstring."""

    def __init__(self, state: internal.AuthState | None = None) -> None:
        state = state or internal.AuthState()
        self.enabled = state.enabled
        # 1 before any change, as etcd's: 0 marks the member's own writes (auth_service)
        self.revision = max(state.revision, 1)
        self.users: dict[str, authpb.User] = {u.name.decode(): u for u in state.users}
        self.roles: dict[str, authpb.Role] = {r.name.decode(): r for r in state.roles}

    @classmethod
    def load(cls, store: Any) -> AuthStore:
        data = store.get_meta(META_KEY)
        return cls(internal.AuthState.FromString(data) if data else None)

    def encode(self) -> bytes:
        return internal.AuthState(
            enabled=self.enabled,
            revision=self.revision,
            users=[self.users[n] for n in sorted(self.users)],
            roles=[self.roles[n] for n in sorted(self.roles)],
        ).SerializeToString()

    def _commit(self, batch: Any) -> None:
        self.revision += 1
        batch.put_meta(META_KEY, self.encode())

    # -- queries ------------------------------------------------------------------------------

    def user(self, name: str) -> authpb.User:
        user = self.users.get(name)
        if user is None:
            raise errors.UserNotFound()
        return user

    def role(self, name: str) -> authpb.Role:
        role = self.roles.get(name)
        if role is None:
            raise errors.RoleNotFound()
        return role

    def is_admin(self, user: str) -> bool:
        found = self.users.get(user)
        return found is not None and ROOT in found.roles

    def check_admin(self, user: str) -> None:
        if not self.enabled:
            return
        if not user:
            raise errors.UserEmpty()
        if not self.is_admin(user):
            raise errors.PermissionDenied()

    def check(self, user: str, key: bytes, range_end: bytes, kind: int) -> None:
        """Raise unless ``user`` may ``kind`` (READ or WRITE) [key, range_end)."""
        if not self.enabled:
            return
        if not user:
            raise errors.UserEmpty()
        found = self.users.get(user)
        if found is None:
            raise errors.PermissionDenied()
        if ROOT in found.roles:
            return
        granted = []
        for name in found.roles:
            role = self.roles.get(name)
            if role is None:
                continue
            for perm in role.keyPermission:
                if perm.permType == READWRITE or perm.permType == kind:
                    granted.append(interval(perm.key, perm.range_end))
        if not _covers(granted, interval(key, range_end)):
            raise errors.PermissionDenied()

    # -- changes (applied from the log) ------------------------------------------------------

    def apply(self, batch: Any, name: str, body: bytes):
        """Apply one auth change by method name; returns its response (header unset)."""
        request = APPLIED[name][0].FromString(body)
        response = getattr(self, "_" + name)(request)
        self._commit(batch)
        return response

    def _AuthEnable(self, request: rpc.AuthEnableRequest) -> rpc.AuthEnableResponse:
        root = self.users.get(ROOT)
        if root is None:
            raise errors.RootUserNotExist()
        if ROOT not in root.roles:
            raise errors.RootRoleNotExist()
        self.enabled = True
        return rpc.AuthEnableResponse()

    def _AuthDisable(self, request: rpc.AuthDisableRequest) -> rpc.AuthDisableResponse:
        self.enabled = False
        return rpc.AuthDisableResponse()

    def _UserAdd(self, request: rpc.AuthUserAddRequest) -> rpc.AuthUserAddResponse:
        # ``password`` holds the bcrypt hash: the accepting member hashed it before proposing
        if not request.name:
            raise errors.UserEmpty()
        if request.name in self.users:
            raise errors.UserAlreadyExist()
        self.users[request.name] = authpb.User(
            name=request.name.encode(), password=request.password.encode(), options=request.options
        )
        return rpc.AuthUserAddResponse()

    def _UserDelete(self, request: rpc.AuthUserDeleteRequest) -> rpc.AuthUserDeleteResponse:
        if self.enabled and request.name == ROOT:
            raise errors.InvalidAuthMgmt()
        self.user(request.name)
        del self.users[request.name]
        return rpc.AuthUserDeleteResponse()

    def _UserChangePassword(
        self, request: rpc.AuthUserChangePasswordRequest
    ) -> rpc.AuthUserChangePasswordResponse:
        self.user(request.name).password = request.password.encode()
        return rpc.AuthUserChangePasswordResponse()

    def _UserGrantRole(
        self, request: rpc.AuthUserGrantRoleRequest
    ) -> rpc.AuthUserGrantRoleResponse:
        user = self.user(request.user)
        if request.role != ROOT:
            self.role(request.role)
        if request.role not in user.roles:  # granting it again changes nothing (etcd 3.4)
            roles = sorted([*user.roles, request.role])
            del user.roles[:]
            user.roles.extend(roles)
        return rpc.AuthUserGrantRoleResponse()

    def _UserRevokeRole(
        self, request: rpc.AuthUserRevokeRoleRequest
    ) -> rpc.AuthUserRevokeRoleResponse:
        if self.enabled and request.name == ROOT and request.role == ROOT:
            raise errors.InvalidAuthMgmt()
        user = self.user(request.name)
        if request.role not in user.roles:
            raise errors.RoleNotGranted()
        user.roles.remove(request.role)
        return rpc.AuthUserRevokeRoleResponse()

    def _RoleAdd(self, request: rpc.AuthRoleAddRequest) -> rpc.AuthRoleAddResponse:
        if not request.name:
            raise errors.RoleEmpty()
        if request.name in self.roles:
            raise errors.RoleAlreadyExist()
        self.roles[request.name] = authpb.Role(name=request.name.encode())
        return rpc.AuthRoleAddResponse()

    def _RoleDelete(self, request: rpc.AuthRoleDeleteRequest) -> rpc.AuthRoleDeleteResponse:
        if self.enabled and request.role == ROOT:
            raise errors.InvalidAuthMgmt()
        self.role(request.role)
        del self.roles[request.role]
        for user in self.users.values():
            if request.role in user.roles:
                user.roles.remove(request.role)
        return rpc.AuthRoleDeleteResponse()

    def _RoleGrantPermission(
        self, request: rpc.AuthRoleGrantPermissionRequest
    ) -> rpc.AuthRoleGrantPermissionResponse:
        role = self.role(request.name)
        perm = request.perm
        perms = list(role.keyPermission)
        keys = [(p.key, p.range_end) for p in perms]
        at = bisect.bisect_left(keys, (perm.key, perm.range_end))
        if at < len(perms) and keys[at] == (perm.key, perm.range_end):
            perms[at].permType = perm.permType
        else:
            perms.insert(at, perm)
        del role.keyPermission[:]
        role.keyPermission.extend(perms)
        return rpc.AuthRoleGrantPermissionResponse()

    def _RoleRevokePermission(
        self, request: rpc.AuthRoleRevokePermissionRequest
    ) -> rpc.AuthRoleRevokePermissionResponse:
        role = self.role(request.role)
        kept = [
            p
            for p in role.keyPermission
            if (p.key, p.range_end) != (request.key, request.range_end)
        ]
        if len(kept) == len(role.keyPermission):
            raise errors.PermissionNotGranted()
        del role.keyPermission[:]
        role.keyPermission.extend(kept)
        return rpc.AuthRoleRevokePermissionResponse()


# Auth changes that go through the log: method name -> (request type, response type).
APPLIED = {
    "AuthEnable": (rpc.AuthEnableRequest, rpc.AuthEnableResponse),
    "AuthDisable": (rpc.AuthDisableRequest, rpc.AuthDisableResponse),
    "UserAdd": (rpc.AuthUserAddRequest, rpc.AuthUserAddResponse),
    "UserDelete": (rpc.AuthUserDeleteRequest, rpc.AuthUserDeleteResponse),
    "UserChangePassword": (rpc.AuthUserChangePasswordRequest, rpc.AuthUserChangePasswordResponse),
    "UserGrantRole": (rpc.AuthUserGrantRoleRequest, rpc.AuthUserGrantRoleResponse),
    "UserRevokeRole": (rpc.AuthUserRevokeRoleRequest, rpc.AuthUserRevokeRoleResponse),
    "RoleAdd": (rpc.AuthRoleAddRequest, rpc.AuthRoleAddResponse),
    "RoleDelete": (rpc.AuthRoleDeleteRequest, rpc.AuthRoleDeleteResponse),
    "RoleGrantPermission": (
        rpc.AuthRoleGrantPermissionRequest,
        rpc.AuthRoleGrantPermissionResponse,
    ),
    "RoleRevokePermission": (
        rpc.AuthRoleRevokePermissionRequest,
        rpc.AuthRoleRevokePermissionResponse,
    ),
}
