"""make-mirror, side by side with etcdctl 3.4's: the same writes to a source prefix, mirrored
by etcdctl within a real etcd (src/ -> dst/) and by pyraftkvctl within a pyraftkv cluster,
from it into a second pyraftkv cluster (--no-dest-prefix) and into a real etcd (through
the native-protocol bridge, same prefix). The copies must hold what the source holds, and
both tools end quietly on Ctrl-C. The count both print every 30 s (etcdctl printed 6 for
these writes when run to that point) is checked on pyraftkvctl alone, its interval cut to
a second. Skipped when the etcd binaries are absent.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyraftkv.ctl import run

from ..ctl_etcd_bridge import EtcdBridge
from ..ctl_etcd_cluster import ETCD, ETCDCTL, MISSING, Result, wait_until
from .harness import free_ports

pytestmark = pytest.mark.skipif(ETCD is None or ETCDCTL is None, reason=MISSING)

ETCDCTL_ENV = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
ETCDCTL_ENV["ETCDCTL_API"] = "3"
REPORT_AFTER_S = 1.0  # pyraftkvctl's count interval in these tests (30 s in use, as etcdctl's)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return b"true" in answer.read()
    except OSError:
        return False


@contextlib.contextmanager
def solo_etcd(directory: Path) -> Iterator[str]:
    """One fresh etcd 3.4 member; its client endpoint."""
    client, peer = free_ports(2)
    peer_url, client_url = f"http://127.0.0.1:{peer}", f"http://127.0.0.1:{client}"
    argv = [ETCD, "--name", "solo", "--data-dir", str(directory / "etcd")]
    argv += ["--listen-client-urls", client_url, "--advertise-client-urls", client_url]
    argv += ["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url]
    argv += ["--initial-cluster", f"solo={peer_url}"]
    with open(directory / "etcd.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        wait_until(lambda: _healthy(client), what="etcd")
        yield f"127.0.0.1:{client}"
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    with solo_etcd(tmp_path_factory.mktemp("etcd")) as endpoint:
        yield endpoint


def etcdctl(endpoint: str, *args: str, stdin: bytes = b"") -> Result:
    done = subprocess.run(
        [ETCDCTL, f"--endpoints={endpoint}", *args],
        input=stdin,
        capture_output=True,
        env=ETCDCTL_ENV,
        timeout=30,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def ctl(endpoint: str, *args: str, stdin: bytes = b"") -> Result:
    out, err = io.BytesIO(), io.BytesIO()
    code = run([f"--endpoints={endpoint}", *args], io.BytesIO(stdin), out, err, {})
    return Result(code, out.getvalue(), err.getvalue())


class Mirroring:
    """A make-mirror process, its output in a file."""

    def __repr__(self) -> str:
        return f"<{self.out.name}: {self.out.read_bytes()!r}>"

    def __init__(self, program: list[str], endpoint: str, args: list[str], out: Path) -> None:
        self.out = out
        env = ETCDCTL_ENV if program == [ETCDCTL] else {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(out, "wb") as sink:
            self.process = subprocess.Popen(
                [*program, f"--endpoints={endpoint}", "make-mirror", *args],
                stdout=sink,
                stderr=subprocess.PIPE,
                env=env,
            )

    def interrupt(self) -> tuple[int, bytes, bytes]:
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=10)
        return self.process.returncode, self.out.read_bytes(), err


OURS = [
    sys.executable,
    "-c",
    "import sys, pyraftkv.ctl.make_mirror as m; from pyraftkv.ctl.main import main; "
    f"m.REPORT_EVERY_S = {REPORT_AFTER_S}; sys.exit(main())",
]
TXN = b"\nput src/d 4\nput src/e 5\n\n\n"  # no compares, two puts, no failure ops


def _writes(tool, endpoint: str) -> None:
    """The source's changes once the mirrors copied its first keys: a put, a delete, a
    transaction of two puts (one revision), and a key outside the prefix."""
    for args in (["put", "src/c", "3"], ["del", "src/a"], ["put", "elsewhere", "x"]):
        assert tool(endpoint, *args).code == 0
    assert tool(endpoint, "txn", stdin=TXN).code == 0


def test_make_mirror_matches_etcdctl(etcd, make_cluster, tmp_path):
    source, other = make_cluster(1), make_cluster(1)
    source.start()
    other.start()
    ours, second = source.endpoints[0], other.endpoints[0]
    bridge = EtcdBridge("127.0.0.1", int(etcd.rsplit(":", 1)[1]))
    try:
        for tool, endpoint in ((etcdctl, etcd), (ctl, ours)):
            for args in (["put", "src/a", "1"], ["put", "src/b", "two words"], ["put", "x", "y"]):
                assert tool(endpoint, *args).code == 0
        started = time.monotonic()
        mirrors = {
            "theirs": Mirroring(
                [ETCDCTL],
                etcd,
                [etcd, "--prefix", "src/", "--dest-prefix", "dst/"],
                tmp_path / "theirs.out",
            ),
            "ours": Mirroring(
                OURS,
                ours,
                [ours, "--prefix", "src/", "--dest-prefix", "dst/"],
                tmp_path / "ours.out",
            ),
            "root": Mirroring(
                OURS, ours, [second, "--prefix", "src/", "--no-dest-prefix"], tmp_path / "root.out"
            ),
            "same": Mirroring(OURS, ours, [second, "--prefix", "src/"], tmp_path / "same.out"),
            "etcd": Mirroring(
                OURS,
                ours,
                [bridge.endpoint, "--prefix", "src/", "--dest-prefix", "pk/"],
                tmp_path / "etcd.out",
            ),
        }
        copied = {
            "theirs": lambda: etcdctl(etcd, "get", "dst/b").out,
            "ours": lambda: ctl(ours, "get", "dst/b").out,
            "root": lambda: ctl(second, "get", "b").out,
            "same": lambda: ctl(second, "get", "src/b").out,
            "etcd": lambda: etcdctl(etcd, "get", "pk/b").out,
        }
        try:
            for name, get in copied.items():
                wait_until(lambda get=get: get().endswith(b"two words\n"), what=f"{name} copy")
            _writes(etcdctl, etcd)
            _writes(ctl, ours)
            wait_until(lambda: etcdctl(etcd, "get", "dst/e").out == b"dst/e\n5\n", what="theirs")
            wait_until(lambda: ctl(ours, "get", "dst/e").out == b"dst/e\n5\n", what="ours")
            wait_until(lambda: ctl(second, "get", "e").out == b"e\n5\n", what="root")
            wait_until(lambda: ctl(second, "get", "src/e").out == b"src/e\n5\n", what="same")
            wait_until(lambda: etcdctl(etcd, "get", "pk/e").out == b"pk/e\n5\n", what="etcd")
            # Ours prints the number of keys put and deleted (2 copied + 4 changes).
            for name in ("ours", "root", "same", "etcd"):
                mirror = mirrors[name]
                wait_until(
                    lambda mirror=mirror: (
                        mirror.out.read_bytes().endswith(b"\n6\n")
                        or mirror.out.read_bytes() == b"6\n"
                    ),
                    what=f"{name} count",
                )
            assert time.monotonic() - started < 30  # etcdctl has printed nothing yet
        finally:
            ended = {name: mirror.interrupt() for name, mirror in mirrors.items()}
        # Both end quietly on Ctrl-C, as killed by SIGINT.
        assert ended["theirs"] == (-signal.SIGINT, b"", b"")
        for name in ("ours", "root", "same", "etcd"):
            code, _out, err = ended[name]
            assert (code, err) == (-signal.SIGINT, b""), name
        # The copies hold what the source's prefix holds.
        theirs = etcdctl(etcd, "get", "dst/", "--prefix").out
        assert theirs == b"dst/b\ntwo words\ndst/c\n3\ndst/d\n4\ndst/e\n5\n"
        assert ctl(ours, "get", "dst/", "--prefix").out == theirs
        root = theirs.replace(b"dst/", b"")
        assert ctl(second, "get", "", "--from-key").out == root + theirs.replace(b"dst/", b"src/")
        assert etcdctl(etcd, "get", "pk/", "--prefix").out == theirs.replace(b"dst/", b"pk/")
        # (the key outside the prefix stayed home)
        assert ctl(second, "get", "elsewhere").out == b""
    finally:
        bridge.close()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["a", "b"],
        ["DEST", "--dest-prefix", "x", "--no-dest-prefix"],
    ],
)
def test_make_mirror_refusals_match_etcdctl(etcd, args):
    args = [etcd if arg == "DEST" else arg for arg in args]
    theirs = etcdctl(etcd, "make-mirror", *args)
    assert theirs.code == 128
    assert ctl("127.0.0.1:9", "make-mirror", *args) == Result(theirs.code, theirs.out, theirs.err)
