"""HPACK decoding (RFC 7541) for the gRPC server's HTTP/2: header blocks to (name, value)
fields, with the connection's dynamic table.

The hpack library's decoder cost a gRPC call about a fifth of the application's CPU under
load; most fields of a gRPC client's blocks are one-byte references to a table, which this
resolves with an index and a tuple. Huffman-coded strings and the static table come from
the hpack library (its Huffman code is a long table best not copied).
"""

from __future__ import annotations

from collections import deque

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

STATIC = HeaderTable.STATIC_TABLE  # entries 1..61
ENTRY_OVERHEAD = 32  # bytes a table entry counts beyond its name and value (RFC 7541, 4.1)


class HeaderBlockError(Exception):
    """A header block that breaks HPACK: the connection cannot go on (its table is lost)."""


class HeaderDecoder:
    """One connection's decoding side: a dynamic table of at most ``max_table_size``
    bytes (what this side allows; the peer may ask for less), and decoded blocks of at
    most ``max_list_size`` bytes counted as RFC 7541 counts table entries."""

    def __init__(self, max_table_size: int = 4096, max_list_size: int = 64 << 10) -> None:
        self._allowed = max_table_size
        self._max = max_table_size
        self._max_list = max_list_size
        self._dynamic: deque[tuple[bytes, bytes]] = deque()
        self._size = 0

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        fields: list[tuple[bytes, bytes]] = []
        listed = 0
        i, end = 0, len(block)
        while i < end:
            first = block[i]
            if first & 0x80:  # an indexed field
                index, i = _integer(block, i, 7)
                field = self._entry(index)
            elif first & 0x40:  # a literal added to the table
                field, i = self._literal(block, i, 6)
                self._add(field)
            elif first & 0x20:  # a table size update, only before the first field
                if fields:
                    raise HeaderBlockError("a table size update after a field")
                size, i = _integer(block, i, 5)
                if size > self._allowed:
                    raise HeaderBlockError(f"a table size of {size} over {self._allowed}")
                self._max = size
                self._evict()
                continue
            else:  # a literal not indexed, or never indexed
                field, i = self._literal(block, i, 4)
            listed += _size(field)
            if listed > self._max_list:
                raise HeaderBlockError(f"a header list over {self._max_list} bytes")
            fields.append(field)
        return fields

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= len(STATIC):
            return STATIC[index - 1]
        dynamic = index - len(STATIC) - 1
        if index == 0 or dynamic >= len(self._dynamic):
            raise HeaderBlockError(f"no table entry {index}")
        return self._dynamic[dynamic]

    def _literal(self, block: bytes, i: int, prefix: int) -> tuple[tuple[bytes, bytes], int]:
        index, i = _integer(block, i, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, i = _string(block, i)
        value, i = _string(block, i)
        return (name, value), i

    def _add(self, field: tuple[bytes, bytes]) -> None:
        size = _size(field)
        if size > self._max:  # too large for the table: it empties (RFC 7541, 4.4)
            self._dynamic.clear()
            self._size = 0
            return
        self._dynamic.appendleft(field)
        self._size += size
        self._evict()

    def _evict(self) -> None:
        while self._size > self._max:
            self._size -= _size(self._dynamic.pop())


def _size(field: tuple[bytes, bytes]) -> int:
    """What a field counts in the table and the list (RFC 7541, 4.1)."""
    return len(field[0]) + len(field[1]) + ENTRY_OVERHEAD


def _integer(block: bytes, i: int, prefix: int) -> tuple[int, int]:
    """An integer with an N-bit prefix (RFC 7541, 5.1) at ``block[i]``; it and where the
    next representation starts."""
    limit = (1 << prefix) - 1
    value = block[i] & limit
    i += 1
    if value < limit:
        return value, i
    shift = 0
    while True:
        if i >= len(block):
            raise HeaderBlockError("a truncated integer")
        byte = block[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i
        if shift > 28:
            raise HeaderBlockError("an integer over 2^32")


def _string(block: bytes, i: int) -> tuple[bytes, int]:
    if i >= len(block):
        raise HeaderBlockError("a truncated string")
    huffman = block[i] & 0x80
    length, i = _integer(block, i, 7)
    if i + length > len(block):
        raise HeaderBlockError("a truncated string")
    data = block[i : i + length]
    if huffman:
        try:
            data = decode_huffman(data)
        except HPACKDecodingError as exc:
            raise HeaderBlockError(f"bad Huffman code: {exc}") from None
    return data, i + length
