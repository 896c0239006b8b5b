"""aetcd in a process of its own (its generated etcd protobufs clash with pyraftkv's in one
process): ``python aetcd_worker.py HOST PORT`` runs a session, prints "ready", waits for a
line on stdin (the test kills the member meanwhile, writes through the others and restarts
it), checks the same client goes on, sees those writes and keeps its lease, prints "done"."""

from __future__ import annotations

import asyncio
import sys

import aetcd


async def main(host: str, port: int) -> None:
    async with aetcd.Client(host=host, port=port, timeout=10) as client:
        await client.put(b"a1", b"x")
        await client.put(b"a2", b"y")
        assert (await client.get(b"a1")).value == b"x"
        assert [kv.key for kv in await client.get_prefix(b"a")] == [b"a1", b"a2"]
        assert (await client.delete(b"a2")).deleted == 1
        assert await client.get(b"a2") is None
        assert await client.replace(b"a1", b"x", b"z")
        assert not await client.replace(b"a1", b"x", b"w")
        assert (await client.get(b"a1")).value == b"z"
        watched = asyncio.ensure_future(client.watch_once(b"w", timeout=10))
        await asyncio.sleep(0.5)
        await client.put(b"w", b"event")
        assert (await watched).kv.value == b"event"
        lease = await client.lease(30)
        await client.put(b"leased", b"v", lease=lease)
        assert (await lease.refresh()).TTL > 0
        await lease.revoke()
        assert await client.get(b"leased") is None
        async with client.lock(b"aetcd-lock", ttl=10) as held:
            assert await held.is_acquired()
        kept = await client.lease(60)  # outlives the failover
        await client.put(b"kept", b"v", lease=kept)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for _ in range(50):  # the client reconnects by itself on its next calls
            try:
                assert (await client.get(b"a1")).value == b"z"
                break
            except aetcd.ClientError:
                await asyncio.sleep(0.2)
        else:
            raise SystemExit("aetcd did not reconnect after the member restarted")
        await client.put(b"after", b"restart")
        assert (await client.get(b"after")).value == b"restart"
        # What the other members took while this one was down, from its restarted copy.
        assert (await client.get(b"during")).value == b"failover"
        assert (await kept.refresh()).TTL > 0  # kept alive through the new leader
        assert (await client.get(b"kept")).lease == kept.id
        print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
