"""Per-role authorization on the four real services (port 0, mutual TLS, certificates from scripts/make_certs.py):
every RPC in the protos has a role in plasma.server.roles, each role is allowed and refused as the table says,
with UNAUTHENTICATED / PERMISSION_DENIED and messages that name what is needed; bearer tokens; health open."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_runtime import server as edge_server
from edge_runtime.config import Config as EdgeConfig
from plasma import channels
from plasma.channels import ClientSecurity
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.server import grpc_server, tokens
from plasma.server.roles import OPERATOR, READER, ROLES, Role
from plasma.server.security import ServerSecurity
from services.compiler import server as compiler_server
from services.compiler.config import Config as CompilerConfig
from services.registry import server as registry_server
from services.registry.config import Config as RegistryConfig
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer import server as trainer_server
from services.trainer.config import Config as TrainerConfig
from tests.conftest import running
from tests.support import certs

T = 10.0
REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
REPO = Path(__file__).resolve().parents[2]


def described_methods() -> dict[str, Any]:
    """Every method of every service in the generated stubs (plasma/<area>/v1/*_pb2.py), by full name."""
    methods = {}
    for module_file in sorted(REPO.glob("plasma/*/v1/*_pb2.py")):
        module = importlib.import_module(".".join(module_file.relative_to(REPO).with_suffix("").parts))
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods[f"/{service.full_name}/{method.name}"] = method
    return methods


METHODS = described_methods()


def test_every_rpc_in_the_protos_has_a_role_and_the_table_names_no_other() -> None:
    assert len(METHODS) >= 31
    assert sorted(set(METHODS) - set(ROLES)) == [], "RPCs with no role: add them to plasma.server.roles.ROLES"
    assert sorted(set(ROLES) - set(METHODS)) == [], "roles for RPCs that do not exist"


def test_the_table_gives_the_issue_s_operator_and_reader_rpcs_their_roles() -> None:
    short = {name.rpartition("/")[2]: role for name, role in ROLES.items()}
    for name in ("LoadPacket", "Rollback", "CancelSimulation", "Train", "Compile", "StartSimulation",
                 "CollectTransitions", "UploadTransitions", "FitWorldModel"):
        assert short[name] == OPERATOR, name
    for name, role in short.items():
        if name.startswith(("Get", "List", "Export", "Download", "Watch")) or name in ("Act", "Control", "Subscribe"):
            assert role == READER, name


def invoke(ch: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.RpcError | None:
    """Calls `method` with an empty request (or an empty request stream); returns the error it ends with, if any."""
    described = METHODS[method]
    shape = ("stream" if described.client_streaming else "unary", "stream" if described.server_streaming else "unary")
    kind = "_".join(shape)
    request: Any = iter(()) if described.client_streaming else b""
    try:
        result = getattr(ch, kind)(method)(request, timeout=T, metadata=metadata)
        if described.server_streaming:
            list(result)
    except grpc.RpcError as error:
        return error
    return None


def call(ch: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    error = invoke(ch, method, metadata)
    return grpc.StatusCode.OK if error is None else error.code()


def refusal(ch: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.RpcError:
    error = invoke(ch, method, metadata)
    assert error is not None, f"{method} was not refused"
    return error


@pytest.fixture(scope="module")
def services(dev_certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The five services with mutual TLS and authorization; the trainer, compiler and registry call the others with
    their own client certificates (operator, reader, reader)."""
    root = tmp_path_factory.mktemp("auth-services")
    sim_config = SimulatorConfig(address="127.0.0.1:0", store_dir=root / "simulator",
                                 security=certs.server(dev_certs, "simulator"))
    with running(lambda: simulator_server.create_server(sim_config), simulator_server.SERVICE_NAME) as simulator:
        trainer_config = TrainerConfig(address="127.0.0.1:0", simulator_address=simulator, store_dir=root / "trainer",
                                       security=certs.server(dev_certs, "trainer"),
                                       client_security=certs.client(dev_certs, "trainer"))
        with running(lambda: trainer_server.create_server(trainer_config), trainer_server.SERVICE_NAME) as trainer:
            compiler_config = CompilerConfig(address="127.0.0.1:0", trainer_address=trainer,
                                             simulator_address=simulator, store_dir=root / "compiler",
                                             security=certs.server(dev_certs, "compiler"),
                                             client_security=certs.client(dev_certs, "compiler"))
            edge_config = EdgeConfig(address="127.0.0.1:0", store_dir=root / "edge",
                                     security=certs.server(dev_certs, "edge"))
            with running(lambda: compiler_server.create_server(compiler_config), compiler_server.SERVICE_NAME) as \
                    compiler, running(lambda: edge_server.create_server(edge_config), edge_server.SERVICE_NAME) as edge:
                # The registry calls the compiler with its own client certificate (reader).
                registry = registry_server.build(RegistryConfig(
                    address="127.0.0.1:0", compiler_address=compiler, store_dir=root / "registry",
                    security=certs.server(dev_certs, "registry"), client_security=certs.client(dev_certs, "registry")))
                registry.start()
                try:
                    yield {"simulator": simulator, "trainer": trainer, "compiler": compiler, "edge": edge,
                           "registry": f"127.0.0.1:{registry.port}"}
                finally:
                    registry.stop(0)


SERVICE_OF = {"SimulatorService": "simulator", "TrainerService": "trainer", "CompilerService": "compiler",
              "EdgeRuntimeService": "edge", "RegistryService": "registry"}


def address_of(services: dict[str, str], method: str) -> str:
    return services[SERVICE_OF[method.split("/")[1].rpartition(".")[2]]]


@pytest.mark.parametrize("identity", ["operator", "reader", "trainer", "compiler"])
def test_each_client_certificate_is_allowed_exactly_what_its_role_allows(
    services: dict[str, str], dev_certs: Path, identity: str
) -> None:
    role = Role.parse({"trainer": "operator", "compiler": "reader"}.get(identity, identity))
    security = certs.client(dev_certs, identity)
    outcomes = {}
    for method in ROLES:
        with channels.channel(address_of(services, method), security) as ch:
            outcomes[method] = call(ch, method)
    allowed = {m for m, needed in ROLES.items() if role >= needed}
    # Allowed: the call reached its handler, which answered (an empty request is mostly INVALID_ARGUMENT).
    unreached = (*REFUSALS, grpc.StatusCode.UNAVAILABLE)
    assert {m: outcomes[m] for m in allowed if outcomes[m] in unreached} == {}, "refused though the role allows it"
    assert {m: outcomes[m] for m in set(ROLES) - allowed if outcomes[m] != grpc.StatusCode.PERMISSION_DENIED} == {}


def test_a_reader_refused_an_operator_rpc_is_told_the_role_needed_and_its_own(
    services: dict[str, str], dev_certs: Path
) -> None:
    method = "/plasma.edge.v1.EdgeRuntimeService/Rollback"
    with channels.channel(services["edge"], certs.client(dev_certs, "reader")) as ch:
        error = refusal(ch, method)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == ("Rollback needs the operator role; caller 'reader' (client certificate) has the "
                               "reader role")


def test_a_certificate_without_a_role_may_probe_but_not_call(services: dict[str, str], dev_certs: Path) -> None:
    with channels.channel(services["simulator"], certs.client(dev_certs, "simulator/server")) as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=T)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        error = refusal(ch, "/plasma.simulator.v1.SimulatorService/ListDatasets")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "ListDatasets needs the reader role; caller 'simulator' (client certificate) has no role" in error.details()


def test_a_method_missing_from_the_table_is_refused(dev_certs: Path, tmp_path: Path) -> None:
    server = grpc_server.build_server(2, security=certs.server(dev_certs, "edge"))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "plasma.test.v1.HiddenService", {"Do": grpc.unary_unary_rpc_method_handler(lambda request, context: b"")})])
    port = grpc_server.bind(server, "127.0.0.1:0", certs.server(dev_certs, "edge"))
    server.start()
    try:
        with channels.channel(f"127.0.0.1:{port}", certs.client(dev_certs, "operator")) as ch, \
                pytest.raises(grpc.RpcError) as caught:
            ch.unary_unary("/plasma.test.v1.HiddenService/Do")(b"", timeout=T)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "in no role table" in caught.value.details()
    finally:
        server.stop(None).wait()


# Bearer tokens: TLS without client certificates, a tokens file of hashes.

@pytest.fixture
def token_edge(dev_certs: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    issued = {role.label: tokens.new(role, f"{role.label}-bot") for role in Role}
    (tmp_path / "tokens").write_text("# role name hash\n" + "\n".join(line for _, line in issued.values()) + "\n")
    config = EdgeConfig(address="127.0.0.1:0", store_dir=tmp_path / "edge",
                        security=ServerSecurity.from_env({
                            "PLASMA_EDGE_TLS_CERT": str(dev_certs / "edge" / "server.pem"),
                            "PLASMA_EDGE_TLS_KEY": str(dev_certs / "edge" / "server-key.pem"),
                            "PLASMA_EDGE_AUTH_TOKENS": str(tmp_path / "tokens")}, "edge"))
    with running(lambda: edge_server.create_server(config), edge_server.SERVICE_NAME) as address:
        yield address, {role: token for role, (token, _) in issued.items()}


def edge_call(address: str, security: ClientSecurity, method: str,
              metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    with channels.channel(address, security) as ch:
        return call(ch, f"/plasma.edge.v1.EdgeRuntimeService/{method}", metadata)


def test_bearer_tokens_carry_their_roles(token_edge: tuple[str, dict[str, str]], dev_certs: Path) -> None:
    address, issued = token_edge
    reader, operator = (certs.client(dev_certs, token=issued[role]) for role in ("reader", "operator"))
    assert edge_call(address, reader, "GetStatus") == grpc.StatusCode.OK
    assert edge_call(address, reader, "Rollback") == grpc.StatusCode.PERMISSION_DENIED
    assert edge_call(address, operator, "Rollback") not in REFUSALS
    with channels.channel(address, reader) as ch:
        error = refusal(ch, "/plasma.edge.v1.EdgeRuntimeService/LoadPacket")
    assert error.details() == ("LoadPacket needs the operator role; caller 'reader-bot' (bearer token) has the "
                               "reader role")


def test_a_call_without_a_token_or_with_an_unknown_one_is_unauthenticated(
    token_edge: tuple[str, dict[str, str]], dev_certs: Path
) -> None:
    address, _ = token_edge
    with channels.channel(address, certs.client(dev_certs)) as ch:
        missing = refusal(ch, "/plasma.edge.v1.EdgeRuntimeService/GetStatus")
        unknown = refusal(ch, "/plasma.edge.v1.EdgeRuntimeService/GetStatus", (("authorization", "Bearer nope"),))
        malformed = refusal(ch, "/plasma.edge.v1.EdgeRuntimeService/GetStatus", (("authorization", "Basic eA=="),))
        # Probes need no identity.
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=T)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert {e.code() for e in (missing, unknown, malformed)} == {grpc.StatusCode.UNAUTHENTICATED}
    assert missing.details().startswith("GetStatus needs the reader role and the call carries no identity")
    assert "not recognized" in unknown.details() and "not recognized" in malformed.details()


def test_a_token_file_sent_by_the_sdk_settings_authorizes(token_edge: tuple[str, dict[str, str]], dev_certs: Path,
                                                          tmp_path: Path) -> None:
    address, issued = token_edge
    (tmp_path / "token").write_text(issued["operator"] + "\n")
    security = ClientSecurity.from_env({"PLASMA_TLS_CA": str(dev_certs / "ca" / "ca.pem"),
                                        "PLASMA_TOKEN_FILE": str(tmp_path / "token")})
    assert security is not None and security.token == issued["operator"]
    assert "token" not in repr(security).replace("token=", "")  # never printed
    with channels.channel(address, security) as ch:
        stub = edge_pb2_grpc.EdgeRuntimeServiceStub(ch)
        assert not stub.GetStatus(edge_pb2.GetStatusRequest(), timeout=T).serving


def test_a_tokens_file_line_that_does_not_parse_is_named_without_its_content(tmp_path: Path) -> None:
    token, line = tokens.new(Role.OPERATOR, "ci")
    (tmp_path / "tokens").write_text(f"{line}\nreader ci {token}\n")
    with pytest.raises(ValueError, match="line 2") as caught:
        tokens.Tokens.load(tmp_path / "tokens")
    assert token not in str(caught.value)
    (tmp_path / "tokens").write_text(f"{line}\n")
    holder = tokens.Tokens.load(tmp_path / "tokens").holder(token)
    assert holder is not None and (holder.name, holder.role) == ("ci", Role.OPERATOR)
