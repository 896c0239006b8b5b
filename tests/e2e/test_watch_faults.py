"""A watch across faults: while one writer changes keys under a prefix, the member serving
the watch is partitioned away, its application process paused, then killed -9 and
restarted; the watch resumes on its own and delivers every revision once, in order."""

from __future__ import annotations

import threading
import time

from pyraftkv.client.connection import ConnectionLost
from pyraftkv.errors import ApiError

from .harness import LocalCluster, put_retrying
from .nemesis import Network, app_pid, paused


def test_watch_loses_duplicates_and_reorders_nothing_across_faults(tmp_path):
    cluster = LocalCluster(str(tmp_path), 3)
    network = Network(cluster)
    cluster.start()
    try:
        served, *others = cluster.members
        writer_client = cluster.client(others, timeout=3.0)
        start = writer_client.put("w/start", "0").header.revision
        watcher = cluster.client([served, *others], timeout=3.0)
        watch = watcher.watch("w/", prefix=True, start_revision=start + 1)
        events = []
        reader = threading.Thread(target=lambda: events.extend(watch), daemon=True)
        reader.start()

        stop = threading.Event()
        acked: list[int] = []

        def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    acked.append(writer_client.put(f"w/{n % 4}", str(n)).header.revision)
                except (ApiError, ConnectionLost):
                    time.sleep(0.05)
                time.sleep(0.005)

        writing = threading.Thread(target=write, daemon=True)
        writing.start()
        time.sleep(0.5)
        network.isolate(served)  # the watch hears nothing while the others go on
        time.sleep(1.5)
        network.heal()
        time.sleep(0.5)
        with paused(app_pid(served)):
            time.sleep(1.0)
        time.sleep(0.5)
        cluster.kill(served)  # the watch's connection dies; it resumes elsewhere
        time.sleep(1.0)
        cluster.start_member(served, wait=False)
        time.sleep(1.0)
        stop.set()
        writing.join(10)
        last = writer_client.get("w/", prefix=True).header.revision
        deadline = time.monotonic() + 20
        while (not events or events[-1].kv.mod_revision < last) and time.monotonic() < deadline:
            time.sleep(0.05)
        watch.cancel()
        revisions = [e.kv.mod_revision for e in events]
        # Only the writer writes: every revision after `start` is one event, exactly once.
        assert revisions == list(range(start + 1, last + 1)), (revisions[:5], len(revisions))
        assert set(acked) <= set(revisions)
        assert len(acked) > 100
    finally:
        cluster.stop_all()


def test_a_watch_that_requires_a_leader_moves_off_a_member_cut_off_from_the_others(net_cluster):
    """A watch made with require_leader=True on a member cut off from the others: once that
    member has known no leader for three election timeouts it ends the watch "no leader",
    and the watch resumes on a member that has one, delivering a write made meanwhile while
    the member is still cut off. A watch without it stays there, hearing nothing, and gets
    the write only once the member is back."""
    cluster, network = net_cluster
    served, *others = cluster.members
    writer = cluster.client(others, timeout=5.0)
    writer.put("rl/start", "0")
    moving = cluster.client([served, *others], timeout=10.0).watch(
        "rl/", prefix=True, require_leader=True
    )
    staying = cluster.client([served], timeout=10.0).watch("rl/", prefix=True)
    seen: dict[str, list[bytes]] = {"moving": [], "staying": []}
    for name, watch in (("moving", moving), ("staying", staying)):
        threading.Thread(
            target=lambda n=name, w=watch: seen[n].extend(e.kv.key for e in w), daemon=True
        ).start()
    network.isolate(served)
    put_retrying(writer, "rl/meanwhile", "1")
    deadline = time.monotonic() + 20
    while b"rl/meanwhile" not in seen["moving"]:
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    assert b"rl/meanwhile" not in seen["staying"]  # still cut off: not on its member
    network.heal()
    while b"rl/meanwhile" not in seen["staying"]:
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    assert seen["moving"].count(b"rl/meanwhile") == 1  # once, though it moved
    moving.cancel()
    staying.cancel()
