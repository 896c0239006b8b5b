"""Watchers on a real cluster: every event once, in order, across failures."""

import contextlib
import queue
import threading
import time

from pyraftkv.errors import Compacted

from .harness import put_retrying


def collect(watch, events, stop):
    """Pull events from a blocking watch iterator into a list until told to stop."""
    while not stop.is_set():
        try:
            events.append(watch.get(timeout=0.2))
        except queue.Empty:
            continue
        except StopIteration:
            return


def history(client, prefix, start):
    """The prefix's events from ``start`` on, replayed from the store's history."""
    w = client.watch(prefix, prefix=True, start_revision=start)
    events = []
    latest = client.get(prefix, prefix=True).header.revision
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            events.append(w.get(timeout=0.5))
        except queue.Empty:
            if not events or events[-1].kv.mod_revision >= latest:
                break
    w.cancel()
    return [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events]


def test_watch_replays_history_then_streams_live_events(cluster):
    with cluster.client() as c:
        first = c.put("w/a", "1").header.revision
        c.put("w/b", "2")
        c.delete("w/a")
        w = c.watch("w/", prefix=True, start_revision=first, prev_kv=True)
        seen = [w.get(timeout=5) for _ in range(3)]
        c.put("w/c", "3")
        seen.append(w.get(timeout=5))
        w.cancel()
    assert [(e.type, e.kv.key) for e in seen] == [
        (0, b"w/a"),
        (0, b"w/b"),
        (1, b"w/a"),
        (0, b"w/c"),
    ]
    assert seen[2].prev_kv.value == b"1"  # prev_kv of the delete
    assert [e.kv.mod_revision for e in seen] == sorted({e.kv.mod_revision for e in seen})


def test_watchers_see_every_event_once_in_order_across_leader_kill_and_reconnect(cluster):
    leader = cluster.wait_leader()
    # The watcher talks to the leader first, so killing it forces a reconnect elsewhere.
    order = [leader] + [m for m in cluster.members if m is not leader]
    watch_client = cluster.client(order, timeout=15)
    start = watch_client.put("ev/start", "0").header.revision
    watch = watch_client.watch("ev/", prefix=True, start_revision=start + 1)
    events: list = []
    stop = threading.Event()
    puller = threading.Thread(target=collect, args=(watch, events, stop))
    puller.start()

    acked = []
    writer = cluster.client(order[1:], timeout=15)
    for i in range(60):
        if i == 20:
            cluster.kill(leader)
        with contextlib.suppress(Exception):  # a write caught by the failover is not acked
            acked.append(writer.put(f"ev/k{i}", str(i)).header.revision)
    cluster.start_member(leader)
    time.sleep(1.0)
    final = put_retrying(writer, "ev/end", "x").header.revision
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (not events or events[-1].kv.mod_revision < final):
        time.sleep(0.05)
    stop.set()
    puller.join()
    watch.cancel()

    revisions = [e.kv.mod_revision for e in events]
    assert revisions == sorted(revisions), "events out of order"
    assert len(revisions) == len(set(revisions)), "an event was delivered twice"
    assert set(acked) <= set(revisions), "an acknowledged write was never seen"
    # Nothing was skipped either: the stream equals the store's own history.
    got = [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events]
    assert got == history(writer, "ev/", start + 1)


def test_watch_from_a_compacted_revision_is_refused_with_the_compaction_point(cluster):
    with cluster.client() as c:
        for i in range(5):
            c.put("cw", str(i))
        latest = c.get("cw").header.revision
        c.compact(latest - 1)
        try:
            w = c.watch("cw", start_revision=2)
            w.get(timeout=5)
            raise AssertionError("watching a compacted revision was accepted")
        except Compacted as exc:
            assert exc.compact_revision == latest - 1
        # From the compaction point on it works.
        w = c.watch("cw", start_revision=latest - 1)
        assert w.get(timeout=5).kv.mod_revision == latest - 1
        w.cancel()


def test_progress_notifications_reach_quiet_watchers_that_asked(make_cluster):
    import asyncio

    from pyraftkv import AsyncClient

    cluster = make_cluster(1, extra_args=["--experimental-watch-progress-notify-interval", "300ms"])
    cluster.start()

    async def scenario():
        async with AsyncClient([cluster.members[0].endpoint]) as client:
            asked = await client.watch("p/", prefix=True, progress_notify=True)
            plain = await client.watch("p/", prefix=True)
            revision = (await client.put("other", "x")).header.revision
            replies = asked.responses()

            async def next_where(wanted):
                """The next reply passing `wanted`; the ones before it must be bare progress."""
                while True:
                    reply = await asyncio.wait_for(anext(replies), 5)
                    if wanted(reply):
                        return reply
                    assert not reply.events, reply

            # A progress reply may have gone out before the put applied: wait for a later one.
            progress = await next_where(lambda r: r.header.revision >= revision)
            await client.put("p/a", "1")
            event = await next_where(lambda r: r.events)
            plain_first = await asyncio.wait_for(anext(plain.responses()), 5)
            await asyncio.sleep(1.0)  # quiet again: more progress, nothing for the other
            later = await asyncio.wait_for(anext(replies), 5)
            await asked.cancel()
            await plain.cancel()
            return asked.watch_id, revision, progress, event, plain_first, later

    watch_id, revision, progress, event, plain_first, later = asyncio.run(scenario())
    assert not progress.events and progress.watch_id == watch_id
    assert progress.header.revision >= revision
    assert [e.kv.key for e in event.events] == [b"p/a"]
    assert [e.kv.key for e in plain_first.events] == [b"p/a"]  # no progress replies first
    assert not later.events and later.header.revision == event.header.revision


