"""Container end-to-end tests: build the images (make images), run them for real, clean up after.

Skipped only when docker itself is unavailable (no CLI or no engine); everything else is a failure.

Fixtures: `images` (the tag of freshly built images) and `stack` (a ComposeStack: the compose file brought up
for real under a project of its own, on free host ports, with mutual TLS and authorization on as in `make up`;
`stack.client()` is a connected PlasmaClient holding the operator's client certificate). One stack serves the
whole session, since bringing it up costs minutes: a test must not assume the stores are empty, and leaves every
service running and healthy.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from plasma.channels import ClientSecurity
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.local import free_port
from tests.e2e import dockerutil
from tests.e2e.dockerutil import compose, run

SERVICES = ("simulator", "trainer", "compiler", "edge", "registry")
# The services `plasma run` and the other workflow commands take flags for; `plasma rollout` takes --registry.
WORKFLOW_SERVICES = SERVICES[:4]
ROLES = ("operator", "reader")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if dockerutil.FIGURES:
        terminalreporter.section("container figures")
        for name, value in dockerutil.FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def images() -> str:
    """Builds (or confirms up to date) every image with `make images`; returns the tag.
    PLASMA_E2E_BUILD=0 uses the images as they are (e.g. while iterating on these tests)."""
    reason = dockerutil.docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    if os.environ.get("PLASMA_E2E_BUILD", "1") == "0":
        return dockerutil.TAG
    started = time.monotonic()
    done = dockerutil.run(["make", "--no-print-directory", "images"], timeout=3600)
    dockerutil.FIGURES["make images (in the test; a no-op when CI built them first)"] = (
        f"{time.monotonic() - started:.0f} s")
    for line in done.stdout.splitlines():
        if line.startswith("::: images: built in"):
            dockerutil.FIGURES["image build"] = line.removeprefix("::: images: ")
    return dockerutil.TAG


@dataclass
class ComposeStack:
    """A running compose project. Its services require mutual TLS: reach them with `client()` or `endpoints`
    (the operator's certificate), `endpoints_as("reader")`, or `cli_flags()` for a `plasma` subprocess."""

    project: str
    env: dict[str, str]
    # host:port each service is published on, by service name.
    addresses: dict[str, str]
    # The host's copies of the stack's client certificates (deploy/client_certs.sh): certs/<role>/{ca,client,
    # client-key}.pem for role operator and reader.
    certs: Path
    # host port of each service's Prometheus /metrics, by service name.
    metrics_ports: dict[str, int]

    def security(self, role: str = "operator") -> ClientSecurity:
        folder = self.certs / role
        return ClientSecurity(ca=folder / "ca.pem", cert=folder / "client.pem", key=folder / "client-key.pem")

    @property
    def endpoints(self) -> Endpoints:
        return self.endpoints_as("operator")

    def endpoints_as(self, role: str) -> Endpoints:
        return Endpoints(**self.addresses, security=self.security(role))

    def client(self, role: str = "operator", wait_s: float = 60.0) -> PlasmaClient:
        """A PlasmaClient to the four workflow services (and, through `.rollout`, the registry) over mutual TLS as
        `role`, connected (waited ready) before it is returned; close it (or use it in a `with`)."""
        client = PlasmaClient(self.endpoints_as(role))
        try:
            client.wait_ready(wait_s)
        except BaseException:
            client.close()
            raise
        return client

    def cli_flags(self, role: str = "operator", services: tuple[str, ...] = WORKFLOW_SERVICES) -> list[str]:
        """`plasma` command-line flags for the addresses of `services` (`("registry",)` for `plasma rollout`) and
        `role`'s TLS settings."""
        security = self.security(role)
        flags = [f"--{service}={self.addresses[service]}" for service in services]
        return [*flags, f"--tls-ca={security.ca}", f"--tls-cert={security.cert}", f"--tls-key={security.key}"]

    def container(self, service: str) -> str:
        return compose(self.env, "ps", "-q", service).stdout.strip()

    def logs(self) -> str:
        return _last_logs(self.env)

    def recreate(self, service: str) -> None:
        """A new container for the service on the same named volume, then wait for the whole stack."""
        compose(self.env, "up", "--detach", "--no-deps", "--force-recreate", service)
        compose(self.env, "up-wait", "300")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the test item, so that `stack` can tell whether the test it served failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@contextlib.contextmanager
def compose_project(images: str, certs: Path, *, prefix: str = "plasma-e2e", cluster: bool = False,
                    settings: Mapping[str, str] | None = None,
                    services: tuple[str, ...] = SERVICES) -> Iterator[ComposeStack]:
    """deploy/docker-compose.yml (with docker-compose.cluster.yml: `cluster`) up and healthy under a fresh project
    on free ports, with `services` (and what they depend on) started and `settings` in the environment. At the end
    each Plasma service among them must drain on SIGTERM and exit 0 (stopped, not killed at the end of its grace
    period), `down -v` runs whatever happened, and nothing of the project may be left behind."""
    project = f"{prefix}-{uuid.uuid4().hex[:8]}"
    checked = [service for service in services if service in SERVICES]
    ports = {service: free_port() for service in SERVICES}
    metrics_ports = {service: free_port() for service in SERVICES}
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "PLASMA_TAG": images,
           "PLASMA_CLUSTER": "1" if cluster else "0", "PLASMA_RAY_DASHBOARD_PORT": str(free_port()),
           **{f"PLASMA_{service.upper()}_METRICS_PORT": str(port) for service, port in metrics_ports.items()},
           **{f"PLASMA_{service.upper()}_PORT": str(port) for service, port in ports.items()}, **(settings or {})}
    exits: dict[str, int] = {}
    try:
        dockerutil.FIGURES["compose"] = compose(env, "variant").stdout.strip()
        started = time.monotonic()
        compose(env, "up-wait", "600", *(() if services == SERVICES else services))
        dockerutil.FIGURES[f"compose up to healthy ({project})"] = f"{time.monotonic() - started:.0f} s"
        for role in ROLES:
            run(["deploy/client_certs.sh", role, str(certs / role)], env=env)
        addresses = {service: f"127.0.0.1:{port}" for service, port in ports.items()}
        served = ComposeStack(project, env, addresses, certs, metrics_ports)
        yield served
        containers = {service: served.container(service) for service in checked}
        compose(env, "stop", "--timeout", "30")
        exits = {service: dockerutil.state(container)["ExitCode"] for service, container in containers.items()}
    except BaseException:
        print(_last_logs(env))
        raise
    finally:
        compose(env, "down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
    left = dockerutil.project_leftovers(project)
    assert not any(left.values()), f"left behind by `down -v`: {left}"
    assert exits == dict.fromkeys(checked, 0), f"exit codes after SIGTERM (0: drained and stopped): {exits}"


@pytest.fixture(scope="session")
def compose_stack(images: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """The whole suite (compose_project), once for every test that needs it."""
    with compose_project(images, tmp_path_factory.mktemp("compose-certs")) as served:
        yield served


@pytest.fixture
def stack(compose_stack: ComposeStack, request: pytest.FixtureRequest) -> Iterator[ComposeStack]:
    """The session's compose stack (compose_stack); the services' last log lines are printed after a test that
    failed with it."""
    yield compose_stack
    reports = request.node.stash.get(_REPORTS, {})
    if any(report.failed for report in reports.values()):
        print(compose_stack.logs())


def _last_logs(env: dict[str, str]) -> str:
    """The last log lines of every service of the project in `env`."""
    return compose(env, "logs", "--no-color", "--tail", "60", check=False).stdout[-20000:]
