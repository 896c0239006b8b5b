"""check perf: etcdctl's performance check — a rate-capped write load, then PASS/FAIL.

The workloads, the keys (the prefix followed by 256 bytes starting with a random varint),
the 1 KiB values, the progress line and the pass rule (throughput above 90% of the cap,
slowest write under 0.5 s, standard deviation under 0.1 s, no errors) are etcdctl's, so
figures compare with etcd's directly. pyraftkv adds ``--duration`` (etcdctl's is fixed at
60 s) and, when the cluster reports them, where each write's time went: the members' stage
trace histograms (the Status call's ``write_stages``) read before and after the load, p50
and p99 of each stage over the writes traced meanwhile.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..client.aio import AsyncClient
from ..client.requests import delete_request
from ..errors import ApiError, PyraftkvError
from ..proto import rpc_pb2 as rpc
from .command import ALL_FORMATS, command, group
from .errors import EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT, CtlError
from .flags import Flag
from .gotext import go_duration
from .invocation import Invocation

KEY_BYTES = 256
VALUE_BYTES = 1024
# Connections the check's clients share; pyraftkv's clients multiplex many requests on one.
MAX_CONNECTIONS = 8


@dataclass(frozen=True)
class Load:
    """One of etcdctl's workloads: a write rate cap and how many clients send."""

    limit: int
    clients: int


LOADS = {
    "s": Load(150, 50),
    "m": Load(1000, 200),
    "l": Load(8000, 500),
    "xl": Load(15000, 1000),
}
ALIASES = {
    "s": "s",
    "small": "s",
    "m": "m",
    "medium": "m",
    "l": "l",
    "large": "l",
    "xl": "xl",
    "xLarge": "xl",
}

group("check", "commands for checking properties of the etcd cluster")


def zigzag_varint(value: int) -> bytes:
    """Go's binary.PutVarint: zig-zag, then base-128 little-endian groups."""
    unsigned = (value << 1) ^ (value >> 63)
    out = bytearray()
    while unsigned >= 0x80:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)
    return bytes(out)


def check_key(prefix: bytes, rng: random.Random) -> bytes:
    """etcdctl's key: the prefix, then 256 bytes beginning with a random varint."""
    head = zigzag_varint(rng.randrange(1 << 63))
    return prefix + head + bytes(KEY_BYTES - len(head))


