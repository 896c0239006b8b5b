"""Cluster-level benchmarks of pyraftkv's coordination features (run against a cluster).

    # Lock acquire/release pairs per second, N contenders on one lock (or on --locks locks)
    python bench/coordination.py locks --endpoints 127.0.0.1:2379,127.0.0.1:12379,127.0.0.1:22379 \\
        --contenders 16 --procs 2 --duration 10

    # On a fresh 3-member cluster of its own: puts (bench/load.py) without leases, with
    # 10,000 live leases kept alive (each holding one key), and again after they are
    # revoked, --rounds times: throughput and the members' CPU per put (from /proc), and
    # the members' idle CPU with and without the leases
    python bench/coordination.py leases --leases 10000 --ttl 10 --rounds 3 --puts 60000

Each contender holds a lease of its own for the whole run and loops: Lock (wait for its
turn, FIFO), Unlock. Contenders run as asyncio tasks spread over --procs processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cluster_cpu import cpu_seconds, raft_pid  # noqa: E402

from pyraftkv import AsyncClient  # noqa: E402
from pyraftkv.client.leases import AsyncLease  # noqa: E402
from tests.e2e.harness import LocalCluster  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


# -- locks --------------------------------------------------------------------------------------


async def contend(args: argparse.Namespace, first: int, count: int) -> dict:
    """``count`` contenders (numbered from ``first``) on one client; their pair latencies."""
    async with AsyncClient(args.endpoints.split(","), timeout=30) as client:
        leases = [await AsyncLease(client, args.ttl).grant() for _ in range(count)]
        waits: list[float] = []
        pairs: list[float] = []
        start = time.monotonic() + 0.5  # every process starts together enough
        stop = start + args.duration

        async def contender(n: int, lease: AsyncLease) -> None:
            name = f"bench-lock-{n % args.locks}"
            await asyncio.sleep(max(0.0, start - time.monotonic()))
            while time.monotonic() < stop:
                began = time.perf_counter()
                key = await client.lock(name, lease.id)
                got = time.perf_counter()
                await client.unlock(key)
                waits.append(got - began)
                pairs.append(time.perf_counter() - began)

        await asyncio.gather(*(contender(first + i, lease) for i, lease in enumerate(leases)))
        elapsed = time.monotonic() - start
        for lease in leases:
            await lease.revoke()
    return {"waits": waits, "pairs": pairs, "elapsed": elapsed}


def _contend_worker(args: argparse.Namespace, first: int, count: int, queue) -> None:
    queue.put(asyncio.run(contend(args, first, count)))


def run_locks(args: argparse.Namespace) -> dict:
    per_proc = [args.contenders // args.procs] * args.procs
    for i in range(args.contenders % args.procs):
        per_proc[i] += 1
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    firsts = [sum(per_proc[:i]) for i in range(args.procs)]
    procs = [
        context.Process(target=_contend_worker, args=(args, firsts[i], per_proc[i], queue))
        for i in range(args.procs)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    waits = sorted(w for r in results for w in r["waits"])
    pairs = sorted(p for r in results for p in r["pairs"])
    elapsed = max(r["elapsed"] for r in results)
    return {
        "contenders": args.contenders,
        "locks": args.locks,
        "pairs": len(pairs),
        "seconds": round(elapsed, 2),
        "pairs_per_s": round(len(pairs) / elapsed, 1),
        "acquire_ms": {
            q: round(percentile(waits, f) * 1000, 2) for q, f in (("p50", 0.5), ("p99", 0.99))
        },
        "pair_ms": {
            q: round(percentile(pairs, f) * 1000, 2) for q, f in (("p50", 0.5), ("p99", 0.99))
        },
    }


# -- leases -------------------------------------------------------------------------------------


async def hold_leases(args: argparse.Namespace) -> None:
    """Grant --leases leases (one key each), keep them alive until SIGTERM, revoke them."""
    async with AsyncClient(args.endpoints.split(","), timeout=60) as client:
        leases: list[AsyncLease] = []
        began = time.monotonic()
        for chunk in range(0, args.leases, 500):
            size = min(500, args.leases - chunk)
            batch = [AsyncLease(client, args.ttl) for _ in range(size)]
            await asyncio.gather(*(lease.grant() for lease in batch))
            await asyncio.gather(
                *(
                    client.put(f"bench-lease/{chunk + i:06d}", "x" * 32, lease=lease.id)
                    for i, lease in enumerate(batch)
                )
            )
            leases.extend(batch)
        print(json.dumps({"ready": len(leases), "grant_s": round(time.monotonic() - began, 2)}))
        sys.stdout.flush()
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        await stopping.wait()
        expired = sum(1 for lease in leases if lease.expired)
        for chunk in range(0, len(leases), 500):
            await asyncio.gather(*(lease.revoke() for lease in leases[chunk : chunk + 500]))
        print(json.dumps({"expired_while_kept": expired}))


def put_load(args: argparse.Namespace, endpoints: str) -> dict:
    command = [sys.executable, os.path.join(HERE, "load.py"), "--endpoints", endpoints]
    command += ["--duration", "0", "--count", str(args.puts)]
    command += shlex.split(args.load_args) + ["--json"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def member_cpu(pids: list[int]) -> float:
    return sum(sum(cpu_seconds(pid)) for pid in pids)


def measured_load(args: argparse.Namespace, endpoints: str, pids: list[int]) -> dict:
    """Put throughput and the members' CPU per put (steadier than puts/s here)."""
    before = member_cpu(pids)
    summary = put_load(args, endpoints)
    used = member_cpu(pids) - before
    return {
        "puts_per_s": summary["throughput_per_s"],
        "p99_ms": summary["latency_ms"]["p99"],
        "member_cpu_us_per_put": round(used / summary["requests"] * 1e6, 1),
    }


