"""pyraftkvctl: the command-line client, with etcdctl v3's commands, flags and output.

``run(argv, stdin, stdout, stderr, environ) -> exit code`` runs it in-process.
"""

from .main import main, run

__all__ = ["main", "run"]
