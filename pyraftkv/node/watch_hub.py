"""The watch hub: routes every applied change to the watchers whose key range it touches.

Watchers are in one of two groups, as in etcd. A *synced* watcher has seen everything up
to the current revision and gets new events as they are applied. An *unsynced* watcher is
behind (it asked for a start revision in the past, or its client reads too slowly) and is
fed from the store's history in bounded chunks until it catches up, then joins the synced
group. Either way each event reaches a watcher once, in revision order.

Fan-out is cheap: events are serialized once per distinct key range and glued onto each
watcher's small per-watcher part (protobuf lets a message be the concatenation of its
fields' encodings).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from ..errors import Compacted
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc

PUT = kv_pb2.Event.PUT
DELETE = kv_pb2.Event.DELETE
NOPUT = rpc.WatchCreateRequest.NOPUT
NODELETE = rpc.WatchCreateRequest.NODELETE

# Replay at most this many events per watcher per catch-up step, so one watcher far
# behind cannot stall the event loop.
CATCH_UP_CHUNK = 1000
# A client whose connection holds more unsent bytes than this stops getting live events
# and is caught up from history once it drains: memory stays bounded.
SLOW_CLIENT_BYTES = 8 << 20

_EVENTS_TAG = b"\x5a"  # field 11 (events), wire type 2
_FRAGMENT = b"\x38\x01"  # field 7 (fragment) true


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def event_parts(events: list[kv_pb2.Event]) -> list[bytes]:
    """Each event's wire bytes as one WatchResponse.events entry (field 11)."""
    parts = []
    for event in events:
        data = event.SerializeToString()
        parts.append(_EVENTS_TAG + _varint(len(data)) + data)
    return parts


def fragments(prefix: bytes, parts: list[bytes], max_bytes: int) -> list[bytes]:
    """etcd 3.4's watch fragmenting: a response of two or more events whose size reaches
    ``max_bytes`` goes as several, each holding events while it stays under ``max_bytes``
    (at least one), all but the last marked ``fragment=true``. ``max_bytes`` 0: one."""
    total = len(prefix) + sum(len(part) for part in parts)
    if not max_bytes or total < max_bytes or len(parts) < 2:
        return [prefix + b"".join(parts)]
    out = []
    start = 0
    while start < len(parts):
        size = len(prefix) + len(_FRAGMENT) + len(parts[start])
        end = start + 1
        while end < len(parts) and size + len(parts[end]) < max_bytes:
            size += len(parts[end])
            end += 1
        marker = _FRAGMENT if end < len(parts) else b""
        out.append(prefix + marker + b"".join(parts[start:end]))
        start = end
    return out


class WatchSink(Protocol):
    """Where a watcher's responses go (one client stream)."""

    def send_message(self, body: bytes) -> None: ...
    def backlog_bytes(self) -> int: ...


class EventSource(Protocol):
    """What the hub needs from the store."""

    revision: int
    compact_revision: int

    def events(
        self, start_revision: int, key: bytes, range_end: bytes, prev_kv: bool, limit: int
    ) -> list[kv_pb2.Event]: ...


class Watcher:
    """One watch: a key range, filters, and the next revision it must receive."""

    __slots__ = (
        "watch_id",
        "sink",
        "key",
        "range_end",
        "prev_kv",
        "no_put",
        "no_delete",
        "next_revision",
        "synced",
        "canceled",
        "progress_notify",
        "quiet",
        "range_key",
        "fragment_bytes",
    )

    def __init__(
        self,
        watch_id: int,
        sink: WatchSink,
        create: rpc.WatchCreateRequest,
        next_revision: int,
        max_request_bytes: int = 0,
    ) -> None:
        self.watch_id = watch_id
        # Responses reaching this size are split when the client asked for fragments.
        self.fragment_bytes = max_request_bytes if create.fragment else 0
        self.sink = sink
        self.key = create.key
        self.range_end = create.range_end
        self.prev_kv = create.prev_kv
        self.no_put = NOPUT in create.filters
        self.no_delete = NODELETE in create.filters
        self.progress_notify = create.progress_notify
        self.quiet = True  # no events sent since the last progress tick
        self.next_revision = next_revision
        self.synced = False
        self.canceled = False
        self.range_key = (self.key, self.range_end)

    def matches(self, key: bytes) -> bool:
        if not self.range_end:
            return key == self.key
        if self.range_end == b"\0":
            return key >= self.key
        return self.key <= key < self.range_end

    def wants(self, event: kv_pb2.Event) -> bool:
        return not (self.no_put if event.type == PUT else self.no_delete)


