"""pyraftkvctl's ``-w fields`` and ``-w protobuf`` outputs, pinned to what etcdctl 3.4.23
printed for the same responses (tests/e2e/test_ctl_formats_vs_etcd.py compares whole
sessions against a live etcd)."""

from __future__ import annotations

import io

import pytest

from pyraftkv.ctl import run
from pyraftkv.ctl.errors import CtlError
from pyraftkv.ctl.printers import EndpointHealth, FieldsPrinter, ProtobufPrinter
from pyraftkv.proto import auth_pb2 as authpb
from pyraftkv.proto import kv_pb2
from pyraftkv.proto import rpc_pb2 as rpc

HEADER = rpc.ResponseHeader(cluster_id=12824088362068426428, member_id=7, revision=4, raft_term=2)
HDR = '"ClusterID" : 12824088362068426428\n"MemberID" : 7\n"Revision" : 4\n"RaftTerm" : 2\n'
KV = kv_pb2.KeyValue(key=b"foo", create_revision=3, mod_revision=4, version=2, value=b"v%d\xff")
KV_LINES = (
    '"Key" : "foo"\n"CreateRevision" : 3\n"ModRevision" : 4\n"Version" : 2\n'
    '"Value" : "v%d\\xff"\n"Lease" : 0\n'
)


def fields(method: str, *args, **kwargs) -> str:
    out = io.BytesIO()
    getattr(FieldsPrinter(out, io.BytesIO()), method)(*args, **kwargs)
    return out.getvalue().decode()


def protobuf(method: str, *args, **kwargs) -> bytes:
    out = io.BytesIO()
    getattr(ProtobufPrinter(out, io.BytesIO()), method)(*args, **kwargs)
    return out.getvalue()


def test_fields_of_kv_responses():
    assert fields("put", rpc.PutResponse(header=HEADER)) == HDR
    prev = "".join(f'"Prev{line[1:]}\n' for line in KV_LINES.splitlines())
    assert fields("put", rpc.PutResponse(header=HEADER, prev_kv=KV)) == HDR + prev
    got = fields("get", rpc.RangeResponse(header=HEADER, kvs=[KV], count=1))
    assert got == HDR + KV_LINES + '"More" : false\n"Count" : 1\n'
    got = fields("delete", rpc.DeleteRangeResponse(header=HEADER, deleted=1, prev_kvs=[KV]))
    assert got == HDR + '"Deleted" : 1\n' + prev
    inner = rpc.ResponseHeader(revision=4)
    txn = rpc.TxnResponse(
        header=HEADER,
        responses=[rpc.ResponseOp(response_put=rpc.PutResponse(header=inner))],
    )
    zero = '"ClusterID" : 0\n"MemberID" : 0\n"Revision" : 4\n"RaftTerm" : 0\n'
    assert fields("txn", txn) == HDR + '"Succeeded" : false\n' + zero


def test_fields_of_watch_events():
    event = kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=b"w", mod_revision=9))
    got = fields("watch", rpc.WatchResponse(header=HEADER, events=[event]))
    assert got.startswith(HDR + '"Type" : DELETE\n"Key" : "w"\n"CreateRevision" : 0\n')


