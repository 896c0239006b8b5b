"""No input takes a member down (node side): odd but legal requests answered as etcd 3.4
answers them, membership growth one voter at a time, and peer-port messages that are
malformed or come from strangers. Real members on loopback; one 3-member cluster for the
module where the test leaves it as it found it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pyraftkv import Client
from pyraftkv.ctl import run
from pyraftkv.errors import ApiError
from pyraftkv.proto import rpc_pb2 as rpc

from ..ctl_etcd_cluster import Result, wait_until
from .harness import LocalCluster, Member, free_ports


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(str(tmp_path_factory.mktemp("robust")), 3)
    c.start()
    yield c
    c.stop_all()


def ctl(cluster: LocalCluster, *args: str) -> Result:
    out, err = io.BytesIO(), io.BytesIO()
    endpoints = ",".join(cluster.endpoints)
    code = run([f"--endpoints={endpoints}", *args], io.BytesIO(), out, err, environ={})
    return Result(code, out.getvalue(), err.getvalue())


def all_running(cluster: LocalCluster) -> None:
    time.sleep(0.3)
    for member in cluster.members:
        assert member.running, f"{member.name} died:\n{member.log_text()[-3000:]}"


COMPACTED = (
    b"watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
    b"Error: watch is canceled by the server\n"
)


def test_a_watch_from_a_negative_revision_is_answered_as_etcd_does(cluster, tmp_path):
    """etcd 3.4 compares the start revision with its compaction point (-1 before any
    compaction): -1 on a never-compacted store watches from now on, anything lower (or -1
    after a compaction) is canceled as compacted."""
    out_path = tmp_path / "watch.out"
    endpoints = ",".join(cluster.endpoints)
    with open(out_path, "wb") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "pyraftkv.ctl", f"--endpoints={endpoints}"]
            + ["watch", "neg/a", "--rev=-1"],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
    try:
        time.sleep(1.0)  # the watch is created before the put
        assert ctl(cluster, "put", "neg/a", "1").code == 0
        wait_until(lambda: out_path.read_bytes() == b"PUT\nneg/a\n1\n", what="the event")
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=10)
    all_running(cluster)
    below = ctl(cluster, "watch", "neg/a", "--rev=-5")
    assert (below.code, below.err) == (5, COMPACTED)
    assert ctl(cluster, "put", "neg/a", "2").code == 0
    assert ctl(cluster, "compaction", "2").code == 0
    after = ctl(cluster, "watch", "neg/a", "--rev=-1")
    assert (after.code, after.err) == (5, COMPACTED)
    all_running(cluster)


def test_member_add_with_https_is_accepted_and_bad_urls_refused_as_etcd_does(cluster):
    with cluster.client() as c:
        for url in ("ftp://h:1", "http://h", "http://h:1/x", "h:1"):
            with pytest.raises(ApiError, match="etcdserver: given member URLs are invalid"):
                c.call("MemberAdd", rpc.MemberAddRequest(peerURLs=[url]), timeout=10)
        all_running(cluster)
        added = c.call(
            "MemberAdd",
            rpc.MemberAddRequest(peerURLs=["https://127.0.0.1:1"], isLearner=True),
            timeout=10,
        )
        assert list(added.member.peerURLs) == ["https://127.0.0.1:1"]
        all_running(cluster)
        c.call("MemberRemove", rpc.MemberRemoveRequest(ID=added.member.ID), timeout=10)
        assert len(c.member_list().members) == 3
        c.put("after-https-add", "ok")
    all_running(cluster)


def _add_and_start(cluster: LocalCluster, name: str) -> Member:
    """MemberAdd, and start the newcomer while the add waits: adding the second voter
    commits only once the newcomer votes for it (the core counts a member from the moment
    its entry is appended)."""
    client_port, peer_port = free_ports(2)
    url = f"http://127.0.0.1:{peer_port}"
    newcomer = Member(
        name,
        client_port,
        peer_port,
        str(cluster.members[0].data_dir) + f"-{name}",
        ["--initial-cluster-state", "existing"],
    )
    with cluster.client() as c, ThreadPoolExecutor(1) as pool:
        adding = pool.submit(c.call, "MemberAdd", rpc.MemberAddRequest(peerURLs=[url]), timeout=20)
        time.sleep(1.0)  # the entry is appended: the newcomer's peer query finds itself
        cluster.initial_cluster += f",{name}={url}"
        cluster.members.append(newcomer)
        cluster.start_member(newcomer, wait=False)
        added = adding.result()
    assert list(added.member.peerURLs) == [url]
    cluster.wait_serving(newcomer)
    return newcomer


def test_a_cluster_grows_from_one_voter_to_three_one_at_a_time(make_cluster):
    cluster = make_cluster(1)
    cluster.start()
    written = {}
    with cluster.client() as c:
        for step, name in enumerate(("m2", "m3")):
            for i in range(5):
                key = f"grow/{step}/{i}"
                c.put(key, name)
                written[key.encode()] = name.encode()
            _add_and_start(cluster, name)
            cluster.wait_leader()
        for i in range(5):
            c.put(f"grow/last/{i}", "3")
            written[f"grow/last/{i}".encode()] = b"3"
        index = cluster.status(cluster.wait_leader()).raftIndex
    for member in cluster.members:
        cluster.wait_applied(member, index)
        with Client([member.endpoint]) as c:
            got = c.get("grow/", prefix=True, serializable=True)
            assert {kv.key: kv.value for kv in got.kvs} == written, member.name
            assert len(c.member_list().members) == 3
