"""One logging setup for every Plasma process: structured `key=value` lines on stdout."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from plasma.quoting import truncate

_FORMAT = "time=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s"
# However much a message quotes from a request, its line stays this short (a traceback follows it whole).
MAX_MESSAGE_CHARS = 2000


class _Handler(logging.StreamHandler[TextIO]):
    """The handler `configure` installs, marked as Plasma's by `_plasma`."""

    _plasma = True


class _BoundedFormatter(logging.Formatter):
    """Cuts each message to MAX_MESSAGE_CHARS."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = truncate(record.message, MAX_MESSAGE_CHARS)
        return super().formatMessage(record)


def configure(level: str | None = None) -> None:
    """Configures the root logger once; PLASMA_LOG_LEVEL overrides the default INFO."""
    chosen = (level or os.environ.get("PLASMA_LOG_LEVEL", "INFO")).upper()
    root = logging.getLogger()
    if any(getattr(h, "_plasma", False) for h in root.handlers):
        root.setLevel(chosen)
        return
    handler = _Handler(sys.stdout)
    handler.setFormatter(_BoundedFormatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(chosen)


def get(name: str) -> logging.Logger:
    return logging.getLogger(name)
