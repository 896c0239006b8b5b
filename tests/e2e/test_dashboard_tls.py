"""The dashboard's poller against a member that serves TLS only, requires client
certificates and has auth on: with etcdctl's TLS flags and --user it shows the member,
its leader and the figures from its /metrics; without them it shows the member down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from pyraftkv.proto import rpc_pb2 as rpc

from .harness import LocalCluster, free_ports
from .test_auth import call


def dashboard_state(cluster: LocalCluster, *flags: str, until) -> dict:
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "pyraftkv", "dashboard", "--endpoints", cluster.endpoints[0],
         "--address", f"127.0.0.1:{port}", "--interval", "0.2", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{port}/api/state"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    state = json.loads(answer.read())
                if until(state):
                    return state
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dashboard never showed what was due"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_the_dashboard_polls_members_over_tls_with_a_user(tmp_path, certs):
    cluster = LocalCluster(
        str(tmp_path),
        1,
        peer_scheme="https",
        client_scheme="https",
        extra_args=[*certs.peer_args(), *certs.client_args(), "--bcrypt-cost", "4"],
        client_options={"tls": certs.tls("root")},
    )
    cluster.start()
    try:
        with cluster.client() as client:
            call(client, "UserAdd", rpc.AuthUserAddRequest(name="root", password="rootpw"))
            call(client, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user="root", role="root"))
            call(client, "AuthEnable", rpc.AuthEnableRequest())
        files = certs.issue("dashboard")
        tls = [f"--cacert={certs.ca}", f"--cert={files.cert}", f"--key={files.key}"]
        shown = dashboard_state(
            cluster,
            *tls,
            "--user",
            "root:rootpw",
            until=lambda s: s["leader"] and s["members"][0]["healthy"] and s["leases"] is not None,
        )
        assert shown["leader"] == cluster.members[0].name
        assert "error" not in shown["members"][0]
        # A wrong password: the member is shown down, with the member's own words.
        refused = dashboard_state(
            cluster,
            *tls,
            "--user",
            "root:wrong",
            until=lambda s: s["members"] and s["members"][0].get("error"),
        )
        assert "authentication failed" in refused["members"][0]["error"]
    finally:
        cluster.stop_all()


def test_bad_tls_and_user_flags_are_refused_before_anything_starts(tmp_path):
    run = [sys.executable, "-m", "pyraftkv", "dashboard", "--endpoints", "127.0.0.1:1"]
    for flags, message in (
        (["--user", "bob"], "--user takes username:password"),
        (["--user", ":pw"], "--user takes username:password"),
        (["--cert", str(tmp_path / "c.pem")], "--cert and --key go together"),
        (["--cacert", str(tmp_path / "missing.pem")], "cannot use the TLS files"),
    ):
        done = subprocess.run([*run, *flags], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and message in done.stderr, (flags, done.stderr)
