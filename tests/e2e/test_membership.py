"""Membership changes on a running cluster: add a member that joins, remove one, move one
to new peer URLs."""

import pytest

from pyraftkv import Client, errors
from pyraftkv.errors import ApiError
from pyraftkv.proto import rpc_pb2 as rpc

from .harness import Member, free_ports, put_retrying, wait_for


def test_a_member_added_then_started_with_existing_state_joins_and_catches_up(cluster):
    with cluster.client() as c:
        for i in range(20):
            c.put(f"j{i:02d}", str(i))
        client_port, peer_port = free_ports(2)
        request = rpc.MemberAddRequest(peerURLs=[f"http://127.0.0.1:{peer_port}"])
        added = None

        def add() -> bool:  # refused, as etcd's is, until the leader heard every voter
            nonlocal added
            try:
                added = c.call("MemberAdd", request)
            except errors.UnhealthyCluster:
                return False
            return True

        wait_for(add, "the leader to hear from every voter")
    assert len(added.members) == 4 and added.member.ID
    assert list(added.member.peerURLs) == [f"http://127.0.0.1:{peer_port}"]

    newcomer = Member(
        "m4",
        client_port,
        peer_port,
        str(cluster.members[0].data_dir) + "-m4",
        ["--initial-cluster-state", "existing"],
    )
    cluster.initial_cluster += f",m4=http://127.0.0.1:{peer_port}"
    cluster.members.append(newcomer)
    cluster.start_member(newcomer)
    assert cluster.status(newcomer).header.member_id == added.member.ID
    cluster.wait_applied(newcomer, cluster.status(cluster.members[0]).raftIndex)
    with Client([newcomer.endpoint]) as c:
        assert c.get("j", prefix=True, serializable=True).count == 20
        c.put("from-newcomer", "hi")
    with cluster.client(cluster.members[:1]) as c:
        assert c.get("from-newcomer").kvs[0].value == b"hi"
        assert len(c.member_list().members) == 4


def test_a_member_not_added_first_is_told_so(cluster, tmp_path):
    client_port, peer_port = free_ports(2)
    stranger = Member(
        "m9",
        client_port,
        peer_port,
        str(tmp_path / "m9.pyraftkv"),
        ["--initial-cluster-state", "existing"],
    )
    cluster.initial_cluster += f",m9=http://127.0.0.1:{peer_port}"
    cluster.start_member(stranger, wait=False)
    assert stranger.process.wait(30) == 2
    assert "is not in cluster" in stranger.log_text()


def test_removing_a_member_takes_it_out_of_the_member_list(cluster):
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    follower_id = cluster.status(follower).header.member_id
    with cluster.client([leader]) as c:
        remaining = c.call("MemberRemove", rpc.MemberRemoveRequest(ID=follower_id))
        assert follower_id not in [m.ID for m in remaining.members]
        assert len(c.member_list().members) == 2
        c.put("after-remove", "ok")  # two voters left: still a majority
        with pytest.raises(ApiError, match="member not found"):
            c.call("MemberRemove", rpc.MemberRemoveRequest(ID=follower_id))


