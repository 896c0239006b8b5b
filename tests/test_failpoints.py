"""Failpoint specs: parsing, counted chains, each action, off when the variable is unset,
and switched at run time through the failpoints file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pyraftkv import failpoints
from pyraftkv.failpoints import CRASH_EXIT_CODE, ENV, FILE_ENV, FailpointError, parse


def run_with(spec: str | None, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (ENV, FILE_ENV)}
    if spec is not None:
        env[ENV] = spec
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )


def test_parse_chains_and_refuse_bad_specs():
    chains = parse("raftBeforeFsync=crash; appBeforeReply=20*off->50%sleep(5)")
    assert [t.action for t in chains["raftBeforeFsync"]] == ["crash"]
    off, sleep = chains["appBeforeReply"]
    assert (off.action, off.count, sleep.action, sleep.arg, sleep.percent) == (
        "off",
        20,
        "sleep",
        5,
        50.0,
    )
    for bad in ("noSuchPoint=crash", "raftBeforeFsync=explode", "raftBeforeFsync=sleep"):
        with pytest.raises(ValueError):
            parse(bad)


def test_counted_chain_lets_hits_pass_then_acts(monkeypatch):
    monkeypatch.setattr(failpoints, "_CHAINS", parse("raftAfterSend=2*off->2*error"))
    failpoints.hit("raftAfterSend")
    failpoints.hit("raftAfterSend")
    for _ in range(2):
        with pytest.raises(FailpointError):
            failpoints.hit("raftAfterSend")
    failpoints.hit("raftAfterSend")  # used up
    failpoints.hit("appBeforeReply")  # not set


def test_crash_exits_at_once_and_unset_means_disabled():
    code = "from pyraftkv import failpoints as f; print(f.ENABLED); f.hit('raftBeforeFsync'); 1"
    crashed = run_with("raftBeforeFsync=crash", code)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    assert crashed.stdout.split() == ["True"]
    assert "failpoint raftBeforeFsync: crash" in crashed.stderr
    off = run_with(None, "from pyraftkv import failpoints as f; print(f.ENABLED)")
    assert off.returncode == 0 and off.stdout.split() == ["False"]
    typo = run_with("raftBeforeFsnyc=crash", "import pyraftkv.failpoints")
    assert typo.returncode != 0 and "unknown failpoint" in typo.stderr


def test_file_switches_points_on_and_off_while_running(tmp_path):
    """PYRAFTKV_FAILPOINTS_FILE: each hit takes the file's latest spec; a bad spec changes
    nothing; a removed file turns everything off."""
    path = tmp_path / "failpoints"
    code = f"""
import os
from pyraftkv import failpoints as f
def write(spec):
    with open({str(path)!r} + ".tmp", "w") as out:
        out.write(spec)
    os.replace({str(path)!r} + ".tmp", {str(path)!r})
def hit():
    try:
        f.hit("raftAfterSend")
        return "pass"
    except f.FailpointError:
        return "error"
print(f.ENABLED, hit())
write("raftAfterSend=error")
print(hit(), hit())
write("raftAfterSend=explode")
print(hit())
write("raftAfterSend=1*off->error")
print(hit(), hit())
write("")
print(hit())
write("raftAfterSend=error")
os.unlink({str(path)!r})
print(hit())
"""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env[FILE_ENV] = str(path)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:6] == [
        "True pass",
        "error error",
        "error",  # the bad spec was refused: still error
        "pass error",
        "pass",
        "pass",
    ], done.stdout
    assert "bad term 'explode' for raftAfterSend; failpoints unchanged" in done.stderr
    assert "failpoints now: raftAfterSend=error" in done.stderr
