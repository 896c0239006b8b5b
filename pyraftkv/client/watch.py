"""Watches of AsyncClient: one server watch per distinct request, shared by its watchers.

Watchers that start "from now" (no start revision) with the same key range and options
share one watch on the server: each change is sent once to the client, parsed once and
handed to every sharer, so a process with thousands of watchers of one key costs the
server one watch and itself one parse per change. A watcher that names a start revision
has a server watch of its own (the history it asks for is its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..errors import ApiError, Compacted, NoLeader
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc
from ..protocol.frames import FLAG_LEADER
from ..protocol.methods import BY_NAME
from .connection import ConnectionLost, Stream

_WATCH = BY_NAME["Watch"].number
_RUNNING = object()  # a Watcher's end while its server watch goes on
log = logging.getLogger("pyraftkv.client")

EventsCallback = Callable[[Sequence[kv_pb2.Event]], object]
EndCallback = Callable[[BaseException | None], object]


def _compacted(reply: rpc.WatchResponse) -> Compacted:
    error = Compacted(
        f"etcdserver: mvcc: required revision has been compacted "
        f"(compact revision {reply.compact_revision})"
    )
    error.compact_revision = reply.compact_revision
    error.response = reply  # the reply itself, for callers that show it (as etcdctl does)
    return error


def _call(callback: Callable, argument: object) -> None:
    """A user's watch callback: what it raises is logged, the watch goes on."""
    try:
        callback(argument)
    except Exception:
        log.exception("watch callback failed")


class ServerWatch:
    """One watch on the server and the Watchers it feeds, kept going across reconnects.

    On a lost connection it re-creates the watch on the next endpoint from the revision
    after the last one it delivered, so nothing is missed or repeated. It ends when its
    last watcher leaves, when the server cancels it, or when no member can take it again
    within the client's timeout.
    """

    def __init__(
        self,
        client,
        create: rpc.WatchCreateRequest,
        on_end: Callable[[], None],
        require_leader: bool = False,
    ):
        self._client = client
        self._create = create
        self._flags = FLAG_LEADER if require_leader else 0
        self._on_end = on_end
        self.watchers: dict[Watcher, None] = {}  # insertion-ordered set
        # The revision the next event must have at least; 0 until the server tells us.
        self.next_revision = create.start_revision
        self.watch_id = 0
        self.header: rpc.ResponseHeader | None = None
        self._stream: Stream | None = None
        self._stopped = False
        self.loop = asyncio.get_running_loop()
        self._created = self.loop.create_future()
        self._created.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._task = asyncio.create_task(self._run())

    async def join(self) -> Watcher:
        """A new Watcher of this watch, once the server has created it."""
        watcher = Watcher(self)
        self.watchers[watcher] = None
        try:
            await asyncio.shield(self._created)
        except BaseException:
            self.leave(watcher)
            raise
        return watcher

    def leave(self, watcher: Watcher) -> None:
        """A watcher is done; the server watch ends with the last one."""
        self.watchers.pop(watcher, None)
        if not self.watchers:
            self.stop()

    def stop(self) -> None:
        """End the server watch; its watchers' iterations end."""
        if not self._stopped:
            self._stopped = True
            self._on_end()
            if self._stream is not None:
                self._stream.close()

    def request_progress(self) -> None:
        if self._stream is not None and not self._stopped:
            request = rpc.WatchRequest(progress_request=rpc.WatchProgressRequest())
            with contextlib.suppress(ConnectionLost):
                self._stream.send(request.SerializeToString())

    async def _run(self) -> None:
        end: rpc.WatchResponse | BaseException | None = None
        try:
            await self._open()
            self._created.set_result(None)
            end = await self._follow()
        except Exception as exc:  # the server's error, or no member took the watch (again)
            end = None if self._stopped else exc
        finally:  # also when the task is cancelled (its loop closing): nobody waits forever
            if not self._created.done():
                self._created.set_exception(end or ConnectionLost("the watch was canceled"))
            self.stop()
            for watcher in self.watchers:
                watcher._finish(end)

    async def _open(self) -> None:
        """Create the watch on the server from ``next_revision``, trying members in turn."""
        client = self._client
        deadline = time.monotonic() + client.timeout
        refused: NoLeader | None = None  # what a member without a leader said, if one did
        while True:
            if self._stopped:
                raise ConnectionLost("the watch was canceled")
            try:
                connection = await client.connection()
                stream = self._stream = connection.open_stream(_WATCH)
                create = rpc.WatchCreateRequest()
                create.CopyFrom(self._create)
                create.start_revision = self.next_revision
                request = rpc.WatchRequest(create_request=create)
                stream.send(request.SerializeToString(), self._flags)
                reply = rpc.WatchResponse.FromString(
                    await asyncio.wait_for(stream.receive(), max(0.01, deadline - time.monotonic()))
                )
            except (ConnectionLost, asyncio.TimeoutError, NoLeader) as exc:
                if client._connection is not None and not self._stopped:
                    client._drop(client._connection)
                if isinstance(exc, NoLeader):
                    refused = exc
                if time.monotonic() >= deadline or self._stopped:
                    cause = refused or exc
                    raise ConnectionLost(f"cannot (re)start watch: {cause}") from cause
                await asyncio.sleep(0.1)
                continue
            if reply.canceled:
                stream.close()
                if reply.compact_revision:
                    raise _compacted(reply)
                error = ApiError(reply.cancel_reason or "etcdserver: watch canceled")
                error.response = reply  # type: ignore[attr-defined]
                raise error
            self.watch_id = reply.watch_id
            if self.next_revision == 0:
                # "From now": the first event can only come after the creating revision.
                self.next_revision = reply.header.revision + 1
            self._hand_out(reply)
            return

    async def _follow(self) -> rpc.WatchResponse | None:
        """Hand out replies until the watch ends: the server's cancel reply, or None."""
        while True:
            try:
                body = await self._stream.receive()
            except (ConnectionLost, NoLeader) as exc:
                if self._stopped:
                    return None
                if isinstance(exc, NoLeader):  # this member lost its leader: move on
                    self._client._drop(self._stream._connection)
                await self._open()
                continue
            reply = rpc.WatchResponse.FromString(body)
            if reply.canceled:
                return reply
            self._hand_out(reply)

    def _hand_out(self, reply: rpc.WatchResponse) -> None:
        """Give every watcher a reply with only the events not delivered yet (or a progress
        reply). A revision's events always travel in one reply, so everything below
        ``next_revision`` was delivered and everything at or above it is new."""
        self.header = reply.header
        fresh = [e for e in reply.events if e.kv.mod_revision >= self.next_revision]
        if fresh:
            self.next_revision = fresh[-1].kv.mod_revision + 1
            if len(fresh) != len(reply.events):
                trimmed = rpc.WatchResponse()
                trimmed.CopyFrom(reply)
                del trimmed.events[:]
                trimmed.events.extend(fresh)
                reply = trimmed
        elif not reply.events and not reply.created:
            # A progress notification: every event up to header.revision was sent.
            self.next_revision = max(self.next_revision, reply.header.revision + 1)
        else:
            return
        events = reply.events
        for watcher in self.watchers:  # the hot loop of a fan-out: kept flat
            callback = watcher._on_events
            if callback is not None:
                if events:
                    _call(callback, events)
                continue
            watcher._ready.append(reply)
            if watcher._next is not None:
                watcher._resolve_next()
                continue
            waiter = watcher._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


