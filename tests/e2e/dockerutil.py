"""Helpers for the container end-to-end tests: containers, images, volumes and networks through the Docker
Engine API (the `docker` SDK for Python); `docker compose` through deploy/compose.sh (the SDK has no compose),
and `make`, through `run`."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException
from docker.models.containers import Container

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.sh"
TAG = os.environ.get("PLASMA_TAG", "latest")
# How long one Engine API request may take (image inspection and container stops included).
_API_TIMEOUT_S = 120

# Figures worth reading in the CI log (image sizes, time to healthy, memory); printed at the end of the run.
FIGURES: dict[str, str] = {}


class CommandError(AssertionError):
    """A make/compose command failed; the message carries its output."""


@functools.cache
def engine() -> docker.DockerClient:
    """The Docker Engine of DOCKER_HOST (or the local socket), shared by every test."""
    return docker.from_env(timeout=_API_TIMEOUT_S)


def docker_unavailable() -> str | None:
    """Why docker cannot be used here, or None when an engine answers and the CLI (for compose) is present."""
    if shutil.which("docker") is None:
        return "docker is unavailable: no docker CLI on PATH (deploy/compose.sh runs compose through it)"
    try:
        engine().ping()
    except DockerException as exc:
        return f"docker is unavailable: no engine answers ({str(exc)[:200]})"
    return None


def run(args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600,
        check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command (make, compose) from the repository root, bytes on stdin if given; on failure raises with
    its output."""
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


def container(name_or_id: str) -> Container:
    return engine().containers.get(name_or_id)


def attrs(name_or_id: str) -> dict[str, Any]:
    """What `docker inspect` shows for a container or, failing that, an image."""
    try:
        return container(name_or_id).attrs
    except docker.errors.NotFound:
        return engine().images.get(name_or_id).attrs


def state(name_or_id: str) -> dict[str, Any]:
    return container(name_or_id).attrs["State"]


def wait_healthy(name_or_id: str, timeout_s: float = 300) -> None:
    """Polls the container's HEALTHCHECK status until healthy; fails at once if it exits or turns unhealthy."""
    deadline = time.monotonic() + timeout_s
    watched = container(name_or_id)
    while True:
        watched.reload()
        current = watched.attrs["State"]
        status = (current.get("Health") or {}).get("Status")
        if status == "healthy":
            return
        if current.get("Status") in ("exited", "dead") or status == "unhealthy" or time.monotonic() > deadline:
            logs = watched.logs(tail=50).decode(errors="replace")
            raise AssertionError(f"{name_or_id} not healthy (state {current.get('Status')}, health {status})\n"
                                 f"{logs[-8000:]}")
        time.sleep(1)


def image_size_mb(image: str) -> float:
    return int(engine().images.get(image).attrs["Size"]) / 1e6


def memory_usage(name_or_id: str) -> str:
    """Memory in use and the limit, as `docker stats` shows them, e.g. '41.2MiB / 256MiB' (page cache not
    counted, like the CLI)."""
    stats: dict[str, Any] = container(name_or_id).stats(stream=False)  # type: ignore[assignment]
    memory = stats["memory_stats"]
    details = memory.get("stats", {})
    cache = details.get("total_inactive_file", details.get("inactive_file", 0))
    return f"{(memory['usage'] - cache) / 2**20:.1f}MiB / {memory['limit'] / 2**20:.0f}MiB"


def project_leftovers(project: str) -> dict[str, list[str]]:
    """The containers, volumes and networks a compose project still has (none after `down --volumes`)."""
    label: dict[str, str | list[str] | bool] = {"label": f"com.docker.compose.project={project}"}
    api = engine()
    return {"container": [str(c.name) for c in api.containers.list(all=True, filters=label)],
            "volume": [str(v.name) for v in api.volumes.list(filters=label)],
            "network": [str(n.name) for n in api.networks.list(filters=label)]}
