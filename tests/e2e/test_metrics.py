"""/metrics and /health over HTTP (--listen-metrics-urls) on real members."""

import os
import socket
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest

from pyraftkv.errors import PyraftkvError
from pyraftkv.failpoints import FILE_ENV
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.methods import METHODS

from .grpc_stubs import stub
from .harness import free_ports
from .nemesis import app_pid, paused, raft_pid


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def metrics(port: int) -> dict[str, float]:
    """Sample name (with labels) -> value; checks every family is declared before use."""
    status, body = fetch(port, "/metrics")
    assert status == 200
    declared, samples = set(), {}
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            family = name.split("{")[0]
            assert family in declared or family.rsplit("_", 1)[0] in declared, line
            samples[name] = float(value)
    return samples


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        return s.makefile("rb").readline()


def with_metrics(cluster, member_index: int = 0) -> int:
    port = free_ports(1)[0]
    cluster.members[member_index].extra_args += [
        "--listen-metrics-urls",
        f"http://127.0.0.1:{port}",
    ]
    return port


def test_metrics_report_fsyncs_leadership_and_the_store(make_cluster):
    cluster = make_cluster(1)
    port = with_metrics(cluster)
    cluster.members[0].extra_args += ["--quota-backend-bytes", str(3 << 30)]
    cluster.start()
    with cluster.client() as client:
        for i in range(5):
            revision = client.put(f"m/{i}", "v").header.revision
        client.delete("m/0")
        revision += 1
        watch = client.watch("m/", prefix=True)
        deadline = time.monotonic() + 10
        while (seen := metrics(port))["etcd_disk_wal_fsync_duration_seconds_count"] < 6:
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        watch.cancel()
    count = seen["etcd_disk_wal_fsync_duration_seconds_count"]
    buckets = [v for k, v in seen.items() if k.startswith("etcd_disk_wal_fsync_duration_seconds_b")]
    assert len(buckets) == 15 and buckets == sorted(buckets) and buckets[-1] == count
    assert 0 < seen["etcd_disk_wal_fsync_duration_seconds_sum"] < count * 8.192
    assert seen["etcd_server_has_leader"] == 1
    assert seen["etcd_server_is_leader"] == 1
    assert seen["etcd_server_leader_changes_seen_total"] == 1
    assert seen["etcd_debugging_mvcc_current_revision"] == revision
    assert seen["etcd_debugging_mvcc_keys_total"] == 5  # the deleted key until compaction
    assert seen["etcd_debugging_mvcc_watcher_total"] == 1
    assert seen["etcd_server_proposals_applied_total"] >= 6
    assert seen['pyraftkv_requests_total{method="Put"}'] == 5
    assert seen['pyraftkv_requests_total{method="DeleteRange"}'] == 1
    assert 'pyraftkv_requests_total{method="Range"}' not in seen
    assert seen["pyraftkv_leases"] == 0
    with cluster.client() as client:
        client.get("m/1")
        client.get("m/", prefix=True, serializable=True)
        client.lease_grant(60)
    seen = metrics(port)
    assert seen['pyraftkv_requests_total{method="Range"}'] == 2
    assert seen['pyraftkv_requests_total{method="LeaseGrant"}'] == 1
    assert seen["pyraftkv_leases"] == 1
    assert (
        seen["etcd_mvcc_db_total_size_in_bytes"]
        >= seen["etcd_mvcc_db_total_size_in_use_in_bytes"]
        > 0
    )
    assert fetch(port, "/health") == (200, b'{"health":"true"}')
    assert seen["etcd_server_proposals_failed_total"] == 0
    assert seen["etcd_server_quota_backend_bytes"] == 3 << 30


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_metrics_report_both_processes_cpu_and_memory(make_cluster):
    """The process collector's figures for the application process, and the Raft
    process's memory and CPU beside them, each read from that process."""
    cluster = make_cluster(1)
    port = with_metrics(cluster)
    cluster.start()
    member = cluster.members[0]
    app, raft = app_pid(member), raft_pid(member)
    with cluster.client() as client:
        for i in range(50):
            client.put(f"p/{i}", "v" * 1000)
    seen = metrics(port)
    resident = {app: resident_bytes(app), raft: resident_bytes(raft)}
    for name, pid, other in (
        ("process_resident_memory_bytes", app, raft),
        ("pyraftkv_raft_process_resident_memory_bytes", raft, app),
    ):
        # The two are close in size: each figure must be nearer its own process's.
        off = abs(seen[name] - resident[pid])
        assert off < 0.1 * resident[pid] and off < abs(seen[name] - resident[other]), name
    assert seen["process_virtual_memory_bytes"] > seen["process_resident_memory_bytes"]
    assert seen["process_cpu_seconds_total"] > 0
    assert seen["pyraftkv_raft_process_cpu_seconds_total"] > 0
    open_fds = len(os.listdir(f"/proc/{app}/fd"))
    assert open_fds - 5 < seen["process_open_fds"] < seen["process_max_fds"]
    assert abs(seen["process_start_time_seconds"] - os.stat(f"/proc/{app}").st_mtime) < 60


