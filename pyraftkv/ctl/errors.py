"""Exit codes (etcdctl's) and the error a command raises to stop with "Error: ..."."""

from __future__ import annotations

from ..errors import PyraftkvError

EXIT_SUCCESS = 0
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3
EXIT_BAD_FEATURE = 4
EXIT_INTERRUPTED = 5
EXIT_IO = 6
EXIT_BAD_ARGS = 128


class CtlError(PyraftkvError):
    """Stop the command: print ``Error: <message>`` on stderr and exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @property
    def message(self) -> str:
        """The text after "Error: "."""
        return str(self.args[0])
