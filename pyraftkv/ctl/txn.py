"""txn: etcdctl's transaction grammar read from stdin, and the command that runs it.

Three sections, each ended by an empty line (or the end of input):

    mod("key1") > "0"            compares: TARGET("key") OP "value"
    val("key2") = "x"            TARGET: ver|version, c|create, m|mod, val|value, lease
                                 OP: = != < >; lease IDs in hex; strings Go-quoted
    put key1 "new value"         success requests: put / get / del lines with the flags
    get key --prefix             of those commands

    put key1 "created"           failure requests
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable
from typing import BinaryIO

from ..client.requests import Compare
from ..proto import rpc_pb2 as rpc
from .command import RESPONSE_FORMATS, command
from .errors import EXIT_BAD_ARGS, EXIT_INVALID_INPUT, CtlError
from .flags import Flag, go_parse_int, parse_flags
from .invocation import Invocation
from .kv import (
    DEL_FLAGS,
    GET_FLAGS,
    PUT_FLAGS,
    build_delete,
    build_put,
    build_range,
    parse_lease_id,
)

_GO_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


def parse_go_string(text: str, start: int) -> tuple[bytes, int]:
    """Read a Go string literal ("..." with escapes, or `raw`) at ``start``.

    Returns its bytes and the index after the closing quote; ValueError if malformed.
    """
    if start >= len(text) or text[start] not in '"`':
        raise ValueError("expected a quoted string")
    if text[start] == "`":
        end = text.find("`", start + 1)
        if end < 0:
            raise ValueError("unterminated raw string")
        return _encode(text[start + 1 : end].replace("\r", "")), end + 1
    out = bytearray()
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return bytes(out), i + 1
        if char != "\\":
            out += _encode(char)
            i += 1
            continue
        escape = text[i + 1 : i + 2]
        if escape in _GO_ESCAPES:
            out.append(_GO_ESCAPES[escape])
            i += 2
        elif escape in _HEX_DIGITS:
            digits = text[i + 2 : i + 2 + _HEX_DIGITS[escape]]
            if len(digits) != _HEX_DIGITS[escape] or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                raise ValueError(f"bad escape \\{escape}{digits}")
            value = int(digits, 16)
            if escape == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise ValueError(f"bad escape \\{escape}{digits}")
            else:
                out += chr(value).encode()
            i += 2 + len(digits)
        elif re.fullmatch(r"[0-7]{3}", text[i + 1 : i + 4]) and int(text[i + 1 : i + 4], 8) < 256:
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
        else:
            raise ValueError(f"bad escape \\{escape}")
    raise ValueError("unterminated string")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def split_words(line: str) -> list[str]:
    """Split a request line into words; "double" (Go escapes) or 'single' quotes group."""
    words: list[str] = []
    i = 0
    while True:
        while i < len(line) and line[i].isspace():
            i += 1
        if i >= len(line):
            return words
        if line[i] == '"':
            value, i = parse_go_string(line, i)
            words.append(os.fsdecode(value))
        elif line[i] == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ValueError("unterminated single-quoted string")
            words.append(line[i + 1 : end])
            i = end + 1
        else:
            start = i
            while i < len(line) and not line[i].isspace():
                i += 1
            words.append(line[start:i])
            continue
        if i < len(line) and not line[i].isspace():
            raise ValueError("a quoted string must be followed by a space")


_TARGETS: dict[str, Callable] = {
    "ver": Compare.version,
    "version": Compare.version,
    "c": Compare.create_revision,
    "create": Compare.create_revision,
    "m": Compare.mod_revision,
    "mod": Compare.mod_revision,
    "val": Compare.value,
    "value": Compare.value,
    "lease": Compare.lease,
}
_OPERATORS = {"=": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}
_COMPARE_HEAD = re.compile(r"\s*([A-Za-z]*)\s*\(\s*")
_COMPARE_OP = re.compile(r"\s*\)\s*([=!<>]+)\s*")


def parse_compare(line: str) -> rpc.Compare:
    """One compare line, e.g. ``mod("k") > "5"``; CtlError (exit 3) if malformed."""

    def malformed(reason: str = "") -> CtlError:
        suffix = f" ({reason})" if reason else ""
        return CtlError(f"malformed comparison: {line}{suffix}", EXIT_INVALID_INPUT)

    head = _COMPARE_HEAD.match(line)
    if head is None:
        raise malformed()
    try:
        key, position = parse_go_string(line, head.end())
    except ValueError as exc:
        raise malformed(f"key: {exc}") from None
    middle = _COMPARE_OP.match(line, position)
    if middle is None:
        raise malformed('expected ") <operator> "value""')
    if middle.group(1) not in _OPERATORS:
        raise malformed(f"unknown operator {middle.group(1)}")
    try:
        value, position = parse_go_string(line, middle.end())
    except ValueError as exc:
        raise malformed(f"value: {exc}") from None
    if line[position:].strip():
        raise malformed(f"unexpected text after the value: {line[position:].strip()}")
    target = head.group(1)
    if target not in _TARGETS:
        raise malformed(f"unknown target {target}")
    text = os.fsdecode(value)
    try:
        if target in ("val", "value"):
            operand: object = value
        elif target == "lease":
            operand = parse_lease_id(text)
        else:
            operand = go_parse_int(text)
    except ValueError as exc:
        raise CtlError(f"invalid txn compare request: {line} ({exc})", EXIT_INVALID_INPUT) from None
    return _OPERATORS[middle.group(1)](_TARGETS[target](key), operand)


_REQUESTS: dict[str, tuple[tuple[Flag, ...], Callable]] = {
    "put": (PUT_FLAGS, lambda opts, args: rpc.RequestOp(request_put=build_put(opts, args, None))),
    "get": (GET_FLAGS, lambda opts, args: rpc.RequestOp(request_range=build_range(opts, args))),
    "del": (
        DEL_FLAGS,
        lambda opts, args: rpc.RequestOp(request_delete_range=build_delete(opts, args)),
    ),
}


def parse_request(line: str) -> rpc.RequestOp:
    """One request line (``put k v``, ``get k --prefix``, ``del k``); CtlError if malformed."""
    try:
        words = split_words(line)
    except ValueError as exc:
        raise CtlError(f"invalid txn request: {line} ({exc})", EXIT_INVALID_INPUT) from None
    if len(words) < 2 or words[0] not in _REQUESTS:
        raise CtlError(f"invalid txn request: {line}", EXIT_INVALID_INPUT)
    flags, build = _REQUESTS[words[0]]
    try:
        parsed = parse_flags(flags, words[1:])
        return build(parsed.values, parsed.args)
    except CtlError as exc:
        raise CtlError(f"invalid txn request: {line} ({exc.message})", EXIT_INVALID_INPUT) from None


def _section(stdin: BinaryIO):
    """The stripped lines of one section: up to an empty line or the end of input."""
    while True:
        raw = stdin.readline()
        line = raw.decode("utf-8", "surrogateescape").strip()
        if not line:
            return
        yield line


def read_txn(stdin: BinaryIO, prompt: Callable[[str], None] | None = None) -> rpc.TxnRequest:
    """Read the three sections from ``stdin``; ``prompt`` shows -i's section titles."""
    prompt = prompt or (lambda _title: None)
    prompt("compares:")
    compares = [parse_compare(line) for line in _section(stdin)]
    prompt("success requests (get, put, del):")
    success = [parse_request(line) for line in _section(stdin)]
    prompt("failure requests (get, put, del):")
    failure = [parse_request(line) for line in _section(stdin)]
    return rpc.TxnRequest(compare=compares, success=success, failure=failure)


@command(
    "txn",
    summary="Txn processes all the requests in one transaction",
    usage="[options]",
    flags=(Flag("interactive", "bool", False, "Input transaction in interactive mode", short="i"),),
    formats=RESPONSE_FORMATS,
    description="""Txn reads multiple requests from standard input and applies them as a
single atomic transaction. A transaction consists of three sections, each ended by an
empty line:
1) a list of conditions,
2) a list of requests to apply if all the conditions are true,
3) a list of requests to apply if any condition is false.

Example:

    mod("key1") > "0"

    put key1 "overwrote-key1"

    put key1 "created-key1"
    put key2 "some extra key"
""",
)
async def txn(inv: Invocation) -> None:
    """Read a transaction from stdin and run it."""
    if inv.args:
        raise CtlError("txn command does not accept argument", EXIT_BAD_ARGS)

    def prompt(title: str) -> None:
        inv.write(title)
        inv.stdout.flush()

    request = read_txn(inv.stdin, prompt if inv.opts.interactive else None)
    client = await inv.client()
    inv.printer.txn(await client.call("Txn", request))
