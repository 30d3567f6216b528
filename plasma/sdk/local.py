"""Runs the four services as local processes: what `plasma demo` and the pipeline test use."""

from __future__ import annotations

import os
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
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_serving(address: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Polls the standard health service until it answers SERVING."""
    deadline = time.monotonic() + timeout_s
    with channels.channel(address) as channel:
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
    """Four service processes on free loopback ports, sharing one store root."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    endpoints: Endpoints = field(default_factory=Endpoints)

    # Fixed ports (e.g. the services' defaults, for `plasma serve`); free ones when empty.
    ports: dict[str, int] = field(default_factory=dict)

    def start(self, timeout_s: float = 120.0) -> Endpoints:
        ports = {name: self.ports.get(name) or free_port() for name in _MODULES}
        address = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        self.endpoints = Endpoints(**address)
        env = {
            **os.environ,
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
            # One key pair per stack root: the compiler signs with it, the edge trusts its public half.
            **signing.dev_key_env(self.root / "keys"),
            **self.env,
        }
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            for name, module in _MODULES.items():
                with open(logs / f"{name}.log", "ab") as log_file:
                    self.processes[name] = subprocess.Popen(
                        [sys.executable, "-m", module], env=env, stdout=log_file, stderr=subprocess.STDOUT
                    )
            for name, process in self.processes.items():
                wait_serving(address[name], timeout_s, process)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

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
