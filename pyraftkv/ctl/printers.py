"""Output of every command in etcdctl's formats: simple, json, table, fields and protobuf.

One printer per format, one method per kind of result; each writes bytes to the printer's
``out`` (and, where etcdctl does, ``err``) stream. A command lists the formats it supports,
so a printer is only asked for what its format can show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from ..proto import auth_pb2, kv_pb2
from ..proto import rpc_pb2 as rpc
from . import gojson
from .errors import EXIT_BAD_FEATURE, CtlError
from .gotext import go_quote, hex_escape, humanize_bytes
from .table import render_table

FORMATS = ("simple", "json", "table", "fields", "protobuf")


@dataclass(frozen=True)
class EndpointHealth:
    """The result of one endpoint's health check (etcdctl's epHealth)."""

    endpoint: str
    healthy: bool
    took: str
    error: str = ""


class Printer:
    """Writes results in one format; subclasses implement the formats."""

    name = ""  # the format, as -w names it

    def __init__(self, out: BinaryIO, err: BinaryIO, *, hex_bytes: bool = False) -> None:
        self.out = out
        self.err = err
        self.hex_bytes = hex_bytes

    def _line(self, text: str | bytes = b"", stream: BinaryIO | None = None) -> None:
        data = text.encode() if isinstance(text, str) else text
        (stream or self.out).write(data + b"\n")

    def _unsupported(self) -> None:
        """What etcdctl says when a command's result has no form in this format (lock and
        elect only find out once they have something to print)."""
        raise CtlError(f"{self.name} not supported as output format", EXIT_BAD_FEATURE)

    # KV
    def put(self, resp: rpc.PutResponse) -> None:
        """put: OK (and the previous key-value with --prev-kv)."""
        raise NotImplementedError

    def get(self, resp: rpc.RangeResponse, *, value_only: bool = False) -> None:
        """get: the keys and values found (also lock's and elect's key)."""
        self._unsupported()

    def count(self, resp: rpc.RangeResponse) -> None:
        """get --count-only."""
        raise NotImplementedError

    def delete(self, resp: rpc.DeleteRangeResponse) -> None:
        """del: the number deleted (and the deleted key-values with --prev-kv)."""
        raise NotImplementedError

    def txn(self, resp: rpc.TxnResponse) -> None:
        """txn: SUCCESS or FAILURE, then each operation's result."""
        raise NotImplementedError

    def watch(self, resp: rpc.WatchResponse) -> None:
        """watch: the events of one server reply."""
        raise NotImplementedError

    def compaction(self, revision: int, resp: rpc.CompactionResponse) -> None:
        """compaction: the revision compacted."""
        # etcdctl prints this line whatever the output format.
        self._line(f"compacted revision {revision}")

    # leases
    def lease_grant(self, resp: rpc.LeaseGrantResponse) -> None:
        """lease grant: the new lease's ID and TTL."""
        self._unsupported()

    def lease_revoke(self, lease_id: int, resp: rpc.LeaseRevokeResponse) -> None:
        """lease revoke: which lease went."""
        self._unsupported()

    def lease_time_to_live(self, resp: rpc.LeaseTimeToLiveResponse, *, keys: bool) -> None:
        """lease timetolive: granted and remaining TTL (and, with --keys, the keys)."""
        self._unsupported()

    def lease_leases(self, resp: rpc.LeaseLeasesResponse) -> None:
        """lease list: how many leases, then their IDs."""
        self._unsupported()

    def lease_keep_alive(self, resp: rpc.LeaseKeepAliveResponse) -> None:
        """lease keep-alive: one renewal."""
        self._unsupported()

    def lease_keep_alive_ended(self, lease_id: int) -> None:
        """lease keep-alive: the lease is gone (etcdctl says so in the simple format only)."""

    # cluster
    def member_list(self, resp: rpc.MemberListResponse) -> None:
        """member list: one row per member."""
        raise NotImplementedError

    def member_add(self, resp: rpc.MemberAddResponse, name: str, peer_urls: Sequence[str]) -> None:
        """member add: the new member, and how to start it."""
        raise NotImplementedError

    def member_changed(self, verb: str, member_id: int, resp) -> None:
        """After member remove / update / promote; ``verb`` is e.g. "removed from"."""
        raise NotImplementedError

    def move_leader(self, leader: int, target: int, resp: rpc.MoveLeaderResponse) -> None:
        """move-leader: from whom to whom leadership went."""
        raise NotImplementedError

    # auth
    def auth_response(self, resp) -> None:
        """auth, user and role commands in the json format: the response message (their
        simple output is written by the commands, sentence by sentence)."""
        self._unsupported()

    # endpoints
    def endpoint_status(self, statuses: Sequence[tuple[str, rpc.StatusResponse]]) -> None:
        """endpoint status: one row per endpoint that answered."""
        raise NotImplementedError

    def endpoint_health(self, results: Sequence[EndpointHealth]) -> None:
        """endpoint health: one result per endpoint."""
        raise NotImplementedError

    def endpoint_hashkv(self, hashes: Sequence[tuple[str, rpc.HashKVResponse]]) -> None:
        """endpoint hashkv: one hash per endpoint that answered."""
        raise NotImplementedError


