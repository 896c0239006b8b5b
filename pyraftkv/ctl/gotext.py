"""Text the way etcdctl's Go code formats it: %q quoting, durations, humanized sizes, hex."""

from __future__ import annotations

import math

_SIMPLE_ESCAPES = {
    0x07: "\\a",
    0x08: "\\b",
    0x0C: "\\f",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x0B: "\\v",
    0x22: '\\"',
    0x5C: "\\\\",
}


def go_quote(data: bytes | str) -> str:
    """Go's %q (strconv.Quote): double-quoted, printable UTF-8 kept, the rest escaped."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    out = ['"']
    text = raw.decode("utf-8", "surrogateescape")
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[code])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def hex_escape(data: bytes) -> bytes:
    """etcdctl's --hex form of a key or value: every byte as ``\\xNN``."""
    return "".join(f"\\x{b:02x}" for b in data).encode()


_SIZES = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def humanize_bytes(size: int) -> str:
    """A byte count in SI units, rounded like go-humanize's Bytes: "20 kB", "1.5 MB"."""
    if size < 10:
        return f"{size} B"
    exponent = min(int(math.floor(math.log(size) / math.log(1000))), len(_SIZES) - 1)
    value = math.floor(size / 1000**exponent * 10 + 0.5) / 10
    return f"{value:.1f} {_SIZES[exponent]}" if value < 10 else f"{value:.0f} {_SIZES[exponent]}"


def _trim_fraction(whole: int, fraction: int, digits: int) -> str:
    text = f"{fraction:0{digits}d}".rstrip("0")
    return f"{whole}.{text}" if text else str(whole)


def go_duration(nanoseconds: int) -> str:
    """Go's time.Duration.String(): 850ns, 1.62308ms, 2.3s, 1m2.5s, 1h0m0s."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    ns = abs(nanoseconds)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim_fraction(ns // 1_000, ns % 1_000, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim_fraction(ns // 1_000_000, ns % 1_000_000, 6)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim_fraction(rest // 1_000_000_000, rest % 1_000_000_000, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"
