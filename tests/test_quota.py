"""Which client writes add data, and so are refused while a store is over its quota."""

import pytest

from pyraftkv.node.apply import needs_space
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.methods import BY_NAME

PUT = rpc.RequestOp(request_put=rpc.PutRequest(key=b"k"))
GET = rpc.RequestOp(request_range=rpc.RangeRequest(key=b"k"))
DELETE = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=b"k"))


def txn(**branches) -> rpc.TxnRequest:
    return rpc.TxnRequest(**branches)


@pytest.mark.parametrize(
    "method, request_, adds",
    [
        ("Put", rpc.PutRequest(key=b"k"), True),
        ("LeaseGrant", rpc.LeaseGrantRequest(TTL=5), True),
        ("DeleteRange", rpc.DeleteRangeRequest(key=b"k"), False),
        ("Compact", rpc.CompactionRequest(revision=3), False),
        ("LeaseRevoke", rpc.LeaseRevokeRequest(ID=7), False),
        ("Txn", txn(success=[GET, DELETE], failure=[GET]), False),
        ("Txn", txn(success=[GET], failure=[PUT]), True),
        ("Txn", txn(success=[rpc.RequestOp(request_txn=txn(failure=[DELETE]))]), False),
        ("Txn", txn(failure=[rpc.RequestOp(request_txn=txn(success=[GET, PUT]))]), True),
    ],
)
def test_writes_that_add_data_are_told_apart(method, request_, adds):
    assert needs_space(BY_NAME[method].number, request_.SerializeToString()) is adds
