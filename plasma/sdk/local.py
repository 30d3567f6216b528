"""Runs the suite as local processes (the four services and the packet registry): what `plasma demo`, `plasma serve`
and the pipeline tests use.

Plaintext on loopback by default; with `certs` (a `make certs` directory, layout in scripts/make_certs.py) every
service serves mutual TLS with authorization on, the trainer and compiler call the others with their own client
certificates, and the stack's endpoints carry the operator's.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from plasma import channels, signing
from plasma.sdk.client import Endpoints

_MODULES = {
    "simulator": "services.simulator.server",
    "trainer": "services.trainer.server",
    "compiler": "services.compiler.server",
    "edge": "edge_runtime.server",
    "registry": "services.registry.server",
}
# The processes a LocalStack runs, by the names Endpoints gives their addresses.
SERVICES = tuple(_MODULES)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Client and server TLS settings a shell may hold (e.g. for the compose stack); a plaintext stack drops them.
_SECURITY_VARIABLE = re.compile(
    r"PLASMA_(TLS_\w+|TOKEN_FILE|(SIMULATOR|TRAINER|COMPILER|EDGE|REGISTRY)_(TLS_\w+|AUTH_TOKENS))")


def wait_serving(address: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None,
                 security: channels.ClientSecurity | None = None) -> None:
    """Polls the standard health service until it answers SERVING."""
    deadline = time.monotonic() + timeout_s
    with channels.channel(address, security) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"service at {address} exited with code {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"service at {address} not SERVING after {timeout_s:.0f} s")


@dataclass
class LocalStack:
    """The service processes on free loopback ports, sharing one store root."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    endpoints: Endpoints = field(default_factory=Endpoints)

    # Fixed ports (e.g. the services' defaults, for `plasma serve`); free ones when empty.
    ports: dict[str, int] = field(default_factory=dict)
    # A `make certs` directory: mutual TLS and authorization on every service. None: plaintext on loopback.
    certs: Path | None = None

    def start(self, timeout_s: float = 120.0) -> Endpoints:
        ports = {name: self.ports.get(name) or free_port() for name in _MODULES}
        address = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        client = self._client_security("operator")
        self.endpoints = Endpoints(**address, security=client)
        env = {
            **{key: value for key, value in os.environ.items() if not _SECURITY_VARIABLE.fullmatch(key)},
            "PLASMA_SIMULATOR_ADDRESS": address["simulator"],
            "PLASMA_SIMULATOR_STORE": str(self.root / "simulator"),
            "PLASMA_TRAINER_ADDRESS": address["trainer"],
            "PLASMA_TRAINER_STORE": str(self.root / "trainer"),
            "PLASMA_SIMULATOR_TARGET": address["simulator"],
            "PLASMA_COMPILER_ADDRESS": address["compiler"],
            "PLASMA_COMPILER_STORE": str(self.root / "compiler"),
            "PLASMA_TRAINER_TARGET": address["trainer"],
            "PLASMA_EDGE_ADDRESS": address["edge"],
            "PLASMA_EDGE_STORE": str(self.root / "edge"),
            "PLASMA_REGISTRY_ADDRESS": address["registry"],
            "PLASMA_REGISTRY_STORE": str(self.root / "registry"),
            "PLASMA_COMPILER_TARGET": address["compiler"],
            # One key pair per stack root: the compiler signs with it, the edge trusts its public half.
            **signing.dev_key_env(self.root / "keys"),
            **self._server_tls_env(),
            **self.env,
        }
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            for name, module in _MODULES.items():
                with open(logs / f"{name}.log", "ab") as log_file:
                    self.processes[name] = subprocess.Popen(
                        [sys.executable, "-m", module], env={**env, **self._caller_tls_env(name)}, stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
            for name, process in self.processes.items():
                wait_serving(address[name], timeout_s, process, client)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _client_security(self, identity: str) -> channels.ClientSecurity | None:
        if self.certs is None:
            return None
        return channels.ClientSecurity(ca=self.certs / "ca" / "ca.pem", cert=self.certs / identity / "client.pem",
                                       key=self.certs / identity / "client-key.pem")

    def _server_tls_env(self) -> dict[str, str]:
        if self.certs is None:
            return {}
        env: dict[str, str] = {}
        for name in _MODULES:
            prefix, own = f"PLASMA_{name.upper()}_", self.certs / name
            env |= {prefix + "TLS_CERT": str(own / "server.pem"), prefix + "TLS_KEY": str(own / "server-key.pem"),
                    prefix + "TLS_CLIENT_CA": str(self.certs / "ca" / "ca.pem")}
        return env

    def _caller_tls_env(self, name: str) -> dict[str, str]:
        """The client settings of a service that calls others (trainer, compiler, registry): its own client
        certificate."""
        security = self._client_security(name) if name in ("trainer", "compiler", "registry") else None
        if security is None:
            return {}
        return {"PLASMA_TLS_CA": str(security.ca), "PLASMA_TLS_CERT": str(security.cert),
                "PLASMA_TLS_KEY": str(security.key)}

    def stop(self, grace_s: float = 15.0) -> dict[str, int]:
        """SIGTERM every service, wait for graceful exits, kill stragglers; returns exit codes."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        self.processes.clear()
        return codes

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
