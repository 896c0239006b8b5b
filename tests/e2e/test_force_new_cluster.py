"""--force-new-cluster: a member of a cluster that lost its quorum for good restarts from its
data as a single-member cluster, keeping every committed write."""

from __future__ import annotations

from .test_alarms import wait_for


def test_a_survivor_restarts_as_a_single_member_cluster(make_cluster):
    cluster = make_cluster(3)
    cluster.start()
    with cluster.client() as client:
        for i in range(20):
            client.put(f"k{i}", f"v{i}")
        revision = client.get("k19").header.revision
    survivor = cluster.members[0]
    wait_for(lambda: cluster.status(survivor).header.revision >= revision)
    for member in cluster.members:
        cluster.kill(member)  # all at once: no leader hand-off, no clean stop

    survivor.extra_args.append("--force-new-cluster")
    cluster.start_member(survivor)
    with cluster.client([survivor]) as client:
        wait_for(lambda: len(client.member_list().members) == 1)
        (only,) = client.member_list().members
        assert client.status().header.member_id == only.ID and only.name == survivor.name
        got = client.get("k", prefix=True)
        assert got.count == 20 and got.header.revision == revision
        client.put("after", "forced")  # a quorum of one
    assert "force-new-cluster: this member is now the only member" in survivor.log_text()

    # Restarting it again with the flag still given removes nothing more.
    assert cluster.terminate(survivor) == 0
    cluster.start_member(survivor)
    with cluster.client([survivor]) as client:
        assert client.get("after").kvs[0].value == b"forced"
        assert len(client.member_list().members) == 1
