"""Reading configuration from environment variables with errors that name the variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def read(
    env: Mapping[str, str],
    name: str,
    default: T,
    parse: Callable[[str], T],
    check: Callable[[T], bool] = lambda _: True,
    expected: str = "",
) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not valid: {expected or exc}") from exc
    if not check(value):
        raise ConfigError(f"{name}={raw!r} is not valid: expected {expected}")
    return value


def port(env: Mapping[str, str], name: str, default: int) -> int:
    return read(env, name, default, int, lambda p: 0 <= p <= 65535, "a TCP port in 0..65535")


def positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    return read(env, name, default, int, lambda n: n >= 1, "an integer >= 1")


def seconds(env: Mapping[str, str], name: str, default: float) -> float:
    return read(env, name, default, float, lambda s: s >= 0, "a number of seconds >= 0")


def directory(env: Mapping[str, str], name: str, default: str) -> str:
    return os.path.abspath(os.path.expanduser(read(env, name, default, str)))


def address(env: Mapping[str, str], name: str, default: str) -> str:
    return read(env, name, default, str, lambda a: ":" in a, "host:port")


def file(env: Mapping[str, str], name: str, expected: str) -> Path | None:
    """An existing, readable file named by `name`, or None when the variable is unset."""
    raw = env.get(name, "")
    if not raw:
        return None
    path = Path(raw).expanduser().absolute()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{name}={raw!r} is not valid: expected the path of a readable file ({expected})")
    return path