class WatchHub:
    """Every watcher of this member, grouped for fast routing of applied events."""

    def __init__(self, store: EventSource, header: Callable[[int], rpc.ResponseHeader]) -> None:
        self._store = store
        self._header = header  # revision -> a filled ResponseHeader
        self._single: dict[bytes, set[Watcher]] = defaultdict(set)  # synced, one key
        self._ranges: dict[tuple[bytes, bytes], set[Watcher]] = defaultdict(set)  # synced
        self._unsynced: set[Watcher] = set()
        # Synced watchers that asked for prev_kv: while none is, live events need none.
        self.prev_kv_synced = 0

    # -- membership -----------------------------------------------------------------------

    def add(self, watcher: Watcher) -> None:
        """Register a watcher whose next_revision is already set (0 is not allowed)."""
        if watcher.next_revision > self._store.revision:
            self._make_synced(watcher)
        else:
            self._unsynced.add(watcher)

    def remove(self, watcher: Watcher) -> None:
        watcher.canceled = True
        self._unsynced.discard(watcher)
        group = self._single if not watcher.range_end else self._ranges
        slot = watcher.key if not watcher.range_end else watcher.range_key
        members = group.get(slot)
        if members is not None and watcher in members:
            members.discard(watcher)
            self.prev_kv_synced -= watcher.prev_kv
            if not members:
                del group[slot]

    def _make_synced(self, watcher: Watcher) -> None:
        watcher.synced = True
        self.prev_kv_synced += watcher.prev_kv
        if watcher.range_end:
            self._ranges[watcher.range_key].add(watcher)
        else:
            self._single[watcher.key].add(watcher)

    def _make_unsynced(self, watcher: Watcher) -> None:
        self.remove(watcher)
        watcher.canceled = False
        watcher.synced = False
        self._unsynced.add(watcher)

    def store_replaced(self, store: EventSource) -> None:
        """The state machine jumped (a snapshot was installed): every watcher catches up
        from the new store's history, or learns that its next revision was compacted."""
        self._store = store
        for group in (self._single, self._ranges):
            for watchers in group.values():
                for watcher in watchers:
                    watcher.synced = False
                    self._unsynced.add(watcher)
            group.clear()
        self.prev_kv_synced = 0

    @property
    def has_unsynced(self) -> bool:
        return bool(self._unsynced)

    def __len__(self) -> int:
        return (
            sum(len(s) for s in self._single.values())
            + sum(len(s) for s in self._ranges.values())
            + len(self._unsynced)
        )

    # -- live events ------------------------------------------------------------------------

    def notify(self, events: list[kv_pb2.Event], revision: int) -> None:
        """Deliver the events of newly applied revisions (ending at ``revision``)."""
        if not events or not (self._single or self._ranges):
            return
        header = self._header(revision).SerializeToString()
        if self._single:
            by_key: dict[bytes, list[kv_pb2.Event]] = {}
            for event in events:
                if event.kv.key in self._single:
                    by_key.setdefault(event.kv.key, []).append(event)
            for key, hits in by_key.items():
                self._deliver(self._single[key], hits, header, revision)
        for (start, end), watchers in list(self._ranges.items()):
            if end == b"\0":
                hits = [e for e in events if e.kv.key >= start]
            else:
                hits = [e for e in events if start <= e.kv.key < end]
            if hits:
                self._deliver(watchers, hits, header, revision)

    def _deliver(
        self, watchers: set[Watcher], hits: list[kv_pb2.Event], header: bytes, revision: int
    ) -> None:
        """Send one group's events; watchers with the same options share one encoding.

        A watcher may start past this member's store (a client that read a newer revision
        from another member): it gets only the events from its start revision on, as
        etcd's watchers skip what is below their minimum revision."""
        encoded: dict[tuple[bool, bool, bool], list[bytes]] = {}
        first = hits[0].kv.mod_revision
        for watcher in list(watchers):
            if watcher.sink.backlog_bytes() > SLOW_CLIENT_BYTES:
                self._make_unsynced(watcher)  # caught up from history once it drains
                continue
            start = watcher.next_revision
            if start > revision:
                continue
            watcher.next_revision = revision + 1
            if start > first:
                parts = _parts_for(watcher, [e for e in hits if e.kv.mod_revision >= start])
            else:
                options = (watcher.prev_kv, watcher.no_put, watcher.no_delete)
                parts = encoded.get(options)
                if parts is None:
                    parts = encoded[options] = _parts_for(watcher, hits)
            if parts:
                watcher.quiet = False
                self._send(watcher, header, parts)

    def _send(self, watcher: Watcher, header: bytes, parts: list[bytes]) -> None:
        """One response of events to a watcher (fragmented if it asked and it is large)."""
        prefix = self._prefix(header, watcher.watch_id)
        for body in fragments(prefix, parts, watcher.fragment_bytes):
            watcher.sink.send_message(body)

    @staticmethod
    def _prefix(header: bytes, watch_id: int) -> bytes:
        # WatchResponse.header (field 1) and watch_id (field 2).
        prefix = b"\x0a" + _varint(len(header)) + header
        if watch_id:
            prefix += b"\x10" + _varint(watch_id & 0xFFFFFFFFFFFFFFFF)
        return prefix

    def progress_tick(self) -> None:
        """Periodic progress (etcd's progress_notify): every synced watcher that asked for it
        and got no events since the last tick is told the current revision, so its client
        can resume from a recent revision after a disconnect."""
        header = None
        for group in (self._single, self._ranges):
            for watchers in group.values():
                for watcher in watchers:
                    if watcher.progress_notify and watcher.quiet:
                        if header is None:
                            header = self._header(self._store.revision).SerializeToString()
                        watcher.sink.send_message(self._prefix(header, watcher.watch_id))
                    watcher.quiet = True
        for watcher in self._unsynced:
            watcher.quiet = True

    # -- catching up ----------------------------------------------------------------------

    def catch_up(self) -> bool:
        """Feed each unsynced watcher one chunk of history; True if any is still behind."""
        store = self._store
        for watcher in list(self._unsynced):
            if watcher.canceled:
                self._unsynced.discard(watcher)
                continue
            if watcher.sink.backlog_bytes() > SLOW_CLIENT_BYTES:
                continue
            try:
                events, upto = self._history(watcher)
            except Compacted:
                self._cancel_compacted(watcher)
                continue
            wanted = [e for e in events if watcher.wants(e)]
            if wanted:
                watcher.quiet = False
                header = self._header(upto).SerializeToString()
                self._send(watcher, header, event_parts(wanted))
            watcher.next_revision = upto + 1
            if watcher.next_revision > store.revision:
                self._unsynced.discard(watcher)
                self._make_synced(watcher)
        return bool(self._unsynced)

    def _history(self, watcher: Watcher) -> tuple[list[kv_pb2.Event], int]:
        """The next chunk of a watcher's history, ending on a whole revision, and that revision."""
        store = self._store
        if watcher.next_revision < store.compact_revision:
            raise Compacted()
        if watcher.next_revision < 1:
            # etcd 3.4: a start revision not below the compaction point (-1 on a store never
            # compacted) but below the first revision has no history: it watches from now.
            return [], store.revision
        args = (watcher.next_revision, watcher.key, watcher.range_end, watcher.prev_kv)
        events = store.events(*args, CATCH_UP_CHUNK)
        if len(events) < CATCH_UP_CHUNK:
            return events, store.revision
        last = events[-1].kv.mod_revision
        whole = [e for e in events if e.kv.mod_revision < last]
        if whole:
            return whole, last - 1
        # One revision (a big txn) holds more than a chunk: send all of it at once.
        return [e for e in store.events(*args, 0) if e.kv.mod_revision == last], last

    def _cancel_compacted(self, watcher: Watcher) -> None:
        self._unsynced.discard(watcher)
        watcher.canceled = True
        response = rpc.WatchResponse(
            header=self._header(self._store.revision),
            watch_id=watcher.watch_id,
            canceled=True,
            compact_revision=self._store.compact_revision,
            cancel_reason="etcdserver: mvcc: required revision has been compacted",
        )
        watcher.sink.send_message(response.SerializeToString())


def _parts_for(watcher: Watcher, events: list[kv_pb2.Event]) -> list[bytes]:
    """The encoded events of ``events`` that ``watcher`` asked for, in its options."""
    wanted = [e for e in events if watcher.wants(e)]
    return event_parts(wanted if watcher.prev_kv else _without_prev(wanted))


def _without_prev(events: list[kv_pb2.Event]) -> list[kv_pb2.Event]:
    if not any(e.HasField("prev_kv") for e in events):
        return events
    stripped = []
    for event in events:
        if event.HasField("prev_kv"):
            event = kv_pb2.Event(type=event.type, kv=event.kv)
        stripped.append(event)
    return stripped
