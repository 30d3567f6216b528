"""One logging setup for every Plasma process: structured `key=value` lines on stdout."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

_FORMAT = "time=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s"


class _Handler(logging.StreamHandler[TextIO]):
    """The handler `configure` installs, marked as Plasma's by `_plasma`."""

    _plasma = True


def configure(level: str | None = None) -> None:
    """Configures the root logger once; PLASMA_LOG_LEVEL overrides the default INFO."""
    chosen = (level or os.environ.get("PLASMA_LOG_LEVEL", "INFO")).upper()
    root = logging.getLogger()
    if any(getattr(h, "_plasma", False) for h in root.handlers):
        root.setLevel(chosen)
        return
    handler = _Handler(sys.stdout)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(chosen)


def get(name: str) -> logging.Logger:
    return logging.getLogger(name)
