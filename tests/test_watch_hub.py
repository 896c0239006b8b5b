"""The watch hub on a real MVCC store: routing, filters, catch-up, slow clients, compaction."""

import pytest

from pyraftkv.mvcc import MVCCStore
from pyraftkv.node import watch_hub
from pyraftkv.node.watch_hub import Watcher, WatchHub
from pyraftkv.proto import rpc_pb2 as rpc


class Sink:
    """Collects the WatchResponses a watcher would send to its client."""

    def __init__(self):
        self.responses: list[rpc.WatchResponse] = []
        self.backlog = 0

    def send_message(self, body: bytes) -> None:
        self.responses.append(rpc.WatchResponse.FromString(body))

    def backlog_bytes(self) -> int:
        return self.backlog

    def events(self):
        return [(e.type, e.kv.key, e.kv.mod_revision) for r in self.responses for e in r.events]


@pytest.fixture
def store(tmp_path):
    with MVCCStore(str(tmp_path / "db")) as s:
        yield s


@pytest.fixture
def hub(store):
    return WatchHub(store, lambda revision: rpc.ResponseHeader(revision=revision))


def apply(store, hub, *ops):
    """Apply puts ("put", key) and deletes ("del", key) as one batch and notify the hub."""
    events = []
    with store.write_batch(store.applied_index + 1) as batch:
        for op, key in ops:
            if op == "put":
                events += batch.put(rpc.PutRequest(key=key, value=b"v" + key))[1]
            else:
                events += batch.delete_range(rpc.DeleteRangeRequest(key=key))[1]
    hub.notify(events, store.revision)


def watch(hub, store, key, range_end=b"", start=0, **options):
    sink = Sink()
    create = rpc.WatchCreateRequest(key=key, range_end=range_end, start_revision=start, **options)
    watcher = Watcher(1, sink, create, start or store.revision + 1)
    hub.add(watcher)
    return watcher, sink


def test_events_reach_exactly_the_watchers_whose_range_holds_the_key(store, hub):
    _, single = watch(hub, store, b"a")
    _, prefix = watch(hub, store, b"p/", b"p0")
    _, from_key = watch(hub, store, b"m", b"\0")
    apply(store, hub, ("put", b"a"), ("put", b"p/1"), ("put", b"b"), ("put", b"z"))
    assert single.events() == [(0, b"a", 2)]
    assert prefix.events() == [(0, b"p/1", 3)]
    assert from_key.events() == [(0, b"p/1", 3), (0, b"z", 5)]


def test_filters_and_prev_kv(store, hub):
    apply(store, hub, ("put", b"k"))
    _, no_put = watch(hub, store, b"k", filters=[rpc.WatchCreateRequest.NOPUT])
    _, with_prev = watch(hub, store, b"k", prev_kv=True)
    _, without_prev = watch(hub, store, b"k")
    apply(store, hub, ("put", b"k"))
    apply(store, hub, ("del", b"k"))
    assert no_put.events() == [(1, b"k", 4)]
    assert [e.prev_kv.mod_revision for r in with_prev.responses for e in r.events] == [2, 3]
    assert not any(e.HasField("prev_kv") for r in without_prev.responses for e in r.events)


def test_a_watcher_from_the_past_is_caught_up_in_chunks_then_goes_live(store, hub, monkeypatch):
    monkeypatch.setattr(watch_hub, "CATCH_UP_CHUNK", 4)
    for i in range(10):
        apply(store, hub, ("put", b"h%d" % i))
    watcher, sink = watch(hub, store, b"h", b"i", start=3)
    assert hub.has_unsynced
    rounds = 0
    while hub.catch_up():
        rounds += 1
    assert rounds >= 2  # it took several bounded chunks
    apply(store, hub, ("put", b"h-live"))
    revisions = [rev for _, _, rev in sink.events()]
    assert revisions == list(range(3, 13))
    assert watcher.synced


def test_a_slow_client_is_moved_to_catch_up_and_loses_nothing(store, hub):
    watcher, sink = watch(hub, store, b"s", b"t")
    apply(store, hub, ("put", b"s1"))
    sink.backlog = watch_hub.SLOW_CLIENT_BYTES + 1
    apply(store, hub, ("put", b"s2"))
    apply(store, hub, ("put", b"s3"))
    assert not watcher.synced and sink.events() == [(0, b"s1", 2)]
    assert hub.catch_up()  # still backed up: nothing sent
    sink.backlog = 0
    while hub.catch_up():
        pass
    apply(store, hub, ("put", b"s4"))
    assert [k for _, k, _ in sink.events()] == [b"s1", b"s2", b"s3", b"s4"]


def test_a_lagging_watcher_whose_history_was_compacted_is_canceled(store, hub):
    for _i in range(5):
        apply(store, hub, ("put", b"c"))
    watcher, sink = watch(hub, store, b"c", start=2)
    with store.write_batch(store.applied_index + 1) as batch:
        batch.compact(rpc.CompactionRequest(revision=5))
    hub.catch_up()
    assert watcher.canceled
    (response,) = sink.responses
    assert response.canceled and response.compact_revision == 5


def test_writes_applied_in_one_batch_reach_a_watcher_as_one_response(store, hub):
    _, sink = watch(hub, store, b"t", b"u")
    apply(store, hub, ("put", b"t1"), ("put", b"t2"), ("put", b"t3"))
    assert len(sink.responses) == 1 and len(sink.responses[0].events) == 3


