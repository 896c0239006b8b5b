"""One log line per event that matters, the same in both processes of a member.

``--logger capnslog`` (the default) writes plain lines; ``--logger zap`` writes one JSON
object per line as etcd 3.4's zap logger does (``level``, ``ts``, ``caller``, ``msg``, then
the event's fields under etcd's names, e.g. ``local-member-id``, ``term``, ``index``), for
log pipelines. ``--log-outputs`` sends the lines to stderr, stdout or files (comma-separated).
A log call adds fields with ``extra=fields(term=3, ...)``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGERS = ("capnslog", "zap")
# zap's level names
_ZAP_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}


def fields(**values: object) -> dict:
    """Structured fields of one log line (``log.info(..., extra=fields(term=3))``); names with
    underscores are written with dashes, as etcd's."""
    return {"zap_fields": {name.replace("_", "-"): value for name, value in values.items()}}


class ZapFormatter(logging.Formatter):
    """A record as one JSON line shaped like etcd 3.4's zap output."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = {
            "level": _ZAP_LEVELS.get(record.levelname, "fatal"),
            "ts": f"{seconds}.{int(record.msecs):03d}Z",
            "caller": f"{record.module}.py:{record.lineno}",
            "msg": record.getMessage(),
            "process": self.process,
            "logger": record.name,
        }
        line.update(getattr(record, "zap_fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _stream(output: str):
    if output in ("stderr", "default"):
        return logging.StreamHandler(sys.stderr)
    if output == "stdout":
        return logging.StreamHandler(sys.stdout)
    return logging.FileHandler(output, encoding="utf-8")


def setup_logging(level: str, process: str, logger: str = "capnslog", outputs: str = "") -> None:
    """Log at ``level`` in the chosen format to the chosen outputs (default: stderr)."""
    if logger == "zap":
        formatter: logging.Formatter = ZapFormatter(process)
    else:
        formatter = logging.Formatter(
            f"%(asctime)s.%(msecs)03d %(levelname)s [{process}] %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S",
        )
    handlers = []
    for output in (o.strip() for o in (outputs or "stderr").split(",") if o.strip()):
        handler = _stream(output)
        handler.setFormatter(formatter)
        handlers.append(handler)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
