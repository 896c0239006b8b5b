"""Command-line flags parsed the way etcdctl (Go's pflag) parses them.

``--name=value``, ``--name value``, ``-w json``, ``-wjson``; a bool flag alone means true
and takes a value only after ``=``; flags and arguments may be mixed in any order; ``--``
ends the flags (``put -- key -value``, ``watch key -- command args``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

from .errors import EXIT_ERROR, CtlError
from .gotext import go_duration

_TRUE = frozenset(("1", "t", "T", "true", "TRUE", "True"))
_FALSE = frozenset(("0", "f", "F", "false", "FALSE", "False"))

_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool: 1/t/true/TRUE/True and 0/f/false/FALSE/False."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


_DIGITS = {
    2: re.compile(r"[01]+"),
    8: re.compile(r"[0-7]+"),
    10: re.compile(r"[0-9]+"),
    16: re.compile(r"[0-9a-fA-F]+"),
}
_GO_UNDERSCORES = re.compile(r"(0[xXoObB]_?)?[0-9a-zA-Z]+(_[0-9a-zA-Z]+)*")
_PREFIXES = {"0x": 16, "0X": 16, "0o": 8, "0O": 8, "0b": 2, "0B": 2}


def go_parse_int(text: str, base: int = 10, *, unsigned: bool = False) -> int:
    """Go's strconv.ParseInt(text, base, 64) (or ParseUint), with its error messages.

    Base 0 reads Go's literals (0x.., 0o.., 0b.., a leading 0 for octal, underscores
    between digits); other bases take digits only.
    """
    func = "ParseUint" if unsigned else "ParseInt"
    body, sign = text, 1
    if not unsigned and body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    digits_base = base
    if base == 0:
        if _GO_UNDERSCORES.fullmatch(body):  # only between digits, or after a base prefix
            body = body.replace("_", "")
        digits_base = _PREFIXES.get(body[:2], 10)
        if digits_base != 10:
            body = body[2:]
        elif len(body) > 1 and body[0] == "0":
            digits_base, body = 8, body[1:]
    if not _DIGITS[digits_base].fullmatch(body):
        raise ValueError(f'strconv.{func}: parsing "{text}": invalid syntax')
    value = sign * int(body, digits_base)
    low, high = (0, 1 << 64) if unsigned else (-(1 << 63), 1 << 63)
    if not low <= value < high:
        raise ValueError(f'strconv.{func}: parsing "{text}": value out of range')
    return value


def parse_duration(text: str) -> float:
    """A Go duration ("5s", "1m30s", "250ms", "0") in seconds."""
    if text in ("0", "+0", "-0"):
        return 0.0
    body = text[1:] if text[:1] in "+-" else text
    position, seconds = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            break
        seconds += float(match.group(1)) * _DURATION_UNIT_S[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise ValueError(f'time: invalid duration "{text}"')
    return -seconds if text.startswith("-") else seconds


def parse_int(text: str) -> int:
    """An int flag as pflag reads it: a Go integer literal (decimal, 0x.., 0o.., 0b..)."""
    return go_parse_int(text, 0)


def parse_list(text: str) -> list[str]:
    """A comma-separated list."""
    return [item.strip() for item in text.split(",")]


_CONVERTERS: dict[str, Callable[[str], object]] = {
    "bool": parse_bool,
    "int": parse_int,
    "str": str,
    "duration": parse_duration,
    "strings": parse_list,
}


@dataclass(frozen=True)
class Flag:
    """One flag: its long name, value type, default, help text and optional shorthand.

    ``kind`` is one of ``bool``, ``int``, ``str``, ``duration`` or ``strings`` (a
    comma-separated list; given again, the flag adds to it, as pflag's StringSlice does).
    """

    name: str
    kind: str
    default: object
    help: str
    short: str = ""

    def __post_init__(self) -> None:
        assert self.kind in _CONVERTERS, self.kind

    @property
    def attr(self) -> str:
        """The attribute name the value is stored under (dashes become underscores)."""
        return self.name.replace("-", "_")

    def convert(self, text: str) -> object:
        """Turn the text given on the command line into the flag's value."""
        try:
            return _CONVERTERS[self.kind](text)
        except ValueError as exc:
            raise UsageError(f'invalid argument "{text}" for "--{self.name}" flag: {exc}') from None

    def default_text(self) -> str:
        """The default as etcdctl's help shows it (``--rev=0``, ``--consistency="l"``)."""
        if self.kind == "str":
            return f'"{self.default}"'
        if self.kind == "bool":
            return "true" if self.default else "false"
        if self.kind == "strings":
            return "[" + ",".join(self.default) + "]"  # type: ignore[arg-type]
        if self.kind == "duration":
            return go_duration(round(float(self.default) * 1e9))  # type: ignore[arg-type]
        return str(self.default)


class UsageError(CtlError):
    """A wrong flag or flag value, or an unknown command; exit code 1 as in etcdctl.

    ``command`` names the command whose --help the user should read.
    """

    def __init__(self, message: str, command: str = "pyraftkvctl") -> None:
        super().__init__(message, EXIT_ERROR)
        self.command = command


@dataclass
class Parsed:
    """The outcome of parsing: flag values, the arguments, and where ``--`` was."""

    values: SimpleNamespace
    args: list[str]
    dash_at: int | None  # number of arguments before "--", or None if there was none
    given: set[str]  # names of flags given on the command line


def parse_flags(flags: Iterable[Flag], argv: Sequence[str]) -> Parsed:
    """Parse ``argv`` against ``flags``; raise UsageError (pflag's messages) on bad input."""
    by_long = {f.name: f for f in flags}
    by_short = {f.short: f for f in by_long.values() if f.short}
    values = SimpleNamespace(**{f.attr: f.default for f in by_long.values()})
    args: list[str] = []
    given: set[str] = set()
    dash_at = None
    tokens = list(argv)
    i = 0

    def set_value(flag: Flag, text: str) -> None:
        value = flag.convert(text)
        if flag.kind == "strings" and flag.name in given:
            value = getattr(values, flag.attr) + value
        setattr(values, flag.attr, value)
        given.add(flag.name)

    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            dash_at = len(args)
            args.extend(tokens[i:])
            break
        if token.startswith("--"):
            name, has_value, text = token[2:].partition("=")
            flag = by_long.get(name)
            if flag is None:
                raise UsageError(f"unknown flag: --{name}")
            if has_value:
                set_value(flag, text)
            elif flag.kind == "bool":
                set_value(flag, "true")
            elif i < len(tokens):
                set_value(flag, tokens[i])
                i += 1
            else:
                raise UsageError(f"flag needs an argument: --{name}")
        elif token.startswith("-") and token != "-":
            letter, rest = token[1], token[2:]
            flag = by_short.get(letter)
            if flag is None:
                raise UsageError(f"unknown shorthand flag: '{letter}' in {token}")
            if rest.startswith("="):
                set_value(flag, rest[1:])
            elif flag.kind == "bool":
                if rest:
                    raise UsageError(f"unknown shorthand flag: '{rest[0]}' in {token}")
                set_value(flag, "true")
            elif rest:
                set_value(flag, rest)
            elif i < len(tokens):
                set_value(flag, tokens[i])
                i += 1
            else:
                raise UsageError(f"flag needs an argument: '{letter}' in {token}")
        else:
            args.append(token)
    return Parsed(values, args, dash_at, given)


def takes_value(flag: Flag, token: str) -> bool:
    """Whether ``token`` (a use of ``flag``) consumes the following token as its value."""
    if flag.kind == "bool" or "=" in token:
        return False
    return not (not token.startswith("--") and len(token) > 2)
