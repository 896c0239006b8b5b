"""A client URL's listener serves three protocols: each new connection is read until its
first bytes say which (protocol/sniff.py), then handed to that protocol's connection
object, which gets the transport and the bytes read so far. After the handoff the
transport talks to the chosen protocol directly: the native path pays nothing per frame.
TLS ends below this, so all three see plain bytes and the verified client certificate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..protocol.sniff import Kind, classify

log = logging.getLogger("pyraftkv.clients")

# A connection that has not said which protocol it speaks after this long is closed.
SILENT_TIMEOUT_S = 30.0
# A connection the member ends waits this long for the client to end its side too.
LINGER_S = 5.0


def close_after_last_word(transport: asyncio.Transport) -> None:
    """End a connection whose last bytes (a GOAWAY, an error) are queued, so that they
    reach the client: this side's end of stream follows them, and the connection goes when
    the client ends its side or after LINGER_S. Its protocol drops what still arrives.
    Closing at once with the client's bytes unread would send a reset, and a reset can
    destroy the last word before the client reads it."""
    if transport.is_closing():
        return
    if not transport.can_write_eof():  # TLS: close_notify after the queued bytes
        transport.close()
        return
    transport.write_eof()
    transport.resume_reading()  # a paused connection must be read for the client's end
    asyncio.get_running_loop().call_later(LINGER_S, transport.abort)


class ClientPort(asyncio.Protocol):
    """The first moments of one client connection, until its protocol is known.

    ``factories`` maps each protocol to a callable making its connection object (an
    asyncio.Protocol); a protocol without one gets the connection closed.
    """

    def __init__(self, factories: dict[Kind, Callable[[], asyncio.Protocol]]) -> None:
        self._factories = factories
        self._transport: asyncio.Transport | None = None
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._silence = asyncio.get_running_loop().call_later(SILENT_TIMEOUT_S, self._silent)

    def _silent(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            log.info("closing a client connection that said nothing for %.0f s", SILENT_TIMEOUT_S)
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        head = self._head + data if self._head else data
        kind = classify(head)
        if kind is None:
            self._head = head
            return
        self._head = b""
        self._silence.cancel()
        factory = self._factories.get(kind)
        transport = self._transport
        assert transport is not None
        if factory is None:
            log.info("closing a client connection speaking %s: not served here", kind.value)
            transport.close()
            return
        protocol = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if not transport.is_closing():
            protocol.data_received(head)

    def eof_received(self) -> bool:
        return False  # closed before saying anything (or mid-preface)

    def connection_lost(self, exc: Exception | None) -> None:
        self._silence.cancel()
        self._transport = None