class Watcher:
    """Events of one watch, in revision order, each once, across reconnects.

    Iterate it for events, ``batches()`` for the events of each server reply, or
    ``responses()`` for the replies themselves (with progress notifications and the
    server's final cancel). Watchers sharing a server watch get the same reply objects:
    read them, do not change them. Or have its events handed to a callback
    (``on_events``): no task wakes per watcher and change.
    """

    def __init__(self, feed: ServerWatch) -> None:
        self._feed = feed
        self._ready: deque[rpc.WatchResponse] = deque()
        self._waiter: asyncio.Future | None = None
        self._next: asyncio.Future | None = None  # what __anext__ handed out, not resolved yet
        self._end: object = _RUNNING
        self._canceled = False
        self._pending: list[kv_pb2.Event] = []
        self._on_events: EventsCallback | None = None
        self._on_end: EndCallback | None = None

    def on_events(self, callback: EventsCallback, on_end: EndCallback | None = None) -> None:
        """Call ``callback(events)`` on the event loop with the events of each server reply,
        in revision order, each once, instead of iterating the watcher; ``on_end(error)``
        once the watch ends (``error`` None when it was canceled, else why it ended, e.g.
        Compacted). With thousands of watchers of one key in a process this skips a task
        wake-up per watcher and change. What arrived before is handed over at once. An
        exception from ``callback`` is logged and the watch goes on."""
        self._on_events, self._on_end = callback, on_end
        ready, self._ready = self._ready, deque()
        pending, self._pending = self._pending, []
        if pending:
            _call(callback, pending)
        for reply in ready:
            if reply.events:
                _call(callback, reply.events)
        if self._end is not _RUNNING:
            self._finish(self._end)

    @property
    def watch_id(self) -> int:
        return self._feed.watch_id

    @property
    def header(self) -> rpc.ResponseHeader | None:
        """The header of the latest reply from the server watch."""
        return self._feed.header

    @property
    def next_revision(self) -> int:
        """The revision the next event will have at least."""
        return self._feed.next_revision

    def _finish(self, end: object) -> None:
        self._end = end
        on_end = self._on_end
        if on_end is not None:
            self._on_end = None
            error = end if isinstance(end, BaseException) else None
            if isinstance(end, rpc.WatchResponse) and end.compact_revision:
                error = _compacted(end)
            _call(on_end, error)
        self._wake()

    def _wake(self) -> None:
        if self._next is not None:
            self._resolve_next()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_response(self) -> rpc.WatchResponse | None:
        """The next reply for responses(); None once the watch has ended."""
        while (reply := self._take_reply()) is _RUNNING:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return reply

    def _take_reply(self) -> object:
        """The next reply if one is here; None once the watch has ended (after the
        server's cancel reply, if it sent one); _RUNNING while nothing new has come.
        Raises what ended the watch, if an error did."""
        if self._ready:
            return self._ready.popleft()
        if self._canceled:
            return None
        end = self._end
        if end is not _RUNNING:
            if isinstance(end, BaseException):
                raise end
            self._canceled = True
        return end  # _RUNNING, the server's cancel reply, or None

    async def responses(self):
        """Async iterator over server replies: each with new events, each progress
        notification, and last the server's cancel reply if it ends the watch."""
        while (reply := await self._next_response()) is not None:
            yield reply

    async def _next_events(self) -> list[kv_pb2.Event] | None:
        """The events of the next reply that has any; None at the end of the watch.
        Raises Compacted if the server ends the watch because of a compaction."""
        while (reply := await self._next_response()) is not None:
            if reply.canceled:
                if reply.compact_revision:
                    raise _compacted(reply)
                return None
            if reply.events:
                return list(reply.events)
        return None

    async def batches(self):
        """Async iterator over lists of events, as they arrive (one list per server reply)."""
        while True:
            if self._pending:
                events, self._pending = self._pending, []
                yield events
                continue
            events = await self._next_events()
            if events is None:
                return
            yield events

    def __aiter__(self) -> Watcher:
        return self

    def __anext__(self) -> asyncio.Future:
        """The next event, as a future: done already when one is here, else resolved when
        one arrives. A future, not a coroutine, because in a fan-out this runs once per
        watcher and change: one object less to make and collect each time."""
        if self._next is not None and not self._next.done():
            raise RuntimeError("another task is already waiting for this watcher's next event")
        future = self._next = self._feed.loop.create_future()
        self._resolve_next()
        return future

    def _resolve_next(self) -> None:
        """Settle __anext__'s future with the next event, the end of the iteration or the
        error that ended the watch, if there is one yet. A future its awaiting task gave
        up (cancelled) takes nothing: the event stays for the next call."""
        future = self._next
        if future.done():
            self._next = None
            return
        try:
            while not self._pending:
                if self._ready:  # the fan-out's hot path: no call for the common case
                    reply = self._ready.popleft()
                else:
                    reply = self._take_reply()
                    if reply is _RUNNING:
                        return  # nothing yet: a reply or the end settles it
                    if reply is None:
                        raise StopAsyncIteration
                if reply.canceled:
                    if reply.compact_revision:
                        raise _compacted(reply)
                    raise StopAsyncIteration
                events = reply.events
                if len(events) == 1:
                    self._next = None
                    future.set_result(events[0])  # the common case, without a list
                    return
                self._pending = list(events)  # none for a progress reply: wait on
            self._next = None
            future.set_result(self._pending.pop(0))  # lists stay short: one reply's events
        except BaseException as exc:
            self._next = None
            future.set_exception(exc)

    async def request_progress(self) -> None:
        """Ask for a progress notification (etcd's WatchProgressRequest): a reply with no
        events, through responses(), once every event up to its revision was sent (every
        watcher sharing the server watch gets it)."""
        if not self._canceled:
            self._feed.request_progress()

    async def cancel(self) -> None:
        """Stop the watch; iteration ends (``on_end(None)`` for a callback)."""
        if not self._canceled:
            self._canceled = True
            self._feed.leave(self)
            self._finish(None)
