"""Bad input to the coordination helpers fails at once, before anything is sent."""

import asyncio

import pytest

from pyraftkv import AsyncClient, Client
from pyraftkv.client.leases import check_ttl
from pyraftkv.errors import ElectionNotLeader


@pytest.fixture
def client():
    # Nothing listens on port 9: any request would fail with ConnectionLost, not ValueError.
    with Client(["127.0.0.1:9"], timeout=1, connect_timeout=0.2) as c:
        yield c


@pytest.mark.parametrize("ttl", [0, -5, 1.5, "10", True, None])
def test_a_lease_ttl_must_be_a_positive_whole_number_of_seconds(ttl):
    with pytest.raises(ValueError, match="TTL"):
        check_ttl(ttl)


def test_helpers_refuse_bad_names_and_ttls(client):
    for make in (
        lambda: client.lease(0),
        lambda: client.lock("", ttl=5),
        lambda: client.lock("job", ttl=0),
        lambda: client.lock("job", -1),
        lambda: client.election(""),
        lambda: client.service_registry(""),
        lambda: client.config_watcher(""),
    ):
        with pytest.raises(ValueError):
            make()
    registry = client.service_registry("/services/x/")
    with pytest.raises(ValueError):
        registry.register("", "addr")
    with pytest.raises(ValueError):
        registry.register("a", "addr", ttl=0)


def test_a_lock_not_held_cannot_be_released_and_a_bare_await_needs_a_lease(client):
    lock = client.lock("job", ttl=5)
    with pytest.raises(RuntimeError, match="not held"):
        lock.release()
    assert not lock.held and lock.key is None

    async def bare_await():
        async with AsyncClient(["127.0.0.1:9"]) as aclient:
            await aclient.lock("job")

    with pytest.raises(TypeError, match="needs a lease"):
        asyncio.run(bare_await())


def test_proclaim_or_a_second_campaign_without_leading_is_refused_locally(client):
    election = client.election("office")
    with pytest.raises(ElectionNotLeader):
        election.proclaim("me")
    assert not election.is_leader
