"""A lock holder paused past its lease's TTL loses the lock while it is stopped; when it
runs again it still acts as the holder. The fencing token (the lock key's create revision)
is what stops it: the guarded transaction fails and a resource that keeps the largest
token seen refuses it. An unguarded write from it goes through, which is why fencing is
needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pyraftkv import Op

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FencedResource:
    """A resource outside the store that accepts a write only with the largest token yet."""

    def __init__(self) -> None:
        self.largest = 0
        self.value = None

    def write(self, token: int, value: str) -> bool:
        if token < self.largest:
            return False
        self.largest, self.value = token, value
        return True


def test_paused_holder_whose_lease_expired_is_fenced_off(cluster):
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.fenced_holder", ",".join(cluster.endpoints), "job", "2"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = holder.stdout.readline().split()
        assert line[0] == "token", line
        stale_token = int(line[1])
        resource = FencedResource()
        assert resource.write(stale_token, "first holder")
        os.kill(holder.pid, signal.SIGSTOP)  # its lease runs out while it is stopped
        with cluster.client() as c:
            lock = c.lock("job", ttl=5)
            lock.acquire(timeout=20)
            assert lock.fencing_token > stale_token
            assert resource.write(lock.fencing_token, "second holder")
            assert c.txn(compare=[lock.guard()], success=[Op.put("resource", "new")]).succeeded
            os.kill(holder.pid, signal.SIGCONT)
            out, _ = holder.communicate("go\n", timeout=30)
            assert "guarded False" in out, out  # the store refused the stale holder
            assert not resource.write(stale_token, "stale holder")  # and so did the resource
            assert resource.value == "second holder"
            assert c.get("resource").kvs[0].value == b"new"
            # Without fencing, the stale holder's write lands while another holds the lock.
            assert "unfenced done" in out and c.get("unfenced").kvs[0].value == b"stale"
            assert lock.held
            lock.release()
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
        holder.wait()
