"""``pyraftkv dashboard``: polls the members once a second and serves one live page.

The poller asks every endpoint for its Status and its /metrics (the client port serves
both), and one member for the member list and the alarms, each endpoint in its own
thread so a member that hangs delays only its own row. The page (static files shipped in
this package) fetches ``/api/state`` every second and redraws; nothing is pulled from
the network but this server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import ssl
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from ..client.sync import Client
from ..client.tls import TLS
from ..proto import rpc_pb2 as rpc
from .state import ClusterView, MemberSample, parse_metrics

POLL_TIMEOUT_S = 1.0
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


class Poller:
    """Polls every endpoint each ``interval`` seconds into a ClusterView."""

    def __init__(
        self,
        endpoints: list[str],
        interval: float = 1.0,
        *,
        tls: TLS | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.interval = interval
        self._tls = tls
        self._ssl = tls.context() if tls is not None else None
        self._user, self._password = user, password
        self.view = ClusterView(endpoints)
        self._clients: dict[str, Client] = {}
        self._pool = ThreadPoolExecutor(len(endpoints), thread_name_prefix="poll")
        self._stop = threading.Event()
        self.lock = threading.Lock()
        self.state_json = json.dumps(self.view.update([]))

    def _client(self, endpoint: str) -> Client:
        client = self._clients.get(endpoint)
        if client is None:
            client = Client(
                [endpoint],
                timeout=POLL_TIMEOUT_S,
                connect_timeout=POLL_TIMEOUT_S,
                tls=self._tls,
                user=self._user,
                password=self._password,
            )
            self._clients[endpoint] = client
        return client

    def poll_one(self, endpoint: str, cluster_wide: bool) -> MemberSample:
        """One endpoint's Status and metrics (and, if cluster_wide, members and alarms)."""
        sample = MemberSample(endpoint, None)
        try:
            client = self._client(endpoint)
            status = client.status(endpoint)
            sample.status = {
                "header": {"member_id": status.header.member_id},
                "leader": status.leader,
                "raftTerm": status.raftTerm,
                "raftIndex": status.raftIndex,
                "raftAppliedIndex": status.raftAppliedIndex,
                "dbSize": status.dbSize,
                "dbSizeInUse": status.dbSizeInUse,
                "isLearner": status.isLearner,
                "errors": list(status.errors),
            }
            scheme = "https" if self._ssl is not None else "http"
            url = f"{scheme}://{endpoint}/metrics"
            with urllib.request.urlopen(url, timeout=POLL_TIMEOUT_S, context=self._ssl) as response:
                sample.metrics = parse_metrics(response.read().decode())
            if cluster_wide:
                members = client.member_list().members
                sample.members = [
                    {"ID": m.ID, "name": m.name, "isLearner": m.isLearner} for m in members
                ]
                sample.alarms = [
                    {"member": f"{a.memberID:x}", "alarm": rpc.AlarmType.Name(a.alarm)}
                    for a in client.alarm_list().alarms
                ]
        except Exception as exc:  # a member down or slow is what the page shows
            sample.error = str(exc) or type(exc).__name__
            if sample.status is None:
                self._drop(endpoint)
        return sample

    def _drop(self, endpoint: str) -> None:
        client = self._clients.pop(endpoint, None)
        if client is not None:
            with contextlib.suppress(Exception):  # a broken client must not stop the poller
                client.close()

    def poll(self) -> None:
        """One round over every endpoint; the first that answers gives the member list."""
        futures = [self._pool.submit(self.poll_one, endpoint, True) for endpoint in self.endpoints]
        samples = [f.result() for f in futures]
        state = self.view.update(samples)
        with self.lock:
            self.state_json = json.dumps(state)

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        for endpoint in list(self._clients):
            self._drop(endpoint)
        self._pool.shutdown(wait=False)


def _handler(poller: Poller) -> type[BaseHTTPRequestHandler]:
    static = resources.files(__package__) / "static"

    class Handler(BaseHTTPRequestHandler):
        server_version = "pyraftkv-dashboard"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/api/state":
                with poller.lock:
                    body = poller.state_json.encode()
                self._answer(200, "application/json", body)
            elif path in STATIC:
                name, kind = STATIC[path]
                self._answer(200, kind, (static / name).read_bytes())
            else:
                self._answer(404, "text/plain; charset=utf-8", b"not found\n")

        def _answer(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # quiet: one line per second otherwise
            pass

    return Handler


def start_dashboard(
    endpoints: list[str], listen: str, interval: float = 1.0, **access
) -> tuple[ThreadingHTTPServer, Poller]:
    """Starts the poller and the HTTP server in daemon threads; returns both. ``access``:
    the Poller's tls, user and password."""
    host, _, port = listen.rpartition(":")
    poller = Poller(endpoints, interval, **access)
    server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), _handler(poller))
    server.daemon_threads = True
    threading.Thread(target=poller.run, name="dashboard-poller", daemon=True).start()
    threading.Thread(target=server.serve_forever, name="dashboard-http", daemon=True).start()
    return server, poller


def run_dashboard(args: argparse.Namespace) -> int:
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not endpoints:
        print("pyraftkv dashboard: --endpoints needs at least one host:port", file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("pyraftkv dashboard: --interval must be positive", file=sys.stderr)
        return 2
    if bool(args.cert) != bool(args.key):
        print("pyraftkv dashboard: --cert and --key go together", file=sys.stderr)
        return 2
    user = password = None
    if args.user:
        user, colon, password = args.user.partition(":")
        if not colon or not user:
            print("pyraftkv dashboard: --user takes username:password", file=sys.stderr)
            return 2
    tls = None
    if args.cacert or args.cert or args.insecure_skip_tls_verify:
        tls = TLS(
            ca_file=args.cacert,
            cert_file=args.cert,
            key_file=args.key,
            insecure_skip_verify=args.insecure_skip_tls_verify,
        )
    try:
        access = {"tls": tls, "user": user, "password": password}
        server, poller = start_dashboard(endpoints, args.address, args.interval, **access)
    except (ssl.SSLError, FileNotFoundError) as exc:
        print(f"pyraftkv dashboard: cannot use the TLS files: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"pyraftkv dashboard: cannot listen on {args.address}: {exc}", file=sys.stderr)
        return 2
    print(f"pyraftkv dashboard: http://{args.address}/ ({len(endpoints)} endpoints)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    poller.stop()
    server.shutdown()
    return 0
