"""The configuration watcher on a real 3-member cluster: current values, then every
change once and in order, across a leader change and across compacted history."""

import os
import signal
import threading
import time

from pyraftkv.client.connection import ConnectionLost
from pyraftkv.errors import ApiError


def write_config(cluster, stop: threading.Event, acked: list) -> None:
    """Put /config/k<i % 5> = <i> one after another; a write whose outcome is unknown
    (cut by the leader's death) is put again, so every value is in the store."""
    with cluster.client(timeout=15) as client:
        i = 0
        while not stop.is_set():
            key, value = f"/config/k{i % 5}", str(i)
            try:
                revision = client.put(key, value).header.revision
            except (ApiError, ConnectionLost):
                time.sleep(0.05)
                continue
            acked.append((key.encode(), value.encode(), revision))
            i += 1


def history(client, start_revision: int, end_revision: int) -> list[tuple]:
    """Every change under /config/ in (start, end], read back through a watch."""
    watch = client.watch("/config/", prefix=True, start_revision=start_revision + 1)
    seen = []
    while not seen or seen[-1][2] < end_revision:
        event = watch.get(10)
        value = event.kv.value if event.type == 0 else None
        seen.append((event.kv.key, value, event.kv.mod_revision))
    watch.cancel()
    return seen


def test_every_change_once_and_in_order_across_a_leader_change(cluster):
    leader = cluster.wait_leader()
    with cluster.client() as setup:
        setup.put("/config/k0", "initial")
        setup.put("/config/other", "untouched")
    # The watcher's client talks to the leader first, so killing it cuts the watch.
    endpoints = [leader] + [m for m in cluster.members if m is not leader]
    client = cluster.client(endpoints)
    config = client.config_watcher("/config/", prefix=True).start()
    assert config.values == {b"/config/k0": b"initial", b"/config/other": b"untouched"}
    start_revision = config.revision
    seen_by_callback = []
    config.on_change(lambda change: seen_by_callback.append(change))
    changes = config.changes()

    acked: list = []
    stop = threading.Event()
    writer = threading.Thread(target=write_config, args=(cluster, stop, acked))
    writer.start()
    try:
        time.sleep(1.0)
        assert client._client._connection.endpoint == leader.endpoint
        cluster.kill(leader)
        cluster.wait_leader(among=[m for m in cluster.members if m is not leader])
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join()
    assert len(acked) > 50
    last_revision = acked[-1][2]

    seen = []
    while not seen or seen[-1].revision < last_revision:
        seen.append(changes.get(10))
    got = [(c.key, c.value, c.revision) for c in seen]
    survivors = [m for m in cluster.members if m is not leader]
    with cluster.client(survivors) as reader:
        assert got == history(reader, start_revision, last_revision)
        current = {kv.key: kv.value for kv in reader.get("/config/", prefix=True).kvs}
    revisions = [c.revision for c in seen]
    assert revisions == sorted(set(revisions))  # in order, each once
    acked_set = set(acked)
    assert [c for c in got if c in acked_set] == acked  # every acknowledged write, in order
    assert config.values == current
    deadline = time.monotonic() + 5
    while len(seen_by_callback) < len(seen):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen_by_callback[: len(seen)] == seen
    config.close()


def test_a_watcher_cut_off_past_a_compaction_reads_again_and_reports_the_difference(cluster):
    leader = cluster.wait_leader()
    stalled = next(m for m in cluster.members if m is not leader)
    others = [m for m in cluster.members if m is not stalled]
    writer = cluster.client(others)
    writer.put("/config/keep", "1")
    writer.put("/config/drop", "1")
    writer.put("/config/change", "old")
    client = cluster.client([stalled] + others)
    config = client.config_watcher("/config/", prefix=True).start()
    changes = config.changes()

    os.kill(stalled.process.pid, signal.SIGSTOP)  # the watch stalls, the cluster goes on
    try:
        writer.delete("/config/drop")
        writer.put("/config/change", "step")
        writer.put("/config/change", "new")
        writer.put("/config/added", "yes")
        revision = writer.put("/other", "x").header.revision
        writer.compact(revision)
    finally:
        cluster.kill(stalled)  # the watch resumes elsewhere, below the compaction
    got = sorted((c.key, c.value) for c in [changes.get(15) for _ in range(3)])
    assert got == [
        (b"/config/added", b"yes"),
        (b"/config/change", b"new"),  # the intermediate value is gone with the history
        (b"/config/drop", None),
    ]
    assert config.values == {
        b"/config/keep": b"1",
        b"/config/change": b"new",
        b"/config/added": b"yes",
    }
    writer.put("/config/keep", "2")  # and it follows live changes again
    after = changes.get(10)
    assert (after.key, after.value, after.prev_value) == (b"/config/keep", b"2", b"1")
    config.close()


def test_a_watcher_on_a_member_cut_off_from_the_others_moves_to_one_that_is_not(net_cluster):
    """The configuration watcher's watch requires a leader: when its member is cut off from
    the others (and so loses its leader), the watcher moves on to a member with one and
    gets a change made meanwhile, while its first member is still cut off."""
    cluster, network = net_cluster
    served, *others = cluster.members
    writer = cluster.client(others, timeout=5.0)
    writer.put("/config/flag", "off")
    client = cluster.client([served, *others], timeout=10.0)
    config = client.config_watcher("/config/", prefix=True).start()
    changes = config.changes()
    network.isolate(served)
    deadline = time.monotonic() + 10
    while True:  # a leader among the others first (served may have led)
        try:
            writer.put("/config/flag", "on")
            break
        except (ApiError, ConnectionLost):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    change = changes.get(20)
    assert (change.key, change.value, change.prev_value) == (b"/config/flag", b"on", b"off")
    assert config.values == {b"/config/flag": b"on"}
    config.close()
