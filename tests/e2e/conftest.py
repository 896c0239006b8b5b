import pytest

from .harness import LocalCluster


@pytest.fixture
def cluster(tmp_path):
    """A started 3-member cluster; stopped (kill -9) after the test."""
    c = LocalCluster(str(tmp_path), 3)
    c.start()
    yield c
    c.stop_all()


@pytest.fixture
def net_cluster(tmp_path):
    """A started 3-member cluster and the Network that cuts or slows its peer links."""
    from .nemesis import Network

    c = LocalCluster(str(tmp_path), 3)
    network = Network(c)
    c.start()
    yield c, network
    c.stop_all()


@pytest.fixture
def make_cluster(tmp_path):
    """Factory for clusters with options; every one is stopped after the test."""
    made = []

    def make(size: int = 3, **options) -> LocalCluster:
        c = LocalCluster(str(tmp_path / f"c{len(made)}"), size, **options)
        (tmp_path / f"c{len(made)}").mkdir(exist_ok=True)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop_all()


@pytest.fixture
def workers(tmp_path):
    """Client worker processes (tests/e2e/coord_worker.py); killed after the test."""
    from .workers import Workers

    directory = tmp_path / "workers"
    directory.mkdir()
    w = Workers(str(directory))
    yield w
    w.stop_all()


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A CA and certificates made once for the whole session (see certs.py)."""
    from .certs import Certs

    return Certs(str(tmp_path_factory.mktemp("certs")))
