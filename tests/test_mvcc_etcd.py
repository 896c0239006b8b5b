"""Differential test: the same operation script against a real etcd (3.4, through its JSON
gateway) and against MVCCStore; every response and every error must agree.

Skipped (reported as skipped) where the etcd binary is not installed. The scripts stay
clear of etcd 3.4's known faults that pyraftkv deliberately does not copy (unknown sort
enums crash it; see validation.py for the others) and of orders etcd leaves undefined
(ties under a sort, which Go sorts unstably).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from pyraftkv import errors
from pyraftkv.mvcc import MVCCStore, prefix_end
from pyraftkv.proto import rpc_pb2

from .e2e.harness import free_ports

ETCD = shutil.which("etcd")
pytestmark = pytest.mark.skipif(ETCD is None, reason="etcd is not installed")

RR = rpc_pb2.RangeRequest
Compare = rpc_pb2.Compare
LEASES = (1001, 1002)

_ENDPOINTS = {
    rpc_pb2.RangeRequest: ("kv/range", rpc_pb2.RangeResponse),
    rpc_pb2.PutRequest: ("kv/put", rpc_pb2.PutResponse),
    rpc_pb2.DeleteRangeRequest: ("kv/deleterange", rpc_pb2.DeleteRangeResponse),
    rpc_pb2.TxnRequest: ("kv/txn", rpc_pb2.TxnResponse),
    rpc_pb2.CompactionRequest: ("kv/compaction", rpc_pb2.CompactionResponse),
}


class Etcd:
    """One etcd member on loopback, spoken to through its gRPC-gateway JSON API."""

    def __init__(self, data_dir: Path) -> None:
        client, peer = free_ports(2)
        self.url = f"http://127.0.0.1:{client}/v3/"
        self.log = open(data_dir / "etcd.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [
                ETCD,
                "--data-dir",
                str(data_dir / "data"),
                "--name",
                "diff",
                "--listen-client-urls",
                f"http://127.0.0.1:{client}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{client}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"diff=http://127.0.0.1:{peer}",
            ],
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.post("kv/range", {"key": "AA=="})
                return
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("etcd did not start") from None
                time.sleep(0.1)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def call(self, req: Any) -> Any:
        """The response message, or the error class etcd answered with."""
        path, resp_type = _ENDPOINTS[type(req)]
        body = self.post(path, json_format.MessageToDict(req, preserving_proto_field_name=True))
        if "error" in body or "code" in body:
            return type(errors.error_from_wire(body["code"], body["message"]))
        resp = json_format.ParseDict(body, resp_type(), ignore_unknown_fields=True)
        resp.header.ClearField("cluster_id")
        resp.header.ClearField("member_id")
        resp.header.ClearField("raft_term")
        return resp

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    server = Etcd(tmp_path)
    for lease in LEASES:
        server.post("lease/grant", {"TTL": "3600", "ID": str(lease)})
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MVCCStore]:
    s = MVCCStore(tmp_path / "mvcc", map_size=256 << 20, lease_exists=LEASES.__contains__)
    yield s
    s.close()


class Runner:
    """Applies requests to the store in batches (reads inside them), the way the node
    will, and checks each answer against etcd's."""

    def __init__(self, etcd: Etcd, store: MVCCStore) -> None:
        self.etcd, self.store = etcd, store
        self.applied = 0

    def ours(self, batch: Any, req: Any) -> Any:
        try:
            if isinstance(req, rpc_pb2.RangeRequest):
                return batch.range(req)
            if isinstance(req, rpc_pb2.PutRequest):
                return batch.put(req)[0]
            if isinstance(req, rpc_pb2.DeleteRangeRequest):
                return batch.delete_range(req)[0]
            if isinstance(req, rpc_pb2.TxnRequest):
                return batch.txn(req)[0]
            return batch.compact(req)
        except errors.ApiError as exc:
            return type(exc)

    def run(self, script: list[Any], batch_size: int = 7) -> None:
        for i in range(0, len(script), batch_size):
            self.applied += 1
            with self.store.write_batch(self.applied) as batch:
                for req in script[i : i + batch_size]:
                    got = normalize(req, self.ours(batch, req))
                    want = normalize(req, self.etcd.call(req))
                    assert got == want, f"\nrequest: {req}\nstore: {got}\netcd: {want}"


_FIELDS = {
    RR.KEY: "key",
    RR.VERSION: "version",
    RR.CREATE: "create_revision",
    RR.MOD: "mod_revision",
    RR.VALUE: "value",
}


