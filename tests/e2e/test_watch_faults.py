"""A watch across faults: while one writer changes keys under a prefix, the member serving
the watch is partitioned away, its application process paused, then killed -9 and
restarted; the watch resumes on its own and delivers every revision once, in order."""

from __future__ import annotations

import threading
import time

from pyraftkv.client.connection import ConnectionLost
from pyraftkv.errors import ApiError

from .harness import LocalCluster
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
