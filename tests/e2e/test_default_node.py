"""`pyraftkv` with no flags: the embedded single-member default the README starts."""

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
