"""An entry of one plain put is answered before it is applied (application.py,
_answer_lone_put): which puts qualify, and the check that the apply made the revision told.
tests/e2e/test_failpoints.py crashes a member between the two."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyraftkv import errors
from pyraftkv.mvcc import MVCCStore
from pyraftkv.node.application import _check_told
from pyraftkv.proto import rpc_pb2 as rpc


def _answer(batch, put: rpc.PutRequest) -> rpc.PutResponse | errors.ApiError:
    try:
        return batch.put(put)[0]
    except errors.ApiError as exc:
        return exc


def test_only_puts_whose_answer_is_the_next_revision_qualify(tmp_path: Path) -> None:
    store = MVCCStore(tmp_path / "db", map_size=64 << 20, max_request_bytes=100)
    store.lease_exists = lambda lease: False
    try:
        with store.write_batch(1) as batch:
            for put in (
                rpc.PutRequest(key=b"k", value=b"v"),
                rpc.PutRequest(key=b"k", value=b"w" * 80),
            ):
                assert batch.put_cannot_fail(put)
                told = rpc.PutResponse(header=rpc.ResponseHeader(revision=store.revision + 1))
                assert _answer(batch, put) == told
            # Each of these may fail at apply (a lease gone, a key missing, a request too
            # large) or answer more than a revision (the previous value).
            for put in (
                rpc.PutRequest(key=b"k", value=b"v", lease=7),
                rpc.PutRequest(key=b"k", value=b"v", prev_kv=True),
                rpc.PutRequest(key=b"gone", ignore_value=True),
                rpc.PutRequest(key=b"gone", value=b"v", ignore_lease=True),
                rpc.PutRequest(key=b"", value=b"v"),
                rpc.PutRequest(key=b"k", value=b"v" * 200),
            ):
                assert not batch.put_cannot_fail(put), put
                told = rpc.PutResponse(header=rpc.ResponseHeader(revision=store.revision + 1))
                assert _answer(batch, put) != told, put
    finally:
        store.close()


def test_an_apply_that_made_another_revision_than_told_stops_the_member() -> None:
    made = rpc.PutResponse(header=rpc.ResponseHeader(revision=8))
    _check_told(3, 8, made)
    for result in (
        rpc.PutResponse(header=rpc.ResponseHeader(revision=9)),
        errors.LeaseNotFound(),
        None,
    ):
        with pytest.raises(RuntimeError, match="answered with revision 8 before its apply"):
            _check_told(3, 8, result)
