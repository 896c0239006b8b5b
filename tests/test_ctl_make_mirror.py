"""make-mirror's key mapping and its refusals (the copying itself: e2e test_ctl_make_mirror)."""

from __future__ import annotations

import io

from pyraftkv.ctl import run
from pyraftkv.ctl.make_mirror import Mirror


def mapping(prefix: bytes, to: bytes):
    return Mirror(None, None, prefix, to).dest_key  # type: ignore[arg-type]


def test_destination_keys_replace_the_first_occurrence_of_the_prefix():
    assert mapping(b"src/", b"dst/")(b"src/a") == b"dst/a"
    assert mapping(b"src/", b"")(b"src/a/src/b") == b"a/src/b"  # --no-dest-prefix
    assert mapping(b"", b"copy/")(b"k") == b"copy/k"  # no prefix: the whole keyspace
    assert mapping(b"src/", b"src/")(b"src/\xff") == b"src/\xff"


def test_refusals_before_connecting():
    for argv, message in (
        (["make-mirror"], "make-mirror takes one destination argument"),
        (["make-mirror", "a:1", "--dest-prefix=x", "--no-dest-prefix"], "`--dest-prefix` and"),
    ):
        out, err = io.BytesIO(), io.BytesIO()
        assert run(["--endpoints=127.0.0.1:1", *argv], io.BytesIO(), out, err, {}) == 128
        assert out.getvalue() == b"" and err.getvalue().startswith(f"Error: {message}".encode())
