"""Load generator for a pyraftkv cluster: throughput and latency of writes and reads.

Closed loop: ``--clients`` concurrent clients share ``--conns`` connections (pipelined and
multiplexed); each client sends one request, waits for its answer, sends the next. Every
write is a Put that the cluster acknowledges only after a majority fsynced it.

    python bench/load.py --endpoints 127.0.0.1:2379 --clients 256 --conns 8 \\
        --duration 10 --key-size 16 --value-size 128 --read-ratio 0

Prints throughput and latency p50/p90/p99/max; ``--save FILE`` writes raw latencies (one
per line, microseconds). ``--procs N`` runs N generator processes and merges their results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pyraftkv.client.aio import normalize_endpoint  # noqa: E402
from pyraftkv.node.event_loop import run  # noqa: E402
from pyraftkv.proto import rpc_pb2 as rpc  # noqa: E402
from pyraftkv.protocol.frames import (  # noqa: E402
    DEFAULT_MAX_REPLY_FRAME_BYTES,
    ERROR,
    REPLY_KINDS,
    FrameDecoder,
    encode_frame,
)
from pyraftkv.protocol.methods import BY_NAME  # noqa: E402

PUT = BY_NAME["Put"].number
RANGE = BY_NAME["Range"].number


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


class ClosedLoop(asyncio.Protocol):
    """One connection carrying ``clients`` closed-loop clients: each reply is answered at
    once by that client's next request, written with the others of the same read. No
    coroutine or future per request, so the generator costs little next to the cluster."""

    def __init__(self, plan: Plan, clients: int, seed: int) -> None:
        self.plan = plan
        self.clients = clients
        self.rng = random.Random(seed)
        self.decoder = FrameDecoder(DEFAULT_MAX_REPLY_FRAME_BYTES, REPLY_KINDS)
        self.sent_at: dict[int, float] = {}
        self.next_stream = 1
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()
        self.active = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        out = []
        for _ in range(self.clients):
            frame = self._next_request()
            if frame is None:
                break
            out.append(frame)
        self.active = len(out)
        transport.write(b"".join(out))
        if not self.active and not self.done.done():
            self.done.set_result(None)

    def _next_request(self) -> bytes | None:
        plan = self.plan
        if not plan.take():
            return None
        i = self.rng.randrange(len(plan.puts))
        if plan.read_ratio and self.rng.random() < plan.read_ratio:
            method, body = RANGE, plan.reads[i]
        else:
            method, body = PUT, plan.puts[i]
        stream = self.next_stream
        self.next_stream += 1
        self.sent_at[stream] = time.perf_counter()
        return encode_frame(stream, method, body)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        out = []
        latencies, sent_at = self.plan.latencies, self.sent_at
        for stream, kind, _flags, _body in self.decoder.feed(data):
            started = sent_at.pop(stream, None)
            if started is None:
                continue
            if kind == ERROR:
                self.plan.errors += 1
            else:
                latencies.append(now - started)
            frame = self._next_request()
            if frame is None:
                self.active -= 1
            else:
                out.append(frame)
        if out:
            self.transport.write(b"".join(out))
        if self.active <= 0 and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))


class Plan:
    """What to send and when to stop, shared by every connection of one process."""

    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        rng = random.Random(seed)
        value = os.urandom(args.value_size // 2 + 1).hex()[: args.value_size].encode()
        keys = [
            f"{rng.getrandbits(64):016x}".encode().ljust(args.key_size, b"k")[: args.key_size]
            for _ in range(args.key_space)
        ]
        self.puts = [rpc.PutRequest(key=k, value=value).SerializeToString() for k in keys]
        self.reads = [
            rpc.RangeRequest(key=k, serializable=args.serializable).SerializeToString()
            for k in keys
        ]
        self.read_ratio = args.read_ratio
        self.remaining = args.count or None
        self.stop_at = time.monotonic() + args.duration if args.duration else None
        self.latencies: list[float] = []
        self.errors = 0
        self._checks = 0

    def take(self) -> bool:
        """Whether one more request may be sent."""
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        if self.stop_at is not None:
            self._checks += 1
            if self._checks % 64 == 0 and time.monotonic() >= self.stop_at:
                self.stop_at = 0.0
            if self.stop_at == 0.0:
                return False
        return True


async def run_load(args: argparse.Namespace, seed: int) -> dict:
    loop = asyncio.get_running_loop()
    endpoints = [normalize_endpoint(e) for e in args.endpoints.split(",")]
    plan = Plan(args, seed)
    per_conn = [
        args.clients // args.conns + (1 if i < args.clients % args.conns else 0)
        for i in range(args.conns)
    ]
    began = time.perf_counter()
    protocols = []
    for i, clients in enumerate(per_conn):
        host, _, port = endpoints[i % len(endpoints)].rpartition(":")
        _, protocol = await loop.create_connection(
            lambda c=clients, n=i: ClosedLoop(plan, c, seed * 1000 + n), host, int(port)
        )
        protocols.append(protocol)
    await asyncio.gather(*(p.done for p in protocols))
    elapsed = time.perf_counter() - began
    for protocol in protocols:
        protocol.transport.close()
    return {"latencies": plan.latencies, "errors": plan.errors, "elapsed": elapsed}


def _worker(args: argparse.Namespace, seed: int, queue) -> None:
    queue.put(run(run_load(args, seed)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", default="127.0.0.1:2379")
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (0: use --count)")
    parser.add_argument("--count", type=int, default=0, help="total requests (with --duration 0)")
    parser.add_argument("--key-size", type=int, default=16)
    parser.add_argument("--value-size", type=int, default=128)
    parser.add_argument("--key-space", type=int, default=100_000)
    parser.add_argument("--read-ratio", type=float, default=0.0, help="fraction of reads")
    parser.add_argument("--serializable", action="store_true", help="serializable reads")
    parser.add_argument("--procs", type=int, default=1, help="generator processes")
    parser.add_argument("--save", help="write raw latencies (microseconds) here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if args.duration == 0 and args.count == 0:
        parser.error("give --duration or --count")
    if args.procs > 1:
        if args.count:
            args.count //= args.procs
        args.clients = max(1, args.clients // args.procs)
        args.conns = max(1, args.conns // args.procs)
        queue = multiprocessing.get_context("fork").Queue()
        procs = [
            multiprocessing.get_context("fork").Process(target=_worker, args=(args, s, queue))
            for s in range(args.procs)
        ]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
    else:
        results = [run(run_load(args, 0))]
    latencies = sorted(x for r in results for x in r["latencies"])
    elapsed = max(r["elapsed"] for r in results)
    summary = {
        "requests": len(latencies),
        "errors": sum(r["errors"] for r in results),
        "seconds": round(elapsed, 3),
        "throughput_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {
            name: round(percentile(latencies, q) * 1000, 3)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
        "clients": args.clients * args.procs,
        "conns": args.conns * args.procs,
        "key_size": args.key_size,
        "value_size": args.value_size,
        "read_ratio": args.read_ratio,
    }
    if args.save:
        with open(args.save, "w") as f:
            f.writelines(f"{x * 1e6:.1f}\n" for x in latencies)
    if args.json:
        print(json.dumps(summary))
    else:
        lat = summary["latency_ms"]
        print(
            f"{summary['requests']} requests in {summary['seconds']} s: "
            f"{summary['throughput_per_s']:.0f}/s, {summary['errors']} errors; latency ms "
            f"p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} max {lat['max']}"
        )
    return 0 if summary["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
