"""The shipped deployment files: the systemd unit passes systemd's own check (or, where
systemd-analyze is missing, has the keys a member needs) and the sample config file is a
valid configuration of a 3-member cluster."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

import pyraftkv.deploy

from .test_config import parse

DEPLOY = Path(pyraftkv.deploy.__path__[0])
UNIT = DEPLOY / "pyraftkv.service"


def unit_keys() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_unit_keys():
    unit = unit_keys()
    service = unit["Service"]
    assert service["Type"] in ("simple", "notify")
    assert service["Restart"] == "on-failure"
    assert int(service["LimitNOFILE"]) >= 65536
    program, *args = service["ExecStart"].split()
    assert Path(program).name == "pyraftkv" and args == [
        "--config-file",
        "/etc/pyraftkv/pyraftkv.conf.yml",
    ]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path):
    """systemd-analyze verify, with ExecStart pointing at where this machine has pyraftkv."""
    installed = shutil.which("pyraftkv")
    assert installed, "pyraftkv is not installed on PATH"
    text = UNIT.read_text().replace("/usr/local/bin/pyraftkv", installed)
    copy = tmp_path / "pyraftkv.service"
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pyraftkv.service" not in result.stdout + result.stderr


def test_a_broken_unit_is_caught(tmp_path):
    """The check above can fail: systemd refuses a unit with a bad key."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here")
    copy = tmp_path / "pyraftkv.service"
    copy.write_text(UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert "failed to parse service restart" in (result.stdout + result.stderr).lower()


def test_the_sample_config_is_a_member_of_a_three_member_cluster():
    config = parse(["--config-file", str(DEPLOY / "pyraftkv.conf.yml")])
    assert config.name == "infra1"
    assert [m.name for m in config.initial_cluster] == ["infra1", "infra2", "infra3"]
    assert config.logger == "zap" and config.auto_compaction_retention == 3600