def member_rows(resp: rpc.MemberListResponse) -> list[list[str]]:
    """etcdctl's member list rows: id, status, name, peer urls, client urls, is learner."""
    return [
        [
            f"{m.ID:x}",
            "started" if m.name else "unstarted",
            m.name,
            ",".join(m.peerURLs),
            ",".join(m.clientURLs),
            _go_bool(m.isLearner),
        ]
        for m in resp.members
    ]


MEMBER_HEADER = ("ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER")


def status_rows(statuses: Sequence[tuple[str, rpc.StatusResponse]]) -> list[list[str]]:
    """etcdctl 3.4's endpoint status rows."""
    return [
        [
            endpoint,
            f"{s.header.member_id:x}",
            s.version,
            humanize_bytes(s.dbSize),
            _go_bool(s.leader == s.header.member_id),
            _go_bool(s.isLearner),
            str(s.raftTerm),
            str(s.raftIndex),
            str(s.raftAppliedIndex),
            ", ".join(s.errors),
        ]
        for endpoint, s in statuses
    ]


STATUS_HEADER = (
    "ENDPOINT",
    "ID",
    "VERSION",
    "DB SIZE",
    "IS LEADER",
    "IS LEARNER",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
    "ERRORS",
)
HEALTH_HEADER = ("ENDPOINT", "HEALTH", "TOOK", "ERROR")
HASHKV_HEADER = ("ENDPOINT", "HASH")


def _health_rows(results: Sequence[EndpointHealth]) -> list[list[str]]:
    return [[r.endpoint, _go_bool(r.healthy), r.took, r.error] for r in results]


def _hashkv_rows(hashes: Sequence[tuple[str, rpc.HashKVResponse]]) -> list[list[str]]:
    return [[endpoint, str(h.hash)] for endpoint, h in hashes]


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


