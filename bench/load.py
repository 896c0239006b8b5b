"""Load generator for a pyraftkv cluster: throughput and latency of writes and reads.

Closed loop: ``--clients`` concurrent clients share ``--conns`` connections (pipelined and
multiplexed); each client sends one request, waits for its answer, sends the next. Open
loop (``--rate R``): R requests a second whatever the answers do, sent each millisecond
as they fall due, each request's latency counted from when it was due. Every write is a
Put that the cluster acknowledges only after a majority fsynced it.

    python bench/load.py --endpoints 127.0.0.1:2379 --clients 256 --conns 8 \\
        --duration 10 --key-size 16 --value-size 128 --read-ratio 0

Prints throughput and latency p50/p90/p99/max; ``--save FILE`` writes raw latencies (one
per line, microseconds). ``--procs N`` runs N generator processes and merges their results.
``--plot PREFIX`` draws the latency CDF and the throughput over time (needs matplotlib),
and where the writes' time went (PREFIX-stages.png: p50/p99 of each stage of the members'
per-write stage trace over the run, as ``pyraftkvctl check perf`` prints it).
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

from pyraftkv.client.aio import AsyncClient, normalize_endpoint  # noqa: E402
from pyraftkv.client.connection import split_endpoint  # noqa: E402
from pyraftkv.client.tls import TLS  # noqa: E402
from pyraftkv.ctl.check import Stages, stage_histograms, stage_percentiles  # noqa: E402
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


class Connection(asyncio.Protocol):
    """One connection of the generator: builds request frames and matches replies."""

    def __init__(self, plan: Plan, seed: int) -> None:
        self.plan = plan
        self.rng = random.Random(seed)
        self.decoder = FrameDecoder(DEFAULT_MAX_REPLY_FRAME_BYTES, REPLY_KINDS)
        self.sent_at: dict[int, float] = {}
        self.next_stream = 1
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def frame(self, sent_at: float) -> bytes | None:
        """The next request (None once the plan says stop); its latency counts from
        ``sent_at``."""
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
        self.sent_at[stream] = sent_at
        return encode_frame(stream, method, body)

    def replies(self, data: bytes) -> int:
        """Record the latency of every reply in ``data``; returns how many there were."""
        now = time.perf_counter()
        plan, sent_at = self.plan, self.sent_at
        count = 0
        for stream, kind, _flags, _body in self.decoder.feed(data):
            started = sent_at.pop(stream, None)
            if started is None:
                continue
            count += 1
            if kind == ERROR:
                plan.errors += 1
            else:
                plan.latencies.append(now - started)
                plan.finished_at.append(now)
        return count

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))


class ClosedLoop(Connection):
    """``clients`` closed-loop clients on one connection: each reply is answered at once
    by that client's next request, written with the others of the same read. No coroutine
    or future per request, so the generator costs little next to the cluster."""

    def __init__(self, plan: Plan, clients: int, seed: int) -> None:
        super().__init__(plan, seed)
        self.clients = clients
        self.active = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        now = time.perf_counter()
        out = [f for _ in range(self.clients) if (f := self.frame(now)) is not None]
        self.active = len(out)
        transport.write(b"".join(out))
        if not self.active:
            self.finish()

    def data_received(self, data: bytes) -> None:
        answered = self.replies(data)
        now = time.perf_counter()
        out = [f for _ in range(answered) if (f := self.frame(now)) is not None]
        self.active -= answered - len(out)
        if out:
            self.transport.write(b"".join(out))
        if self.active <= 0:
            self.finish()


# The open loop sends what is due at most this often (requests due meanwhile go together).
OPEN_LOOP_TICK_S = 0.001


class OpenLoop(Connection):
    """Requests at a fixed rate whatever the replies do (a closed loop slows down with the
    cluster and hides queueing). Each request's latency counts from the moment it was due,
    not from when the generator got round to sending it."""

    def __init__(self, plan: Plan, rate_per_s: float, seed: int) -> None:
        super().__init__(plan, seed)
        self.rate_per_s = rate_per_s

    def connection_made(self, transport) -> None:
        self.transport = transport
        asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        start = time.perf_counter()
        interval = 1.0 / self.rate_per_s
        sent = 0
        while True:
            due = int((time.perf_counter() - start) * self.rate_per_s) + 1
            out = []
            while sent < due:
                frame = self.frame(start + sent * interval)
                if frame is None:
                    break
                out.append(frame)
                sent += 1
            if out:
                self.transport.write(b"".join(out))
            if sent < due:
                break
            # Sleep until the next request is due, but at least OPEN_LOOP_TICK_S: waking
            # for each request (10,000 times a second) cost the generator 75 us of CPU
            # per request, a third of this 2-core machine taken from the members. The
            # wait counts in each request's latency (measured from when it was due).
            await asyncio.sleep(
                max(OPEN_LOOP_TICK_S, start + sent * interval - time.perf_counter())
            )
        waited_until = time.perf_counter() + 10.0
        while self.sent_at and time.perf_counter() < waited_until:
            await asyncio.sleep(0.01)
        self.plan.errors += len(self.sent_at)  # never answered: counted as failures
        self.finish()

    def data_received(self, data: bytes) -> None:
        self.replies(data)


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
        self.finished_at: list[float] = []
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
    ssl = (
        TLS(ca_file=args.cacert, cert_file=args.cert, key_file=args.key).context()
        if args.cacert
        else None
    )
    began = time.perf_counter()
    protocols = []
    for i, clients in enumerate(per_conn):
        host, port = split_endpoint(endpoints[i % len(endpoints)])
        if args.rate:
            make = lambda n=i: OpenLoop(plan, args.rate / args.conns, seed * 1000 + n)  # noqa: E731
        else:
            make = lambda c=clients, n=i: ClosedLoop(plan, c, seed * 1000 + n)  # noqa: E731
        _, protocol = await loop.create_connection(
            make, host, int(port), ssl=ssl, server_hostname=host if ssl else None
        )
        protocols.append(protocol)
    await asyncio.gather(*(p.done for p in protocols))
    elapsed = time.perf_counter() - began
    for protocol in protocols:
        protocol.transport.close()
    # Completion times as seconds since the start, for throughput over time.
    finished = [t - began for t in plan.finished_at]
    return {
        "latencies": plan.latencies,
        "finished": finished,
        "errors": plan.errors,
        "elapsed": elapsed,
    }


def read_stages(args: argparse.Namespace) -> Stages:
    """The members' stage trace histograms, added together."""
    endpoints = tuple(normalize_endpoint(e) for e in args.endpoints.split(","))
    tls = TLS(ca_file=args.cacert, cert_file=args.cert, key_file=args.key) if args.cacert else None

    async def read() -> Stages:
        async with AsyncClient(endpoints, tls=tls) as client:
            return await stage_histograms(client, endpoints)

    return run(read())


