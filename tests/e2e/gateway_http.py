"""HTTP/1.1 helpers for the JSON gateway tests: one call, its answer as (status, JSON or
text), and the normalising that makes a real etcd's answers and pyraftkv's comparable."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..ctl_etcd_cluster import ETCD, wait_until
from .harness import free_ports

# Values that differ between any two clusters, whatever they serve.
MEMBER_FIELDS = ("cluster_id", "member_id", "raft_term")


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: dict = field(default_factory=dict)  # names in lower case

    @property
    def json(self):
        return json.loads(self.body)

    def lines(self) -> list:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def call(
    endpoint: str,
    path: str,
    body: object = None,
    *,
    method: str = "POST",
    headers: dict | None = None,
    timeout: float = 10,
) -> Answer:
    """One request on a connection of its own; ``body`` as JSON unless bytes or str."""
    host, port = endpoint.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        if body is None:
            data = None
        elif isinstance(body, bytes | str):
            data = body
        else:
            data = json.dumps(body)
        connection.request(method, path, data, headers or {})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(
            response.status, response.getheader("Content-Type", ""), response.read(), headers
        )
    finally:
        connection.close()


def normalise(value):
    """A gateway answer with the fields that name the cluster, member and term blanked."""
    if isinstance(value, dict):
        return {
            key: "*" if key in MEMBER_FIELDS else normalise(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def start_etcd(directory: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """A single-member etcd 3.4 on free ports, with ``flags`` besides; (process, client
    endpoint) once healthy."""
    client, peer = free_ports(2)
    log = open(directory / "etcd.log", "wb")  # noqa: SIM115 (lives with the process)
    process = subprocess.Popen(
        [
            ETCD,
            *("--data-dir", str(directory / "etcd")),
            *("--listen-client-urls", f"http://127.0.0.1:{client}"),
            *("--advertise-client-urls", f"http://127.0.0.1:{client}"),
            *("--listen-peer-urls", f"http://127.0.0.1:{peer}"),
            *("--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"),
            *("--initial-cluster", f"default=http://127.0.0.1:{peer}"),
            *flags,
        ],
        stdout=log,
        stderr=log,
    )
    endpoint = f"127.0.0.1:{client}"

    def healthy() -> bool:
        try:
            return call(endpoint, "/health", method="GET", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, what="etcd healthy")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, endpoint


def raw_exchange(endpoint: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes and read everything the server sends until it closes (a half-close
    would make etcd cancel the requests in hand)."""
    host, port = endpoint.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass  # what came before the reset is the answer
    return b"".join(chunks)


class Stream:
    """A streamed call (watch, keep-alive, observe, snapshot): its answer, line by line."""

    def __init__(self, endpoint: str, path: str, body: object, headers: dict | None = None):
        host, port = endpoint.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        self.connection.request("POST", path, data, headers or {})
        self.response = self.connection.getresponse()

    def line(self):
        text = self.response.readline()
        assert text, "the stream ended"
        return json.loads(text)

    def close(self) -> None:
        self.connection.close()