def test_fields_of_lease_member_and_endpoint_answers():
    ttl = rpc.LeaseTimeToLiveResponse(header=HEADER, ID=5, TTL=-1, keys=[b"a", b"b"])
    assert fields("lease_time_to_live", ttl, keys=True) == (
        HDR + '"ID" : 5\n"TTL" : -1\n"GrantedTTL" : 0\n"Key" : "a"\n"Key" : "b"\n'
    )
    grant = rpc.LeaseGrantResponse(header=HEADER, ID=5, TTL=50)
    assert fields("lease_grant", grant) == HDR + '"ID" : 5\n"TTL" : 50\n'
    leases = rpc.LeaseLeasesResponse(header=HEADER, leases=[rpc.LeaseStatus(ID=5)])
    assert fields("lease_leases", leases) == HDR + '"ID" : 5\n'
    member = rpc.Member(ID=9, name="e1", peerURLs=["http://p"], clientURLs=["http://c"])
    assert fields("member_list", rpc.MemberListResponse(header=HEADER, members=[member])) == (
        HDR + '"ID" : 9\n"Name" : "e1"\n"PeerURL" : "http://p"\n"ClientURL" : "http://c"\n'
        '"IsLearner" : false\n\n'
    )
    status = rpc.StatusResponse(header=HEADER, version="3.4.23", dbSize=20480, leader=7)
    assert fields("endpoint_status", [("127.0.0.1:1", status)]) == (
        HDR + '"Version" : "3.4.23"\n"DBSize" : 20480\n"Leader" : 7\n"IsLearner" : false\n'
        '"RaftIndex" : 0\n"RaftTerm" : 0\n"RaftAppliedIndex" : 0\n"Errors" : []\n'
        '"Endpoint" : "127.0.0.1:1"\n\n'
    )
    health = [EndpointHealth("127.0.0.1:1", True, "2.5ms")]
    assert fields("endpoint_health", health) == (
        '"Endpoint" : "127.0.0.1:1"\n"Health" : true\n"Took" : 2.5ms\n"Error" : \n\n'
    )
    role = rpc.AuthRoleGetResponse(
        header=HEADER, perm=[authpb.Permission(permType=authpb.Permission.READWRITE, key=b"a")]
    )
    assert fields("auth_response", role) == (
        HDR + '"PermType" :  READWRITE\n"Key" : "a"\n"RangeEnd" : ""\n'
    )


def test_protobuf_is_the_marshalled_message_with_nothing_around_it():
    put = rpc.PutResponse(header=HEADER, prev_kv=KV)
    assert protobuf("put", put) == put.SerializeToString()
    # clientv3's lease structs marshal only their embedded header
    grant = rpc.LeaseGrantResponse(header=HEADER, ID=5, TTL=50)
    assert protobuf("lease_grant", grant) == HEADER.SerializeToString()
    # clientv3's watch struct has no watch ID or cancel reason
    watch = rpc.WatchResponse(header=HEADER, watch_id=3, cancel_reason="x", created=True)
    assert (
        protobuf("watch", watch)
        == rpc.WatchResponse(header=HEADER, created=True).SerializeToString()
    )
    assert protobuf("watch", rpc.WatchResponse()) == b"\n\x00"  # the header is always set


def test_what_etcdctl_cannot_marshal_or_show_is_refused_with_exit_4():
    revoke = rpc.LeaseRevokeResponse(header=rpc.ResponseHeader(cluster_id=1, revision=18))
    with pytest.raises(CtlError) as caught:
        protobuf("lease_revoke", 5, revoke)
    assert caught.value.exit_code == 4
    assert caught.value.message == (
        "marshal unsupported for type clientv3.LeaseRevokeResponse ({cluster_id:1 revision:18 })"
    )
    with pytest.raises(CtlError, match="^protobuf not supported as output format$"):
        protobuf("endpoint_health", [])
    with pytest.raises(CtlError, match="^fields not supported as output format$"):
        fields("auth_response", rpc.AuthUserListResponse(header=HEADER))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-w", "fields", "member", "remove", "1"], "fields not supported as output format"),
        (["-w", "fields", "move-leader", "1"], "fields not supported as output format"),
        (["-w", "protobuf", "endpoint", "status"], "protobuf not supported as output format"),
        (["-w", "protobuf", "snapshot", "status", "x"], "protobuf not supported as output format"),
        (["-w", "yaml", "get", "k"], "unsupported output format"),
    ],
)
def test_formats_a_command_cannot_print_are_refused_before_it_runs(argv, message):
    out, err = io.BytesIO(), io.BytesIO()
    assert run(["--endpoints=127.0.0.1:1", *argv], io.BytesIO(), out, err, {}) == 4
    assert (out.getvalue(), err.getvalue()) == (b"", f"Error: {message}\n".encode())


def test_help_lists_the_formats():
    out = io.BytesIO()
    run(["--help"], io.BytesIO(), out, io.BytesIO(), {})
    assert (
        "set the output format (fields, json, protobuf, simple, table)" in out.getvalue().decode()
    )


@pytest.mark.parametrize("write_out", ["fields", "protobuf"])
def test_commands_printing_lines_of_their_own_take_every_response_format(write_out):
    out, err = io.BytesIO(), io.BytesIO()
    assert run(["-w", write_out, "version"], io.BytesIO(), out, err, {}) == 0
    assert out.getvalue().startswith(b"pyraftkvctl version: ") and err.getvalue() == b""
