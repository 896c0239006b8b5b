"""A member publishes its name and client URLs through the log once it sees a leader. A
publish lost on the way (here: everything the member sends its peers dropped until just
after it saw the leader) is sent again within a few seconds, even when nothing else
happens in the cluster afterwards."""

from __future__ import annotations

from .harness import LocalCluster, wait_for
from .nemesis import Network


def test_a_lost_publish_is_sent_again_on_an_idle_cluster(tmp_path):
    cluster = LocalCluster(str(tmp_path), 3)
    network = Network(cluster)
    first, second, third = cluster.members
    try:
        for member in (first, second):
            cluster.start_member(member, wait=False)
        cluster.wait_leader(among=[first, second])
        network.cut(third, first)
        network.cut(third, second)
        cluster.start_member(third, wait=False)
        wait_for(lambda: getattr(cluster.status(third, 0.5), "leader", 0), "a leader heard of")
        network.heal()  # its first publish was dropped on the way
        cluster.wait_published(first, timeout=15)
    finally:
        cluster.stop_all()