def _worker(args: argparse.Namespace, seed: int, queue) -> None:
    queue.put(run(run_load(args, seed)))


def arguments() -> argparse.ArgumentParser:
    """The generator's flags (also how bench/snapshot_stall.py describes its load)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", default="127.0.0.1:2379")
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: requests/s in all (latency counted from when each was due); "
        "0 (default): closed loop with --clients",
    )
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (0: use --count)")
    parser.add_argument("--count", type=int, default=0, help="total requests (with --duration 0)")
    parser.add_argument("--key-size", type=int, default=16)
    parser.add_argument("--value-size", type=int, default=128)
    parser.add_argument("--key-space", type=int, default=100_000)
    parser.add_argument("--read-ratio", type=float, default=0.0, help="fraction of reads")
    parser.add_argument("--serializable", action="store_true", help="serializable reads")
    parser.add_argument("--procs", type=int, default=1, help="generator processes")
    parser.add_argument("--cacert", help="TLS: verify the members with this CA")
    parser.add_argument("--cert", help="TLS: client certificate (with --cacert)")
    parser.add_argument("--key", help="TLS: client key (with --cacert)")
    parser.add_argument("--save", help="write raw latencies (microseconds) here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--plot",
        metavar="PREFIX",
        help="write PREFIX-cdf.png, PREFIX-throughput.png and PREFIX-stages.png",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    if args.duration == 0 and args.count == 0:
        parser.error("give --duration or --count")
    stages_before = read_stages(args) if args.plot else {}
    if args.procs > 1:
        if args.count:
            args.count //= args.procs
        args.clients = max(1, args.clients // args.procs)
        args.rate /= args.procs
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
        "mode": f"open loop at {args.rate * args.procs:.0f}/s" if args.rate else "closed loop",
        "clients": args.clients * args.procs,
        "conns": args.conns * args.procs,
        "key_size": args.key_size,
        "value_size": args.value_size,
        "read_ratio": args.read_ratio,
    }
    if args.save:
        with open(args.save, "w") as f:
            f.writelines(f"{x * 1e6:.1f}\n" for x in latencies)
    if args.plot:
        from plots import latency_cdf, stage_breakdown, throughput_over_time

        traced, stages = stage_percentiles(stages_before, read_stages(args))
        if traced:
            stage_breakdown(
                f"{args.plot}-stages.png",
                {name: (p50 * 1000, p99 * 1000) for name, (p50, p99) in stages.items()},
            )

        label = f"{summary['mode']}, {summary['throughput_per_s']:.0f}/s"
        latency_cdf(f"{args.plot}-cdf.png", {label: latencies})
        finished = sorted(t for r in results for t in r["finished"])
        throughput_over_time(f"{args.plot}-throughput.png", {label: finished})
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
