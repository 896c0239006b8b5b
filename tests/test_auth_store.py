"""The auth store's rules without a cluster: permission coverage against a brute-force
model, and etcd's refusals for auth management."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyraftkv import errors
from pyraftkv.node.auth_store import READ, READWRITE, WRITE, AuthStore
from pyraftkv.proto import auth_pb2 as authpb
from pyraftkv.proto import rpc_pb2 as rpc

KEYS = [bytes([c]) for c in b"abcdef"]  # every key of the model's small world
BOUNDS = st.sampled_from([b"", b"\x00", *KEYS, b"g"])


class Batch:
    """Stands in for a store write batch: records the meta the store would keep."""

    def __init__(self) -> None:
        self.meta: dict[bytes, bytes] = {}

    def put_meta(self, name: bytes, value: bytes) -> None:
        self.meta[name] = value


def _apply(store: AuthStore, name: str, request) -> None:
    store.apply(Batch(), name, request.SerializeToString())


def _bounds(key: bytes, end: bytes) -> tuple[bytes, bytes | None]:
    """[start, stop) of a key, a range or "from key" (stop None: no end)."""
    if not end:
        return key, key + b"\x00"
    return key, None if end == b"\x00" else end


def _holds(point: bytes, start: bytes, stop: bytes | None) -> bool:
    return point >= start and (stop is None or point < stop)


def _store(perms: list[tuple[int, bytes, bytes]]) -> AuthStore:
    store = AuthStore()
    _apply(store, "UserAdd", rpc.AuthUserAddRequest(name="root", password="x"))
    _apply(store, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user="root", role="root"))
    _apply(store, "UserAdd", rpc.AuthUserAddRequest(name="u", password="x"))
    _apply(store, "RoleAdd", rpc.AuthRoleAddRequest(name="r"))
    for kind, key, end in perms:
        perm = authpb.Permission(permType=kind, key=key, range_end=end)
        _apply(
            store, "RoleGrantPermission", rpc.AuthRoleGrantPermissionRequest(name="r", perm=perm)
        )
    _apply(store, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user="u", role="r"))
    _apply(store, "AuthEnable", rpc.AuthEnableRequest())
    return store


@settings(max_examples=300, deadline=None)
@given(
    perms=st.lists(
        st.tuples(st.sampled_from([READ, WRITE, READWRITE]), st.sampled_from(KEYS), BOUNDS),
        max_size=4,
    ),
    key=st.sampled_from(KEYS),
    end=BOUNDS,
    kind=st.sampled_from([READ, WRITE]),
)
def test_a_range_is_permitted_exactly_when_every_key_in_it_is(perms, key, end, kind):
    # The model: the granted intervals cover [start, stop) when every point of it lies in
    # one. An uncovered part would be an interval starting at the request's start or at an
    # interval's end, so probing those points decides it.
    store = _store(perms)
    latest = {(k, e): t for t, k, e in perms}  # granting the same range again replaces it
    granted = [_bounds(k, e) for (k, e), t in latest.items() if t in (kind, READWRITE)]
    start, stop = _bounds(key, end)
    probes = {start} | {s for s, _ in granted} | {e for _, e in granted if e is not None}
    probes = [p for p in probes if _holds(p, start, stop)]
    expected = all(any(_holds(p, s, e) for s, e in granted) for p in probes)
    try:
        store.check("u", key, end, kind)
        allowed = True
    except errors.PermissionDenied:
        allowed = False
    assert allowed == expected, (perms, key, end, kind)


def test_management_refusals_are_etcds():
    store = _store([(READWRITE, b"a", b"c")])
    cases = [
        ("UserDelete", rpc.AuthUserDeleteRequest(name="root"), errors.InvalidAuthMgmt),
        ("RoleDelete", rpc.AuthRoleDeleteRequest(role="root"), errors.InvalidAuthMgmt),
        (
            "UserRevokeRole",
            rpc.AuthUserRevokeRoleRequest(name="root", role="root"),
            errors.InvalidAuthMgmt,
        ),
        ("UserAdd", rpc.AuthUserAddRequest(name="u"), errors.UserAlreadyExist),
        ("UserAdd", rpc.AuthUserAddRequest(name=""), errors.UserEmpty),
        ("RoleAdd", rpc.AuthRoleAddRequest(name="r"), errors.RoleAlreadyExist),
        ("UserGrantRole", rpc.AuthUserGrantRoleRequest(user="u", role="nope"), errors.RoleNotFound),
        (
            "UserRevokeRole",
            rpc.AuthUserRevokeRoleRequest(name="u", role="nope"),
            errors.RoleNotGranted,
        ),
        (
            "RoleRevokePermission",
            rpc.AuthRoleRevokePermissionRequest(role="r", key=b"a", range_end=b"b"),
            errors.PermissionNotGranted,
        ),
    ]
    for name, request, error in cases:
        before = store.encode()
        with pytest.raises(error):
            _apply(store, name, request)
        assert store.encode() == before, name  # a refused change changes nothing
    root_only = AuthStore()
    with pytest.raises(errors.RootUserNotExist):
        _apply(root_only, "AuthEnable", rpc.AuthEnableRequest())
