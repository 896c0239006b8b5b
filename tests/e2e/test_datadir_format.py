"""A member opens an older data dir (migrating it) and refuses a newer one, end to end."""

from __future__ import annotations

import json

from pyraftkv.admin.datadir import FORMAT, DataDir


def test_member_migrates_an_older_data_dir_and_refuses_a_newer_one(make_cluster):
    cluster = make_cluster(1)
    cluster.start()
    (member,) = cluster.members
    with cluster.client() as client:
        client.put("kept", "across formats")
    assert cluster.terminate(member) == 0
    datadir = DataDir(member.data_dir)
    with open(datadir.identity) as f:
        current = json.load(f)
    older = {k: v for k, v in current.items() if k != "format"}
    with open(datadir.identity, "w") as f:
        json.dump(older, f)

    cluster.start_member(member)
    with cluster.client() as client:
        assert client.get("kept").kvs[0].value == b"across formats"
    assert datadir.format() == FORMAT
    assert f"migrated from on-disk format 1 to {FORMAT}" in member.log_text()
    assert cluster.terminate(member) == 0

    with open(datadir.identity, "w") as f:
        json.dump({**current, "format": FORMAT + 1}, f)
    cluster.start_member(member, wait=False)
    assert member.process.wait(30) == 2
    assert f"has on-disk format {FORMAT + 1}, written by a newer pyraftkv" in member.log_text()
