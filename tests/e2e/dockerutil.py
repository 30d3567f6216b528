"""Helpers over the docker and compose command lines for the container end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.sh"
TAG = os.environ.get("PLASMA_TAG", "latest")

# Figures worth reading in the CI log (image sizes, time to healthy, memory); printed at the end of the run.
FIGURES: dict[str, str] = {}


class CommandError(AssertionError):
    """A docker/compose command failed; the message carries its output."""


def docker_unavailable() -> str | None:
    """Why docker cannot be used here, or None when the CLI and a running engine are both present."""
    if shutil.which("docker") is None:
        return "docker is unavailable: no docker CLI on PATH"
    try:
        probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                               timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "docker is unavailable: `docker info` did not answer within 30 s"
    if probe.returncode != 0:
        return f"docker is unavailable: no engine answers `docker info` ({probe.stderr.strip()[:200]})"
    return None


def run(args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600,
        check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command from the repository root (bytes on stdin if given); on failure raises with its output."""
    done = subprocess.run(list(args), cwd=REPO, env=None if env is None else dict(env), capture_output=True,
                          input=stdin, timeout=timeout, check=False)
    result = subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="replace"),
                                         done.stderr.decode(errors="replace"))
    if check and result.returncode != 0:
        raise CommandError(f"{' '.join(args)} exited with {result.returncode}\n"
                           f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}")
    return result


def compose(env: Mapping[str, str], *args: str, timeout: float = 900, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    return run([str(COMPOSE), *args], env=env, timeout=timeout, check=check)


def inspect(obj: str, template: str) -> str:
    return run(["docker", "inspect", "--format", template, obj]).stdout.strip()


def state(container: str) -> dict[str, object]:
    return json.loads(inspect(container, "{{json .State}}"))  # type: ignore[no-any-return]


def wait_healthy(container: str, timeout_s: float = 300) -> None:
    """Polls the container's HEALTHCHECK status until healthy; fails at once if it exits or turns unhealthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = state(container)
        health = current.get("Health") or {}
        status = health.get("Status") if isinstance(health, dict) else None
        if status == "healthy":
            return
        if current.get("Status") in ("exited", "dead") or status == "unhealthy" or time.monotonic() > deadline:
            logs = run(["docker", "logs", "--tail", "50", container], check=False)
            raise AssertionError(f"{container} not healthy (state {current.get('Status')}, health {status})\n"
                                 f"{logs.stdout[-4000:]}{logs.stderr[-4000:]}")
        time.sleep(1)


def image_size_mb(image: str) -> float:
    return int(inspect(image, "{{.Size}}")) / 1e6


def memory_usage(container: str) -> str:
    """`docker stats` memory column, e.g. '41.2MiB / 256MiB'."""
    return run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container]).stdout.strip()
