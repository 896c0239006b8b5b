"""Builders for etcd v3 request messages shared by both clients and the CLI.

Keys and values may be ``str`` (encoded as UTF-8) or bytes. Range helpers follow etcd's
rules: a prefix range ends at the prefix with its last byte incremented, and ``"\\0"``
as the range end means "every key from here on".
"""

from __future__ import annotations

from ..keys import prefix_end
from ..proto import rpc_pb2 as rpc

Bytesish = str | bytes

SORT_ORDERS = {"none": 0, "ascend": 1, "descend": 2}
SORT_TARGETS = {"key": 0, "version": 1, "create": 2, "mod": 3, "value": 4}


def to_bytes(value: Bytesish) -> bytes:
    """Encode str as UTF-8; pass bytes through."""
    return value.encode() if isinstance(value, str) else bytes(value)


def key_range(
    key: Bytesish,
    range_end: Bytesish | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
) -> tuple[bytes, bytes]:
    """Turn a key and one of range_end / prefix / from_key into (key, range_end) bytes."""
    if sum((range_end is not None, prefix, from_key)) > 1:
        raise ValueError("give at most one of range_end, prefix and from_key")
    k = to_bytes(key)
    if prefix:
        if not k:
            return b"\0", b"\0"
        return k, prefix_end(k)
    if from_key:
        return (k or b"\0"), b"\0"
    return k, (to_bytes(range_end) if range_end is not None else b"")


def range_request(
    key: Bytesish,
    range_end: Bytesish | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    revision: int = 0,
    limit: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
    serializable: bool = False,
    sort_order: str = "none",
    sort_target: str = "key",
    min_mod_revision: int = 0,
    max_mod_revision: int = 0,
    min_create_revision: int = 0,
    max_create_revision: int = 0,
) -> rpc.RangeRequest:
    """A RangeRequest.

    sort_order: none/ascend/descend; sort_target: key/version/create/mod/value.
    """
    k, end = key_range(key, range_end, prefix=prefix, from_key=from_key)
    try:
        order, target = SORT_ORDERS[sort_order.lower()], SORT_TARGETS[sort_target.lower()]
    except KeyError:
        raise ValueError(f"bad sort order/target: {sort_order!r}/{sort_target!r}") from None
    return rpc.RangeRequest(
        key=k,
        range_end=end,
        revision=revision,
        limit=limit,
        keys_only=keys_only,
        count_only=count_only,
        serializable=serializable,
        sort_order=order,
        sort_target=target,
        min_mod_revision=min_mod_revision,
        max_mod_revision=max_mod_revision,
        min_create_revision=min_create_revision,
        max_create_revision=max_create_revision,
    )


def put_request(
    key: Bytesish,
    value: Bytesish,
    *,
    lease: int = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> rpc.PutRequest:
    """A PutRequest."""
    return rpc.PutRequest(
        key=to_bytes(key),
        value=to_bytes(value),
        lease=lease,
        prev_kv=prev_kv,
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
    )


def delete_request(
    key: Bytesish,
    range_end: Bytesish | None = None,
    *,
    prefix: bool = False,
    from_key: bool = False,
    prev_kv: bool = False,
) -> rpc.DeleteRangeRequest:
    """A DeleteRangeRequest."""
    k, end = key_range(key, range_end, prefix=prefix, from_key=from_key)
    return rpc.DeleteRangeRequest(key=k, range_end=end, prev_kv=prev_kv)


class _CompareTarget:
    """One side of a comparison: ``Compare.value("k") == "v"`` builds an rpc.Compare."""

    __slots__ = ("_target", "_field", "_key", "_range_end")

    def __init__(self, target: int, field: str, key: Bytesish, range_end: Bytesish | None):
        self._target, self._field = target, field
        self._key = to_bytes(key)
        self._range_end = to_bytes(range_end) if range_end is not None else b""

    def _build(self, result: int, other: object) -> rpc.Compare:
        value = to_bytes(other) if self._field == "value" else int(other)  # type: ignore[arg-type]
        return rpc.Compare(
            result=result,
            target=self._target,
            key=self._key,
            range_end=self._range_end,
            **{self._field: value},
        )

    def __eq__(self, other: object) -> rpc.Compare:  # type: ignore[override]
        return self._build(rpc.Compare.EQUAL, other)

    def __ne__(self, other: object) -> rpc.Compare:  # type: ignore[override]
        return self._build(rpc.Compare.NOT_EQUAL, other)

    def __lt__(self, other: object) -> rpc.Compare:
        return self._build(rpc.Compare.LESS, other)

    def __gt__(self, other: object) -> rpc.Compare:
        return self._build(rpc.Compare.GREATER, other)

    __hash__ = None  # type: ignore[assignment]


class Compare:
    """Txn comparisons: ``Compare.version("k") > 0``, ``Compare.value("k") == "v"``, ..."""

    @staticmethod
    def value(key: Bytesish, range_end: Bytesish | None = None) -> _CompareTarget:
        return _CompareTarget(rpc.Compare.VALUE, "value", key, range_end)

    @staticmethod
    def version(key: Bytesish, range_end: Bytesish | None = None) -> _CompareTarget:
        return _CompareTarget(rpc.Compare.VERSION, "version", key, range_end)

    @staticmethod
    def create_revision(key: Bytesish, range_end: Bytesish | None = None) -> _CompareTarget:
        return _CompareTarget(rpc.Compare.CREATE, "create_revision", key, range_end)

    @staticmethod
    def mod_revision(key: Bytesish, range_end: Bytesish | None = None) -> _CompareTarget:
        return _CompareTarget(rpc.Compare.MOD, "mod_revision", key, range_end)

    @staticmethod
    def lease(key: Bytesish, range_end: Bytesish | None = None) -> _CompareTarget:
        return _CompareTarget(rpc.Compare.LEASE, "lease", key, range_end)


class Op:
    """Txn operations: ``Op.put("k", "v")``, ``Op.get("k", prefix=True)``, ``Op.delete(...)``."""

    @staticmethod
    def put(key: Bytesish, value: Bytesish, **options) -> rpc.RequestOp:
        return rpc.RequestOp(request_put=put_request(key, value, **options))

    @staticmethod
    def get(key: Bytesish, range_end: Bytesish | None = None, **options) -> rpc.RequestOp:
        return rpc.RequestOp(request_range=range_request(key, range_end, **options))

    @staticmethod
    def delete(key: Bytesish, range_end: Bytesish | None = None, **options) -> rpc.RequestOp:
        return rpc.RequestOp(request_delete_range=delete_request(key, range_end, **options))

    @staticmethod
    def txn(compare=(), success=(), failure=()) -> rpc.RequestOp:
        return rpc.RequestOp(request_txn=txn_request(compare, success, failure))


def txn_request(compare=(), success=(), failure=()) -> rpc.TxnRequest:
    """A TxnRequest from lists of rpc.Compare and rpc.RequestOp."""
    return rpc.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))
