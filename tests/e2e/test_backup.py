"""Backups: snapshot save from a running member, restore into a new cluster's data dirs."""

import io
import json
import os

from pyraftkv.ctl.main import run
from pyraftkv.mvcc import MVCCStore
from pyraftkv.proto import rpc_pb2 as rpc

from .harness import LocalCluster


def ctl(*args: str, endpoints: str = "127.0.0.1:1") -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run([f"--endpoints={endpoints}", *args], io.BytesIO(), out, err, environ={})
    return code, out.getvalue().decode(), err.getvalue().decode()


def restore_args(cluster: LocalCluster, member) -> list[str]:
    return [
        "--name", member.name,
        "--data-dir", member.data_dir,
        "--initial-cluster", cluster.initial_cluster,
        "--initial-cluster-token", cluster.token,
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{member.peer_port}",
    ]  # fmt: skip


def test_a_backup_restores_into_a_new_three_member_cluster(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = LocalCluster(str(tmp_path / "old"), 1, token="old")
    new = LocalCluster(str(tmp_path / "new"), 3, token="new")
    backup = str(tmp_path / "backup.db")
    try:
        old.start()
        with old.client() as client:
            for i in range(200):
                client.put(f"cfg/{i:03d}", f"value {i}" * 20)
            client.delete("cfg/000")
            lease = client.lease_grant(600).ID
            client.put("svc/a", "10.0.0.1", lease=lease)
            before = client.get("", from_key=True)
            hashed = client.hash_kv().hash
        code, out, err = ctl("snapshot", "save", backup, endpoints=old.members[0].endpoint)
        assert (code, out, err) == (0, f"Snapshot saved at {backup}\n", "")
        old.stop_all()
        code, out, err = ctl("-w", "json", "snapshot", "status", backup)
        found = json.loads(out)
        assert (found["hash"], found["revision"]) == (hashed, before.header.revision)
        assert found["totalKey"] >= 200 + 1 + 1  # every put and the delete's tombstone
        assert found["totalSize"] == os.path.getsize(backup)

        for member in new.members:
            code, out, err = ctl("snapshot", "restore", backup, *restore_args(new, member))
            assert code == 0 and err == "" and f"revision {before.header.revision}" in out, err
        new.start()
        with new.client() as client:
            after = client.get("", from_key=True)
            assert after.header.revision == before.header.revision
            assert [(kv.key, kv.value, kv.mod_revision) for kv in after.kvs] == [
                (kv.key, kv.value, kv.mod_revision) for kv in before.kvs
            ]
            assert client.lease_time_to_live(lease, keys=True).keys == [b"svc/a"]
            assert sorted(m.name for m in client.member_list().members) == ["m1", "m2", "m3"]
            assert client.put("cfg/new", "x").header.revision == before.header.revision + 1
    finally:
        old.stop_all()
        new.stop_all()


def test_bad_backup_requests_fail_clearly_and_leave_nothing_behind(tmp_path):
    code, _, err = ctl(
        "snapshot", "save", str(tmp_path / "b.db"), endpoints="127.0.0.1:1,127.0.0.1:2"
    )
    assert code != 0 and "one selected node" in err
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(10_000))
    target = tmp_path / "restored"
    code, _, err = ctl("snapshot", "restore", str(junk), "--data-dir", str(target))
    assert code != 0 and "not a pyraftkv snapshot" in err
    assert not target.exists()
    valid = str(tmp_path / "valid.db")
    with MVCCStore(str(tmp_path / "store")) as store:
        with store.write_batch(1, 1) as batch:
            batch.put(rpc.PutRequest(key=b"k", value=b"v"))
        store.snapshot_to(valid)
        hashed = store.hash_kv()[0]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    code, _, err = ctl("snapshot", "restore", valid, "--data-dir", str(busy))
    assert code != 0 and "is not empty" in err
    assert os.listdir(busy) == ["something"]
    code, out, err = ctl("snapshot", "restore", valid, "--data-dir", str(target))
    assert code == 0 and "revision 2" in out, err
    code, out, err = ctl("snapshot", "status", valid)
    assert (
        (code, err) == (0, "") and out.startswith(f"{hashed:x}, 2, 1, ") and out.endswith(" kB\n")
    )
    code, out, _ = ctl("-w", "table", "snapshot", "status", valid)
    assert code == 0 and " HASH " in out and f" {hashed:x} " in out and " kB " in out
    code, _, err = ctl("snapshot", "status", str(junk))
    assert code != 0 and "not a pyraftkv snapshot" in err
