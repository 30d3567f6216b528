"""TLS and mutual TLS on a real server (the edge runtime, on port 0) with certificates from scripts/make_certs.py:
what connects, what is refused at the handshake, health and reflection over TLS, and the settings' errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from edge_runtime import server as edge_server
from edge_runtime.config import Config as EdgeConfig
from plasma import channels
from plasma.channels import ClientSecurity
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.server import grpc_server
from plasma.server.security import ServerSecurity
from plasma.server.settings import ConfigError
from scripts import make_certs
from tests.conftest import running
from tests.support import certs

T = 10.0


def edge_at(tmp_path: Path, security: ServerSecurity) -> Iterator[str]:
    config = EdgeConfig(address="127.0.0.1:0", store_dir=tmp_path / "edge", security=security)
    with running(lambda: edge_server.create_server(config), edge_server.SERVICE_NAME) as address:
        yield address


@pytest.fixture
def tls_edge(tmp_path: Path, dev_certs: Path) -> Iterator[str]:
    """TLS without client certificates (and no authorization)."""
    yield from edge_at(tmp_path, certs.server(dev_certs, "edge", mutual=False))


@pytest.fixture
def mtls_edge(tmp_path: Path, dev_certs: Path) -> Iterator[str]:
    yield from edge_at(tmp_path, certs.server(dev_certs, "edge"))


def status(address: str, security: ClientSecurity | None) -> edge_pb2.GetStatusResponse:
    with channels.channel(address, security) as ch:
        return edge_pb2_grpc.EdgeRuntimeServiceStub(ch).GetStatus(edge_pb2.GetStatusRequest(), timeout=T)


def refused(address: str, security: ClientSecurity | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        status(address, security)
    return caught.value


def test_tls_serves_a_client_that_trusts_the_ca(tls_edge: str, dev_certs: Path) -> None:
    assert not status(tls_edge, certs.client(dev_certs)).serving  # no packet yet: answered, over TLS


def test_a_plaintext_client_is_refused_by_a_tls_server(tls_edge: str) -> None:
    assert refused(tls_edge, None).code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_trusts_another_ca_refuses_the_server(tls_edge: str, dev_certs: Path, tmp_path: Path) -> None:
    other = certs.make(tmp_path / "other")
    assert refused(tls_edge, certs.client(other)).code() == grpc.StatusCode.UNAVAILABLE


def test_the_server_name_override_is_checked_against_the_certificate(tls_edge: str, dev_certs: Path) -> None:
    assert not status(tls_edge, certs.client(dev_certs, server_name="edge")).serving
    wrong = certs.client(dev_certs, server_name="simulator")  # a name the edge's certificate does not carry
    assert refused(tls_edge, wrong).code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_serves_a_client_certificate_from_the_ca(mtls_edge: str, dev_certs: Path) -> None:
    assert not status(mtls_edge, certs.client(dev_certs, "reader")).serving


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_edge: str, dev_certs: Path) -> None:
    assert refused(mtls_edge, certs.client(dev_certs)).code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_certificate_from_another_ca(mtls_edge: str, dev_certs: Path,
                                                                 tmp_path: Path) -> None:
    other = certs.make(tmp_path / "other")
    # Trusts the right server CA, but its own certificate is signed by a CA the server does not know.
    foreign = ClientSecurity(ca=dev_certs / "ca" / "ca.pem", cert=other / "operator" / "client.pem",
                             key=other / "operator" / "client-key.pem")
    assert refused(mtls_edge, foreign).code() == grpc.StatusCode.UNAVAILABLE


def test_health_and_reflection_answer_over_mutual_tls_without_a_role(mtls_edge: str, dev_certs: Path) -> None:
    # A service's own server certificate carries no role: enough for probes and reflection, nothing else.
    with channels.channel(mtls_edge, certs.client(dev_certs, "edge/server")) as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=T)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        listing = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=T)
        names = {service.name for reply in listing for service in reply.list_services_response.service}
        assert edge_server.SERVICE_NAME in names


def test_the_edge_health_check_speaks_tls_from_the_client_settings(mtls_edge: str, dev_certs: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_runtime import healthcheck

    assert healthcheck.main(["--address", mtls_edge]) == 1  # plaintext against TLS: not healthy
    monkeypatch.setenv("PLASMA_TLS_CA", str(dev_certs / "ca" / "ca.pem"))
    monkeypatch.setenv("PLASMA_TLS_CERT", str(dev_certs / "edge" / "server.pem"))
    monkeypatch.setenv("PLASMA_TLS_KEY", str(dev_certs / "edge" / "server-key.pem"))
    assert healthcheck.main(["--address", mtls_edge]) == 0


def test_the_service_health_check_speaks_tls_from_the_client_settings(mtls_edge: str, dev_certs: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy import healthcheck  # the script the simulator, trainer and compiler images run

    monkeypatch.setenv("PLASMA_EDGE_ADDRESS", mtls_edge)
    assert healthcheck.main(["healthcheck.py", "PLASMA_EDGE_ADDRESS"]) == 1
    monkeypatch.setenv("PLASMA_TLS_CA", str(dev_certs / "ca" / "ca.pem"))
    monkeypatch.setenv("PLASMA_TLS_CERT", str(dev_certs / "edge" / "server.pem"))
    monkeypatch.setenv("PLASMA_TLS_KEY", str(dev_certs / "edge" / "server-key.pem"))
    assert healthcheck.main(["healthcheck.py", "PLASMA_EDGE_ADDRESS"]) == 0


def test_server_settings_come_from_one_naming_scheme(dev_certs: Path) -> None:
    edge = dev_certs / "edge"
    env = {"PLASMA_EDGE_TLS_CERT": str(edge / "server.pem"), "PLASMA_EDGE_TLS_KEY": str(edge / "server-key.pem"),
           "PLASMA_EDGE_TLS_CLIENT_CA": str(dev_certs / "ca" / "ca.pem")}
    security = EdgeConfig.from_env(env).security
    assert security.tls and security.authorizes and security.client_ca == dev_certs / "ca" / "ca.pem"
    assert not EdgeConfig.from_env({}).security.tls  # nothing set: plaintext, for loopback


@pytest.mark.parametrize(("env", "named"), [
    ({"PLASMA_EDGE_TLS_CERT": "{edge}/server.pem"}, "PLASMA_EDGE_TLS_KEY"),
    ({"PLASMA_EDGE_TLS_CLIENT_CA": "{ca}"}, "PLASMA_EDGE_TLS_CERT"),
    ({"PLASMA_EDGE_TLS_CERT": "{edge}/missing.pem", "PLASMA_EDGE_TLS_KEY": "{edge}/server-key.pem"},
     "PLASMA_EDGE_TLS_CERT"),
])
def test_a_half_given_server_setting_names_its_variable(dev_certs: Path, env: dict[str, str], named: str) -> None:
    paths = {"edge": str(dev_certs / "edge"), "ca": str(dev_certs / "ca" / "ca.pem")}
    with pytest.raises(ConfigError, match=named):
        ServerSecurity.from_env({k: v.format(**paths) for k, v in env.items()}, "edge")


@pytest.mark.parametrize(("env", "named"), [
    ({"PLASMA_TLS_CERT": "{op}/client.pem"}, "PLASMA_TLS_KEY"),
    ({"PLASMA_TLS_CERT": "{op}/client.pem", "PLASMA_TLS_KEY": "{op}/client-key.pem"}, "PLASMA_TLS_CA"),
    ({"PLASMA_TOKEN_FILE": "{op}/client.pem"}, "PLASMA_TLS_CA"),
])
def test_a_half_given_client_setting_names_its_variable(dev_certs: Path, env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        ClientSecurity.from_env({k: v.format(op=dev_certs / "operator") for k, v in env.items()})


def test_make_certs_keeps_current_certificates_and_renews_what_changed(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    first = make_certs.make(out)
    assert "ca/ca.pem" in first and "operator/client.pem" in first and "simulator/server.pem" in first
    assert oct((out / "ca-key" / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct((out / "trainer" / "client-key.pem").stat().st_mode & 0o777) == "0o600"
    assert make_certs.make(out) == []  # idempotent
    assert sorted(make_certs.make(out, extra_sans=["plasma.example"])) == [
        f"{service}/server.pem" for service in sorted(make_certs.SERVICES)]
    (out / "reader" / "client.pem").unlink()
    assert make_certs.make(out, extra_sans=["plasma.example"]) == ["reader/client.pem"]
    os.remove(out / "ca" / "ca.pem")  # a new CA re-issues everything it signed
    assert len(make_certs.make(out, extra_sans=["plasma.example"])) == 1 + len(make_certs.leaves(out, []))


def test_a_key_that_is_not_the_certificate_s_stops_the_server_with_both_named(dev_certs: Path) -> None:
    security = ServerSecurity(cert=dev_certs / "edge" / "server.pem", key=dev_certs / "simulator" / "server-key.pem")
    server = grpc_server.build_server(1, security=security)
    with pytest.raises(ConfigError, match=r"edge/server\.pem and key .*simulator/server-key\.pem"):
        grpc_server.bind(server, "127.0.0.1:0", security)
