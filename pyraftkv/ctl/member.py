"""member list / add / remove / update / promote, and move-leader."""

from __future__ import annotations

import urllib.parse

from ..proto import rpc_pb2 as rpc
from .command import ALL_FORMATS, NO_FIELDS, command, group
from .errors import EXIT_BAD_ARGS, EXIT_ERROR, CtlError
from .flags import Flag, go_parse_int
from .invocation import Invocation

group("member", "Membership related commands")


def parse_member_id(text: str) -> int:
    """A member ID in hex, as member list prints it; CtlError if it is not one."""
    try:
        return go_parse_int(text, 16, unsigned=True)
    except ValueError as exc:
        raise CtlError(f"bad member ID arg ({exc}), expecting ID in Hex", EXIT_BAD_ARGS) from None


def parse_peer_urls(text: str) -> list[str]:
    """Comma-separated peer URLs, checked as etcd checks them; CtlError if one is bad."""
    urls = [u.strip() for u in text.split(",")]
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "unix", "unixs"):
            raise CtlError(f"URL scheme must be http, https, unix, or unixs: {url}", EXIT_ERROR)
        host, sep, port = parts.netloc.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise CtlError(f'URL address does not have the form "host:port": {url}', EXIT_ERROR)
        if parts.path not in ("", "/"):
            raise CtlError(f"URL must not contain a path: {url}", EXIT_ERROR)
    return urls


def _one_id(inv: Invocation) -> int:
    if len(inv.args) != 1:
        raise CtlError("member ID is not provided", EXIT_BAD_ARGS)
    return parse_member_id(inv.args[0])


@command(
    "member",
    "list",
    summary="Lists all members in the cluster",
    formats=ALL_FORMATS,
    description="""Lists all members in the cluster.
The simple output is: ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.""",
)
async def member_list(inv: Invocation) -> None:
    """List the members."""
    if inv.args:
        raise CtlError("member list command does not accept argument", EXIT_BAD_ARGS)
    client = await inv.client()
    inv.printer.member_list(await client.call("MemberList", rpc.MemberListRequest()))


@command(
    "member",
    "add",
    summary="Adds a member into the cluster",
    usage="<memberName> [options]",
    formats=NO_FIELDS,
    flags=(
        Flag("peer-urls", "str", "", "comma separated peer URLs for the new member."),
        Flag("learner", "bool", False, "indicates if the new member is raft learner"),
    ),
)
async def member_add(inv: Invocation) -> None:
    """Add a member (or a learner)."""
    if len(inv.args) != 1:
        raise CtlError("member name not provided", EXIT_BAD_ARGS)
    if not inv.opts.peer_urls:
        raise CtlError("member peer urls not provided", EXIT_BAD_ARGS)
    urls = parse_peer_urls(inv.opts.peer_urls)
    client = await inv.client()
    resp = await client.call(
        "MemberAdd", rpc.MemberAddRequest(peerURLs=urls, isLearner=inv.opts.learner)
    )
    inv.printer.member_add(resp, inv.args[0], urls)


@command(
    "member",
    "remove",
    summary="Removes a member from the cluster",
    usage="<memberID>",
    formats=NO_FIELDS,
)
async def member_remove(inv: Invocation) -> None:
    """Remove a member by its hex ID."""
    member_id = _one_id(inv)
    client = await inv.client()
    resp = await client.call("MemberRemove", rpc.MemberRemoveRequest(ID=member_id))
    inv.printer.member_changed("removed from", member_id, resp)


@command(
    "member",
    "update",
    summary="Updates a member in the cluster",
    usage="<memberID> [options]",
    formats=NO_FIELDS,
    flags=(Flag("peer-urls", "str", "", "comma separated peer URLs for the updated member."),),
)
async def member_update(inv: Invocation) -> None:
    """Change a member's peer URLs."""
    member_id = _one_id(inv)
    if not inv.opts.peer_urls:
        raise CtlError("member peer urls not provided", EXIT_BAD_ARGS)
    urls = parse_peer_urls(inv.opts.peer_urls)
    client = await inv.client()
    resp = await client.call("MemberUpdate", rpc.MemberUpdateRequest(ID=member_id, peerURLs=urls))
    inv.printer.member_changed("updated in", member_id, resp)


@command(
    "member",
    "promote",
    summary="Promotes a non-voting member in the cluster",
    usage="<memberID>",
    formats=NO_FIELDS,
)
async def member_promote(inv: Invocation) -> None:
    """Make a learner a voting member."""
    member_id = _one_id(inv)
    client = await inv.client()
    resp = await client.call("MemberPromote", rpc.MemberPromoteRequest(ID=member_id))
    inv.printer.member_changed("promoted in", member_id, resp)


@command(
    "move-leader",
    summary="Transfers leadership to another cluster member.",
    usage="<transferee-member-id>",
    formats=NO_FIELDS,
)
async def move_leader(inv: Invocation) -> None:
    """Ask the leader to hand leadership to another member."""
    if len(inv.args) != 1:
        raise CtlError("move-leader command needs 1 argument", EXIT_BAD_ARGS)
    try:  # etcdctl reports the bare parse error here (member remove adds its own words)
        target = go_parse_int(inv.args[0], 16, unsigned=True)
    except ValueError as exc:
        raise CtlError(str(exc), EXIT_BAD_ARGS) from None
    # The transfer must be asked of the leader: find it among --endpoints.
    leader_id, leader_endpoint = 0, ""
    for endpoint in inv.settings.endpoints:
        status = await inv.new_client([endpoint]).call("Status", rpc.StatusRequest())
        if status.leader and status.leader == status.header.member_id:
            leader_id, leader_endpoint = status.leader, endpoint
            break
    if not leader_id:
        raise CtlError(
            f"no leader endpoint given at [{' '.join(inv.settings.endpoints)}]", EXIT_BAD_ARGS
        )
    resp = await inv.new_client([leader_endpoint]).call(
        "MoveLeader", rpc.MoveLeaderRequest(targetID=target)
    )
    inv.printer.move_leader(leader_id, target, resp)
