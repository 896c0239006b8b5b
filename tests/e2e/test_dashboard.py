"""The live dashboard in a real browser (headless Chromium) against a real 3-member
cluster: it names the leader, and after the leader is killed it shows the new one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from .harness import free_ports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"
)
ROW = re.compile(r'<tr class="(\w+)" data-endpoint="([^"]+)" data-role="(\w+)"')


def browser(url: str, *options: str) -> str:
    """Loads url in headless Chromium, lets the page run for two seconds of its own time,
    and returns what Chromium printed (the DOM with --dump-dom)."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=2000", *options, url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def roles(dom: str) -> dict[str, str]:
    """endpoint -> the role its row shows."""
    return {endpoint: role for _, endpoint, role in ROW.findall(dom)}


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_page_shows_the_members_and_follows_a_leader_change(make_cluster, tmp_path):
    cluster = make_cluster(3)
    cluster.start()
    (port,) = free_ports(1)
    page = f"http://127.0.0.1:{port}/"
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "pyraftkv", "dashboard", "--endpoints", ",".join(cluster.endpoints),
         "--address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = get(page + "api/state")
                state = json.loads(body)
                if status == 200 and len(state["members"]) == 3 and state["leader"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not come up"
            time.sleep(0.2)
        assert get(page + "nothing-here")[0] == 404
        leader = cluster.wait_leader()
        with cluster.client() as client:
            client.put("seen/by", "the dashboard")

        shown = roles(browser(page, "--dump-dom"))
        assert shown[leader.endpoint] == "leader"
        assert sorted(shown) == sorted(cluster.endpoints)
        assert sorted(shown.values()) == ["follower", "follower", "leader"]

        cluster.kill(leader)
        new_leader = cluster.wait_leader(timeout=30)
        deadline = time.monotonic() + 20
        while True:
            dom = browser(page, "--dump-dom")
            shown = roles(dom)
            if shown.get(new_leader.endpoint) == "leader":
                break
            assert time.monotonic() < deadline, f"the page still shows {shown}"
        assert shown[leader.endpoint] == "down"
        assert f"{new_leader.name} (" in dom and "became the leader" in dom
        assert f"{leader.endpoint} stopped answering" in dom

        screenshot = tmp_path / "dashboard-after-leader-change.png"
        browser(page, "--window-size=1280,1000", f"--screenshot={screenshot}")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert screenshot.stat().st_size > 10_000
    finally:
        dashboard.terminate()
        output = dashboard.communicate(timeout=10)[0]
    assert dashboard.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output


def test_bad_flags_are_refused_before_anything_starts():
    run = [sys.executable, "-m", "pyraftkv", "dashboard"]
    missing = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "--endpoints" in missing.stderr
    empty = subprocess.run([*run, "--endpoints", ","], capture_output=True, text=True, timeout=30)
    assert empty.returncode == 2 and "at least one host:port" in empty.stderr
    (port,) = free_ports(1)
    bad = subprocess.run(
        [*run, "--endpoints", "127.0.0.1:1", "--address", f"256.0.0.1:{port}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert bad.returncode == 2 and "cannot listen" in bad.stderr
