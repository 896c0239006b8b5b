"""--logger zap writes JSON lines a log pipeline can ingest, from both processes of a member,
to the outputs --log-outputs names."""

from __future__ import annotations

import json
import re

import pytest

from pyraftkv.node.config import ConfigError

from ..test_config import parse
from .harness import LocalCluster


def test_zap_json_lines_from_both_processes_to_a_file(tmp_path):
    log_file = tmp_path / "member.jsonl"
    cluster = LocalCluster(
        str(tmp_path), 1, extra_args=["--logger", "zap", "--log-outputs", str(log_file)]
    )
    try:
        cluster.start()
        cluster.client().put("logged", "1")
        cluster.terminate(cluster.members[0])
    finally:
        cluster.stop_all()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines, "nothing logged"
    for line in lines:
        assert line["level"] in ("debug", "info", "warn", "error", "fatal")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
        assert re.fullmatch(r"\w+\.py:\d+", line["caller"]) and line["msg"]
    assert {line["process"] for line in lines} == {"app", "raft"}
    serving = next(line for line in lines if "serving clients" in line["msg"])
    assert re.fullmatch(r"[0-9a-f]+", serving["local-member-id"])
    assert serving["name"] == "m1" and serving["client-urls"]
    elected = next(line for line in lines if line["msg"].startswith("elected leader"))
    assert elected["term"] >= 1 and elected["process"] == "raft"
    # Nothing went to the plain stderr log meanwhile.
    assert "serving clients" not in cluster.members[0].log_text()


def test_bad_logger_settings_are_refused():
    with pytest.raises(ConfigError, match="--logger must be one of capnslog, zap"):
        parse(["--logger", "json"])
    with pytest.raises(ConfigError, match="--log-outputs: cannot write"):
        parse(["--log-outputs", "/nonexistent-dir/x.log"])
