"""Gateway calls over a WebSocket, as etcd 3.4 takes them on its client port: the same
messages to a real etcd 3.4 member and to a pyraftkv member get the same answers (after
blanking the cluster id, member id and term), revisions included; bad input gets an error
message and the member keeps serving."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time

import pytest
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from ..ctl_etcd_cluster import ETCD, MISSING
from .gateway_http import b64, call, normalise, raw_exchange, start_etcd
from .harness import LocalCluster

pytestmark = pytest.mark.skipif(ETCD is None, reason=MISSING)

CLOSED = "closed"  # what next() gives once the server has closed the call


class WebSocket:
    """A blocking WebSocket client of one gateway call (wsproto over a plain socket)."""

    def __init__(
        self,
        endpoint: str,
        path: str,
        headers: list | None = None,
        subprotocols: list | None = None,
    ) -> None:
        host, port = endpoint.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list = []
        self.text = ""
        request = Request(
            host=endpoint, target=path, extra_headers=headers or [], subprotocols=subprotocols or []
        )
        self.sock.sendall(self.ws.send(request))
        first = self._event()
        self.accepted = isinstance(first, AcceptConnection)
        self.refusal = first

    def _event(self):
        while not self.pending:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
            if not data and not self.pending:
                return None
        return self.pending.pop(0)

    def send(self, message: object) -> None:
        """Send a message (dropped if the server already closed: an unknown path's call)."""
        if self.ws.state is not ConnectionState.OPEN:
            return
        text = message if isinstance(message, str) else json.dumps(message)
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def next(self):
        """The next message (JSON when it parses, else its text), or CLOSED."""
        while True:
            event = self._event()
            if event is None or isinstance(event, CloseConnection):
                return CLOSED
            if isinstance(event, (TextMessage, BytesMessage)):
                self.text += event.data if isinstance(event.data, str) else event.data.decode()
                if event.message_finished:
                    text, self.text = self.text, ""
                    try:
                        return json.loads(text)
                    except ValueError:
                        return text

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """A real etcd 3.4 member and a 3-member pyraftkv cluster: (etcd endpoint, pyraftkv
    endpoints of the leader and of a follower)."""
    directory = tmp_path_factory.mktemp("websocket")
    etcd, etcd_endpoint = start_etcd(directory)
    cluster = LocalCluster(str(directory), 3)
    try:
        cluster.start()
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        yield etcd_endpoint, leader.endpoint, follower.endpoint
    finally:
        cluster.stop_all()
        etcd.kill()
        etcd.wait(10)


def exchange(endpoint: str, path: str, messages: list, answers: int) -> list:
    """Open ``path`` as a WebSocket, send ``messages``, read ``answers`` messages (and
    whether the server then closes)."""
    ws = WebSocket(endpoint, path)
    try:
        assert ws.accepted, ws.refusal
        for message in messages:
            ws.send(message)
        return [normalise(ws.next()) for _ in range(answers)]
    finally:
        ws.close()


def test_unary_calls_answer_once_then_close_as_etcd(both):
    etcd, leader, _ = both
    session = [
        ("/v3/kv/put", [{"key": b64("u"), "value": b64("1")}]),
        ("/v3/kv/range", [{"key": b64("u")}, {"key": b64("ignored")}]),
        ("/v3/kv/range", [{"key": b64("u"), "bogus": 1}]),
        ("/v3/kv/put", [{"key": b64("u"), "lease": "99"}]),
        ("/v3/kv/range", ["not json"]),
        ("/v3/lease/keepalive", ["not json"]),
        ("/v3/watch", ['{"create_request": {"key": 5}}']),
        ("/v3/nothing", [{}]),
    ]
    for path, messages in session:
        theirs, mine = (exchange(e, path, messages, 2) for e in (etcd, leader))
        assert mine[1] == theirs[1] == CLOSED, (path, theirs, mine)
        if isinstance(theirs[0], dict) and "error" in theirs[0]:
            # the message is the JSON parser's own; the code is etcd's
            assert mine[0]["code"] == theirs[0]["code"], (path, theirs, mine)
        else:
            assert mine[0] == theirs[0], (path, theirs, mine)


def events(ws: WebSocket, count: int) -> list[dict]:
    """The next ``count`` events a watch stream sends, whatever answers carry them: a
    member puts the events it has when an answer leaves into that answer (etcd's groups
    them too when a watcher catches up), so the grouping differs by timing alone. Each
    answer's header is at least as new as its events."""
    got: list[dict] = []
    while len(got) < count:
        result = normalise(ws.next())["result"]
        newest = max(int(event["kv"]["mod_revision"]) for event in result["events"])
        assert int(result["header"]["revision"]) >= newest, result
        got += result["events"]
    return got


def test_watch_over_a_websocket_streams_as_etcd(both):
    etcd, leader, follower = both
    key = b64("ws/watched")
    streams = {e: WebSocket(e, "/v3/watch") for e in (etcd, follower)}
    try:
        for ws in streams.values():
            assert ws.accepted
            ws.send({"create_request": {"key": key, "prev_kv": True}})
            ws.send({"create_request": {"key": b64("ws/other"), "watch_id": 7}})
        created = [[normalise(ws.next()) for _ in range(2)] for ws in streams.values()]
        assert created[0] == created[1]
        assert [c["result"].get("watch_id", "0") for c in created[1]] == ["0", "7"]
        for e in (etcd, leader):
            for value in ("1", "2"):
                assert call(e, "/v3/kv/put", {"key": key, "value": b64(value)}).status == 200
        theirs, mine = (events(ws, 2) for ws in streams.values())
        assert mine == theirs, (theirs, mine)
        for ws in streams.values():
            ws.send({"cancel_request": {"watch_id": "0"}})
        theirs, mine = (normalise(ws.next()) for ws in streams.values())
        assert mine == theirs and mine["result"]["canceled"], (theirs, mine)
    finally:
        for ws in streams.values():
            ws.close()


def test_lease_keep_alive_over_a_websocket_answers_each_request(both):
    """On the leader and through a follower (which passes each keep-alive to the leader)."""
    etcd, leader, follower = both
    for e in (etcd, leader):
        assert call(e, "/v3/lease/grant", {"TTL": 30, "ID": "4242"}).status == 200
    for endpoint in (leader, follower):
        streams = [WebSocket(e, "/v3/lease/keepalive") for e in (etcd, endpoint)]
        try:
            for _ in range(3):
                for ws in streams:
                    ws.send({"ID": "4242"})
                theirs, mine = (normalise(ws.next()) for ws in streams)
                assert mine == theirs and mine["result"]["TTL"] == "30", (theirs, mine)
        finally:
            for ws in streams:
                ws.close()


def put_u(*endpoints: str) -> None:
    """Key u holds 1 on each endpoint (what the tests below read back, in any order)."""
    for endpoint in endpoints:
        exchange(endpoint, "/v3/kv/put", [{"key": b64("u"), "value": b64("1")}], 1)


def test_bad_websocket_input_gets_an_error_and_the_member_keeps_serving(both):
    etcd, leader, _ = both
    put_u(etcd, leader)  # both, so that their revisions stay alike
    # a request over the size limit: an error message, then the close
    ws = WebSocket(leader, "/v3/kv/put")
    try:
        ws.send({"key": b64("big"), "value": "QUFB" * (3 << 20)})
        error = ws.next()
        assert error["code"] == 8 and "larger than max" in error["error"], error
        assert ws.next() == CLOSED
    finally:
        ws.close()
    # a frame that breaks RFC 6455 (not masked, reserved bits set): closed with 1002
    ws = WebSocket(leader, "/v3/watch")
    try:
        ws.sock.sendall(b"\xf1\x05hello")
        event = ws._event()
        assert isinstance(event, CloseConnection) and event.code == 1002, event
    finally:
        ws.close()
    # an upgrade without a key is not a WebSocket handshake: 400, and no switch
    answer = raw_exchange(
        leader,
        b"GET /v3/watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade, close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    # the member still serves, over a WebSocket too
    assert exchange(leader, "/v3/kv/range", [{"key": b64("u")}], 1)[0]["count"] == "1"


def test_a_websocket_watch_ends_with_its_connection(both):
    """A client that goes away leaves no watch behind (the member's watcher gauge)."""
    _, leader, _ = both
    ws = WebSocket(leader, "/v3/watch")
    ws.send({"create_request": {"key": b64("gone")}})
    assert ws.next()["result"]["created"]
    assert _watchers(leader) >= 1
    ws.close()
    deadline = time.monotonic() + 10
    while _watchers(leader) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _watchers(leader) == 0


def _watchers(endpoint: str) -> float:
    metrics = call(endpoint, "/metrics", None, method="GET").body.decode()
    for line in metrics.splitlines():
        if line.startswith("etcd_debugging_mvcc_watcher_total "):
            return float(line.split()[1])
    raise AssertionError("no watcher gauge in /metrics")


def test_auth_token_from_a_browser_subprotocol_cookie_or_header(both):
    """With auth on, no token gets etcd's error; a token passed as a browser can (the
    subprotocols ``Bearer, <token>`` or a ``token`` cookie) or in the gateway's header
    works (etcd 3.4 refuses the first two as invalid tokens: it keeps the Bearer prefix)."""
    etcd, leader, _ = both
    put_u(etcd, leader)
    for endpoint in (etcd, leader):
        for path, body in (
            ("/v3/auth/user/add", {"name": "root", "password": "rootpw"}),
            ("/v3/auth/role/add", {"name": "root"}),
            ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
            ("/v3/auth/enable", {}),
        ):
            assert call(endpoint, path, body).status == 200, (endpoint, path)
    try:
        theirs, mine = (exchange(e, "/v3/kv/range", [{"key": b64("u")}], 1)[0] for e in both[:2])
        assert mine == theirs and "user name is empty" in mine["error"], (theirs, mine)
        answer = call(leader, "/v3/auth/authenticate", {"name": "root", "password": "rootpw"})
        token = answer.json["token"]
        for how in (
            {"subprotocols": ["Bearer", token]},
            {"headers": [(b"cookie", b"theme=dark; token=" + token.encode())]},
            {"headers": [(b"authorization", token.encode())]},
        ):
            ws = WebSocket(leader, "/v3/kv/range", **how)
            try:
                if "subprotocols" in how:
                    assert ws.refusal.subprotocol == "Bearer"
                ws.send({"key": b64("u")})
                assert ws.next()["count"] == "1", how
            finally:
                ws.close()
        ws = WebSocket(leader, "/v3/kv/range", subprotocols=["Bearer", "forged.1"])
        try:
            ws.send({"key": b64("u")})
            assert ws.next()["error"] == "etcdserver: invalid auth token"
        finally:
            ws.close()
    finally:
        for endpoint in (etcd, leader):
            token = call(
                endpoint, "/v3/auth/authenticate", {"name": "root", "password": "rootpw"}
            ).json["token"]
            assert (
                call(endpoint, "/v3/auth/disable", {}, headers={"Authorization": token}).status
                == 200
            )


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# A web page that watches a key over a WebSocket, puts a value over another, and shows
# the event it got; then it loads an image that lets the test's server answer /hold, so
# that the page's load event (when Chromium dumps the DOM) comes after the watch event.
PAGE = """<!doctype html><html><body><pre id="out">waiting</pre><script>
const base = "ws://ENDPOINT", key = btoa("browser/" + Date.now());
const out = document.getElementById("out");
const done = () => { new Image().src = "http://HOLD/release"; };
const watch = new WebSocket(base + "/v3/watch");
watch.onopen = () => watch.send(JSON.stringify({create_request: {key: key}}));
watch.onmessage = (message) => {
  const result = JSON.parse(message.data).result;
  if (result.created) {
    const put = new WebSocket(base + "/v3/kv/put");
    put.onopen = () => put.send(JSON.stringify({key: key, value: btoa("from the page")}));
  } else if (result.events) {
    const kv = result.events[0].kv;
    out.textContent = "event " + atob(kv.value) + " version " + kv.version;
    done();
  }
};
watch.onerror = () => { out.textContent = "error"; done(); };
</script><img src="http://HOLD/hold"></body></html>"""


class _Hold(http.server.BaseHTTPRequestHandler):
    """/hold answers once /release was asked for (or after 20 s)."""

    released = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/release":
            self.released.set()
        else:
            self.released.wait(20)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
@pytest.mark.parametrize("server", ["etcd", "pyraftkv"])
def test_a_web_page_in_chromium_watches_and_puts_over_websockets(both, tmp_path, server):
    endpoint = both[0] if server == "etcd" else both[1]
    _Hold.released.clear()
    hold = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hold)
    threading.Thread(target=hold.serve_forever, daemon=True).start()
    try:
        page = tmp_path / f"{server}.html"
        holder = f"127.0.0.1:{hold.server_address[1]}"
        page.write_text(PAGE.replace("ENDPOINT", endpoint).replace("HOLD", holder))
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        hold.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    assert '<pre id="out">event from the page version 1</pre>' in done.stdout, done.stdout