@dataclass
class Result:
    """What the load measured: latencies of the writes that succeeded, errors by text."""

    latencies_s: list[float]
    errors: dict[str, int]
    elapsed_s: float

    @property
    def writes_per_s(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s > 0 else 0.0


def verdict(result: Result, load: Load) -> tuple[list[str], bool]:
    """etcdctl's report lines and whether the check passed."""
    lines: list[str] = []
    ok = True
    if result.errors:
        lines.append("FAIL: too many errors")
        lines.extend(f"FAIL: ERROR({text}) -> {n}" for text, n in result.errors.items())
        ok = False
    writes = int(result.writes_per_s) + 1
    if result.writes_per_s / load.limit <= 0.9:
        lines.append(f"FAIL: Throughput too low: {writes} writes/s")
        ok = False
    else:
        lines.append(f"PASS: Throughput is {writes} writes/s")
    slowest = max(result.latencies_s, default=0.0)
    if slowest > 0.5:
        lines.append(f"Slowest request took too long: {slowest:f}s")
        ok = False
    else:
        lines.append(f"PASS: Slowest request took {slowest:f}s")
    stddev = statistics.pstdev(result.latencies_s) if result.latencies_s else 0.0
    if stddev > 0.1:
        lines.append(f"Stddev too high: {stddev:f}s")
        ok = False
    else:
        lines.append(f"PASS: Stddev is {stddev:f}s")
    lines.append("PASS" if ok else "FAIL")
    return lines, ok


def progress_line(done_s: int, total_s: int, elapsed_s: float) -> str:
    """The progress bar as etcdctl prints it when stdout is not a terminal."""
    line = f" {done_s} / {total_s} {100.0 * done_s / total_s:7.2f}%"
    if done_s == 0:
        return line
    if done_s >= total_s:
        return f"{line} {go_duration(round(elapsed_s) * 1_000_000_000)}"
    remaining = max(0, total_s - done_s)
    return f"{line} {remaining // 60:02d}m{remaining % 60:02d}s"


async def run_load(
    clients: list[AsyncClient], load: Load, prefix: bytes, duration_s: float, seed: int
) -> Result:
    """Send puts at up to ``load.limit`` per second from ``load.clients`` workers."""
    rng = random.Random(seed)
    value = bytes(VALUE_BYTES)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=load.clients)
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def worker(client: AsyncClient) -> None:
        while (key := await queue.get()) is not None:
            start = time.monotonic()
            try:
                await client.put(key, value)
            except (ApiError, OSError, asyncio.TimeoutError) as exc:
                text = str(exc) or type(exc).__name__
                errors[text] = errors.get(text, 0) + 1
            else:
                latencies.append(time.monotonic() - start)

    async def produce() -> None:
        # A token bucket refilled at the cap, holding one token (etcdctl's rate.Limiter
        # with burst 1), checked every millisecond rather than sleeping per token.
        issued = 0
        start = time.monotonic()
        while (now := time.monotonic()) - start < duration_s:
            due = min(int((now - start) * load.limit) + 1, math.ceil(duration_s * load.limit))
            while issued < due:
                await queue.put(check_key(prefix, rng))
                issued += 1
            await asyncio.sleep(0.001)
        for _ in range(load.clients):
            await queue.put(None)

    started = time.monotonic()
    workers = [
        asyncio.ensure_future(worker(clients[i % len(clients)])) for i in range(load.clients)
    ]
    await produce()
    await asyncio.gather(*workers)
    return Result(latencies, errors, time.monotonic() - started)


def quantile(bounds: Iterable[float], counts: list[int], q: float) -> float:
    """The q-quantile of a bucketed distribution (linear within a bucket; a sample in the
    unbounded bucket reads as the last bound)."""
    bounds = list(bounds)
    total = sum(counts)
    if not total:
        return 0.0
    rank = q * total
    seen = 0
    lower = 0.0
    for i, n in enumerate(counts):
        upper = bounds[i] if i < len(bounds) else bounds[-1]
        if n and seen + n >= rank:
            return lower + (upper - lower) * (rank - seen) / n
        seen += n
        lower = upper
    return bounds[-1]


Stages = dict[str, tuple[tuple[float, ...], list[int]]]  # stage -> (bounds, counts)
# Status names the stages of the writes a follower took and forwarded with this prefix.
FORWARDED = "forwarded/"


async def stage_histograms(client: AsyncClient, endpoints: tuple[str, ...]) -> Stages:
    """The stage trace histograms of every member that answers, added together."""
    total: Stages = {}
    for endpoint in endpoints:
        try:
            status = await client.status(endpoint)
        except (ApiError, PyraftkvError, OSError, asyncio.TimeoutError):
            continue  # a member that cannot say contributes nothing
        for stage in status.write_stages:
            bounds = tuple(stage.upper_bounds)
            if stage.stage not in total:
                total[stage.stage] = (bounds, [0] * len(stage.counts))
            if total[stage.stage][0] == bounds and len(stage.counts) == len(bounds) + 1:
                counts = total[stage.stage][1]
                for i, n in enumerate(stage.counts):
                    counts[i] += n
    return total


def stage_percentiles(before: Stages, after: Stages) -> tuple[int, dict[str, tuple[float, float]]]:
    """Writes traced between the two readings, and each stage's (p50, p99) in seconds
    over them, in the order a write passes the stages (``total`` last)."""
    rows = {}
    writes = 0
    for stage, (bounds, counts) in after.items():
        earlier = before.get(stage, (bounds, [0] * len(counts)))[1]
        delta = [n - m for n, m in zip(counts, earlier, strict=True)]
        if stage == "total":
            writes = sum(delta)
        rows[stage] = (quantile(bounds, delta, 0.5), quantile(bounds, delta, 0.99))
    return writes, rows


