"""pyraftkvctl as a program: help, version, the console script, and no server to talk to."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from pyraftkv import __version__
from pyraftkv.ctl import main, run
from pyraftkv.ctl.command import COMMANDS
from pyraftkv.ctl.kv import GET_FLAGS

from .e2e.harness import free_ports


@pytest.fixture
def closed_port() -> int:
    return free_ports(1)[0]  # nothing listens there


def ctl(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run(list(argv), io.BytesIO(stdin), out, err, {})
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_help_lists_every_command_and_global_flag():
    code, out, err = ctl("--help")
    assert (code, err) == (0, "")
    assert out.startswith("NAME:\n\tpyraftkvctl - ")
    for command in COMMANDS.values():
        assert f"\t{command.name} " in out
    for flag in ("--endpoints=[127.0.0.1:2379]", "--dial-timeout=2s", "--command-timeout=5s",
                 '-w, --write-out="simple"', "--hex[=false]"):  # fmt: skip
        assert flag in out
    assert ctl() == (0, out, "")
    assert ctl("help") == (0, out, "")


def test_command_help_shows_usage_and_flags():
    code, out, err = ctl("get", "--help")
    assert (code, err) == (0, "")
    assert "USAGE:\n\tpyraftkvctl get [options] <key> [range_end]\n" in out
    for flag in GET_FLAGS:
        assert f"--{flag.name}" in out
    assert ctl("help", "get") == (0, out, "")
    assert ctl("get", "-h") == (0, out, "")
    code, out, _ = ctl("member")
    assert code == 0 and "\tlist" in out and "\tpromote" in out
    assert ctl("help", "member", "list")[1].startswith("NAME:\n\tmember list - ")
    assert ctl("help", "nothing") == (
        1,
        "",
        'Error: unknown command "nothing" for "pyraftkvctl"\n'
        "Run 'pyraftkvctl --help' for usage.\n",
    )


def test_version():
    assert ctl("version") == (0, f"pyraftkvctl version: {__version__}\nAPI version: 3.4\n", "")


def test_a_closed_port_is_a_clear_error(closed_port):
    code, out, err = ctl(f"--endpoints=127.0.0.1:{closed_port}", "put", "k", "v")
    assert (code, out) == (1, "")
    assert err.startswith(f"Error: cannot connect to 127.0.0.1:{closed_port}: ")
    assert err.count("\n") == 1


def test_endpoint_commands_report_each_unreachable_endpoint(closed_port):
    endpoint = f"127.0.0.1:{closed_port}"
    args = (f"--endpoints={endpoint}", "--command-timeout=200ms")
    code, out, err = ctl(*args, "endpoint", "status")
    assert (code, out) == (1, "")
    assert err.startswith(f"Failed to get the status of endpoint {endpoint} (")
    code, out, err = ctl(*args, "endpoint", "health", "-w", "table")
    assert code == 1
    assert f"| {endpoint} |  false |" in out
    assert err == "Error: unhealthy cluster\n"


def test_text_streams_work_too(closed_port):
    out, err = io.StringIO(), io.StringIO()
    assert run(["version"], io.StringIO(), out, err, {}) == 0
    assert out.getvalue().startswith("pyraftkvctl version: ")


def test_console_script_entry_function(monkeypatch, capsysbinary, closed_port):
    monkeypatch.setattr(sys, "argv", ["pyraftkvctl", f"--endpoints=127.0.0.1:{closed_port}",
                                      "get", "k"])  # fmt: skip
    assert main() == 1
    captured = capsysbinary.readouterr()
    assert captured.out == b""
    assert captured.err.startswith(b"Error: cannot connect to ")


def test_installed_console_script(closed_port):
    script = Path(sys.executable).with_name("pyraftkvctl")
    if not script.exists():
        pytest.skip("pyraftkvctl is not installed in this environment (pip install -e .)")
    done = subprocess.run([script, "--help"], capture_output=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.startswith(b"NAME:\n\tpyraftkvctl")
    done = subprocess.run(
        [script, f"--endpoints=127.0.0.1:{closed_port}", "del", "k"],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(b"Error: cannot connect to ")