def normalize(req: Any, resp: Any) -> Any:
    """Orders the ties of a sorted range by key, after checking the sort itself held."""
    if not isinstance(req, rpc_pb2.RangeRequest) or not isinstance(resp, rpc_pb2.RangeResponse):
        return resp
    if req.sort_target == RR.KEY and req.sort_order == RR.NONE:
        return resp
    field = _FIELDS[req.sort_target]
    values = [getattr(kv, field) for kv in resp.kvs]
    assert values == sorted(values, reverse=req.sort_order == RR.DESCEND)
    kvs = sorted(resp.kvs, key=lambda kv: (getattr(kv, field), kv.key))
    out = rpc_pb2.RangeResponse()
    out.CopyFrom(resp)
    del out.kvs[:]
    out.kvs.extend(kvs)
    return out


def put(key: bytes, value: bytes = b"v", **kw: Any) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(key=key, value=value, **kw)


def op(req: Any) -> rpc_pb2.RequestOp:
    field = {
        rpc_pb2.RangeRequest: "request_range",
        rpc_pb2.PutRequest: "request_put",
        rpc_pb2.DeleteRangeRequest: "request_delete_range",
        rpc_pb2.TxnRequest: "request_txn",
    }[type(req)]
    return rpc_pb2.RequestOp(**{field: req})


def test_edge_cases_match_etcd(etcd: Etcd, store: MVCCStore) -> None:
    dr = rpc_pb2.DeleteRangeRequest
    script = [
        RR(key=b"a"),
        put(b"a", b"1"),
        put(b"b", b"2", prev_kv=True),
        put(b"b", b"3", prev_kv=True),
        put(b"c/1", b"x", lease=1001),
        put(b"c/2", b"y"),
        put(b"c/3", b"", lease=1002),
        put(b"d", b"z", lease=424242),  # unknown lease
        put(b"", b"v"),  # empty key
        put(b"a", b"q", ignore_value=True),  # value with ignore_value
        put(b"a", lease=1001, ignore_lease=True),  # lease with ignore_lease
        put(b"missing", ignore_value=True),  # nothing to keep the value of
        put(b"c/1", ignore_value=True, prev_kv=True),
        put(b"c/1", b"new", ignore_lease=True),
        RR(key=b"c/", range_end=prefix_end(b"c/")),
        RR(key=b"\x00", range_end=b"\x00"),  # every key
        RR(key=b"b", range_end=b"a"),  # empty interval
        RR(key=b"a", range_end=b"\x00", limit=2),
        RR(key=b"a", range_end=b"\x00", limit=2, count_only=True),
        RR(key=b"a", range_end=b"\x00", limit=2**63 - 1),  # the largest: no limit
        RR(key=b"a", range_end=b"\x00", limit=-1),
        RR(key=b"a", range_end=b"\x00", keys_only=True),
        RR(key=b"a", range_end=b"\x00", limit=1, sort_target=RR.MOD),  # etcd's limit+1 quirk
        RR(key=b"a", range_end=b"\x00", sort_order=RR.DESCEND),
        RR(key=b"a", range_end=b"\x00", sort_order=RR.DESCEND, sort_target=RR.VALUE),
        RR(key=b"a", range_end=b"\x00", sort_order=RR.ASCEND, sort_target=RR.VERSION),
        RR(key=b"a", range_end=b"\x00", sort_order=RR.ASCEND, sort_target=RR.CREATE),
        RR(key=b"a", range_end=b"\x00", min_mod_revision=4, limit=1),
        RR(key=b"a", range_end=b"\x00", max_mod_revision=4, min_create_revision=3),
        RR(key=b"a", range_end=b"\x00", max_create_revision=3),
        RR(key=b"a", revision=2),
        RR(key=b"a", revision=99),
        RR(key=b"a", revision=-3),
        RR(key=b""),
        dr(key=b"nothing"),
        dr(key=b"c/", range_end=prefix_end(b"c/"), prev_kv=True),
        dr(key=b""),
        RR(key=b"c/1", revision=6),
        put(b"a", b"x" * (1_600_000)),  # over etcd's 1.5 MiB default
        put(b"big", b"x" * (1_400_000)),
        rpc_pb2.CompactionRequest(revision=4),
        rpc_pb2.CompactionRequest(revision=4),
        rpc_pb2.CompactionRequest(revision=3),
        rpc_pb2.CompactionRequest(revision=999),
        RR(key=b"a", revision=3),
        RR(key=b"a", revision=4),
        RR(key=b"b", revision=5),
        dr(key=b"a", range_end=b"\x00", prev_kv=True),
        rpc_pb2.CompactionRequest(revision=14),
        RR(key=b"\x00", range_end=b"\x00", revision=14),
    ]
    Runner(etcd, store).run(script)


