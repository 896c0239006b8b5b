"""Watch fan-out: one key's changes pushed to thousands of watchers, as a config center does.

Starts a fresh 3-member cluster on loopback, opens ``--watchers`` watches on one key from
``--procs`` client processes (each with ``--conns`` connections spread over the members),
then writes ``--updates`` new values at ``--rate`` per second. Each value carries the time
its Put was sent, so every watcher measures put-to-event latency: the write's majority
fsync and apply, then the push, then the client's own work (with thousands of watchers in
one client process, the client's turn through every watcher dominates; the first watcher
to get each update shows the server's path). Reports the latencies, the events delivered
per second and the CPU each member process spent per delivered event.

    python bench/watch_fanout.py --watchers 10000 --procs 2 --conns 8 --updates 100 --rate 10

With ``--callbacks`` each watcher takes its events through ``Watcher.on_events`` (a
callback on the client's loop) instead of iterating (a task woken per watcher and change).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench.cluster_cpu import cpu_seconds, member_pids  # noqa: E402
from pyraftkv import AsyncClient, Client  # noqa: E402
from pyraftkv.node.event_loop import run  # noqa: E402
from tests.e2e.harness import LocalCluster  # noqa: E402

KEY = b"/config/fanout"


def watcher_process(endpoints, watchers, conns, updates, ready, results, timeout, callbacks):
    """Open the watches, say ready, then gather every watcher's latencies."""
    run(_watch(endpoints, watchers, conns, updates, ready, results, timeout, callbacks))


async def _watch(endpoints, watchers, conns, updates, ready, results, timeout, callbacks):
    clients = [AsyncClient([endpoints[i % len(endpoints)]]) for i in range(conns)]
    for client in clients:
        await client.__aenter__()
    watches = []
    for start in range(0, watchers, 500):
        batch = range(start, min(watchers, start + 500))
        watches += await asyncio.gather(*(clients[i % conns].watch(KEY) for i in batch))
    latencies: list[tuple[int, float]] = []  # (update, seconds)
    ready.put(len(watches))

    async def collect(watch) -> int:
        """Events received in order, each once (updates are numbered from 0)."""
        seen = 0
        async for event in watch:
            seq, sent = event.kv.value.split()
            latencies.append((int(seq), time.time() - float(sent)))
            if int(seq) != seen:
                raise AssertionError(f"update {seq} arrived where {seen} was due")
            seen += 1
            if seen == updates:
                break
        return seen

    if callbacks:
        missing = await _by_callbacks(watches, updates, latencies, timeout)
        finished = time.time()
    else:
        tasks = [asyncio.create_task(collect(w)) for w in watches]
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        finished = time.time()
        for task in pending:
            task.cancel()
        missing = sum(updates - t.result() for t in done) + updates * len(pending)
    results.put((latencies, missing, finished))
    for client in clients:
        await client.__aexit__(None, None, None)


async def _by_callbacks(watches, updates, latencies, timeout) -> int:
    """Each watcher's events through a callback; the events still missing at the end."""
    loop = asyncio.get_running_loop()
    left = [len(watches)]  # watchers still waiting for their last update
    all_done = loop.create_future()

    def watcher_callback():
        seen = [0]

        def on_events(events) -> None:
            for event in events:
                seq, sent = event.kv.value.split()
                latencies.append((int(seq), time.time() - float(sent)))
                if int(seq) != seen[0]:
                    raise AssertionError(f"update {seq} arrived where {seen[0]} was due")
                seen[0] += 1
                if seen[0] == updates:
                    left[0] -= 1
                    if not left[0]:
                        all_done.set_result(None)

        return on_events, seen

    seens = []
    for watch in watches:
        callback, seen = watcher_callback()
        watch.on_events(callback)
        seens.append(seen)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(all_done, timeout)
    return sum(updates - seen[0] for seen in seens)


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=2, help="watcher processes")
    parser.add_argument("--conns", type=int, default=8, help="connections per watcher process")
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="updates per second")
    parser.add_argument("--callbacks", action="store_true", help="watchers take events by callback")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="pyraftkv-fanout-")
    cluster = LocalCluster(
        root, 3, extra_args=["--heartbeat-interval", "100", "--election-timeout", "1000"]
    )
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    procs = []
    try:
        cluster.start()
        leader = cluster.wait_leader()
        endpoints = [m.endpoint for m in cluster.members]
        share = args.watchers // args.procs
        timeout = 30 + args.updates / args.rate * 3
        for _ in range(args.procs):
            proc = context.Process(
                target=watcher_process,
                args=(
                    endpoints,
                    share,
                    args.conns,
                    args.updates,
                    ready,
                    results,
                    timeout,
                    args.callbacks,
                ),
            )
            proc.start()
            procs.append(proc)
        watching = sum(ready.get(timeout=120) for _ in procs)
        pids = member_pids(cluster.members, leader)
        before = {name: sum(cpu_seconds(pid)) for name, pid in pids.items()}
        with Client([leader.endpoint]) as writer:
            started = time.time()
            for seq in range(args.updates):
                next_at = started + seq / args.rate
                time.sleep(max(0.0, next_at - time.time()))
                writer.put(KEY, f"{seq} {time.time()!r}")
        gathered = [results.get(timeout=timeout + 60) for _ in procs]
        after = {name: sum(cpu_seconds(pid)) for name, pid in pids.items()}
        pairs = [x for lat, _m, _f in gathered for x in lat]
        latencies = sorted(seconds for _seq, seconds in pairs)
        first: dict[int, float] = {}
        for seq, seconds in pairs:
            first[seq] = min(seconds, first.get(seq, seconds))
        missing = sum(m for _l, m, _f in gathered)
        finished = max(f for _l, _m, f in gathered)
        delivered = len(latencies)
        print(
            f"{watching} watchers, {args.updates} updates at {args.rate:g}/s: "
            f"{delivered} events delivered, {missing} missing, "
            f"{delivered / (finished - started):.0f} events/s over the run"
        )
        print(
            "put-to-event latency ms: "
            + " ".join(
                f"{name} {quantile(latencies, q) * 1000:.1f}"
                for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            )
        )
        print(
            "first watcher to get each update, median ms: "
            f"{quantile(sorted(first.values()), 0.5) * 1000:.1f}"
        )
        print(f"{'process':<28} {'CPU us/event':>12}")
        for name in pids:
            print(f"{name:<28} {(after[name] - before[name]) / max(1, delivered) * 1e6:12.2f}")
    finally:
        for proc in procs:
            proc.kill()
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
