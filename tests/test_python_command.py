"""Child processes run this pyraftkv, not a pyraftkv/ directory where they were started."""

import subprocess
import sys

from pyraftkv.node.python_command import module_command


def decoy(tmp_path):
    """A working directory holding a pyraftkv/ that breaks anyone importing it (as a
    source checkout without the compiled engine would)."""
    (tmp_path / "pyraftkv").mkdir()
    (tmp_path / "pyraftkv" / "__init__.py").write_text("raise ImportError('decoy imported')\n")
    return tmp_path


def run(argv, cwd):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_python_m_would_pick_the_directory_up(tmp_path):
    result = run([sys.executable, "-m", "pyraftkv", "--help"], decoy(tmp_path))
    assert result.returncode != 0 and "decoy imported" in result.stderr


def test_the_child_command_runs_this_package_with_its_arguments(tmp_path):
    result = run(module_command("pyraftkv", "--help"), decoy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "--initial-cluster" in result.stdout  # the server's own help: arguments got there
