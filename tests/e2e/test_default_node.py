"""`pyraftkv` with no flags: the embedded single-member default the README starts."""

import os
import signal
import subprocess
import sys
import time

from pyraftkv import Client


def start_default(cwd):
    log = open(cwd / "node.log", "ab")  # noqa: SIM115 (kept open for the child's lifetime)
    return subprocess.Popen([sys.executable, "-m", "pyraftkv"], cwd=cwd, stdout=log, stderr=log)


def wait_until_serving(process, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the default node exited"
        try:
            with Client(["127.0.0.1:2379"], timeout=1, connect_timeout=0.5) as c:
                if c.status().leader:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError("the default node did not start")


def test_default_node_serves_on_2379_keeps_data_in_default_dir_and_stops_cleanly(tmp_path):
    process = start_default(tmp_path)
    try:
        wait_until_serving(process)
        with Client(["127.0.0.1:2379"]) as c:
            c.put("greeting", "hello")
            status = c.status()
            assert status.leader == status.header.member_id  # a single member leads itself
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert (tmp_path / "default.pyraftkv" / "member" / "wal").is_dir()

        process = start_default(tmp_path)
        wait_until_serving(process)
        with Client(["127.0.0.1:2379"]) as c:
            assert c.get("greeting").kvs[0].value == b"hello"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(20)
    assert "stopped" in (tmp_path / "node.log").read_text()


def test_local_cluster_members_lead_their_sessions_followers_yield_and_ctrl_c_stops_all(
    tmp_path,
):
    """`pyraftkv cluster --size 3`: three members on 2379/12379/22379, each leading a
    session of its own (so an idle follower may lower its autogroup's weight without
    touching anyone else's: follower_yield.py), all stopped by one SIGINT."""
    log = open(tmp_path / "cluster.log", "ab")  # noqa: SIM115
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pyraftkv", "cluster", "--size", "3"],
        cwd=tmp_path,
        stdout=log,
        stderr=log,
    )
    endpoints = ["127.0.0.1:2379", "127.0.0.1:12379", "127.0.0.1:22379"]
    try:
        deadline = time.monotonic() + 30
        while True:
            assert launcher.poll() is None, (tmp_path / "cluster.log").read_text()
            try:
                with Client(endpoints, timeout=1, connect_timeout=0.5) as c:
                    c.put("k", "v")
                    break
            except Exception:
                assert time.monotonic() < deadline, "the local cluster did not start"
                time.sleep(0.2)
        with open(f"/proc/{launcher.pid}/task/{launcher.pid}/children") as f:
            members = [int(pid) for pid in f.read().split()]
        assert len(members) == 3
        assert all(os.getsid(pid) == pid for pid in members)

        def yielding() -> int:
            count = 0
            for pid in members:
                with open(f"/proc/{pid}/autogroup") as f:
                    count += f.read().split()[-1] == "19"
            return count

        if os.path.exists("/proc/self/autogroup"):
            deadline = time.monotonic() + 10
            while yielding() != 2:  # the two followers, no client on them
                assert time.monotonic() < deadline, "the idle followers did not yield"
                time.sleep(0.1)
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(30) == 0
        for pid in members:
            assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(10)


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"
