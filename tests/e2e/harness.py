"""Real pyraftkv members on loopback for end-to-end tests: start, kill -9, restart, query.

Every member is a real `python -m pyraftkv` process (which starts its own Raft process),
with its own data dir under the test's tmp dir and its log in <data dir>.log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from pyraftkv import Client
from pyraftkv.client.connection import ConnectionLost
from pyraftkv.errors import ApiError

HEARTBEAT_MS = 50
ELECTION_MS = 500


# Test ports come from below Linux's ephemeral range (32768-60999), where every outgoing
# connection takes its local port: a port picked there could be taken by one between the
# pick and the member's bind.
_PORTS = range(10_000, 32_000)
_handed_out: set[int] = set()  # never the same port twice in one run


def child_pids(pid: int) -> list[int]:
    """Every child of ``pid``, whichever of its threads started it."""
    children: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(FileNotFoundError), open(path) as f:
            children += [int(c) for c in f.read().split()]
    return children


def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it is true; fail, naming ``what``, after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` ports that nothing is bound to now, for members to listen on."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        ports.append(port)
    return ports


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: str
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    host: str = "127.0.0.1"  # an IPv6 address (::1) goes in brackets in URLs
    # added to the environment of the member's next start (e.g. PYRAFTKV_FAILPOINTS)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.client_port}"

    @property
    def peer_url_host(self) -> str:
        return f"{self.address}:{self.peer_port}"

    @property
    def log_path(self) -> str:
        return self.data_dir + ".log"

    def log_text(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def put_retrying(client: Client, key: str, value: str, attempts: int = 5):
    """Put that retries when the outcome is unknown (a write caught by a leader's death
    times out): putting the same value again is harmless, and tests that only need the
    data in place should not fail on the ambiguity."""
    for attempt in range(attempts):
        try:
            return client.put(key, value)
        except (ApiError, ConnectionLost):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


class LocalCluster:
    """N members of one cluster on loopback, driven by a test."""

    def __init__(
        self,
        root: str,
        size: int = 3,
        *,
        snapshot_count: int = 10000,
        token: str = "e2e",
        extra_args: list[str] | None = None,
        peer_scheme: str = "http",
        client_scheme: str = "http",
        client_options: dict | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        ports = free_ports(2 * size, host)
        self.members = [
            Member(
                f"m{i + 1}",
                ports[2 * i],
                ports[2 * i + 1],
                os.path.join(root, f"m{i + 1}.pyraftkv"),
                list(extra_args or []),
                host=host,
            )
            for i in range(size)
        ]
        self.token = token
        self.snapshot_count = snapshot_count
        self.peer_scheme, self.client_scheme = peer_scheme, client_scheme
        # what every Client this harness makes is given (e.g. tls=...)
        self.client_options = dict(client_options or {})
        self.initial_cluster = ",".join(
            f"{m.name}={peer_scheme}://{m.peer_url_host}" for m in self.members
        )
        self._clients: list[Client] = []

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def argv(self, member: Member) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pyraftkv",
            "--name",
            member.name,
            "--data-dir",
            member.data_dir,
            "--listen-client-urls",
            f"{self.client_scheme}://{member.endpoint}",
            "--advertise-client-urls",
            f"{self.client_scheme}://{member.endpoint}",
            "--listen-peer-urls",
            f"{self.peer_scheme}://{member.peer_url_host}",
            "--initial-advertise-peer-urls",
            f"{self.peer_scheme}://{member.peer_url_host}",
            "--initial-cluster",
            self.initial_cluster,
            "--initial-cluster-token",
            self.token,
            "--heartbeat-interval",
            str(HEARTBEAT_MS),
            "--election-timeout",
            str(ELECTION_MS),
            "--snapshot-count",
            str(self.snapshot_count),
            *member.extra_args,
        ]

    def start(self, wait: bool = True) -> None:
        for member in self.members:
            self.start_member(member, wait=False)
        if wait:
            self.wait_leader()

    def start_member(self, member: Member, wait: bool = True) -> None:
        with open(member.log_path, "a") as log:
            member.process = subprocess.Popen(
                self.argv(member),
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, **member.env},
            )
        if wait:
            self.wait_serving(member)

    def kill(self, member: Member) -> None:
        """kill -9 the member's application process and its Raft process."""
        assert member.process is not None
        os.killpg(member.process.pid, signal.SIGKILL)
        member.process.wait()

    def terminate(self, member: Member, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert member.process is not None
        member.process.send_signal(signal.SIGTERM)
        return member.process.wait(timeout)

    def stop_all(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        for member in self.members:
            if member.running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(member.process.pid, signal.SIGKILL)
                member.process.wait()

    def client(self, members: list[Member] | None = None, **options) -> Client:
        endpoints = [m.endpoint for m in (members or self.members)]
        client = Client(endpoints, **{**self.client_options, **options})
        self._clients.append(client)
        return client

    def status(self, member: Member, timeout: float = 1.0):
        """The member's StatusResponse, or None if it does not answer."""
        try:
            with Client(
                [member.endpoint], timeout=timeout, connect_timeout=timeout, **self.client_options
            ) as c:
                return c.status()
        except (ConnectionLost, ApiError, OSError, TimeoutError):
            return None

    def wait_serving(self, member: Member, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not member.running:
                raise AssertionError(f"{member.name} exited:\n{member.log_text()[-3000:]}")
            if self.status(member, 0.5) is not None:
                return
            time.sleep(0.05)
        raise AssertionError(f"{member.name} did not start serving:\n{member.log_text()[-3000:]}")

    def wait_published(self, member: Member, timeout: float = 30.0) -> None:
        """Until ``member``'s members list shows every member's client URL: each member
        publishes its own through the log once it sees a leader, as etcd's members do."""
        client = self.client([member])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                listed = client.member_list().members
            except Exception:
                listed = []
            if len(listed) == len(self.members) and all(m.clientURLs for m in listed):
                return
            time.sleep(0.05)
        raise AssertionError(f"members did not publish their client URLs: {listed}")

    def wait_leader(self, timeout: float = 30.0, among: list[Member] | None = None) -> Member:
        """The member every running member agrees is the leader."""
        candidates = among or [m for m in self.members if m.running]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = [self.status(m, 0.5) for m in candidates]
            leaders = {s.leader for s in statuses if s is not None}
            if len(leaders) == 1 and 0 not in leaders and None not in statuses:
                (leader_id,) = leaders
                for member, status in zip(candidates, statuses, strict=False):
                    if status.header.member_id == leader_id:
                        return member
            time.sleep(0.05)
        logs = "\n".join(f"--- {m.name}\n{m.log_text()[-2000:]}" for m in candidates)
        raise AssertionError(f"no agreed leader within {timeout}s\n{logs}")

    def wait_applied(self, member: Member, index: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(member, 0.5)
            if status is not None and status.raftAppliedIndex >= index:
                return
            time.sleep(0.05)
        raise AssertionError(f"{member.name} did not apply index {index} in {timeout}s")