def test_member_update_moves_a_member_to_new_peer_urls(cluster):
    """The change goes through the log; the others dial the new address, so once the moved
    member is restarted there, it votes again (the third member is stopped, so nothing
    commits without it)."""
    leader = cluster.wait_leader()
    moved, third = [m for m in cluster.members if m is not leader]
    moved_id = cluster.status(moved).header.member_id
    new_url = f"http://127.0.0.1:{free_ports(1)[0]}"
    with cluster.client([leader]) as c:
        with pytest.raises(errors.MemberNotFound, match="^etcdserver: member not found$"):
            c.call("MemberUpdate", rpc.MemberUpdateRequest(ID=0x1234, peerURLs=[new_url]))
        taken = [f"http://{leader.peer_url_host}"]
        with pytest.raises(errors.PeerUrlExists, match="^etcdserver: Peer URLs already exists$"):
            c.call("MemberUpdate", rpc.MemberUpdateRequest(ID=moved_id, peerURLs=taken))
        with pytest.raises(ApiError, match="given member URLs are invalid"):
            c.call("MemberUpdate", rpc.MemberUpdateRequest(ID=moved_id, peerURLs=["nonsense"]))
        updated = c.call("MemberUpdate", rpc.MemberUpdateRequest(ID=moved_id, peerURLs=[new_url]))
        assert [list(m.peerURLs) for m in updated.members if moved_id == m.ID] == [[new_url]]
        assert len(updated.members) == 3 and not any(m.isLearner for m in updated.members)
    cluster.kill(moved)
    # Restarted with every peer URL flag saying where it is now, as etcd's docs say.
    old_url = f"http://{moved.peer_url_host}"
    moved.peer_port = int(new_url.rsplit(":", 1)[1])
    cluster.initial_cluster = cluster.initial_cluster.replace(old_url, new_url)
    cluster.start_member(moved)
    assert "restarting with new peer URLs" in moved.log_text()
    cluster.kill(third)
    with cluster.client([leader]) as c:
        put_retrying(c, "after-move", "committed")
        listed = {m.ID: list(m.peerURLs) for m in c.member_list().members}
        assert listed[moved_id] == [new_url]
    cluster.wait_applied(moved, cluster.status(leader).raftIndex)
    with Client([moved.endpoint]) as c:
        assert c.get("after-move", serializable=True).kvs[0].value == b"committed"
        assert [list(m.peerURLs) for m in c.member_list().members if moved_id == m.ID] == [
            [new_url]
        ]


def test_a_follower_passing_a_member_change_on_lists_it_when_it_answers(make_cluster):
    """gRPC and the JSON gateway: a follower passes MemberAdd / MemberRemove to the leader
    and answers once it has applied the change itself, so the very next MemberList it
    answers shows it (as etcd's proposing member does), even with the leader's messages
    to it 300 ms late."""
    import grpc

    from .gateway_http import call
    from .nemesis import Network

    cluster = make_cluster(3)
    network = Network(cluster)
    cluster.start()
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    network.delay(leader, follower, 300)

    def grpc_call(name: str, request, response_type):
        with grpc.insecure_channel(follower.endpoint) as channel:
            method = channel.unary_unary(
                f"/etcdserverpb.Cluster/{name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_type.FromString,
            )
            return method(request, timeout=10)

    for round_ in range(2):
        url = f"http://127.0.0.1:{free_ports(1)[0]}"
        added = grpc_call(
            "MemberAdd", rpc.MemberAddRequest(peerURLs=[url], isLearner=True), rpc.MemberAddResponse
        )
        listed = grpc_call("MemberList", rpc.MemberListRequest(), rpc.MemberListResponse)
        assert added.member.ID in [m.ID for m in listed.members], round_
        grpc_call(
            "MemberRemove", rpc.MemberRemoveRequest(ID=added.member.ID), rpc.MemberRemoveResponse
        )
        listed = grpc_call("MemberList", rpc.MemberListRequest(), rpc.MemberListResponse)
        assert added.member.ID not in [m.ID for m in listed.members], round_

        url = f"http://127.0.0.1:{free_ports(1)[0]}"
        answer = call(
            follower.endpoint, "/v3/cluster/member/add", {"peerURLs": [url], "isLearner": True}
        )
        assert answer.status == 200, answer
        new_id = int(answer.json["member"]["ID"])
        listed = call(follower.endpoint, "/v3/cluster/member/list", {}).json
        assert new_id in [int(m["ID"]) for m in listed["members"]], round_
        answer = call(follower.endpoint, "/v3/cluster/member/remove", {"ID": str(new_id)})
        assert answer.status == 200, answer
        listed = call(follower.endpoint, "/v3/cluster/member/list", {}).json
        assert new_id not in [int(m["ID"]) for m in listed["members"]], round_
