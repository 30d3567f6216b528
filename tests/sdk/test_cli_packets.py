"""`plasma compile` and `plasma list packets` against a real compiler on port 0 (a stand-in trainer serves real
policy bundles, a real simulator their world models): --json, tables without escape codes, the parity gate,
and packets named after their dataset and task."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from plasma import cli
from plasma.sdk import tasks
from plasma.server import grpc_server
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle
from services.compiler import server as compiler_server
from services.compiler.config import Config as CompilerConfig
from services.simulator import datasets
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from tests.conftest import running
from tests.support import policies, worlds

PLANT = "my-plant"  # logged data of a system no Gymnasium id names


def _add_plant(root: Path) -> None:
    """CartPole's world again, stored as if uploaded as PLANT: a dataset with a name and no environment id."""
    store = worlds.simulator_store(root)
    world = worlds.world("discrete")
    spec = dataclasses.replace(world.spec, env_id="")
    now = Timestamp()
    now.GetCurrentTime()
    store.save_dataset(datasets.describe("ds-plant", spec, world.data, name=PLANT, origin="upload",
                                         parent_dataset_id="", create_time=now), world.data)
    store.save_model(simulator_pb2.WorldModel(model_id="wm-plant", dataset_id="ds-plant", env_spec=spec.to_proto(),
                                              create_time=now), world.model.save)


def _plant_run(run_id: str, task: str | None = None) -> trainer_pb2.Run:
    run = policies.make_run(run_id, "discrete")
    run.model_id = "wm-plant"
    run.env_spec.env_id = ""
    if task is not None:
        run.task.CopyFrom(tasks.parse_task(task, 4))
    return run


@pytest.fixture(scope="module")
def flags(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The CLI's flags to reach a simulator, a stand-in trainer and a compiler, all on port 0."""
    root = tmp_path_factory.mktemp("cli-packets")
    _add_plant(root / "simulator")
    fake = policies.FakeTrainer()
    data = bundle.pack(policies.make_bundle("discrete"))
    fake.add(policies.make_run("run-cartpole", "discrete"), data)
    fake.add(_plant_run("run-plant"), data)
    fake.add(_plant_run("run-plant-track", "track:obs[0]=0.5"), data)

    def trainer() -> tuple[grpc.Server, int, object]:
        server = grpc_server.build_server(4)
        health_servicer = grpc_server.add_health_and_reflection(server, ["plasma.trainer.v1.TrainerService"])
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(fake, server)
        return server, grpc_server.bind(server, "127.0.0.1:0"), health_servicer

    simulator_config = SimulatorConfig(address="127.0.0.1:0", store_dir=root / "simulator")
    with running(lambda: simulator_server.create_server(simulator_config), simulator_server.SERVICE_NAME) as sim, \
            running(trainer, "plasma.trainer.v1.TrainerService") as trainer_address:
        config = CompilerConfig(address="127.0.0.1:0", trainer_address=trainer_address, simulator_address=sim,
                                store_dir=root / "compiler")
        with running(lambda: compiler_server.create_server(config), compiler_server.SERVICE_NAME) as compiler:
            yield ["--simulator", sim, "--trainer", trainer_address, "--compiler", compiler]


def _plasma(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compile_json_is_one_document_with_the_packet_and_its_gate(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _plasma(capsys, "compile", "run-cartpole", "--json", "--min-agreement", "1", *flags)
    assert code == 0, err
    packet = json.loads(out)  # stdout holds the one document and nothing else
    assert packet["packetId"].startswith("pkt-") and packet["runId"] == "run-cartpole"
    assert packet["name"] == "CartPole-v1" and int(packet["version"]) == 1  # int64: a JSON string
    # The gate at 1.0: a precision passes only where it decides as fp32 does on every decisive state.
    assert packet["attempts"] and all(a.get("agreement", 0) == 1.0 for a in packet["attempts"] if a.get("passed"))
    assert all("decision agreement" in a["reason"] for a in packet["attempts"] if not a.get("passed"))
    # Progress went to stderr, every compile step on its own line, then the stage's end.
    steps = [line.split()[1] for line in err.splitlines() if line.startswith("[compile] ")]
    assert steps[:3] == ["fetch:", "world:", "merge:"] and "package:" in steps
    assert err.splitlines()[-1].startswith("[compile] done in ")


def test_packets_from_logged_data_are_named_after_the_dataset_and_task(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _plasma(capsys, "compile", "run-plant", *flags)
    assert code == 0, err
    # Not a terminal: the table is plain text, no escape codes anywhere.
    assert "\x1b" not in out + err
    assert out.startswith("packet pkt-")
    assert "  name" in out and f"{PLANT} v1" in out
    assert "precisions tried (the parity gate)" in out and "int8" in out
    code, out, err = _plasma(capsys, "compile", "run-plant-track", "--json", *flags)
    assert code == 0, err
    assert json.loads(out)["name"] == f"{PLANT}/track-obs0=0.5"
    code, out, _ = _plasma(capsys, "list", "packets", "--json", *flags)
    names = {p["runId"]: p["name"] for p in json.loads(out)["packets"]}
    assert names["run-plant"] == PLANT and names["run-plant-track"] == f"{PLANT}/track-obs0=0.5"
    code, out, _ = _plasma(capsys, "list", "packets", *flags)
    assert code == 0 and out.splitlines()[0] == "packets" and "\x1b" not in out
    assert any(line.split()[1] == f"{PLANT}/track-obs0=0.5" for line in out.splitlines()[2:])


def test_an_explicit_name_wins(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _plasma(capsys, "compile", "run-plant", "--name", "line-3", "--json", *flags)
    assert code == 0, err
    assert json.loads(out)["name"] == "line-3"


def test_default_names() -> None:
    track = tasks.parse_task("track:obs[1]=0.5@2", 4)
    assert compiler_server.default_name(PLANT, "", track) == f"{PLANT}/track-obs1=0.5w2"
    assert compiler_server.default_name("CartPole-v1", "CartPole-v1", tasks.parse_task("environment")) == "CartPole-v1"
    assert compiler_server.default_name("", "CartPole-v1", tasks.parse_task("learned")) == "CartPole-v1/learned"
    assert compiler_server.default_name("", "", None) == "policy"
    assert len(compiler_server.default_name("x" * 128, "", track)) == 128


@pytest.mark.parametrize("value", ["-0.1", "1.5", "most"])
def test_the_parity_gate_takes_a_share(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["compile", "run-1", "--min-agreement", value])
    assert "--min-agreement" in capsys.readouterr().err


def test_the_parity_gate_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["compile", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--min-agreement SHARE the parity gate" in text and "compiler's 0.95" in text
