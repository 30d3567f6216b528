"""`plasma run` prints the workflow's warnings plainly on stderr, lists them under its summary table, names the reward
source, and carries all of it in --json; the workflow itself is stood in for (its checks: test_checks.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plasma import cli
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2
from plasma.sdk.checks import WorkflowWarning
from plasma.sdk.evaluate import Evaluation
from plasma.sdk.workflow import WorkflowConfig, WorkflowSummary
from plasma.simulator.v1 import simulator_pb2

WARNING = WorkflowWarning("constant_reward", "world model wm-1: every one of the 400 rewards in the data is 1")


class _Client:
    """PlasmaClient's part that `plasma run` calls itself."""

    def __init__(self, *_: Any) -> None: ...

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *_: object) -> None: ...

    def wait_ready(self, _timeout_s: float) -> None: ...


def _summary(cfg: WorkflowConfig) -> WorkflowSummary:
    return WorkflowSummary(
        env_id=cfg.env_id, real_steps_used=400, dataset_id="ds-1", model_id="wm-1", run_id="run-1",
        packet_id="pkt-1", model_metrics=simulator_pb2.WorldModelMetrics(), training_seconds=1.0,
        imagined_return=120.0, whole_path_imagined_return=190.0, audited_step_share=0.6,
        learns_from="learned from the data (the world model's reward and termination heads)",
        packet=compiler_pb2.Packet(), served=edge_pb2.PacketInfo(), seed=cfg.seed,
        evaluation=Evaluation((150.0,), (0.5,), ((1.0,) * 150,)), edge_inference_p50_ms=0.1,
        edge_inference_p99_ms=0.2, stage_seconds={"collect": 1.0}, warnings=(WARNING,),
    )


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[WorkflowConfig]:
    configs: list[WorkflowConfig] = []

    def workflow(_client: Any, cfg: WorkflowConfig, _on_event: Any = None) -> WorkflowSummary:
        configs.append(cfg)
        return _summary(cfg)

    monkeypatch.setattr(cli, "PlasmaClient", _Client)
    monkeypatch.setattr(cli, "train_and_deploy", workflow)
    return configs


def test_warnings_go_to_stderr_and_under_the_table(asked: list[WorkflowConfig],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--task", "learned"]) == 0
    out, err = capsys.readouterr()
    assert f"plasma: warning (constant_reward): {WARNING.message}" in err.splitlines()
    assert f"warning: {WARNING.message}" in out
    assert "learned from the data" in out
    assert "190.0 over whole paths; 120.0 over the 60 % of steps the audit kept" in out
    assert asked[0].task is not None and asked[0].task.WhichOneof("objective") == "learned"


def test_json_carries_the_warnings_and_the_source(asked: list[WorkflowConfig],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--json"]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["warnings"] == [{"kind": "constant_reward", "message": WARNING.message}]
    assert document["learns_from"].startswith("learned from the data")
    assert document["whole_path_imagined_return"] == 190.0 and document["imagined_return"] == 120.0
    assert "plasma: warning (constant_reward)" in err  # stderr whatever stdout gets
    assert asked[0].task is None
