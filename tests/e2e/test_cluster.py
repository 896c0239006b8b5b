"""A real 3-member cluster on loopback: elections, writes through any member, failover."""

import threading
import time


def test_three_members_elect_one_leader_and_take_writes_through_any_member(cluster):
    leader = cluster.wait_leader()
    statuses = [cluster.status(m) for m in cluster.members]
    assert {s.leader for s in statuses} == {
        statuses[cluster.members.index(leader)].header.member_id
    }
    for i, member in enumerate(cluster.members):
        with cluster.client([member]) as c:
            assert c.put(f"key{i}", f"value{i}").header.revision > 1
    for member in cluster.members:
        with cluster.client([member]) as c:
            got = c.get("key", prefix=True)
            assert [(kv.key, kv.value) for kv in got.kvs] == [
                (b"key0", b"value0"),
                (b"key1", b"value1"),
                (b"key2", b"value2"),
            ]


def test_linearizable_read_on_one_member_sees_a_write_made_on_another(cluster):
    a, b, c = cluster.members
    writer, reader = cluster.client([a]), cluster.client([c])
    for i in range(30):
        put = writer.put("lin", str(i))
        got = reader.get("lin")  # linearizable by default: ReadIndex through the leader
        assert got.kvs[0].value == str(i).encode()
        assert got.header.revision >= put.header.revision


def test_member_list_names_every_member_with_its_urls(cluster):
    cluster.wait_published(cluster.members[0])
    with cluster.client([cluster.members[0]]) as c:
        members = c.member_list().members
    assert sorted(m.name for m in members) == ["m1", "m2", "m3"]
    by_name = {m.name: m for m in members}
    for member in cluster.members:
        assert list(by_name[member.name].clientURLs) == [f"http://{member.endpoint}"]
        assert list(by_name[member.name].peerURLs) == [f"http://127.0.0.1:{member.peer_port}"]


def test_kill_9_of_the_leader_loses_no_acknowledged_write_and_the_member_catches_up(cluster):
    acked = {}
    with cluster.client() as c:
        for i in range(50):
            acked[f"a{i:03d}"] = c.put(f"a{i:03d}", f"v{i}").header.revision
    leader = cluster.wait_leader()
    cluster.kill(leader)
    survivors = [m for m in cluster.members if m is not leader]
    new_leader = cluster.wait_leader(among=survivors)
    assert new_leader is not leader
    with cluster.client(survivors) as c:
        for i in range(50, 100):
            acked[f"a{i:03d}"] = c.put(f"a{i:03d}", f"v{i}").header.revision
        got = {kv.key.decode(): kv.value for kv in c.get("a", prefix=True).kvs}
    assert got == {k: f"v{int(k[1:])}".encode() for k in acked}
    cluster.start_member(leader)
    with cluster.client(survivors) as c:
        target = c.status().raftIndex
    cluster.wait_applied(leader, target)
    with cluster.client([leader]) as c:
        local = c.get("a", prefix=True, serializable=True)
    assert {kv.key.decode() for kv in local.kvs} == set(acked)


def test_the_whole_cluster_restarted_from_disk_keeps_every_acknowledged_write(cluster):
    with cluster.client() as c:
        for i in range(40):
            c.put(f"d{i:02d}", f"{i}")
        c.delete("d00")
        revision = c.get("d", prefix=True).header.revision
    for member in cluster.members:
        cluster.kill(member)
    cluster.start()
    with cluster.client() as c:
        got = c.get("d", prefix=True)
        assert [kv.key for kv in got.kvs] == [f"d{i:02d}".encode() for i in range(1, 40)]
        assert got.header.revision == revision
        old = c.get("d00", revision=revision - 1)
        assert old.kvs[0].value == b"0"


def test_sigterm_on_the_leader_hands_over_leadership_and_exits_zero(cluster):
    leader = cluster.wait_leader()
    with cluster.client() as c:
        c.put("before", "stop")
    assert cluster.terminate(leader) == 0
    assert "transferring leadership" in leader.log_text()
    survivors = [m for m in cluster.members if m is not leader]
    cluster.wait_leader(among=survivors, timeout=5)
    with cluster.client(survivors) as c:
        assert c.get("before").kvs[0].value == b"stop"
    cluster.start_member(leader)
    with cluster.client([leader]) as c:
        assert c.get("before").kvs[0].value == b"stop"