class SimplePrinter(Printer):
    """etcdctl's default output: one value per line, rows joined by ", "."""

    name = "simple"

    def _kv(self, kv: kv_pb2.KeyValue, value_only: bool = False) -> None:
        key, value = kv.key, kv.value
        if self.hex_bytes:
            key, value = hex_escape(key), hex_escape(value)
        if not value_only:
            self._line(key)
        self._line(value)

    def put(self, resp: rpc.PutResponse) -> None:
        self._line("OK")
        if resp.HasField("prev_kv"):
            self._kv(resp.prev_kv)

    def get(self, resp: rpc.RangeResponse, *, value_only: bool = False) -> None:
        for kv in resp.kvs:
            self._kv(kv, value_only)

    def count(self, resp: rpc.RangeResponse) -> None:
        self._line(str(resp.count))

    def delete(self, resp: rpc.DeleteRangeResponse) -> None:
        self._line(str(resp.deleted))
        for kv in resp.prev_kvs:
            self._kv(kv)

    def txn(self, resp: rpc.TxnResponse) -> None:
        self._line("SUCCESS" if resp.succeeded else "FAILURE")
        for op in resp.responses:
            self._line()
            kind = op.WhichOneof("response")
            if kind == "response_range":
                self.get(op.response_range)
            elif kind == "response_put":
                self.put(op.response_put)
            elif kind == "response_delete_range":
                self.delete(op.response_delete_range)
            elif kind == "response_txn":
                self.txn(op.response_txn)

    def watch(self, resp: rpc.WatchResponse) -> None:
        for event in resp.events:
            self._line(kv_pb2.Event.EventType.Name(event.type))
            if event.HasField("prev_kv"):
                self._kv(event.prev_kv)
            self._kv(event.kv)

    def lease_grant(self, resp: rpc.LeaseGrantResponse) -> None:
        self._line(f"lease {resp.ID:016x} granted with TTL({resp.TTL}s)")

    def lease_revoke(self, lease_id: int, resp: rpc.LeaseRevokeResponse) -> None:
        self._line(f"lease {lease_id:016x} revoked")

    def lease_time_to_live(self, resp: rpc.LeaseTimeToLiveResponse, *, keys: bool) -> None:
        if resp.grantedTTL == 0 and resp.TTL == -1:
            self._line(f"lease {resp.ID:016x} already expired")
            return
        text = f"lease {resp.ID:016x} granted with TTL({resp.grantedTTL}s), remaining({resp.TTL}s)"
        line = text.encode()
        if keys:  # Go's %v of a []string: the keys as they are, between brackets
            line += b", attached keys([" + b" ".join(resp.keys) + b"])"
        self._line(line)

    def lease_leases(self, resp: rpc.LeaseLeasesResponse) -> None:
        self._line(f"found {len(resp.leases)} leases")
        for lease in resp.leases:
            self._line(f"{lease.ID:016x}")

    def lease_keep_alive(self, resp: rpc.LeaseKeepAliveResponse) -> None:
        self._line(f"lease {resp.ID:016x} keepalived with TTL({resp.TTL})")

    def lease_keep_alive_ended(self, lease_id: int) -> None:
        self._line(f"lease {lease_id:016x} expired or revoked.")

    def member_list(self, resp: rpc.MemberListResponse) -> None:
        for row in member_rows(resp):
            self._line(", ".join(row))

    def member_add(self, resp: rpc.MemberAddResponse, name: str, peer_urls: Sequence[str]) -> None:
        self._line(f"Member {resp.member.ID:16x} added to cluster {resp.header.cluster_id:16x}")
        cluster = ",".join(
            f"{name if m.ID == resp.member.ID else m.name}={url}"
            for m in resp.members
            for url in m.peerURLs
        )
        # The variables the new member's `pyraftkv` reads its flags from.
        self._line()
        self._line(f"PYRAFTKV_NAME={go_quote(name)}")
        self._line(f"PYRAFTKV_INITIAL_CLUSTER={go_quote(cluster)}")
        self._line(f"PYRAFTKV_INITIAL_ADVERTISE_PEER_URLS={go_quote(','.join(peer_urls))}")
        self._line('PYRAFTKV_INITIAL_CLUSTER_STATE="existing"')

    def member_changed(self, verb: str, member_id: int, resp) -> None:
        self._line(f"Member {member_id:16x} {verb} cluster {resp.header.cluster_id:16x}")

    def move_leader(self, leader: int, target: int, resp: rpc.MoveLeaderResponse) -> None:
        self._line(f"Leadership transferred from {leader:x} to {target:x}")

    def endpoint_status(self, statuses: Sequence[tuple[str, rpc.StatusResponse]]) -> None:
        for row in status_rows(statuses):
            self._line(", ".join(row))

    def endpoint_health(self, results: Sequence[EndpointHealth]) -> None:
        # etcdctl writes these lines to stderr.
        for r in results:
            if r.healthy:
                line = f"{r.endpoint} is healthy: successfully committed proposal: took = {r.took}"
            else:
                line = f"{r.endpoint} is unhealthy: failed to commit proposal: {r.error}"
            self._line(line, self.err)

    def endpoint_hashkv(self, hashes: Sequence[tuple[str, rpc.HashKVResponse]]) -> None:
        for row in _hashkv_rows(hashes):
            self._line(", ".join(row))


def _flat_header(resp) -> dict[str, int]:
    """The header's fields as clientv3's lease responses show them: the header is embedded
    in those structs, so Go's encoder lifts its (omitempty) fields to the top level."""
    header = resp.header
    return {
        f.name: getattr(header, f.name) for f in header.DESCRIPTOR.fields if getattr(header, f.name)
    }


