"""The blocking Client's hand-over to its event-loop thread: results and errors come back
to the caller, and a call still waiting when the client closes ends instead of hanging."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from pyraftkv import Client


async def answer(value: int) -> int:
    await asyncio.sleep(0)
    return value


async def fail() -> None:
    raise KeyError("from the loop thread")


def test_results_and_errors_come_back_to_the_calling_thread() -> None:
    with Client(["127.0.0.1:1"]) as client:
        assert [client._run(answer(i)) for i in range(100)] == list(range(100))
        with pytest.raises(KeyError, match="from the loop thread"):
            client._run(fail())


def test_a_call_waiting_when_the_client_closes_is_cancelled() -> None:
    client = Client(["127.0.0.1:1"])
    outcome: list[BaseException] = []
    started = threading.Event()

    async def wait_long() -> None:
        started.set()
        await asyncio.sleep(60)

    def call() -> None:
        try:
            client._run(wait_long())
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert started.wait(5)
    client.close()
    caller.join(5)
    assert not caller.is_alive()
    assert [type(exc) for exc in outcome] == [concurrent.futures.CancelledError]
