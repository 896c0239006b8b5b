"""The data dir's on-disk format: recorded when made, older formats migrated forward, newer
ones refused with a message (on real directories)."""

from __future__ import annotations

import json

import pytest

from pyraftkv.admin.datadir import FORMAT, DataDir
from pyraftkv.errors import ConfigError


def identity(datadir: DataDir) -> dict:
    with open(datadir.identity) as f:
        return json.load(f)


def test_a_new_data_dir_records_the_current_format(tmp_path):
    datadir = DataDir(str(tmp_path / "d"))
    assert datadir.claim(0xAB, 0xCD, "m1")
    assert identity(datadir)["format"] == FORMAT == datadir.format()


def test_an_older_data_dir_is_migrated_in_place(tmp_path):
    datadir = DataDir(str(tmp_path / "d"))
    datadir.claim(0xAB, 0xCD, "m1")
    old = {k: v for k, v in identity(datadir).items() if k != "format"}  # format 1
    with open(datadir.identity, "w") as f:
        json.dump(old, f)
    assert datadir.format() == 1
    assert datadir.cluster_id() == 0xAB
    assert not datadir.claim(0xAB, 0xCD, "m1")
    assert identity(datadir) == {**old, "format": FORMAT}


@pytest.mark.parametrize("call", ["claim", "cluster_id", "format"])
def test_a_newer_data_dir_is_refused_and_left_alone(tmp_path, call):
    datadir = DataDir(str(tmp_path / "d"))
    datadir.claim(0xAB, 0xCD, "m1")
    newer = {**identity(datadir), "format": FORMAT + 1}
    with open(datadir.identity, "w") as f:
        json.dump(newer, f)
    with pytest.raises(ConfigError) as refused:
        if call == "claim":
            datadir.claim(0xAB, 0xCD, "m1")
        else:
            getattr(datadir, call)()
    assert f"has on-disk format {FORMAT + 1}, written by a newer pyraftkv" in str(refused.value)
    assert f"reads formats up to {FORMAT}" in str(refused.value)
    assert identity(datadir) == newer


def test_a_damaged_format_field_is_reported(tmp_path):
    datadir = DataDir(str(tmp_path / "d"))
    datadir.claim(0xAB, 0xCD, "m1")
    damaged = {**identity(datadir), "format": "two"}
    with open(datadir.identity, "w") as f:
        json.dump(damaged, f)
    with pytest.raises(ConfigError, match="is damaged"):
        datadir.claim(0xAB, 0xCD, "m1")