class JsonPrinter(Printer):
    """``-w json``: the response messages as etcdctl's Go encoder writes them, one per line."""

    name = "json"

    def _json(self, value: object) -> None:
        self._line(gojson.encode(value))

    def put(self, resp: rpc.PutResponse) -> None:
        self._json(resp)

    def get(self, resp: rpc.RangeResponse, *, value_only: bool = False) -> None:
        self._json(resp)

    count = get

    def delete(self, resp: rpc.DeleteRangeResponse) -> None:
        self._json(resp)

    def txn(self, resp: rpc.TxnResponse) -> None:
        self._json(resp)

    def watch(self, resp: rpc.WatchResponse) -> None:
        # etcdctl prints clientv3's WatchResponse struct, whose fields have no JSON tags.
        self._json(
            {
                "Header": resp.header,
                "Events": list(resp.events),
                "CompactRevision": resp.compact_revision,
                "Canceled": resp.canceled,
                "Created": resp.created,
            }
        )

    # clientv3 wraps the lease responses in structs of its own, with their own JSON names.
    def lease_grant(self, resp: rpc.LeaseGrantResponse) -> None:
        self._json({**_flat_header(resp), "ID": resp.ID, "TTL": resp.TTL, "Error": resp.error})

    def lease_revoke(self, lease_id: int, resp: rpc.LeaseRevokeResponse) -> None:
        self._json(resp)

    def lease_time_to_live(self, resp: rpc.LeaseTimeToLiveResponse, *, keys: bool) -> None:
        fields = {"id": resp.ID, "ttl": resp.TTL, "granted-ttl": resp.grantedTTL}
        self._json({**_flat_header(resp), **fields, "keys": list(resp.keys) or None})

    def lease_leases(self, resp: rpc.LeaseLeasesResponse) -> None:
        leases = [{"id": lease.ID} for lease in resp.leases]
        self._json({**_flat_header(resp), "leases": leases})

    def lease_keep_alive(self, resp: rpc.LeaseKeepAliveResponse) -> None:
        self._json({**_flat_header(resp), "ID": resp.ID, "TTL": resp.TTL})

    def member_list(self, resp: rpc.MemberListResponse) -> None:
        self._json(resp)

    def auth_response(self, resp) -> None:
        self._json(resp)

    def member_add(self, resp: rpc.MemberAddResponse, name: str, peer_urls: Sequence[str]) -> None:
        self._json(resp)

    def member_changed(self, verb: str, member_id: int, resp) -> None:
        self._json(resp)

    def move_leader(self, leader: int, target: int, resp: rpc.MoveLeaderResponse) -> None:
        self._json(resp)

    def endpoint_status(self, statuses: Sequence[tuple[str, rpc.StatusResponse]]) -> None:
        self._json([{"Endpoint": ep, "Status": s} for ep, s in statuses] or None)

    def endpoint_health(self, results: Sequence[EndpointHealth]) -> None:
        items = []
        for r in results:
            item: dict[str, object] = {"endpoint": r.endpoint, "health": r.healthy, "took": r.took}
            if r.error:
                item["error"] = r.error
            items.append(item)
        self._json(items or None)

    def endpoint_hashkv(self, hashes: Sequence[tuple[str, rpc.HashKVResponse]]) -> None:
        self._json([{"Endpoint": ep, "HashKV": h} for ep, h in hashes] or None)


class TablePrinter(Printer):
    """``-w table``: for member list and the endpoint commands, as etcdctl has it."""

    name = "table"

    def _table(self, header: Sequence[str], rows: list[list[str]]) -> None:
        self.out.write(render_table(header, rows).encode())

    def member_list(self, resp: rpc.MemberListResponse) -> None:
        self._table(MEMBER_HEADER, member_rows(resp))

    def endpoint_status(self, statuses: Sequence[tuple[str, rpc.StatusResponse]]) -> None:
        self._table(STATUS_HEADER, status_rows(statuses))

    def endpoint_health(self, results: Sequence[EndpointHealth]) -> None:
        self._table(HEALTH_HEADER, _health_rows(results))

    def endpoint_hashkv(self, hashes: Sequence[tuple[str, rpc.HashKVResponse]]) -> None:
        self._table(HASHKV_HEADER, _hashkv_rows(hashes))


def _go_text(message) -> str:
    """Go's compact text form of a header (its String()): "name:value " per set field."""
    return "".join(f"{field.name}:{value} " for field, value in message.ListFields())