def test_bad_requests_get_http_errors_and_the_member_keeps_serving(make_cluster):
    cluster = make_cluster(1)
    port = with_metrics(cluster)
    cluster.start()
    assert fetch(port, "/nothing")[0] == 404
    assert fetch(port, "/metrics", method="POST")[0] == 405
    assert raw(port, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n").startswith(
        b"HTTP/1.1 431"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metr")  # and hang up half way
    assert fetch(port, "/health") == (200, b'{"health":"true"}')
    with cluster.client() as client:
        assert client.put("still", "here").header.revision > 1


def test_health_fails_when_the_member_loses_its_quorum(make_cluster):
    cluster = make_cluster(3)
    port = with_metrics(cluster, 0)
    cluster.start()
    deadline = time.monotonic() + 10
    while fetch(port, "/health")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cluster.kill(cluster.members[1])
    cluster.kill(cluster.members[2])
    deadline = time.monotonic() + 15
    while (answer := fetch(port, "/health")) != (503, b'{"health":"false"}'):
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    while metrics(port)["etcd_server_has_leader"] != 0:  # a lone member knows no leader
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # A write it cannot propose fails, each try (the client retries) a failed proposal.
    assert metrics(port)["etcd_server_proposals_failed_total"] == 0
    with cluster.client([cluster.members[0]]) as client, pytest.raises(PyraftkvError) as failed:
        client.put("lost", "quorum")
    assert "no leader" in str(failed.value)
    assert metrics(port)["etcd_server_proposals_failed_total"] >= 1


def stage_figures(seen: dict[str, float], suffix: str, kind: str = "write") -> dict[str, float]:
    prefix = f'pyraftkv_{kind}_stage_duration_seconds_{suffix}{{stage="'
    return {k[len(prefix) : -2]: v for k, v in seen.items() if k.startswith(prefix)}


def traced_cluster(make_cluster) -> tuple:
    """Three members with /metrics on ports of their own, a first write applied; every
    write one at a time is traced (one trace each 0.1 ms at most: a put can take less
    than a millisecond)."""
    cluster = make_cluster(3, extra_args=["--write-trace-interval", "0.1"])
    ports = [with_metrics(cluster, i) for i in range(3)]
    cluster.start()
    with cluster.client() as client:
        client.put("warm", "up")
    return cluster, ports


def member_at(ports: list[int], leader: bool) -> int:
    """Which member leads (or, with ``leader`` false, the first that follows)."""
    return next(i for i, p in enumerate(ports) if metrics(p)["etcd_server_is_leader"] == leader)


def test_the_stage_trace_counts_every_traced_write_in_every_stage(make_cluster):
    cluster, ports = traced_cluster(make_cluster)
    at = member_at(ports, leader=True)
    leader = ports[at]
    before = metrics(leader)
    with cluster.client([cluster.members[at]]) as client:
        for i in range(20):
            client.put(f"t/{i}", "v")
    deadline = time.monotonic() + 10
    while (seen := metrics(leader))["pyraftkv_write_duration_seconds_count"] < before[
        "pyraftkv_write_duration_seconds_count"
    ] + 20 or not any(k.startswith("etcd_network_peer_round_trip") for k in seen):
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    # One write at a time to the leader, one trace each 0.1 ms at most: every write was
    # traced.
    counts, sums = stage_figures(seen, "count"), stage_figures(seen, "sum")
    assert list(counts) == [
        "batch", "ring_down", "propose", "wal_write", "wal_fsync",
        "quorum", "commit", "ring_up", "apply", "reply",
    ]  # fmt: skip
    total = seen["pyraftkv_write_duration_seconds_count"]
    assert set(counts.values()) == {total}
    # The stages of a write add up to its whole time.
    assert abs(sum(sums.values()) - seen["pyraftkv_write_duration_seconds_sum"]) < 1e-6
    assert sums["wal_fsync"] > 0 and sums["quorum"] + sums["wal_fsync"] > 0
    assert 0 < seen["pyraftkv_write_duration_seconds_sum"] < total * 1.0
    grew = seen["etcd_disk_backend_commit_duration_seconds_count"]
    assert grew >= before["etcd_disk_backend_commit_duration_seconds_count"] + 20
    peers = {k.split('To="')[1].split('"')[0] for k in seen if k.startswith("etcd_network_peer")}
    assert len(peers) == 2
    for peer in peers:
        assert seen[f'etcd_network_peer_round_trip_time_seconds_count{{To="{peer}"}}'] > 0
        inf = f'etcd_network_peer_round_trip_time_seconds_bucket{{To="{peer}",le="+Inf"}}'
        assert seen[inf] == seen[f'etcd_network_peer_round_trip_time_seconds_count{{To="{peer}"}}']


def test_writes_a_follower_forwards_are_traced_on_that_follower(make_cluster):
    """Their stages as the follower sees them, in histograms of their own; the leader,
    which did not take them from a client, traces none of them."""
    cluster, ports = traced_cluster(make_cluster)
    at = member_at(ports, leader=False)
    follower, leader = ports[at], ports[member_at(ports, leader=True)]
    before, leader_before = metrics(follower), metrics(leader)
    with cluster.client([cluster.members[at]]) as client:
        for i in range(20):
            client.put(f"f/{i}", "v")
    name = "pyraftkv_forwarded_write_duration_seconds"
    deadline = time.monotonic() + 10
    while (seen := metrics(follower))[f"{name}_count"] < before[f"{name}_count"] + 20:
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    counts = stage_figures(seen, "count", "forwarded_write")
    sums = stage_figures(seen, "sum", "forwarded_write")
    assert set(counts.values()) == {seen[f"{name}_count"]}
    assert abs(sum(sums.values()) - seen[f"{name}_sum"]) < 1e-6
    # The forward round trip, this follower's own fdatasync, and the commit it learned.
    assert sums["propose"] > 0 and sums["wal_fsync"] > 0 and sums["quorum"] > 0
    assert (
        seen["pyraftkv_write_duration_seconds_count"]
        == before["pyraftkv_write_duration_seconds_count"]
    )
    grown = metrics(leader)
    assert (
        grown["pyraftkv_write_duration_seconds_count"]
        == leader_before["pyraftkv_write_duration_seconds_count"]
    )
    assert grown[f"{name}_count"] == 0


def wait_for(port: int, name: str, at_least: float) -> dict[str, float]:
    deadline = time.monotonic() + 10
    while (seen := metrics(port))[name] < at_least:
        assert time.monotonic() < deadline, seen[name]
        time.sleep(0.1)
    return seen


def test_a_leader_stalled_past_two_heartbeats_says_so_once_per_peer(make_cluster):
    """A leader whose Raft process stops for 0.25 s (five of the tests' heartbeat intervals,
    half their election timeout) sends its next heartbeats late: it logs etcd's warning and
    counts one failure per follower in etcd_server_heartbeat_send_failures_total; followers
    count none."""
    cluster = make_cluster(3)
    ports = [with_metrics(cluster, i) for i in range(3)]
    cluster.start()
    leader = cluster.wait_leader()
    at = cluster.members.index(leader)
    name = "etcd_server_heartbeat_send_failures_total"
    before = metrics(ports[at])[name]
    with paused(raft_pid(leader)):
        time.sleep(0.25)
    late = wait_for(ports[at], name, before + 2)[name] - before
    assert late % 2 == 0, late  # both followers, each time
    assert "leader failed to send out heartbeat on time" in leader.log_text()
    assert [metrics(p)[name] for i, p in enumerate(ports) if i != at] == [0, 0]


def test_an_entry_slow_to_apply_is_logged_and_counted(make_cluster, tmp_path):
    """etcd_server_slow_apply_total counts an entry whose requests took over 100 ms to apply
    (here a failpoint sleeps 150 ms in one), with etcd's "apply request took too long"
    warning; the write still succeeds, and a fast one after it counts nothing."""
    cluster = make_cluster(1)
    port = with_metrics(cluster)
    switch = str(tmp_path / "failpoints")
    cluster.members[0].env[FILE_ENV] = switch
    cluster.start()
    name = "etcd_server_slow_apply_total"
    with cluster.client() as client:
        client.put("before", "v")
        assert metrics(port)[name] == 0
        with open(switch + ".tmp", "w") as f:
            f.write("appBeforeApplyEntry=1*sleep(150)->off")
        os.replace(switch + ".tmp", switch)
        slow = client.put("slow", "v").header.revision
        assert wait_for(port, name, 1)[name] == 1
        assert client.put("after", "v").header.revision == slow + 1
    assert metrics(port)[name] == 1
    assert "apply request took too long" in cluster.members[0].log_text()


KV_UNARY = 'grpc_service="etcdserverpb.KV",grpc_type="unary"'
WATCH_STREAM = 'grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"'


def once_a_watch_call_was_canceled(port: int) -> dict[str, float]:
    """The member's metrics once it has counted a Watch call ended Canceled (the last
    call of the gRPC counter tests)."""
    deadline = time.monotonic() + 10
    canceled = f'grpc_server_handled_total{{grpc_code="Canceled",{WATCH_STREAM}}}'
    while (seen := metrics(port)).get(canceled) != 1:
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    return seen


def test_grpc_calls_are_counted_by_method_type_and_code(make_cluster):
    """etcd's grpc_server_started_total and grpc_server_handled_total: each gRPC call once
    when it starts and once when it ends, with its status code's name; a watch stream the
    client cancels ends as Canceled. Native-protocol requests are not gRPC calls. Every
    method's series are there from the start, at 0, as etcd's are."""
    cluster = make_cluster(1)
    port = with_metrics(cluster)
    cluster.start()
    endpoint = cluster.members[0].endpoint
    kv = KV_UNARY
    fresh = metrics(port)
    series = [k for k in fresh if k.startswith("grpc_server_")]
    assert len(series) == len(METHODS) * 18  # started, and handled with each of 17 codes
    assert not any(fresh[k] for k in series)
    unavailable_put = f'grpc_server_handled_total{{grpc_code="Unavailable",grpc_method="Put",{kv}}}'
    assert fresh[unavailable_put] == 0
    with grpc.insecure_channel(endpoint) as channel:
        put = stub(channel, "Put")
        get = stub(channel, "Range")
        for i in range(3):
            put(rpc.PutRequest(key=b"g/%d" % i, value=b"v"), timeout=10)
        assert get(rpc.RangeRequest(key=b"g/0"), timeout=10).count == 1
        with pytest.raises(grpc.RpcError) as refused:
            get(rpc.RangeRequest(key=b""), timeout=10)  # "key is not provided"
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        watch = stub(channel, "Watch")
        cancelled = threading.Event()

        def requests():  # the stream stays open (a half-closed watch stream ends OK)
            yield rpc.WatchRequest(create_request=rpc.WatchCreateRequest(key=b"g/0"))
            cancelled.wait(10)

        answers = watch(requests())
        assert next(answers).created
        answers.cancel()
        cancelled.set()
    with cluster.client() as client:
        client.put("native", "v")
    stream = WATCH_STREAM
    seen = once_a_watch_call_was_canceled(port)
    grpc_seen = {k: v for k, v in seen.items() if k.startswith("grpc_server_") and v}
    assert grpc_seen == {
        f'grpc_server_started_total{{grpc_method="Range",{kv}}}': 2,
        f'grpc_server_started_total{{grpc_method="Put",{kv}}}': 3,
        f"grpc_server_started_total{{{stream}}}": 1,
        f'grpc_server_handled_total{{grpc_code="OK",grpc_method="Range",{kv}}}': 1,
        f'grpc_server_handled_total{{grpc_code="InvalidArgument",grpc_method="Range",{kv}}}': 1,
        f'grpc_server_handled_total{{grpc_code="OK",grpc_method="Put",{kv}}}': 3,
        f'grpc_server_handled_total{{grpc_code="Canceled",{stream}}}': 1,
    }
    assert seen['pyraftkv_requests_total{method="Put"}'] == 4  # every protocol


def test_json_gateway_calls_are_counted_as_grpc_calls(make_cluster):
    """etcd's gateway calls its own gRPC server, so its calls show in grpc_server_*_total
    too (checked against etcd 3.4): a put, a range, a refused range, and a watch whose
    client hangs up (Canceled). A body that is not JSON is refused before any call."""
    cluster = make_cluster(1)
    port = with_metrics(cluster)
    cluster.start()
    base = f"http://{cluster.members[0].endpoint}/v3"

    def post(path: str, body: bytes) -> int:
        request = urllib.request.Request(base + path, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    assert post("/kv/put", b'{"key": "Zm9v", "value": "YmFy"}') == 200
    assert post("/kv/range", b'{"key": "Zm9v"}') == 200
    assert post("/kv/range", b'{"key": ""}') == 400  # "key is not provided"
    assert post("/kv/range", b"not json") == 400
    host, watch_port = cluster.members[0].endpoint.rsplit(":", 1)
    with socket.create_connection((host, int(watch_port)), timeout=10) as watcher:
        body = b'{"create_request": {"key": "Zm9v"}}'
        watcher.sendall(
            b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        seen_bytes = b""
        while b"created" not in seen_bytes:
            chunk = watcher.recv(4096)
            assert chunk, seen_bytes
            seen_bytes += chunk
    kv = KV_UNARY
    stream = WATCH_STREAM
    seen = once_a_watch_call_was_canceled(port)
    assert {k: v for k, v in seen.items() if k.startswith("grpc_server_") and v} == {
        f'grpc_server_started_total{{grpc_method="Range",{kv}}}': 2,
        f'grpc_server_started_total{{grpc_method="Put",{kv}}}': 1,
        f"grpc_server_started_total{{{stream}}}": 1,
        f'grpc_server_handled_total{{grpc_code="OK",grpc_method="Range",{kv}}}': 1,
        f'grpc_server_handled_total{{grpc_code="InvalidArgument",grpc_method="Range",{kv}}}': 1,
        f'grpc_server_handled_total{{grpc_code="OK",grpc_method="Put",{kv}}}': 1,
        f'grpc_server_handled_total{{grpc_code="Canceled",{stream}}}': 1,
    }
