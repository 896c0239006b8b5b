"""The event loop of the members and the benchmarks' clients: uvloop when installed (libuv,
about twice as fast per I/O event as asyncio's own loop), asyncio's otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