def write_until_stopped(cluster, prefix: str, stop: threading.Event, acked: dict) -> None:
    """Put prefix-keys one after another; record each write the cluster acknowledged."""
    with cluster.client(timeout=15) as c:
        i = 0
        while not stop.is_set():
            key, value = f"{prefix}k{i}", f"{i}"
            try:
                c.put(key, value)
            except Exception:  # not acknowledged: it may or may not have been applied
                time.sleep(0.05)
                continue
            acked[key] = value  # dict assignment is atomic under the GIL
            i += 1


def test_kill_9_under_concurrent_write_load_loses_no_acknowledged_write(cluster):
    for round_ in range(3):
        acked: dict[str, str] = {}
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=write_until_stopped, args=(cluster, f"r{round_}w{n}", stop, acked)
            )
            for n in range(4)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)
        victim = cluster.wait_leader()
        cluster.kill(victim)
        time.sleep(1.5)
        cluster.start_member(victim, wait=False)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        cluster.wait_serving(victim)
        cluster.wait_leader()
        with cluster.client() as c:
            got = {
                kv.key.decode(): kv.value.decode() for kv in c.get(f"r{round_}", prefix=True).kvs
            }
        assert len(acked) > 20
        missing = {k for k in acked if got.get(k) != acked[k]}
        assert not missing, f"round {round_}: acknowledged writes lost: {sorted(missing)[:10]}"


def test_values_near_the_request_limit_replicate_to_every_member(cluster):
    big = bytes(range(256)) * (1400 * 1024 // 256)  # 1.4 MiB, under the 1.5 MiB limit
    with cluster.client() as c:
        for i in range(3):
            c.put(f"big{i}", big[i:] + big[:i])
    for member in cluster.members:
        with cluster.client([member]) as c:
            got = c.get("big", prefix=True)
            assert [kv.value for kv in got.kvs] == [big[i:] + big[:i] for i in range(3)]


def test_members_starting_together_skip_most_of_the_first_election_timeout(make_cluster):
    """--initial-election-tick-advance (etcd's default): once a peer is connected, all but
    two ticks of the first election timeout are skipped; =false keeps the whole timeout."""
    ticks = 20  # 2 s at a 100 ms heartbeat
    timing = ["--heartbeat-interval", "100", "--election-timeout", str(ticks * 100)]
    advanced = make_cluster(3, extra_args=timing)
    advanced.start()
    # A member that hears the new leader before any of its own links is up has nothing to
    # skip; the one elected must have skipped (else the election takes the whole 4 s).
    leader = advanced.wait_leader()
    assert f"advanced {ticks - 2} election ticks" in leader.log_text()
    with advanced.client() as c:
        c.put("k", "v")
        assert c.get("k").kvs[0].value == b"v"
    for member in advanced.members:
        advanced.kill(member)
    before = {m.name: m.log_text().count("election ticks") for m in advanced.members}
    advanced.start()  # a whole-cluster restart advances again
    leader = advanced.wait_leader()
    assert leader.log_text().count("election ticks") == before[leader.name] + 1

    kept = make_cluster(3, extra_args=[*timing, "--initial-election-tick-advance=false"])
    kept.start()
    with kept.client() as c:
        assert c.get("k").count == 0
    assert not any("election ticks" in m.log_text() for m in kept.members)


def test_status_raft_index_follows_every_commit(cluster):
    """Status's raftIndex is the member's commit index: after each acknowledged put the
    leader's is at least its applied index, which moved past the index before the put."""
    leader = cluster.wait_leader()
    with cluster.client([leader]) as client:
        for i in range(5):
            before = cluster.status(leader)
            client.put(f"status/{i}", "x")
            after = cluster.status(leader)
            assert after.raftAppliedIndex > before.raftAppliedIndex
            assert after.raftIndex >= after.raftAppliedIndex, (i, after)
