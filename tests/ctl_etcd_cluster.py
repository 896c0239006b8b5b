"""A throwaway 3-member etcd cluster on loopback, with etcdctl and pyraftkvctl runners.

pyraftkvctl reaches each member through an EtcdBridge (native protocol -> etcd's JSON
gateway); its output names the bridges' endpoints, which ``ctl`` maps back to the
members' so that it can be compared with etcdctl's byte for byte.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format

from pyraftkv.ctl import run
from pyraftkv.ctl.printers import PRINTERS, EndpointHealth
from pyraftkv.proto import rpc_pb2 as rpc

from .ctl_etcd_bridge import EtcdBridge
from .e2e.harness import free_ports

ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")
MISSING = "etcd / etcdctl not installed (apt-get install etcd-server etcd-client)"
# A name with spaces, longer than a table cell may be, to exercise cell wrapping.
LONG_NAME = "first member of the differential test cluster"
NAMES = (LONG_NAME, "m2", "m3")
ETCD_LOG_LINE = re.compile(rb'^\{"level":.*\n', re.MULTILINE)


@dataclass
class Result:
    """Exit code and output of one command."""

    code: int
    out: bytes
    err: bytes


def wait_until(condition, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return b"true" in answer.read()
    except OSError:
        return False


class EtcdCluster:
    """Three etcd members with fast elections, and a bridge in front of each."""

    def __init__(self, data_dir: Path) -> None:
        ports = free_ports(6)
        self.client_ports, peer_ports = ports[0::2], ports[1::2]
        cluster = ",".join(
            f"{name}=http://127.0.0.1:{port}" for name, port in zip(NAMES, peer_ports, strict=True)
        )
        self.processes = []
        for name, client, peer in zip(NAMES, self.client_ports, peer_ports, strict=True):
            argv = [
                ETCD,
                "--name",
                name,
                "--data-dir",
                str(data_dir / f"member-{client}"),
                "--listen-client-urls",
                f"http://127.0.0.1:{client}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{client}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                cluster,
                "--initial-cluster-token",
                f"ctl-{self.client_ports[0]}",
                "--heartbeat-interval",
                "20",
                "--election-timeout",
                "200",
            ]
            log = open(data_dir / f"etcd-{client}.log", "wb")  # noqa: SIM115 (lives with the process)
            self.processes.append(subprocess.Popen(argv, stdout=log, stderr=log))
        self.endpoints = [f"127.0.0.1:{p}" for p in self.client_ports]
        self.bridges: list[EtcdBridge] = []
        try:
            for port in self.client_ports:
                wait_until(lambda port=port: _healthy(port), what=f"etcd on port {port}")
            self.bridges = [EtcdBridge("127.0.0.1", port) for port in self.client_ports]
        except BaseException:
            self.close()
            raise
        # Our output names the bridges; same-length names keep table widths comparable.
        assert all(
            len(b.endpoint) == len(e) for b, e in zip(self.bridges, self.endpoints, strict=True)
        )

    def close(self) -> None:
        for bridge in self.bridges:
            bridge.close()
        for process in self.processes:
            process.kill()  # throwaway data; a graceful stop of 3 members takes seconds
        for process in self.processes:
            process.wait(10)

    # -- runners ---------------------------------------------------------------------------

    def etcdctl(self, *args: str, stdin: bytes = b"", endpoints=None) -> Result:
        """Run etcdctl (its zap log lines removed from stderr)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        eps = ",".join(endpoints or self.endpoints[:1])
        done = subprocess.run(
            [ETCDCTL, f"--endpoints={eps}", *args],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=30,
        )
        return Result(done.returncode, done.stdout, ETCD_LOG_LINE.sub(b"", done.stderr))

    def bridge_for(self, endpoint: str) -> str:
        return self.bridges[self.endpoints.index(endpoint)].endpoint

    def unbridge(self, data: bytes) -> bytes:
        """Name the members instead of their bridges."""
        for bridge, endpoint in zip(self.bridges, self.endpoints, strict=True):
            data = data.replace(bridge.endpoint.encode(), endpoint.encode())
        return data

    def ctl(self, *args: str, stdin: bytes = b"", endpoints=None) -> Result:
        """Run pyraftkvctl in-process against the bridges (output mapped back to members)."""
        eps = ",".join(self.bridge_for(e) for e in (endpoints or self.endpoints[:1]))
        out, err = io.BytesIO(), io.BytesIO()
        code = run([f"--endpoints={eps}", *args], io.BytesIO(stdin), out, err, environ={})
        return Result(code, self.unbridge(out.getvalue()), self.unbridge(err.getvalue()))

    def ctl_process(self, *args: str, stdout, endpoints=None) -> subprocess.Popen:
        """pyraftkvctl as its own process (for watch, which runs until interrupted)."""
        eps = ",".join(self.bridge_for(e) for e in (endpoints or self.endpoints[:1]))
        return subprocess.Popen(
            [sys.executable, "-m", "pyraftkv.ctl", f"--endpoints={eps}", *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def etcdctl_process(self, *args: str, stdout) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        return subprocess.Popen(
            [ETCDCTL, f"--endpoints={self.endpoints[0]}", *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={**env, "ETCDCTL_API": "3"},
        )


def interrupt(process: subprocess.Popen) -> tuple[int, bytes]:
    """Ctrl-C a watcher; its exit code and stderr."""
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    return process.returncode, ETCD_LOG_LINE.sub(b"", err)


# -- etcdctl's JSON back into messages ---------------------------------------------------------


def _snake(go_name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", go_name).lower()


def _unwrap_oneofs(value):
    """{"Response": {"ResponsePut": {...}}} (Go's oneof) -> {"response_put": {...}}."""
    if isinstance(value, list):
        return [_unwrap_oneofs(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, inner in value.items():
        if key == "Response":
            ((member, body),) = inner.items()
            out[_snake(member)] = _unwrap_oneofs(body)
        else:
            out[key] = _unwrap_oneofs(inner)
    return out


def message_from_json(text: bytes | str | dict, message_type):
    """etcdctl's -w json text (or the parsed object) as the protobuf message it came from."""
    data = json.loads(text) if isinstance(text, (bytes, str)) else text
    return json_format.ParseDict(_unwrap_oneofs(data), message_type())


def watch_response_from_json(line: bytes) -> rpc.WatchResponse:
    """One line of etcdctl watch -w json (clientv3's WatchResponse struct)."""
    data = json.loads(line)
    return message_from_json(
        {
            "header": data["Header"],
            "events": data["Events"] or [],
            "compact_revision": data["CompactRevision"],
            "canceled": data["Canceled"],
            "created": data["Created"],
        },
        rpc.WatchResponse,
    )


def statuses_from_json(text: bytes) -> list[tuple[str, rpc.StatusResponse]]:
    return [
        (item["Endpoint"], message_from_json(item["Status"], rpc.StatusResponse))
        for item in json.loads(text) or []
    ]


def hashes_from_json(text: bytes) -> list[tuple[str, rpc.HashKVResponse]]:
    return [
        (item["Endpoint"], message_from_json(item["HashKV"], rpc.HashKVResponse))
        for item in json.loads(text) or []
    ]


def health_from_json(text: bytes) -> list[EndpointHealth]:
    return [
        EndpointHealth(item["endpoint"], item["health"], item["took"], item.get("error", ""))
        for item in json.loads(text) or []
    ]


# clientv3's lease responses embed the header (its fields sit at the top level) and name
# their own fields: JSON name -> protobuf field.
_LEASE_FIELDS = {
    rpc.LeaseGrantResponse: {"ID": "ID", "TTL": "TTL", "Error": "error"},
    rpc.LeaseKeepAliveResponse: {"ID": "ID", "TTL": "TTL"},
    rpc.LeaseTimeToLiveResponse: {
        "id": "ID",
        "ttl": "TTL",
        "granted-ttl": "grantedTTL",
        "keys": "keys",
    },
    rpc.LeaseLeasesResponse: {"leases": "leases"},
}


def lease_response_from_json(text: bytes, message_type):
    """etcdctl's -w json of a lease command as the protobuf response it came from."""
    data = json.loads(text)
    header = {
        f.name: data.pop(f.name) for f in rpc.ResponseHeader.DESCRIPTOR.fields if f.name in data
    }
    fields = {"header": header}
    for json_name, field in _LEASE_FIELDS[message_type].items():
        value = data.pop(json_name)
        if json_name == "leases":
            value = [{"ID": item["id"]} for item in value]
        if value is not None:
            fields[field] = value
    assert not data, f"unexpected fields {sorted(data)}"
    return json_format.ParseDict(fields, message_type())


def printed(write_out: str, method: str, *args, hex_bytes: bool = False, **kwargs) -> Result:
    """What pyraftkvctl's printer for ``write_out`` writes for one result."""
    out, err = io.BytesIO(), io.BytesIO()
    printer = PRINTERS[write_out](out, err, hex_bytes=hex_bytes)
    getattr(printer, method)(*args, **kwargs)
    return Result(0, out.getvalue(), err.getvalue())