class FieldsPrinter(Printer):
    """``-w fields``: one ``"Name" : value`` line per field, as etcdctl's fields printer
    writes them (strings quoted as Go's %q; no --hex)."""

    name = "fields"

    def _field(self, name: str, value: object) -> None:
        """Go's fmt.Println of ``"Name" :`` and a value (bools as true/false)."""
        shown = _go_bool(value) if isinstance(value, bool) else value
        self._line(f'"{name}" : {shown}')

    def _quoted(self, name: str, value: bytes | str) -> None:
        self._line(f'"{name}" : {go_quote(value)}')

    def _hdr(self, header: rpc.ResponseHeader) -> None:
        self._field("ClusterID", header.cluster_id)
        self._field("MemberID", header.member_id)
        self._field("Revision", header.revision)
        self._field("RaftTerm", header.raft_term)

    def _kv(self, kv: kv_pb2.KeyValue, prefix: str = "") -> None:
        self._quoted(f"{prefix}Key", kv.key)
        self._field(f"{prefix}CreateRevision", kv.create_revision)
        self._field(f"{prefix}ModRevision", kv.mod_revision)
        self._field(f"{prefix}Version", kv.version)
        self._quoted(f"{prefix}Value", kv.value)
        self._field(f"{prefix}Lease", kv.lease)

    def put(self, resp: rpc.PutResponse) -> None:
        self._hdr(resp.header)
        if resp.HasField("prev_kv"):
            self._kv(resp.prev_kv, "Prev")

    def get(self, resp: rpc.RangeResponse, *, value_only: bool = False) -> None:
        self._hdr(resp.header)
        for kv in resp.kvs:
            self._kv(kv)
        self._field("More", resp.more)
        self._field("Count", resp.count)

    count = get

    def delete(self, resp: rpc.DeleteRangeResponse) -> None:
        self._hdr(resp.header)
        self._field("Deleted", resp.deleted)
        for kv in resp.prev_kvs:
            self._kv(kv, "Prev")

    def txn(self, resp: rpc.TxnResponse) -> None:
        self._hdr(resp.header)
        self._field("Succeeded", resp.succeeded)
        for op in resp.responses:
            kind = op.WhichOneof("response")
            if kind == "response_range":
                self.get(op.response_range)
            elif kind == "response_put":
                self.put(op.response_put)
            elif kind == "response_delete_range":
                self.delete(op.response_delete_range)
            elif kind == "response_txn":
                self.txn(op.response_txn)

    def watch(self, resp: rpc.WatchResponse) -> None:
        self._hdr(resp.header)
        for event in resp.events:
            self._line(f'"Type" : {kv_pb2.Event.EventType.Name(event.type)}')
            if event.HasField("prev_kv"):
                self._kv(event.prev_kv, "Prev")
            self._kv(event.kv)

    def lease_grant(self, resp: rpc.LeaseGrantResponse) -> None:
        self._hdr(resp.header)
        self._field("ID", resp.ID)
        self._field("TTL", resp.TTL)

    def lease_revoke(self, lease_id: int, resp: rpc.LeaseRevokeResponse) -> None:
        self._hdr(resp.header)

    def lease_time_to_live(self, resp: rpc.LeaseTimeToLiveResponse, *, keys: bool) -> None:
        self._hdr(resp.header)
        self._field("ID", resp.ID)
        self._field("TTL", resp.TTL)
        self._field("GrantedTTL", resp.grantedTTL)
        for key in resp.keys:
            self._quoted("Key", key)

    def lease_leases(self, resp: rpc.LeaseLeasesResponse) -> None:
        self._hdr(resp.header)
        for lease in resp.leases:
            self._field("ID", lease.ID)

    def lease_keep_alive(self, resp: rpc.LeaseKeepAliveResponse) -> None:
        self.lease_grant(resp)

    def member_list(self, resp: rpc.MemberListResponse) -> None:
        self._hdr(resp.header)
        for member in resp.members:
            self._field("ID", member.ID)
            self._quoted("Name", member.name)
            for url in member.peerURLs:
                self._quoted("PeerURL", url)
            for url in member.clientURLs:
                self._quoted("ClientURL", url)
            self._field("IsLearner", member.isLearner)
            self._line()

    def endpoint_status(self, statuses: Sequence[tuple[str, rpc.StatusResponse]]) -> None:
        for endpoint, s in statuses:
            self._hdr(s.header)
            self._quoted("Version", s.version)
            self._field("DBSize", s.dbSize)
            self._field("Leader", s.leader)
            self._field("IsLearner", s.isLearner)
            self._field("RaftIndex", s.raftIndex)
            self._field("RaftTerm", s.raftTerm)
            self._field("RaftAppliedIndex", s.raftAppliedIndex)
            self._field("Errors", "[" + " ".join(s.errors) + "]")  # Go's %v of a []string
            self._quoted("Endpoint", endpoint)
            self._line()

    def endpoint_health(self, results: Sequence[EndpointHealth]) -> None:
        for r in results:
            self._quoted("Endpoint", r.endpoint)
            self._field("Health", r.healthy)
            self._field("Took", r.took)
            self._field("Error", r.error)
            self._line()

    def endpoint_hashkv(self, hashes: Sequence[tuple[str, rpc.HashKVResponse]]) -> None:
        for endpoint, h in hashes:
            self._hdr(h.header)
            self._quoted("Endpoint", endpoint)
            self._field("Hash", h.hash)
            self._line()

    def auth_response(self, resp) -> None:
        if isinstance(resp, (rpc.AuthUserGetResponse, rpc.AuthUserListResponse)):
            self._unsupported()
        self._hdr(resp.header)
        if isinstance(resp, rpc.AuthRoleGetResponse):
            for perm in resp.perm:
                # (etcdctl's line has two spaces after the colon)
                self._line(f'"PermType" :  {auth_pb2.Permission.Type.Name(perm.permType)}')
                self._quoted("Key", perm.key)
                self._quoted("RangeEnd", perm.range_end)
        elif isinstance(resp, rpc.AuthRoleListResponse):
            for role in resp.roles:
                self._quoted("Roles", role)


