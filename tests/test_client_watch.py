"""Iterating a Watcher, driven without a server: its shared feed hands out replies the way
ServerWatch does. Events come in order, each once; a wait given up on (a timeout, a
cancelled task) loses no event; the end of the watch ends or fails the iteration."""

from __future__ import annotations

import asyncio

import pytest

from pyraftkv.client.watch import ServerWatch, Watcher
from pyraftkv.errors import Compacted, NoLeader
from pyraftkv.proto import kv_pb2
from pyraftkv.proto import rpc_pb2 as rpc


class Feed:
    """ServerWatch's side of its watchers, with replies handed out by its own code."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watchers: list[Watcher] = []
        self.next_revision = 1
        self.header = None
        self.watch_id = 1

    hand_out = ServerWatch._hand_out

    def join(self) -> Watcher:
        watcher = Watcher(self)
        self.watchers.append(watcher)
        return watcher

    def leave(self, watcher: Watcher) -> None:
        self.watchers.remove(watcher)


def reply(*revisions: int) -> rpc.WatchResponse:
    return rpc.WatchResponse(
        events=[
            kv_pb2.Event(kv=kv_pb2.KeyValue(key=b"k", mod_revision=r, value=b"%d" % r))
            for r in revisions
        ]
    )


def run(test) -> None:
    async def main() -> None:
        await test(Feed(asyncio.get_running_loop()))

    asyncio.run(main())


def test_events_in_order_each_once_whether_waited_for_or_already_here():
    async def test(feed: Feed) -> None:
        watcher = feed.join()
        feed.hand_out(reply(1, 2))  # before anyone waits
        got = [(await anext(watcher)).kv.mod_revision for _ in range(2)]
        waiting = asyncio.ensure_future(anext(watcher))
        await asyncio.sleep(0)
        assert not waiting.done()
        feed.hand_out(reply())  # a progress reply: no event, the wait goes on
        feed.hand_out(reply(2))  # already delivered: dropped by the feed
        await asyncio.sleep(0)
        assert not waiting.done()
        feed.hand_out(reply(3))
        got.append((await waiting).kv.mod_revision)
        feed.hand_out(reply(4, 5, 6))
        got += [(await anext(watcher)).kv.mod_revision for _ in range(3)]
        assert got == [1, 2, 3, 4, 5, 6]

    run(test)


def test_a_wait_given_up_on_loses_no_event():
    async def test(feed: Feed) -> None:
        watcher = feed.join()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(watcher), 0.01)
        task = asyncio.ensure_future(anext(watcher))
        await asyncio.sleep(0)
        task.cancel()
        feed.hand_out(reply(1))  # lands while the cancelled wait is being torn down
        with pytest.raises(asyncio.CancelledError):
            await task
        feed.hand_out(reply(2))
        assert [(await anext(watcher)).kv.mod_revision for _ in range(2)] == [1, 2]

    run(test)


def test_one_task_at_a_time_waits_on_a_watcher():
    async def test(feed: Feed) -> None:
        watcher = feed.join()
        first = anext(watcher)
        with pytest.raises(RuntimeError, match="already waiting"):
            anext(watcher)
        feed.hand_out(reply(1))
        assert (await first).kv.mod_revision == 1

    run(test)


def test_cancel_ends_the_iteration_of_a_waiting_task():
    async def test(feed: Feed) -> None:
        watcher = feed.join()
        feed.hand_out(reply(1))

        async def collect() -> list[int]:
            return [event.kv.mod_revision async for event in watcher]

        task = asyncio.ensure_future(collect())
        await asyncio.sleep(0)
        await watcher.cancel()
        assert await asyncio.wait_for(task, 1) == [1]
        with pytest.raises(StopAsyncIteration):
            await anext(watcher)

    run(test)


def test_the_watch_ending_on_the_server_fails_or_ends_the_iteration():
    async def test(feed: Feed) -> None:
        compacted, failed, closed = feed.join(), feed.join(), feed.join()
        waiting = asyncio.ensure_future(anext(compacted))
        await asyncio.sleep(0)
        feed.hand_out(reply(1))
        assert (await waiting).kv.mod_revision == 1
        waiting = asyncio.ensure_future(anext(compacted))
        await asyncio.sleep(0)
        compacted._finish(rpc.WatchResponse(canceled=True, compact_revision=7))
        with pytest.raises(Compacted) as raised:
            await waiting
        assert raised.value.compact_revision == 7
        failed._finish(NoLeader())
        assert (await anext(failed)).kv.mod_revision == 1  # what came before the end first
        with pytest.raises(NoLeader):
            await anext(failed)
        closed._finish(rpc.WatchResponse(canceled=True))
        events = [event.kv.mod_revision async for event in closed]
        assert events == [1]

    run(test)