def test_txn_rules_match_etcd(etcd: Etcd, store: MVCCStore) -> None:
    t, dr = rpc_pb2.TxnRequest, rpc_pb2.DeleteRangeRequest
    cmp = Compare
    script = [
        put(b"k1", b"1"),
        put(b"k2", b"2"),
        put(b"k3", b"3", lease=1001),
        # Read-only txns do not make a revision; writes make exactly one.
        t(success=[op(RR(key=b"k1"))]),
        t(
            compare=[cmp(key=b"k1", target=cmp.VALUE, value=b"1")],
            success=[op(put(b"k1", b"11")), op(RR(key=b"k1")), op(put(b"k4", b"4"))],
            failure=[op(RR(key=b"k2"))],
        ),
        t(
            compare=[cmp(key=b"k1", target=cmp.VALUE, value=b"1")],
            success=[op(put(b"k1", b"x"))],
            failure=[op(dr(key=b"k2", prev_kv=True))],
        ),
        # A delete of nothing in a txn makes no revision.
        t(success=[op(dr(key=b"none"))]),
        # Nested compares see the state before the outer txn's writes.
        t(
            success=[
                op(put(b"n", b"1")),
                op(
                    t(
                        compare=[cmp(key=b"n", target=cmp.VALUE, value=b"1")],
                        success=[op(put(b"m", b"yes"))],
                        failure=[op(put(b"m", b"no"))],
                    )
                ),
                op(RR(key=b"m")),
            ]
        ),
        # Every compare target and result; compares over ranges; missing keys.
        *[
            t(
                compare=[cmp(key=k, range_end=e, target=tg, result=r, **{f: v})],
                success=[op(RR(key=b"k1"))],
                failure=[op(RR(key=b"k2"))],
            )
            for k, e in ((b"k", prefix_end(b"k")), (b"k1", b""), (b"zz", b""), (b"zz", b"\x00"))
            for tg, f, v in (
                (cmp.VALUE, "value", b"11"),
                (cmp.VERSION, "version", 2),
                (cmp.CREATE, "create_revision", 0),
                (cmp.MOD, "mod_revision", 5),
                (cmp.LEASE, "lease", 1001),
            )
            for r in (cmp.EQUAL, cmp.NOT_EQUAL, cmp.LESS, cmp.GREATER)
        ],
        # A target whose union holds another field compares against zero.
        t(
            compare=[cmp(key=b"k1", target=cmp.VERSION, value=b"x", result=cmp.GREATER)],
            success=[op(RR(key=b"k1"))],
        ),
        # Duplicate-key rule, in all its shapes.
        t(success=[op(put(b"d")), op(put(b"d"))]),
        t(success=[op(put(b"d")), op(dr(key=b"d"))]),
        t(success=[op(put(b"d1")), op(dr(key=b"d", range_end=b"e"))]),
        t(success=[op(dr(key=b"d")), op(dr(key=b"d", range_end=b"e"))]),
        t(success=[op(put(b"d")), op(t(success=[op(put(b"d"))]))]),
        t(success=[op(t(success=[op(put(b"d"))], failure=[op(put(b"d"))]))]),
        t(success=[op(t(success=[op(put(b"d"))])), op(t(failure=[op(put(b"d"))]))]),
        t(success=[op(dr(key=b"d")), op(t(success=[op(put(b"d"))]))]),
        t(success=[op(t(success=[op(dr(key=b"d"))])), op(put(b"d"))]),
        t(success=[op(put(b"d")), op(RR(key=b"d"))], failure=[op(put(b"d"))]),
        # Bad ops: empty keys anywhere, an empty op, too many ops (here and nested).
        t(compare=[cmp(key=b"", target=cmp.VERSION)]),
        t(success=[op(put(b""))]),
        t(failure=[op(RR(key=b""))]),
        t(success=[rpc_pb2.RequestOp()]),
        t(success=[op(put(b"many%03d" % i)) for i in range(129)]),
        t(success=[op(put(b"many%03d" % i)) for i in range(128)]),
        t(success=[op(RR(key=b"k1"))] * 100 + [op(t(success=[op(RR(key=b"k1"))] * 29))]),
        # Checks against the state before the txn: missing key, unknown lease, revisions.
        t(success=[op(put(b"nokey", ignore_value=True))]),
        t(success=[op(put(b"k1", ignore_lease=True, prev_kv=True))]),
        t(success=[op(put(b"k9", lease=777))]),
        t(failure=[op(put(b"k9", lease=777))]),
        t(success=[op(RR(key=b"k1", revision=1000))]),
        t(success=[op(RR(key=b"k1", revision=2)), op(put(b"k2", b"z"))]),
        rpc_pb2.CompactionRequest(revision=3),
        t(success=[op(RR(key=b"k1", revision=2))]),
        t(success=[op(put(b"k1", b"after")), op(RR(key=b"k1", revision=3))]),
        t(
            success=[
                op(dr(key=b"k", range_end=prefix_end(b"k"), prev_kv=True)),
                op(RR(key=b"k", range_end=prefix_end(b"k"), count_only=True)),
                op(put(b"x", prev_kv=True)),
            ]
        ),
    ]
    Runner(etcd, store).run(script)