def idle_cpu_percent(pids: list[int], seconds: float = 5.0) -> float:
    before = member_cpu(pids)
    time.sleep(seconds)
    return round((member_cpu(pids) - before) / seconds * 100, 2)


def lease_round(args: argparse.Namespace, endpoints: str, pids: list[int]) -> dict:
    """Puts before, with and after --leases kept-alive leases; idle CPU with them."""
    before = measured_load(args, endpoints, pids)
    idle_without = idle_cpu_percent(pids)
    holder = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "hold-leases", "--endpoints", endpoints]
        + ["--leases", str(args.leases), "--ttl", str(args.ttl)],
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = json.loads(holder.stdout.readline())
    time.sleep(args.ttl)  # keep-alives reach their steady rate
    idle_with = idle_cpu_percent(pids)
    with_leases = measured_load(args, endpoints, pids)
    holder.send_signal(signal.SIGTERM)
    done = json.loads(holder.stdout.readline())
    holder.wait()
    after = measured_load(args, endpoints, pids)
    base_rate = (before["puts_per_s"] + after["puts_per_s"]) / 2
    base_cpu = (before["member_cpu_us_per_put"] + after["member_cpu_us_per_put"]) / 2
    return {
        "grant_and_attach_s": ready["grant_s"],
        "expired_while_kept": done["expired_while_kept"],
        "before": before,
        "with_leases": with_leases,
        "after": after,
        "throughput_ratio": round(with_leases["puts_per_s"] / base_rate, 3),
        "cpu_per_put_ratio": round(with_leases["member_cpu_us_per_put"] / base_cpu, 3),
        "idle_member_cpu_percent": {"without": idle_without, "with_leases": idle_with},
    }


def run_leases(args: argparse.Namespace) -> dict:
    """On a fresh 3-member cluster (so the members' CPU can be read from /proc)."""
    root = tempfile.mkdtemp(prefix="pyraftkv-leases-")
    cluster = LocalCluster(
        root, 3, extra_args=["--heartbeat-interval", "100", "--election-timeout", "1000"]
    )
    try:
        cluster.start()
        endpoints = ",".join(cluster.endpoints)
        pids = [m.process.pid for m in cluster.members]
        pids += [raft_pid(pid) for pid in pids]
        rounds = [lease_round(args, endpoints, pids) for _ in range(args.rounds)]
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)

    def median(name: str) -> float:
        values = sorted(r[name] for r in rounds)
        return values[len(values) // 2]

    return {
        "leases": args.leases,
        "ttl_s": args.ttl,
        "keep_alives_per_s": round(3 * args.leases / args.ttl),
        "rounds": rounds,
        "median_throughput_ratio": median("throughput_ratio"),
        "median_cpu_per_put_ratio": median("cpu_per_put_ratio"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["locks", "leases", "hold-leases"])
    parser.add_argument("--endpoints", default="127.0.0.1:2379")
    parser.add_argument("--contenders", type=int, default=16)
    parser.add_argument("--locks", type=int, default=1, help="distinct locks shared out")
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--leases", type=int, default=10_000)
    parser.add_argument("--ttl", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="before/with/after rounds")
    parser.add_argument("--puts", type=int, default=60_000, help="puts per load phase")
    parser.add_argument("--load-args", default="--clients 256 --conns 6")
    args = parser.parse_args(argv)
    if args.command == "hold-leases":
        asyncio.run(hold_leases(args))
        return 0
    result = run_locks(args) if args.command == "locks" else run_leases(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
