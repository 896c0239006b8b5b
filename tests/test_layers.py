"""The package's layers, checked from the source: the Raft core stays a pure state machine,
the store knows nothing of consensus or the node, and the clients and pyraftkvctl reach the
server only over the wire (offline data-dir commands go through pyraftkv.admin)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pyraftkv"

# No I/O, clocks, threads or processes in the Raft core: time is tick(), randomness injected.
RAFT_FORBIDDEN_STDLIB = {"socket", "os", "time", "asyncio", "threading", "subprocess", "select"}

# Which of the package's folders each folder must not import.
FORBIDDEN_PACKAGES = {
    "raft": {"node", "mvcc", "client", "ctl", "admin", "protocol", "wal", "ring"},
    "mvcc": {"raft", "node", "client", "ctl", "admin"},
    "client": {"node", "mvcc", "raft", "ctl", "admin"},
    "ctl": {"node", "mvcc", "raft"},
    "admin": {"node", "client", "ctl"},
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names; relative ones resolved), with lines."""
    module_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if module_parts[-1] == "__init__":
        module_parts = module_parts[:-1]
        package_parts = module_parts
    else:
        package_parts = module_parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[: len(package_parts) - node.level + 1])
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
                    continue
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def sources(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def violations(folder: str) -> list[str]:
    bad = []
    for path in sources(folder):
        for line, name in imported_modules(path):
            parts = name.split(".")
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
            if parts[0] == "pyraftkv":
                outside_raft = folder == "raft" and parts[1:2] != ["raft"]
                if outside_raft or parts[1:2] and parts[1] in FORBIDDEN_PACKAGES[folder]:
                    bad.append(where)
            elif folder == "raft" and (
                parts[0] in RAFT_FORBIDDEN_STDLIB or parts[0] not in sys.stdlib_module_names
            ):
                bad.append(where)
    return bad


@pytest.mark.parametrize("folder", sorted(FORBIDDEN_PACKAGES))
def test_layer_imports(folder: str) -> None:
    assert sources(folder), f"no sources found under pyraftkv/{folder}"
    assert violations(folder) == []


def test_raft_uses_random_only_as_an_injected_generator() -> None:
    """``random`` may name the generator's type; calling the module's global functions would
    make simulations irreproducible."""
    for path in sources("raft"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
            ):
                assert node.attr == "Random", f"{path.name}:{node.lineno} uses random.{node.attr}"


def test_checker_sees_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: a Raft module importing time or the node is reported."""
    fake = tmp_path / "pyraftkv"
    (fake / "raft").mkdir(parents=True)
    (fake / "raft" / "bad.py").write_text("import time\nfrom ..node import server\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert [v.split(" imports ")[1] for v in violations("raft")] == ["time", "pyraftkv.node"]
