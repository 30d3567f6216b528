"""Observability's settings: off by default with nothing imported, the variables checked, and tracing skipped
with a line that says so where opentelemetry is not installed (the edge's image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from plasma.server.observability import Observability
from plasma.server.settings import ConfigError

REPO_ROOT = str(Path(__file__).resolve().parents[2])


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=300, capture_output=True, text=True)


def test_off_every_service_serves_without_importing_prometheus_or_opentelemetry(tmp_path: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from plasma.server import grpc_server
from plasma.server.observability import Observability
from edge_runtime import server as edge, config as edge_config
from services.simulator import server as simulator, config as simulator_config
from services.trainer import server as trainer, config as trainer_config
from services.compiler import server as compiler, config as compiler_config
root = Path({str(tmp_path)!r})
built = [
    edge.build(edge_config.Config(address="127.0.0.1:0", store_dir=root / "edge"),
               Observability.from_env({{}}, "edge")).server,
    simulator.create_server(simulator_config.Config(address="127.0.0.1:0", store_dir=root / "simulator"),
                            Observability.from_env({{}}, "simulator"))[0],
    trainer.create_server(trainer_config.Config(address="127.0.0.1:0", store_dir=root / "trainer"),
                          observability=Observability.from_env({{}}, "trainer"))[0],
    compiler.create_server(compiler_config.Config(address="127.0.0.1:0", store_dir=root / "compiler"),
                           observability=Observability.from_env({{}}, "compiler"))[0],
]
for server in built:
    server.start()
    server.stop(None).wait()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("opentelemetry", "prometheus_client")
                or m in ("plasma.server.tracing", "plasma.server.rpc_metrics", "plasma.server.metrics_endpoint"))
sys.exit(loaded[:5] or 0)
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr[-3000:]


def test_without_opentelemetry_tracing_is_skipped_with_a_log_line() -> None:
    code = """
import sys
sys.modules["opentelemetry"] = None  # as on an edge image without it: every import of it fails
from plasma import log
from plasma.server.observability import Observability
log.configure()
observability = Observability.from_env({"PLASMA_OTEL_EXPORTER": "otlp"}, "edge")
assert observability.interceptors() == [], observability.interceptors()
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PLASMA_OTEL_EXPORTER=otlp but opentelemetry is not installed here: edge runs without tracing" \
        in result.stdout


@pytest.mark.parametrize("exporter", ["console", "otlp", "OTLP"])
def test_an_exporter_turns_tracing_on(exporter: str) -> None:
    observability = Observability.from_env({"PLASMA_OTEL_EXPORTER": exporter}, "simulator")
    try:
        assert len(observability.interceptors()) == 1
        plain = grpc.insecure_channel("127.0.0.1:1")
        assert observability.channel(plain) is not plain  # wrapped by the client interceptor
    finally:
        observability.stop()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PLASMA_OTEL_EXPORTER", "jaeger"), ("PLASMA_TRAINER_METRICS_ADDRESS", "9464")],
)
def test_bad_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Observability.from_env({variable: value}, "trainer")


def test_a_metrics_port_in_use_names_the_variable() -> None:
    first = Observability("compiler", "127.0.0.1:0")
    port = first.start()
    try:
        with pytest.raises(ConfigError, match="PLASMA_COMPILER_METRICS_ADDRESS"):
            Observability("compiler", f"127.0.0.1:{port}").start()
    finally:
        first.stop()
