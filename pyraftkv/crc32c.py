"""CRC32C (Castagnoli) checksums, computed in C with the CPU's crc32 instruction when it has one.

``crc32c(b, crc32c(a)) == crc32c(a + b)``: pass a previous result as ``value`` to continue.
"""

from __future__ import annotations

from ._native import ffi, lib

__all__ = ["crc32c", "crc32c_software", "hardware_accelerated"]

_U32_LIMIT = 1 << 32


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """Checksum of ``data`` continuing from ``value`` (0 to start), on the fastest path."""
    if not 0 <= value < _U32_LIMIT:
        raise ValueError(f"crc32c value must be in [0, 2**32), got {value!r}")
    buf = ffi.from_buffer(data)
    return lib.crc32c_update(value, buf, len(buf))


def crc32c_software(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """The same checksum on the portable table path: lets tests check one path against the other."""
    if not 0 <= value < _U32_LIMIT:
        raise ValueError(f"crc32c value must be in [0, 2**32), got {value!r}")
    buf = ffi.from_buffer(data)
    return lib.crc32c_update_software(value, buf, len(buf))


def hardware_accelerated() -> bool:
    """True when ``crc32c`` uses the CPU's crc32 instruction (SSE4.2), False on the table path."""
    return bool(lib.crc32c_hardware_available())