class ProtobufPrinter(Printer):
    """``-w protobuf``: the response message, marshalled, nothing around it (as etcdctl:
    clientv3's lease answers marshal only their embedded header; its watch answers lose
    the watch ID and cancel reason)."""

    name = "protobuf"

    def _message(self, message) -> None:
        self.out.write(message.SerializeToString())

    def put(self, resp: rpc.PutResponse) -> None:
        self._message(resp)

    def get(self, resp: rpc.RangeResponse, *, value_only: bool = False) -> None:
        self._message(resp)

    count = get

    def delete(self, resp: rpc.DeleteRangeResponse) -> None:
        self._message(resp)

    def txn(self, resp: rpc.TxnResponse) -> None:
        self._message(resp)

    def watch(self, resp: rpc.WatchResponse) -> None:
        kept = rpc.WatchResponse(
            events=resp.events,
            compact_revision=resp.compact_revision,
            canceled=resp.canceled,
            created=resp.created,
        )
        kept.header.CopyFrom(resp.header)  # set even when empty, as clientv3's struct is
        self._message(kept)

    def lease_grant(self, resp: rpc.LeaseGrantResponse) -> None:
        self._message(resp.header)

    def lease_revoke(self, lease_id: int, resp: rpc.LeaseRevokeResponse) -> None:
        # clientv3's LeaseRevokeResponse has no Marshal of its own: etcdctl says so (after
        # the lease was revoked).
        raise CtlError(
            f"marshal unsupported for type clientv3.LeaseRevokeResponse "
            f"({{{_go_text(resp.header)}}})",
            EXIT_BAD_FEATURE,
        )

    def lease_time_to_live(self, resp: rpc.LeaseTimeToLiveResponse, *, keys: bool) -> None:
        self._message(resp.header)

    def lease_leases(self, resp: rpc.LeaseLeasesResponse) -> None:
        self._message(resp.header)

    def lease_keep_alive(self, resp: rpc.LeaseKeepAliveResponse) -> None:
        self._message(resp.header)

    def member_list(self, resp: rpc.MemberListResponse) -> None:
        self._message(resp)

    def member_add(self, resp: rpc.MemberAddResponse, name: str, peer_urls: Sequence[str]) -> None:
        self._message(resp)

    def member_changed(self, verb: str, member_id: int, resp) -> None:
        self._message(resp)

    def move_leader(self, leader: int, target: int, resp: rpc.MoveLeaderResponse) -> None:
        self._message(resp)

    def auth_response(self, resp) -> None:
        self._message(resp)

    def endpoint_status(self, statuses: Sequence[tuple[str, rpc.StatusResponse]]) -> None:
        self._unsupported()

    def endpoint_health(self, results: Sequence[EndpointHealth]) -> None:
        self._unsupported()

    def endpoint_hashkv(self, hashes: Sequence[tuple[str, rpc.HashKVResponse]]) -> None:
        self._unsupported()


PRINTERS: dict[str, type[Printer]] = {
    "simple": SimplePrinter,
    "json": JsonPrinter,
    "table": TablePrinter,
    "fields": FieldsPrinter,
    "protobuf": ProtobufPrinter,
}
