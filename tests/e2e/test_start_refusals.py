"""A member that cannot start says why in one line and exits non-zero before it opens any
listener: a data dir another member holds, a peer port already taken."""

from __future__ import annotations

import socket
import subprocess
import sys

from .harness import LocalCluster, free_ports


def start_alone(data_dir: str, client_port: int, peer_port: int) -> subprocess.CompletedProcess:
    url = f"http://127.0.0.1:{peer_port}"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pyraftkv",
            "--data-dir",
            data_dir,
            "--listen-client-urls",
            f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls",
            url,
            "--initial-advertise-peer-urls",
            url,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )


def client_port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_a_second_member_on_a_data_dir_in_use_is_refused_before_listening(tmp_path):
    cluster = LocalCluster(str(tmp_path), 1)
    try:
        cluster.start()
        (member,) = cluster.members
        client_port, peer_port = free_ports(2)
        second = start_alone(member.data_dir, client_port, peer_port)
        assert second.returncode != 0
        assert f"pid {member.process.pid}" in second.stderr
        assert "is in use by another member" in second.stderr
        assert "serving clients" not in second.stderr
        assert client_port_is_free(client_port)
        # The first member was not disturbed.
        assert cluster.client().put("still", "here").header.revision > 0
    finally:
        cluster.stop_all()


def test_a_taken_peer_port_stops_the_start_before_the_client_port_opens(tmp_path):
    client_port, peer_port = free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", peer_port))
        taken.listen()
        result = start_alone(str(tmp_path / "m.pyraftkv"), client_port, peer_port)
    assert result.returncode != 0
    assert "cannot listen for peers" in result.stderr
    assert "the Raft process could not start" in result.stderr
    assert "serving clients" not in result.stderr


def test_a_member_runs_from_a_config_file_alone(tmp_path):
    """Flags that contradict the file are ignored, as etcd ignores them."""
    client_port, peer_port = free_ports(2)
    config = tmp_path / "member.yml"
    config.write_text(
        f"name: from-file\n"
        f"data-dir: {tmp_path / 'data'}\n"
        f"listen-client-urls: http://127.0.0.1:{client_port}\n"
        f"advertise-client-urls: http://127.0.0.1:{client_port}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer_port}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{peer_port}\n"
        f"client-transport-security:\n  auto-tls: false\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pyraftkv", "--config-file", str(config), "--name", "ignored"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        from pyraftkv.client import Client

        with Client([f"127.0.0.1:{client_port}"], timeout=20) as client:
            assert client.put("k", "v").header.revision > 0
            (member,) = client.member_list().members
            assert member.name == "from-file"
    finally:
        process.terminate()
        assert process.wait(30) == 0
