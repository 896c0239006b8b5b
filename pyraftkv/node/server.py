"""``pyraftkv``: start a member (the application process, which starts its Raft process, or
with ``--single-process`` runs the Raft side itself).

The application process supervises the Raft process: if either dies the node stops with a
clear message and a non-zero exit, and a restart recovers from disk. SIGTERM (or Ctrl-C)
stops the member gracefully: a leader hands leadership to a caught-up follower first,
requests in flight are answered, the Raft process flushes its WAL, and the exit code is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from .. import errors
from ..admin.datadir import DataDir
from ..admin.members import MemberList
from ..errors import PyraftkvError
from ..proto import rpc_pb2 as rpc
from ..protocol.sniff import Kind
from . import corrupt_check, event_loop
from . import ringproto as rp
from .application import Application
from .auth_service import AuthService
from .auth_tokens import token_provider
from .client_connection import ClientConnection
from .client_port import ClientPort
from .client_server import ClientServer
from .compactor import Compactor
from .config import ConfigError, NodeConfig, add_flags, config_from_args
from .cpu_pairing import CpuPairing, Writes
from .follower_yield import FollowerYield
from .grpc_front import GrpcFront
from .http_gateway import HttpConnection
from .lessor import Lessor, min_ttl_s
from .logging_setup import fields, setup_logging
from .metrics import MetricsServer
from .process_entry import crash_on_error, stop_now
from .raft_bootstrap import RaftProcessConfig
from .raft_side import RaftInProcess, RaftSubprocess
from .ring_link import LocalLink, RingLink
from .watch_hub import WatchHub

if TYPE_CHECKING:
    from ..mvcc import MVCCStore

log = logging.getLogger("pyraftkv.server")

RING_BYTES = 64 << 20
TICK_S = 0.1
# How long a stopping leader waits for another member to take over.
TRANSFER_WAIT_S = 3.0
# How long a stopping member waits for requests in flight to be answered.
DRAIN_WAIT_S = 2.0


class NodeStopped(PyraftkvError):
    """The node had to stop; the message says why."""


def with_auto_certs(config: NodeConfig) -> NodeConfig:
    """Auto TLS: self-signed certificates under <data-dir>/fixtures, as etcd keeps them."""
    fixtures = os.path.join(config.data_dir, "fixtures")
    made = dataclasses.replace(
        config,
        client_tls=config.client_tls.with_auto_cert(
            os.path.join(fixtures, "client"), [u.host for u in config.listen_client_urls]
        ),
        peer_tls=config.peer_tls.with_auto_cert(
            os.path.join(fixtures, "peer"), [u.host for u in config.listen_peer_urls]
        ),
    )
    return made.joining(config.cluster_id)  # the cluster id of a joining member stays


def _moved(config: NodeConfig, datadir: DataDir) -> NodeConfig:
    """A member restarted with new peer URLs in its flags (--initial-advertise-peer-urls
    and its --initial-cluster entry, after a MemberUpdate): they derive another member id,
    yet it is the member its data dir names. Kept when only this member's own URLs differ
    (same name, the same cluster id from the other members and the token); anything else
    is left to DataDir.claim to refuse."""
    from ..admin.cluster import cluster_id

    found = datadir.identity_ids()
    if found is None or found[2] != config.name or found[1] == config.member_id:
        return config
    stored_cluster, stored_member, _name = found
    ids = [stored_member if m.name == config.name else m.id for m in config.initial_cluster]
    if config.cluster_id != stored_cluster and cluster_id(ids) != stored_cluster:
        return config
    log.info(
        "member %x restarting with new peer URLs %s (its peers dial the URLs the cluster "
        "lists for it: member update)",
        stored_member,
        ",".join(u.text for u in config.initial_advertise_peer_urls),
    )
    return config.moved(stored_member, stored_cluster)


async def find_cluster(config: NodeConfig) -> int:
    """Ask the other members listed in --initial-cluster which cluster this member joins,
    and check that it was added to it (``member add``) first."""
    from ..admin.cluster import Url
    from .peer_transport import query_cluster

    problems = []
    for member in config.initial_cluster:
        if member.id == config.member_id:
            continue
        for text in member.peer_urls:
            url = Url.parse(text, "--initial-cluster")
            try:
                cluster, members = await query_cluster(
                    url.host,
                    url.port,
                    config.member_id,
                    config.peer_tls.client_context() if url.tls else None,
                )
            except (OSError, asyncio.TimeoutError, PyraftkvError) as exc:
                problems.append(f"{url.text}: {exc}")
                continue
            if config.member_id not in members:
                raise ConfigError(
                    f"member {config.member_id:x} ({config.name}) is not in cluster "
                    f"{cluster:x}: add it first (pyraftkvctl member add {config.name} "
                    f"--peer-urls=...) with the same --initial-cluster-token"
                )
            return cluster
    raise NodeStopped(
        "--initial-cluster-state existing: no running member answered (" + "; ".join(problems) + ")"
    )


class Node:
    """One member: its store, its Raft process, the application and its listeners.

    ``start`` opens the data dir and the store, starts the Raft process and the listeners;
    ``run`` serves until SIGTERM/SIGINT or a failure and returns the exit code; ``stop``
    asks for that from inside (a failure names its exit code)."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.exit_code = 0
        self._listeners: list[asyncio.AbstractServer] = []
        self._raft_exited = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.pairing: CpuPairing | None = None  # with a Raft process of its own
        self.follower_yield: FollowerYield | None = None  # likewise, made with it

    def stop(self, code: int = 0) -> None:
        """Stop serving; the first non-zero code given is the exit code."""
        self.exit_code = self.exit_code or code
        self._stopping.set()

    async def start(self) -> None:
        from ..mvcc import MVCCStore

        self.loop.set_exception_handler(crash_on_error(log, "the member"))
        config = self.config
        datadir = DataDir(config.data_dir)
        # Everything that can refuse a start is checked before any listener opens: the
        # data dir's lock first, the Raft process's own start (its WAL, its peer port) last.
        self._lock_fd = datadir.lock()
        if config.initial_cluster_state == "existing":
            # The cluster's id is not derivable from the flags of a member added later: a
            # restart takes it from the data dir, a first start asks the running members.
            known = datadir.cluster_id()
            config = config.joining(known if known is not None else await find_cluster(config))
        config = _moved(config, datadir)
        datadir.claim(config.cluster_id, config.member_id, config.name)
        self.config = config = with_auto_certs(config)
        # How this member dials its peers outside Raft (the corruption checks' hash queries).
        self.peer_ssl = config.peer_tls.client_context()
        # The quota is enforced when writes are accepted; the map is twice as large, so that
        # writes already accepted (and every member applies them alike) always fit.
        store = MVCCStore(
            datadir.db,
            map_size=2 * config.quota_backend_bytes,
            max_request_bytes=config.max_request_bytes,
        )
        stored_members = store.get_meta(b"members")
        # A new member learns the members by applying the log's first (bootstrap) entries.
        members = MemberList.decode(stored_members) if stored_members else MemberList()
        if config.member_id in members.removed:
            raise NodeStopped(
                f"member {config.member_id:x} was removed from the cluster; "
                f"it cannot rejoin with this data dir"
            )

        self.link = self._start_raft_side(datadir, store, members)
        self.app = app = Application(
            member_id=config.member_id,
            cluster_id=config.cluster_id,
            cluster_token=config.initial_cluster_token,
            name=config.name,
            client_urls=[u.text for u in config.advertise_client_urls],
            store=store,
            members=members,
            send_down=self.link.send,
            request_timeout=5.0 + 2 * config.election_timeout_ms / 1000,
            snapshot_count=config.snapshot_count,
            snapshot_dir=datadir.snap,
            watch_hub_factory=lambda a: WatchHub(a.store, a.header),
            lessor=Lessor(min_ttl_s(config.election_timeout_ms)),
            election_timeout_s=config.election_timeout_ms / 1000,
            quota_bytes=config.quota_backend_bytes,
            trace_interval_ms=config.write_trace_interval_ms,
        )
        app.strict_reconfig_check = config.strict_reconfig_check
        if not config.single_process:
            app.raft_pid = self.raft.pid
        self.link.on_messages = app.on_ring_messages
        self.link.start()
        self.link.send(rp.pack(rp.MEMBERS, tail=members.encode()))
        auth = AuthService(
            app, token_provider(config.auth_token, config.auth_token_ttl_s), config.bcrypt_cost
        )
        self.server = ClientServer(app, config.max_request_bytes, auth)
        self.server.cors, self.server.host_whitelist = config.cors, config.host_whitelist
        if config.client_tls.has_cert:
            self.server.leader_tls = config.client_tls.client_context()
        await self._wait_raft_started()
        if config.initial_corrupt_check:
            await corrupt_check.initial_check(app, self.peer_ssl)
        await self._listen()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop, 0)
        self._tasks.append(self.loop.create_task(self._tick()))

    def _start_raft_side(
        self, datadir: DataDir, store: MVCCStore, members: MemberList
    ) -> RingLink | LocalLink:
        """Start the Raft side (raft_side.py); the application's end of the link to it."""
        from ..ring import ShmRing

        config = self.config
        learners = [m for m in members.ids() if members.get(m).is_learner]
        raft_config = functools.partial(
            RaftProcessConfig,
            member_id=config.member_id,
            cluster_id=config.cluster_id,
            wal_dir=datadir.wal,
            snap_dir=datadir.snap,
            listen_peer_urls=tuple(u.text for u in config.listen_peer_urls),
            peer_tls=config.peer_tls.to_json(),
            initial_cluster={m.id: m.peer_urls for m in config.initial_cluster},
            initial_names={m.id: m.name for m in config.initial_cluster},
            initial_cluster_state=config.initial_cluster_state,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            election_ticks=config.election_ticks,
            snapshot_count=config.snapshot_count,
            # the store's map size: no larger store could be opened here
            max_snapshot_bytes=2 * config.quota_backend_bytes,
            applied_index=store.applied_index,
            applied_term=store.applied_term,
            applied_voters=[m for m in members.ids() if m not in learners],
            applied_learners=learners,
            log_level=config.log_level,
            logger=config.logger,
            log_outputs=config.log_outputs,
            force_new_cluster=config.force_new_cluster,
            initial_election_tick_advance=config.initial_election_tick_advance,
        )
        if config.single_process:
            link, raft_link = LocalLink.pair(self.loop)
            self.raft = RaftInProcess(
                self.loop,
                raft_config(parent_pid=0, down_fds=(), up_fds=()),
                raft_link,
                self._on_raft_exit,
            )
        else:
            down = ShmRing.create(RING_BYTES, role="producer")
            up = ShmRing.create(RING_BYTES, role="consumer")
            link = RingLink(
                down,
                up,
                self.loop,
                None,
                lambda exc: stop_now(log, f"the Raft process stopped reading: {exc}"),
                on_malformed=lambda what: stop_now(log, f"from the Raft process: {what}"),
            )
            self.raft = RaftSubprocess(
                self.loop,
                raft_config(parent_pid=os.getpid(), down_fds=down.fds, up_fds=up.fds),
                self._on_raft_exit,
            )
            self.pairing = CpuPairing(os.getpid(), self.raft.pid)
            self.follower_yield = FollowerYield()
        return link

    async def _wait_raft_started(self) -> None:
        """Wait for the Raft process's first status; refuse to serve if it exits first."""
        started = self.loop.create_task(self.app.raft_started.wait())
        exited = self.loop.create_task(self._raft_exited.wait())
        await asyncio.wait((started, exited), return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        exited.cancel()
        if not self.app.raft_started.is_set():
            raise NodeStopped(
                f"{self.raft.name} could not start (exit status {self.raft.returncode}; "
                "its reason is logged above)"
            )

    def _on_raft_exit(self) -> None:
        code = self.raft.returncode
        self._raft_exited.set()
        if not self._stopping.is_set():
            log.error("%s exited unexpectedly (status %s); stopping", self.raft.name, code)
            self.stop(3)

    async def _listen(self) -> None:
        config, server = self.config, self.server
        # TLS ends here, below every protocol spoken on the port.
        client_ssl = config.client_tls.server_context() if config.client_tls.has_cert else None
        # Each connection's first bytes pick its protocol (client_port.py).
        grpc = GrpcFront(server)  # etcd's gRPC API
        protocols = {
            Kind.NATIVE: lambda: ClientConnection(server),
            Kind.HTTP1: lambda: HttpConnection(server),
            Kind.HTTP2: grpc.connection,
        }
        try:
            for url in config.listen_client_urls:
                self._listeners.append(
                    await self.loop.create_server(
                        lambda: ClientPort(protocols),
                        url.host,
                        url.port,
                        reuse_address=True,
                        ssl=client_ssl if url.tls else None,
                    )
                )
        except OSError as exc:
            self.raft.terminate()
            raise NodeStopped(f"cannot listen for clients on {url.text}: {exc}") from exc
        self.metrics = MetricsServer(self.app)
        try:
            await self.metrics.listen(config.listen_metrics_urls, client_ssl)
        except OSError as exc:
            self.raft.terminate()
            urls = ", ".join(u.text for u in config.listen_metrics_urls)
            raise NodeStopped(f"cannot listen for metrics on {urls}: {exc}") from exc
        if config.listen_metrics_urls:
            urls = ", ".join(u.text for u in config.listen_metrics_urls)
            log.info("metrics and health on %s", urls)
        log.info(
            "member %x (%s) of cluster %x serving clients on %s",
            config.member_id,
            config.name,
            config.cluster_id,
            ", ".join(u.text for u in config.listen_client_urls),
            extra=fields(
                local_member_id=f"{config.member_id:x}",
                cluster_id=f"{config.cluster_id:x}",
                name=config.name,
                client_urls=[u.text for u in config.listen_client_urls],
            ),
        )

    async def _tick(self) -> None:
        """Request and lease deadlines, our publish, lagging watchers, progress
        notifications, auto-compaction, the two processes' CPU pairing and a follower's yielding
        of the CPU, every TICK_S."""
        app, config = self.app, self.config
        compactor = (
            Compactor(config.auto_compaction_mode, config.auto_compaction_retention)
            if config.auto_compaction_retention
            else None
        )
        progress_interval = config.watch_progress_notify_interval_s
        next_progress = time.monotonic() + progress_interval
        idle_timeout = config.client_idle_timeout_s
        next_idle_check = next_cpu_check = time.monotonic() + 1.0
        corrupt_interval = config.corrupt_check_interval_s
        next_corrupt_check = time.monotonic() + corrupt_interval
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            app.expire(now)
            app.expire_leases()
            app.publish_if_due()
            self.server.end_leaderless_streams(now)
            if app.watch_hub.has_unsynced:
                app.watch_hub.catch_up()
            if now >= next_progress:
                app.watch_hub.progress_tick()
                next_progress = now + progress_interval
            if self.pairing is not None and self.follower_yield is not None:
                following = app.leader_id not in (0, app.member_id)
                served, watchers = sum(app.requests_served), len(app.watch_hub)
                self.follower_yield.poll(following, served, watchers)
                if now >= next_cpu_check:
                    next_cpu_check = now + 1.0
                    self.follower_yield.check(following, served, watchers)
                    batches, overlap = app.proposals.take_overlap()
                    forwarded, app.foreign_applied = app.foreign_applied > 0, 0
                    leading = app.leader_id == app.member_id
                    self.pairing.check(Writes(leading, batches, overlap, forwarded))
            if idle_timeout and now >= next_idle_check:
                self.server.close_idle(now, idle_timeout)
                next_idle_check = now + min(1.0, idle_timeout / 4)
            if compactor is not None:
                if app.leader_id != app.member_id:
                    compactor.reset()
                elif (target := compactor.due(now, app.store.revision)) is not None:
                    self._tasks.append(self.loop.create_task(self._auto_compact(target)))
            if corrupt_interval and now >= next_corrupt_check:
                next_corrupt_check = now + corrupt_interval
                self._tasks.append(
                    self.loop.create_task(corrupt_check.periodic_check(app, self.peer_ssl))
                )
            self._tasks = [t for t in self._tasks if not t.done()]

    async def _auto_compact(self, revision: int) -> None:
        try:
            await self.app.local_write("Compact", rpc.CompactionRequest(revision=revision))
        except errors.ApiError as exc:
            log.warning("auto-compaction to revision %d failed: %s", revision, exc)
        else:
            log.info("auto-compacted to revision %d", revision)

    async def run(self) -> int:
        """Serve until stopped, then stop in order; the exit code."""
        await self._stopping.wait()
        log.info("stopping")
        await self._shutdown()
        log.info("stopped")
        return self.exit_code

    async def _shutdown(self) -> None:
        from ..ring import RingClosedError

        raft, app = self.raft, self.app
        for listener in self._listeners:
            listener.close()
        self.metrics.close()
        if raft.returncode is None:
            await app.graceful_stop(TRANSFER_WAIT_S, DRAIN_WAIT_S)
        if raft.returncode is None:
            with contextlib.suppress(RingClosedError):  # the Raft process is already leaving
                self.link.send(rp.pack(rp.STOP))
            for _ in range(100):
                if raft.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            if raft.returncode is None:
                log.warning("%s did not stop in time; killing it", raft.name)
                raft.kill()
        for task in self._tasks:
            task.cancel()
        self.link.close()
        for connection in list(self.server.connections):
            connection.close_with(errors.UNAVAILABLE, "etcdserver: server stopped")
        app.store.close()


async def run_node(config: NodeConfig) -> int:
    """Start a member and serve until it stops; the exit code."""
    node = Node(config)
    await node.start()
    return await node.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyraftkv",
        description="A pyraftkv member. With no flags: a single-member cluster with clients "
        "on 127.0.0.1:2379, peers on 127.0.0.1:2380 and data in ./default.pyraftkv.",
    )
    add_flags(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    cluster = commands.add_parser(
        "cluster", help="start a local cluster on loopback for trying pyraftkv out"
    )
    cluster.add_argument("--size", type=int, default=3, help="number of members (default 3)")
    cluster.add_argument(
        "--data-dir-prefix",
        default="local",
        help="data dirs are <prefix>-<n>.pyraftkv (default: local)",
    )
    cluster.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        help="also serve the live dashboard of the cluster there (see pyraftkv dashboard)",
    )
    from .. import dashboard

    dashboard.add_arguments(
        commands.add_parser(
            "dashboard", help="serve a live page of a cluster's members, load and events"
        )
    )
    args = parser.parse_args(argv)
    if args.command == "cluster":
        from .local_cluster import run_local_cluster

        return run_local_cluster(args.size, args.data_dir_prefix, args.dashboard)
    if args.command == "dashboard":
        from ..dashboard.server import run_dashboard

        return run_dashboard(args)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"pyraftkv: {exc}", file=sys.stderr)
        return 2
    side = "member" if config.single_process else "app"
    setup_logging(config.log_level, side, config.logger, config.log_outputs)
    try:
        return event_loop.run(run_node(config))
    except (ConfigError, NodeStopped) as exc:
        print(f"pyraftkv: {exc}", file=sys.stderr)
        return 2
