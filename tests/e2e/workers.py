"""Start coordination worker processes (tests/e2e/coord_worker.py) and clean them up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from .coord_worker import read_records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Workers:
    """Worker processes of one test, all killed when it ends; they report into ``dir``."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.processes: list[subprocess.Popen] = []

    def start(self, command: str, endpoints: list[str], **options) -> subprocess.Popen:
        argv = [sys.executable, "-m", "tests.e2e.coord_worker", command]
        argv += ["--endpoints", ",".join(endpoints), "--dir", self.dir]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        log = open(os.path.join(self.dir, f"worker-{len(self.processes)}.log"), "w")  # noqa: SIM115
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=log)
        log.close()
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """kill -9: the process gets no chance to release anything."""
        process.send_signal(signal.SIGKILL)
        process.wait()

    def records(self, name: str) -> list[dict]:
        return read_records(os.path.join(self.dir, name))

    def logs(self) -> str:
        out = []
        for i in range(len(self.processes)):
            with open(os.path.join(self.dir, f"worker-{i}.log")) as f:
                out.append(f"--- worker {i}\n{f.read()[-2000:]}")
        return "\n".join(out)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
