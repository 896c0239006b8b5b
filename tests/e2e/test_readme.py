"""The README's Python examples run as written against a real 3-member cluster."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import LocalCluster

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
DOC_PORTS = ("127.0.0.1:22379", "127.0.0.1:12379", "127.0.0.1:2379")  # longest first


def test_the_readme_has_python_examples():
    assert len(EXAMPLES) >= 5


@pytest.fixture(scope="module")
def readme_cluster(tmp_path_factory):
    cluster = LocalCluster(str(tmp_path_factory.mktemp("readme")), 3)
    cluster.start()
    yield cluster
    cluster.stop_all()


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs(readme_cluster, index):
    code = EXAMPLES[index]
    ports = {
        doc: m.endpoint for doc, m in zip(DOC_PORTS, reversed(readme_cluster.members), strict=True)
    }
    for doc, real in ports.items():
        code = code.replace(doc, real)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "an example prints what it shows"
