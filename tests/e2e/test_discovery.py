"""The service registry on a real 3-member cluster: instances in separate processes
register on kept-alive leases, and vanish on their TTL when their process dies."""

import time

import pytest

from pyraftkv.client.discovery import JOINED, LEFT, UPDATED


def test_instances_appear_and_vanish_on_their_ttl(cluster, workers):
    ttl = 1
    client = cluster.client()
    registry = client.service_registry("/services/api/")
    local = registry.register("local", "10.0.0.9:80", ttl=ttl)
    watch = registry.watch()  # starts from a listing: "local" is already there
    first = watch.get(5)
    assert (first.kind, first.name, first.value) == (JOINED, "local", b"10.0.0.9:80")

    processes = {}
    for n in range(2):
        name = f"remote-{n}"
        processes[name] = workers.start(
            "register", cluster.endpoints, name="/services/api/", id=name, value=f"10.0.1.{n}:80"
        )
    joined = [watch.get(30) for _ in range(2)]
    assert sorted((e.kind, e.name, e.value) for e in joined) == [
        (JOINED, "remote-0", b"10.0.1.0:80"),
        (JOINED, "remote-1", b"10.0.1.1:80"),
    ]
    assert all(e.revision > first.revision for e in joined)
    assert registry.instances() == {
        "local": b"10.0.0.9:80",
        "remote-0": b"10.0.1.0:80",
        "remote-1": b"10.0.1.1:80",
    }
    time.sleep(3 * ttl)  # live instances stay
    assert len(registry.instances()) == 3

    workers.kill(processes["remote-0"])
    killed_at = time.monotonic()
    left = watch.get(ttl + 5)
    gone_after_s = time.monotonic() - killed_at
    assert (left.kind, left.name, left.value) == (LEFT, "remote-0", b"10.0.1.0:80")
    assert ttl / 2 <= gone_after_s <= ttl + 1.0, gone_after_s
    assert set(watch.instances) == {"local", "remote-1"}

    local.update("10.0.0.10:80")
    updated = watch.get(5)
    assert (updated.kind, updated.name, updated.value) == (UPDATED, "local", b"10.0.0.10:80")
    local.deregister()
    left = watch.get(5)
    assert (left.kind, left.name) == (LEFT, "local")
    assert registry.instances() == {"remote-1": b"10.0.1.1:80"}

    late = registry.watch()  # a new watcher lists what is there now
    assert [(e.kind, e.name) for e in [late.get(5)]] == [(JOINED, "remote-1")]
    late.close()
    watch.close()
    assert list(watch) == []  # closed: nothing more


def test_bad_registrations_are_refused_and_change_nothing(cluster):
    with cluster.client() as client:
        registry = client.service_registry("/services/db/")
        with pytest.raises(ValueError):
            registry.register("", "addr")
        with pytest.raises(ValueError):
            registry.register("x", "addr", ttl=0)
        with pytest.raises(ValueError):
            client.service_registry("")
        assert registry.instances() == {}
        assert client.lease_leases().leases == []