def test_progress_tick_tells_quiet_watchers_that_asked_the_current_revision(store, hub):
    apply(store, hub, ("put", b"a"))
    _, quiet = watch(hub, store, b"q", progress_notify=True)
    _, busy = watch(hub, store, b"b/", b"b0", progress_notify=True)
    _, silent = watch(hub, store, b"q")  # did not ask
    _, behind = watch(hub, store, b"q", start=1, progress_notify=True)  # unsynced
    apply(store, hub, ("put", b"b/1"))
    hub.progress_tick()
    progress = [r for r in quiet.responses if not r.events]
    assert [r.header.revision for r in progress] == [store.revision]
    assert [r.watch_id for r in progress] == [1]
    assert [len(r.events) for r in busy.responses] == [1]  # had an event: no progress
    assert silent.responses == []
    assert behind.responses == []
    hub.progress_tick()  # a quiet interval for both now
    assert len(quiet.responses) == 2
    assert [len(r.events) for r in busy.responses] == [1, 0]
    assert busy.responses[-1].header.revision == store.revision


def test_large_responses_are_fragmented_only_for_watchers_that_asked(store, hub):
    """etcd 3.4's fragment: a response reaching the max request bytes goes as pieces under
    that size (one event at least), all but the last marked fragment=true."""
    whole = Sink()
    pieces = Sink()
    hub.add(Watcher(1, whole, rpc.WatchCreateRequest(key=b"k", range_end=b"l"), 2, 200))
    create = rpc.WatchCreateRequest(key=b"k", range_end=b"l", fragment=True)
    hub.add(Watcher(2, pieces, create, 2, 200))
    events = []
    with store.write_batch(store.applied_index + 1) as batch:
        for i in range(5):
            put = rpc.PutRequest(key=b"k%d" % i, value=b"x" * (60 + 200 * (i == 3)))
            events += batch.put(put)[1]
    hub.notify(events, store.revision)
    assert [len(r.events) for r in whole.responses] == [5]
    assert not whole.responses[0].fragment
    assert [len(r.events) for r in pieces.responses] == [2, 1, 1, 1]
    assert [r.fragment for r in pieces.responses] == [True, True, True, False]
    assert all(r.ByteSize() < 200 for r in pieces.responses if len(r.events) > 1)
    assert [e.kv.key for r in pieces.responses for e in r.events] == [b"k%d" % i for i in range(5)]
    assert {r.watch_id for r in pieces.responses} == {2}
    assert {r.header.revision for r in pieces.responses} == {store.revision}
    small = Sink()
    hub.add(Watcher(3, small, rpc.WatchCreateRequest(key=b"s", fragment=True), 7, 200))
    apply(store, hub, ("put", b"s"))
    assert [r.fragment for r in small.responses] == [False]


def test_live_events_carry_prev_kv_while_a_synced_watcher_asks_for_it(store, hub):
    """The store reads a put's previous version only while some synced watcher wants
    prev_kv (or a lease exists, or the request needs it): the hub counts such watchers
    across sync, unsync, removal and a store replacement."""
    store.events_need_prev = lambda: hub.prev_kv_synced > 0
    apply(store, hub, ("put", b"k"))
    plain, plain_sink = watch(hub, store, b"k")
    apply(store, hub, ("put", b"k"))
    assert hub.prev_kv_synced == 0
    assert not plain_sink.responses[-1].events[0].HasField("prev_kv")  # none was read
    with_prev, prev_sink = watch(hub, store, b"k", prev_kv=True)
    assert hub.prev_kv_synced == 1
    apply(store, hub, ("put", b"k"))
    event = prev_sink.responses[-1].events[0]
    assert event.prev_kv.value == b"vk" and event.prev_kv.mod_revision == event.kv.mod_revision - 1
    assert not plain_sink.responses[-1].events[0].HasField("prev_kv")  # stripped for it
    prev_sink.backlog = watch_hub.SLOW_CLIENT_BYTES + 1
    apply(store, hub, ("put", b"k"))  # too slow: unsynced, to catch up from history
    assert hub.prev_kv_synced == 0
    prev_sink.backlog = 0
    apply(store, hub, ("put", b"k"))  # no synced watcher wants prev_kv: not read
    assert not plain_sink.responses[-1].events[0].HasField("prev_kv")
    while hub.catch_up():
        pass
    assert hub.prev_kv_synced == 1
    caught_up = [e for r in prev_sink.responses for e in r.events][-2:]
    assert all(e.prev_kv.value == b"vk" for e in caught_up)  # history has it
    hub.remove(with_prev)
    hub.remove(with_prev)  # twice: counted once
    assert hub.prev_kv_synced == 0
    watch(hub, store, b"k", prev_kv=True)
    hub.store_replaced(store)
    assert hub.prev_kv_synced == 0
    hub.remove(plain)


def test_a_watcher_that_starts_past_this_member_s_store_gets_nothing_below_its_start(store, hub):
    """A client that read revision R from another member watches from R + 1 here while
    this member is still behind: the events below R + 1 must not reach it (they would be
    a second copy of what it already saw), as etcd's watchers skip what is below their
    minimum revision."""
    base = store.revision
    _, now = watch(hub, store, b"k", b"l")
    _, ahead = watch(hub, store, b"k", b"l", start=base + 3)
    _, far = watch(hub, store, b"k", b"l", start=base + 6)
    apply(store, hub, ("put", b"k1"), ("put", b"k2"), ("put", b"k3"), ("put", b"k4"))
    assert [rev for _t, _k, rev in now.events()] == [base + 1, base + 2, base + 3, base + 4]
    assert [rev for _t, _k, rev in ahead.events()] == [base + 3, base + 4]
    assert far.events() == []
    apply(store, hub, ("put", b"k5"), ("del", b"k1"))
    assert [rev for _t, _k, rev in far.events()] == [base + 6]
    assert [rev for _t, _k, rev in ahead.events()] == [base + 3, base + 4, base + 5, base + 6]
