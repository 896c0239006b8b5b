"""Metrics and health over HTTP (``--listen-metrics-urls``), named as etcd's.

``GET /metrics`` answers in the Prometheus text format with the figures operators of etcd
watch: the WAL's fdatasync, the backend commit and the peer round trip latency histograms,
leadership, proposals, database size, keys and watchers; and pyraftkv's per-write stage
trace (write_trace.py). ``GET /health`` answers ``{"health":"true"}`` once this member
knows a leader and a linearizable read through it succeeds, as etcd's does. The server
reads one request per connection, answers and closes; it is for scrapers and probes, not
for load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from ssl import SSLContext
from typing import Any

from ..admin.cluster import Url
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import METHODS
from . import process_stats
from .ringproto import SyncLatency
from .write_trace import STAGES

# etcd's buckets for etcd_disk_wal_fsync_duration_seconds: 1 ms doubling to 8.192 s.
WAL_FSYNC_BUCKETS = tuple(0.001 * 2**k for k in range(14))
MAX_REQUEST_BYTES = 8192
READ_TIMEOUT_S = 5.0
HEALTH_TIMEOUT_S = 1.0


def histogram_lines(name: str, help_text: str, latency: SyncLatency) -> list[str]:
    """A Prometheus histogram on WAL_FSYNC_BUCKETS from the WAL's finer buckets.

    A sample counts under ``le`` when its whole bucket lies at or below ``le``; the WAL's
    buckets are 1/8 of a power of two wide, so a sample near a bound may show one bucket
    later, never earlier.
    """
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound in WAL_FSYNC_BUCKETS:
        below = sum(n for upper, n in latency.buckets if upper <= bound)
        lines.append(f'{name}_bucket{{le="{bound:g}"}} {below}')
    lines.append(f'{name}_bucket{{le="+Inf"}} {latency.count}')
    lines.append(f"{name}_sum {latency.sum_seconds!r}")
    lines.append(f"{name}_count {latency.count}")
    return lines


def render(app: Any) -> str:
    """The member's metrics in the Prometheus text exposition format (version 0.0.4)."""
    lines = histogram_lines(
        "etcd_disk_wal_fsync_duration_seconds",
        "fdatasync latencies of the write-ahead log.",
        app.wal_sync_latency,
    )
    trace = app.trace
    lines += _head(
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
    )
    lines += trace.backend_commit.lines("etcd_disk_backend_commit_duration_seconds")
    lines += _head(
        "etcd_network_peer_round_trip_time_seconds",
        "Round-Trip-Time histogram between peers (heartbeat to its answer).",
    )
    for peer, histogram in sorted(trace.peer_rtt.items()):
        lines += histogram.lines("etcd_network_peer_round_trip_time_seconds", f'To="{peer:x}"')
    for kind, histograms, taken_by in (
        ("write", trace.taken, "writes this member took as leader"),
        ("forwarded_write", trace.forwarded, "writes this member took as a follower"),
    ):
        name = f"pyraftkv_{kind}_stage_duration_seconds"
        lines += _head(name, f"Time traced {taken_by} spent in each stage, per write.")
        for stage, histogram in zip(STAGES, histograms.stages, strict=True):
            lines += histogram.lines(name, f'stage="{stage}"')
        name = f"pyraftkv_{kind}_duration_seconds"
        lines += _head(name, f"Whole time of traced {taken_by}, from batched to reply written.")
        lines += histograms.total.lines(name)
    store = app.store
    figures = (
        ("etcd_server_has_leader", "gauge", "1 if this member knows a leader, else 0.",
         int(app.leader_id != 0)),
        ("etcd_server_is_leader", "gauge", "1 if this member is the leader, else 0.",
         int(app.leader_id == app.member_id)),
        ("etcd_server_leader_changes_seen_total", "counter",
         "Times this member saw a new leader.", app.leader_changes),
        ("etcd_server_heartbeat_send_failures_total", "counter",
         "Heartbeats this member sent as leader over twice their interval after the last "
         "(the Raft process blocked or short of CPU).", app.heartbeats_late),
        ("etcd_server_slow_apply_total", "counter",
         "Entries whose requests took over 100 ms to apply.", app.slow_applies),
        ("etcd_server_proposals_failed_total", "counter",
         "Writes refused by Raft (no leader, leader changing) or timed out.",
         app.proposals.failed),
        ("etcd_server_quota_backend_bytes", "gauge",
         "--quota-backend-bytes: the store size that raises NOSPACE.", app.quota_bytes),
        ("etcd_server_proposals_committed_total", "gauge",
         "Raft index committed, as this member knows it.", app.commit_index),
        ("etcd_server_proposals_applied_total", "gauge",
         "Raft index applied to this member's store.", app.applied_index),
        ("etcd_server_proposals_pending", "gauge",
         "Writes sent to be proposed and not applied yet.", app.pending_writes),
        ("etcd_mvcc_db_total_size_in_bytes", "gauge",
         "Size of the LMDB database file.", store.db_size()),
        ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge",
         "Bytes of the LMDB database in use.", store.db_size_in_use()),
        ("etcd_debugging_mvcc_current_revision", "gauge",
         "The store's current revision.", store.revision),
        ("etcd_debugging_mvcc_keys_total", "gauge",
         "Keys in the key index (deleted ones until compacted).", store.keys_in_index()),
        ("etcd_debugging_mvcc_watcher_total", "gauge",
         "Watchers on this member.", len(app.watch_hub)),
    )  # fmt: skip
    figures += (("pyraftkv_leases", "gauge", "Live leases.", len(app.lessor.leases)),)
    figures += _process_figures(app.raft_pid)
    for name, kind, help_text, value in figures:
        lines += (f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}")
    name = "pyraftkv_requests_total"
    lines += (
        f"# HELP {name} Client requests served, by method, on every protocol.",
        f"# TYPE {name} counter",
    )
    served = app.requests_served
    lines += [
        f'{name}{{method="{m.name}"}} {served[m.number]}' for m in METHODS if served[m.number]
    ]
    lines += app.grpc_calls.lines()
    return "\n".join(lines) + "\n"