def _random_script(rng: random.Random, length: int) -> list[Any]:
    keys = [b"a", b"a/1", b"a/2", b"ab", b"b", b"b/x", b"c", b"\xff"]
    dr = rpc_pb2.DeleteRangeRequest
    revision = 1
    script: list[Any] = []

    def key_range() -> tuple[bytes, bytes]:
        key = rng.choice(keys)
        kind = rng.randrange(4)
        end = [b"", prefix_end(key), b"\x00", rng.choice(keys)][kind]
        return key, end

    def random_put(key: bytes | None = None) -> rpc_pb2.PutRequest:
        req = put(
            key or rng.choice(keys),
            rng.randbytes(rng.randrange(4)),
            prev_kv=rng.random() < 0.5,
            lease=rng.choice((0, 0, 0, *LEASES)),
        )
        if rng.random() < 0.1:
            req.ClearField("value")
            req.ignore_value = True
        if rng.random() < 0.1:
            req.ClearField("lease")
            req.ignore_lease = True
        return req

    def random_range() -> RR:
        key, end = key_range()
        req = RR(
            key=key,
            range_end=end,
            limit=rng.choice((0, 0, 1, 2)),
            keys_only=rng.random() < 0.2,
            count_only=rng.random() < 0.1,
        )
        if rng.random() < 0.3:
            req.revision = rng.randint(0, revision + 1)
        if rng.random() < 0.2:
            req.sort_order = rng.choice((RR.ASCEND, RR.DESCEND))
        return req

    def random_txn(depth: int = 0) -> rpc_pb2.TxnRequest:
        req = rpc_pb2.TxnRequest()
        for _ in range(rng.randrange(3)):
            key, end = key_range()
            target = rng.choice(list(Compare.CompareTarget.values()))
            c = req.compare.add(
                key=key,
                range_end=end if rng.random() < 0.3 else b"",
                target=target,
                result=rng.randrange(4),
            )
            if target == Compare.VALUE:
                c.value = rng.randbytes(rng.randrange(3))
            elif target == Compare.LEASE:
                c.lease = rng.choice((0, *LEASES))
            else:
                setattr(
                    c,
                    ["version", "create_revision", "mod_revision"][target],
                    rng.randint(0, revision),
                )
        for branch in (req.success, req.failure):
            for _ in range(rng.randrange(4)):
                kind = rng.randrange(4 if depth == 0 else 3)
                if kind == 0:
                    branch.append(op(random_range()))
                elif kind == 1:
                    branch.append(op(random_put()))
                elif kind == 2:
                    key, end = key_range()
                    if end == b"\x00":  # etcd 3.4's duplicate check ignores "\0" ends
                        end = b""
                    branch.append(op(dr(key=key, range_end=end, prev_kv=rng.random() < 0.5)))
                else:
                    branch.append(op(random_txn(depth + 1)))
        return req

    for _ in range(length):
        roll = rng.random()
        if roll < 0.35:
            script.append(random_put())
        elif roll < 0.45:
            key, end = key_range()
            script.append(dr(key=key, range_end=end, prev_kv=rng.random() < 0.5))
        elif roll < 0.7:
            script.append(random_txn())
        elif roll < 0.97:
            script.append(random_range())
        else:
            script.append(rpc_pb2.CompactionRequest(revision=rng.randint(0, revision)))
        revision += 1  # an upper bound is all the generator needs
    return script


@pytest.mark.parametrize("seed", [1, 2])
def test_random_scripts_match_etcd(etcd: Etcd, store: MVCCStore, seed: int) -> None:
    Runner(etcd, store).run(_random_script(random.Random(seed), 250))
