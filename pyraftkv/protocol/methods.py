"""The method table of the native protocol: number, gRPC name, request and response types.

Numbers are part of the wire format: never renumber, only append. The gRPC names are
etcd's, so the gRPC gateway and the native server route to the same handlers.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from ..proto import rpc_pb2 as rpc
from ..proto import v3election_pb2 as election
from ..proto import v3lock_pb2 as lock


@dataclass(frozen=True, slots=True)
class Method:
    """One callable method: ``streaming`` methods take and give several messages."""

    number: int
    name: str
    grpc_name: str
    request: type[Message]
    response: type[Message]
    streaming: bool = False


def _kv(number: int, name: str, service: str, request, response, streaming=False) -> Method:
    return Method(number, name, f"/etcdserverpb.{service}/{name}", request, response, streaming)


METHODS: tuple[Method, ...] = (
    _kv(1, "Range", "KV", rpc.RangeRequest, rpc.RangeResponse),
    _kv(2, "Put", "KV", rpc.PutRequest, rpc.PutResponse),
    _kv(3, "DeleteRange", "KV", rpc.DeleteRangeRequest, rpc.DeleteRangeResponse),
    _kv(4, "Txn", "KV", rpc.TxnRequest, rpc.TxnResponse),
    _kv(5, "Compact", "KV", rpc.CompactionRequest, rpc.CompactionResponse),
    _kv(6, "Watch", "Watch", rpc.WatchRequest, rpc.WatchResponse, streaming=True),
    _kv(7, "LeaseGrant", "Lease", rpc.LeaseGrantRequest, rpc.LeaseGrantResponse),
    _kv(8, "LeaseRevoke", "Lease", rpc.LeaseRevokeRequest, rpc.LeaseRevokeResponse),
    _kv(
        9,
        "LeaseKeepAlive",
        "Lease",
        rpc.LeaseKeepAliveRequest,
        rpc.LeaseKeepAliveResponse,
        streaming=True,
    ),
    _kv(10, "LeaseTimeToLive", "Lease", rpc.LeaseTimeToLiveRequest, rpc.LeaseTimeToLiveResponse),
    _kv(11, "LeaseLeases", "Lease", rpc.LeaseLeasesRequest, rpc.LeaseLeasesResponse),
    _kv(12, "MemberAdd", "Cluster", rpc.MemberAddRequest, rpc.MemberAddResponse),
    _kv(13, "MemberRemove", "Cluster", rpc.MemberRemoveRequest, rpc.MemberRemoveResponse),
    _kv(14, "MemberUpdate", "Cluster", rpc.MemberUpdateRequest, rpc.MemberUpdateResponse),
    _kv(15, "MemberList", "Cluster", rpc.MemberListRequest, rpc.MemberListResponse),
    _kv(16, "MemberPromote", "Cluster", rpc.MemberPromoteRequest, rpc.MemberPromoteResponse),
    _kv(17, "Status", "Maintenance", rpc.StatusRequest, rpc.StatusResponse),
    _kv(18, "HashKV", "Maintenance", rpc.HashKVRequest, rpc.HashKVResponse),
    _kv(19, "MoveLeader", "Maintenance", rpc.MoveLeaderRequest, rpc.MoveLeaderResponse),
    Method(20, "Lock", "/v3lockpb.Lock/Lock", lock.LockRequest, lock.LockResponse),
    Method(21, "Unlock", "/v3lockpb.Lock/Unlock", lock.UnlockRequest, lock.UnlockResponse),
    Method(
        22,
        "Campaign",
        "/v3electionpb.Election/Campaign",
        election.CampaignRequest,
        election.CampaignResponse,
    ),
    Method(
        23,
        "Proclaim",
        "/v3electionpb.Election/Proclaim",
        election.ProclaimRequest,
        election.ProclaimResponse,
    ),
    Method(
        24,
        "Leader",
        "/v3electionpb.Election/Leader",
        election.LeaderRequest,
        election.LeaderResponse,
    ),
    Method(
        25,
        "Observe",
        "/v3electionpb.Election/Observe",
        election.LeaderRequest,
        election.LeaderResponse,
        streaming=True,
    ),
    Method(
        26,
        "Resign",
        "/v3electionpb.Election/Resign",
        election.ResignRequest,
        election.ResignResponse,
    ),
    _kv(27, "Snapshot", "Maintenance", rpc.SnapshotRequest, rpc.SnapshotResponse, streaming=True),
    *(
        _kv(number, name, "Auth", getattr(rpc, request), getattr(rpc, response))
        for number, (name, request, response) in enumerate(
            (
                ("AuthEnable", "AuthEnableRequest", "AuthEnableResponse"),
                ("AuthDisable", "AuthDisableRequest", "AuthDisableResponse"),
                ("AuthStatus", "AuthStatusRequest", "AuthStatusResponse"),
                ("Authenticate", "AuthenticateRequest", "AuthenticateResponse"),
                ("UserAdd", "AuthUserAddRequest", "AuthUserAddResponse"),
                ("UserGet", "AuthUserGetRequest", "AuthUserGetResponse"),
                ("UserList", "AuthUserListRequest", "AuthUserListResponse"),
                ("UserDelete", "AuthUserDeleteRequest", "AuthUserDeleteResponse"),
                (
                    "UserChangePassword",
                    "AuthUserChangePasswordRequest",
                    "AuthUserChangePasswordResponse",
                ),
                ("UserGrantRole", "AuthUserGrantRoleRequest", "AuthUserGrantRoleResponse"),
                ("UserRevokeRole", "AuthUserRevokeRoleRequest", "AuthUserRevokeRoleResponse"),
                ("RoleAdd", "AuthRoleAddRequest", "AuthRoleAddResponse"),
                ("RoleGet", "AuthRoleGetRequest", "AuthRoleGetResponse"),
                ("RoleList", "AuthRoleListRequest", "AuthRoleListResponse"),
                ("RoleDelete", "AuthRoleDeleteRequest", "AuthRoleDeleteResponse"),
                (
                    "RoleGrantPermission",
                    "AuthRoleGrantPermissionRequest",
                    "AuthRoleGrantPermissionResponse",
                ),
                (
                    "RoleRevokePermission",
                    "AuthRoleRevokePermissionRequest",
                    "AuthRoleRevokePermissionResponse",
                ),
            ),
            start=28,
        )
    ),
    _kv(45, "Alarm", "Maintenance", rpc.AlarmRequest, rpc.AlarmResponse),
    _kv(46, "Defragment", "Maintenance", rpc.DefragmentRequest, rpc.DefragmentResponse),
    _kv(47, "Hash", "Maintenance", rpc.HashRequest, rpc.HashResponse),
)

BY_NUMBER: dict[int, Method] = {m.number: m for m in METHODS}
BY_NAME: dict[str, Method] = {m.name: m for m in METHODS}
METHOD_NUMBERS = frozenset(BY_NUMBER)