def test_periodic_auto_compaction_drops_history_older_than_the_retention(make_cluster):
    from pyraftkv.errors import Compacted as CompactedError

    cluster = make_cluster(
        1, extra_args=["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"]
    )
    cluster.start()
    with cluster.client() as client:
        first = client.put("ac/k", "0").header.revision
        deadline = time.monotonic() + 15
        while True:
            latest = client.put("ac/k", "more").header.revision
            try:
                client.get("ac/k", revision=first)
            except CompactedError:
                break
            assert time.monotonic() < deadline, "no auto-compaction within 15 s"
            time.sleep(0.2)
        # History within the retention is still there, the current value too.
        assert client.get("ac/k", revision=latest).kvs[0].value == b"more"
    assert "auto-compacted to revision" in cluster.members[0].log_text()


def test_watchers_of_one_range_from_now_share_one_server_watch(make_cluster):
    import asyncio

    from pyraftkv import AsyncClient

    from .test_metrics import metrics, with_metrics

    cluster = make_cluster(1)
    port = with_metrics(cluster)
    cluster.start()
    member = cluster.members[0]

    def server_watches() -> float:
        return metrics(port)["etcd_debugging_mvcc_watcher_total"]

    async def keys(watchers) -> list[bytes]:
        return [(await asyncio.wait_for(anext(w), 5)).kv.key for w in watchers]

    async def scenario():
        async with AsyncClient([member.endpoint], timeout=30) as client:
            sharers = [await client.watch("s/", prefix=True) for _ in range(3)]
            own = await client.watch("s/", prefix=True, start_revision=1)  # history: its own
            other = await client.watch("s/", prefix=True, prev_kv=True)  # other options
            watching = await asyncio.to_thread(server_watches)
            await client.put("s/a", "1")
            first = await keys(sharers + [own, other])
            await sharers[0].cancel()
            late = await client.watch("s/", prefix=True)  # joins the running server watch
            await client.put("s/b", "2")
            second = await keys(sharers[1:] + [late])
            ended = [e async for e in sharers[0]]
            # The member restarts: the shared watch resumes after the last revision seen.
            await asyncio.to_thread(cluster.kill, member)
            await asyncio.to_thread(cluster.start_member, member)
            await client.put("s/c", "3")
            third = await keys(sharers[1:] + [late])
            for watcher in sharers[1:] + [late, own, other]:
                await watcher.cancel()
            return watching, first, second, ended, third

    watching, first, second, ended, third = asyncio.run(scenario())
    assert watching == 3  # three sharers, one with a start revision, one with prev_kv
    assert first == [b"s/a"] * 5
    assert second == [b"s/b"] * 3  # the late joiner starts at the shared watch's position
    assert ended == []  # a canceled sharer's iteration ends; the others go on
    assert third == [b"s/c"] * 3
    deadline = time.monotonic() + 10
    while server_watches() != 0:  # the last sharer leaving ends the server watch
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_watch_callbacks_get_each_event_once_in_order_and_the_end(make_cluster):
    """Watcher.on_events: events that arrived before are handed over at once, then each
    reply's events as they come, beside an iterating sharer of the same server watch; a
    callback that raises does not stop the others; on_end says None on cancel and why a
    watch ended when no member takes it back."""
    import asyncio

    from pyraftkv import AsyncClient
    from pyraftkv.client.connection import ConnectionLost
    from pyraftkv.client.requests import Op as TxnOp

    cluster = make_cluster(1)
    cluster.start()
    member = cluster.members[0]

    async def scenario():
        async with AsyncClient([member.endpoint], timeout=2) as client:
            called, iterating, failing, lasting = [
                await client.watch("cb/", prefix=True) for _ in range(4)
            ]
            got, ends, lasting_ends, failures = [], [], [], []

            def fail(events) -> None:
                failures.append(len(events))
                raise RuntimeError("a callback that fails")

            await client.put("cb/a", "1")
            first = await asyncio.wait_for(anext(iterating), 5)  # so `called` holds it too
            called.on_events(lambda events: got.extend(e.kv.value for e in events), ends.append)
            early = list(got)
            failing.on_events(fail)
            lasting.on_events(lambda events: None, lasting_ends.append)
            await client.put("cb/b", "2")
            await client.txn(success=[TxnOp.put("cb/c", "3"), TxnOp.put("cb/d", "4")])
            later = [(await asyncio.wait_for(anext(iterating), 5)).kv.value for _ in range(3)]
            await called.cancel()
            await client.put("cb/e", "5")
            await asyncio.wait_for(anext(iterating), 5)
            await asyncio.to_thread(cluster.kill, member)
            for _ in range(100):  # the watch gives up after the client's timeout (2 s)
                if lasting_ends:
                    break
                await asyncio.sleep(0.1)
            return first.kv.value, early, later, got, ends, failures, lasting_ends

    first, early, later, got, ends, failures, lasting_ends = asyncio.run(scenario())
    assert first == b"1" and early == [b"1"]
    assert later == [b"2", b"3", b"4"]
    assert got == [b"1", b"2", b"3", b"4"]  # each once, in order, nothing after cancel
    assert ends == [None]
    assert failures == [1, 1, 2, 1]  # (the txn's two events in one reply)
    assert len(lasting_ends) == 1 and isinstance(lasting_ends[0], ConnectionLost)