def _process_figures(raft_pid: int | None) -> tuple:
    """The process collector's figures for this (the application) process, as Prometheus
    clients name them, and the Raft process's CPU and memory beside them."""
    figures: tuple = ()
    with contextlib.suppress(OSError):  # /proc unreadable: no figures rather than no page
        own = process_stats.read(os.getpid())
        figures += (
            ("process_cpu_seconds_total", "counter", "User and system CPU time, seconds.",
             own.cpu_seconds),
            ("process_resident_memory_bytes", "gauge", "Resident memory size.",
             own.resident_bytes),
            ("process_virtual_memory_bytes", "gauge", "Virtual memory size.", own.virtual_bytes),
            ("process_start_time_seconds", "gauge", "Start time since the Unix epoch.",
             own.start_time_seconds),
            ("process_open_fds", "gauge", "Open file descriptors.", own.open_fds),
            ("process_max_fds", "gauge", "Limit on open file descriptors.", own.max_fds),
        )  # fmt: skip
    if raft_pid is not None:
        with contextlib.suppress(OSError):  # the Raft process just exited
            raft = process_stats.read(raft_pid)
            figures += (
                ("pyraftkv_raft_process_cpu_seconds_total", "counter",
                 "The Raft process's user and system CPU time, seconds.", raft.cpu_seconds),
                ("pyraftkv_raft_process_resident_memory_bytes", "gauge",
                 "The Raft process's resident memory size.", raft.resident_bytes),
            )  # fmt: skip
    return figures


def _head(name: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]


async def healthy(app: Any) -> bool:
    """A leader is known and a linearizable read completes in time."""
    if not app.leader_id:
        return False
    try:
        await asyncio.wait_for(
            app.local_read(rpc.RangeRequest(key=b"health", count_only=True)), HEALTH_TIMEOUT_S
        )
    except Exception:  # no quorum, a timeout, an error: unhealthy either way
        return False
    return True


class MetricsServer:
    """HTTP/1.1 listeners for /metrics and /health."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._servers: list[asyncio.base_events.Server] = []

    async def listen(self, urls: tuple[Url, ...], ssl: SSLContext | None = None) -> None:
        """Serve on each URL; https URLs with ``ssl``."""
        for url in urls:
            self._servers.append(
                await asyncio.start_server(
                    self._serve,
                    url.host,
                    url.port,
                    limit=MAX_REQUEST_BYTES,
                    ssl=ssl if url.tls else None,
                )
            )

    def close(self) -> None:
        for server in self._servers:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
        text = "text/plain; charset=utf-8"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return "431 Request Header Fields Too Large", text, b"request too large\n"
        except asyncio.IncompleteReadError:
            return "400 Bad Request", text, b"incomplete request\n"
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "400 Bad Request", text, b"malformed request line\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target not in (b"/metrics", b"/health"):
            return "404 Not Found", text, b"404 page not found\n"
        if method != b"GET":
            return "405 Method Not Allowed", text, b"only GET is served here\n"
        if target == b"/metrics":
            return "200 OK", "text/plain; version=0.0.4; charset=utf-8", render(self.app).encode()
        if await healthy(self.app):
            return "200 OK", text, b'{"health":"true"}'
        return "503 Service Unavailable", text, b'{"health":"false"}'
