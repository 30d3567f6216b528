"""The command line every service shares: flags that override environment variables, then config, then serve."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from plasma import log as plog
from plasma.server.observability import Observability
from plasma.server.settings import ConfigError

ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class Flag:
    """A command-line flag that stands in for one environment variable."""

    name: str  # e.g. "--address"
    variable: str  # e.g. "PLASMA_SIMULATOR_ADDRESS"
    help: str


def run(
    description: str,
    flags: Sequence[Flag],
    load_config: Callable[[Mapping[str, str]], ConfigT],
    serve: Callable[[ConfigT, Observability], None],
    argv: list[str] | None,
    env: Mapping[str, str],
    service: str,
) -> None:
    """Parses `argv`, lets given flags override `env`, loads the config and serves until a signal, with the
    metrics and tracing that `service`'s variables ask for (plasma.server.observability).

    A bad setting, found while loading the config or while opening what it names, exits with status 2 and
    a message that names the variable.
    """
    parser = argparse.ArgumentParser(description=description)
    for flag in flags:
        parser.add_argument(flag.name, help=f"{flag.help} ({flag.variable})")
    args = vars(parser.parse_args(argv))
    overrides = {flag.variable: args[flag.name.lstrip("-").replace("-", "_")] for flag in flags}
    plog.configure()
    merged = {**env, **{key: value for key, value in overrides.items() if value}}
    try:
        config = load_config(merged)
        observability = Observability.from_env(merged, service)
        observability.start()
        try:
            serve(config, observability)
        finally:
            observability.stop()
    except ConfigError as exc:
        parser.error(str(exc))