def _named(stages: Stages, prefix: str) -> Stages:
    """The stages whose name is ``prefix`` and a plain stage name, without the prefix."""
    return {
        name[len(prefix) :]: value
        for name, value in stages.items()
        if name.startswith(prefix) and "/" not in name[len(prefix) :]
    }


def stage_lines(before: Stages, after: Stages) -> list[str]:
    """The stage breakdown as check perf prints it: the writes leaders took, then those
    followers took and forwarded (nothing for either if none of its writes was traced)."""
    lines = []
    for prefix, which in (("", "write"), (FORWARDED, "write a follower forwarded")):
        writes, rows = stage_percentiles(_named(before, prefix), _named(after, prefix))
        if not writes:
            continue
        lines += [
            "",
            f"Where each {which}'s time went ({writes} writes traced; per-stage "
            "percentiles, which do not add up):",
            f"{'stage':<10} {'p50':>10} {'p99':>10}",
        ]
        for stage, (p50, p99) in rows.items():
            lines.append(f"{stage:<10} {p50 * 1000:>7.3f} ms {p99 * 1000:>7.3f} ms")
    return lines


async def _show_progress(inv: Invocation, total_s: int) -> None:
    started = time.monotonic()
    for done in range(total_s + 1):
        await asyncio.sleep(max(0.0, started + done - time.monotonic()))
        end = "\n" if done == total_s else "\r"
        inv.stdout.write((progress_line(done, total_s, time.monotonic() - started) + end).encode())
        inv.stdout.flush()


@command(
    "check",
    "perf",
    summary="Check the performance of the etcd cluster",
    usage="[options]",
    flags=(
        Flag(
            "load",
            "str",
            "s",
            "The performance check's workload model. Accepted workloads: s(small), "
            "m(medium), l(large), xl(xLarge)",
        ),
        Flag(
            "prefix",
            "str",
            "/etcdctl-check-perf/",
            "The prefix for writing the performance check's keys.",
        ),
        Flag(
            "auto-compact",
            "bool",
            False,
            "Compact storage with last revision after test is finished.",
        ),
        Flag("duration", "duration", 60.0, "How long the load runs (etcdctl: always 60s)."),
    ),
    formats=ALL_FORMATS,
    description="""Writes at the workload's rate cap for --duration, deletes what it wrote,
then reports throughput, the slowest write and the standard deviation of write latency
with etcdctl's PASS/FAIL rule (exit code 1 on FAIL).""",
)
async def check_perf(inv: Invocation) -> int | None:
    """Run etcdctl's performance check against the cluster."""
    model = ALIASES.get(inv.opts.load)
    if model is None:
        raise CtlError(f"unknown load option {inv.opts.load}", EXIT_BAD_FEATURE)
    load = LOADS[model]
    prefix = inv.opts.prefix.encode()
    first = await inv.client()
    existing = await first.get(prefix, prefix=True, limit=1)
    if existing.kvs:
        raise CtlError(
            f'prefix "{inv.opts.prefix}" has keys. Delete with etcdctl del --prefix '
            f"{inv.opts.prefix} first",
            EXIT_INVALID_INPUT,
        )
    connections = min(load.clients, MAX_CONNECTIONS)
    clients = [first] + [inv.new_client() for _ in range(connections - 1)]
    duration_s = inv.opts.duration
    endpoints = inv.settings.endpoints
    before = await stage_histograms(first, endpoints)
    progress = asyncio.ensure_future(_show_progress(inv, max(1, round(duration_s))))
    try:
        result = await run_load(clients, load, prefix, duration_s, seed=time.time_ns())
        await progress
    finally:
        progress.cancel()
    after = await stage_histograms(first, endpoints)
    deleted = await first.call("DeleteRange", delete_request(prefix, prefix=True), 30.0)
    if inv.opts.auto_compact:
        compaction = rpc.CompactionRequest(revision=deleted.header.revision, physical=True)
        await first.call("Compact", compaction)
    lines, ok = verdict(result, load)
    for line in lines + stage_lines(before, after):
        inv.write(line)
    return None if ok else EXIT_ERROR
