"""AsyncClient's unary calls against a scripted server on loopback: replies out of order,
one never answered (its deadline), a caller cancelled while its call is in flight."""

from __future__ import annotations

import asyncio
import time

import pytest

from pyraftkv.client.aio import AsyncClient
from pyraftkv.errors import TimedOut
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.frames import HEADER, REPLY, encode_frame


class ScriptedServer:
    """Reads request frames; answers each Put with its key's number as the revision, in
    the reverse order of arrival once ``batch`` have come, and never answers keys in
    ``silent``."""

    def __init__(self, batch: int, silent: set[bytes]) -> None:
        self.batch, self.silent = batch, silent
        self.held: list[tuple[int, bytes]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(HEADER.size)
                length, stream, _code, _flags = HEADER.unpack(head)
                body = await reader.readexactly(length - (HEADER.size - 4))
                key = rpc.PutRequest.FromString(body).key
                if key in self.silent:
                    continue
                self.held.append((stream, key))
                if len(self.held) >= self.batch:
                    for stream_id, held_key in reversed(self.held):
                        reply = rpc.PutResponse()
                        reply.header.revision = int(held_key.decode().split("/")[1])
                        writer.write(encode_frame(stream_id, REPLY, reply.SerializeToString()))
                    self.held.clear()
        except asyncio.IncompleteReadError:
            writer.close()


def run_against(server: ScriptedServer, test) -> None:
    async def main() -> None:
        listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        async with AsyncClient([f"127.0.0.1:{port}"], timeout=0.5) as client:
            await asyncio.wait_for(test(client), 10)  # a hung call fails the test
        listener.close()

    asyncio.run(main())


def test_replies_out_of_order_reach_their_own_callers() -> None:
    async def test(client: AsyncClient) -> None:
        replies = await asyncio.gather(*(client.put(f"k/{i}", "v") for i in range(1, 9)))
        assert [r.header.revision for r in replies] == list(range(1, 9))

    run_against(ScriptedServer(batch=4, silent=set()), test)


def test_a_call_never_answered_times_out_alone() -> None:
    async def test(client: AsyncClient) -> None:
        started = time.monotonic()
        results = await asyncio.gather(
            client.put("k/1", "v"), client.put("k/7", "v"), client.put("k/2", "v"),
            return_exceptions=True,
        )  # fmt: skip
        assert results[0].header.revision == 1 and results[2].header.revision == 2
        assert isinstance(results[1], TimedOut) and "Put: no answer" in str(results[1])
        assert time.monotonic() - started >= 0.5
        # the connection still serves calls after that
        assert (await client.put("k/3", "v")).header.revision == 3

    run_against(ScriptedServer(batch=1, silent={b"k/7"}), test)


def test_a_caller_cancelled_in_flight_leaves_the_others_alone() -> None:
    async def test(client: AsyncClient) -> None:
        first = asyncio.ensure_future(client.put("k/1", "v"))
        second = asyncio.ensure_future(client.put("k/2", "v"))
        await asyncio.sleep(0.05)  # both sent, the server holds them (batch of 3)
        first.cancel()
        third = await client.put("k/3", "v")  # releases the batch
        assert third.header.revision == 3
        assert (await second).header.revision == 2
        with pytest.raises(asyncio.CancelledError):
            await first

    run_against(ScriptedServer(batch=3, silent=set()), test)
