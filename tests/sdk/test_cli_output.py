"""The CLI's output for people and for scripts, run for real against a simulator on port 0: --json is one JSON
document on stdout, tables and progress lines carry no escape codes outside a terminal, stages end with their
final state, and --task track:... targets are checked against the model's or environment's observation."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plasma import cli
from plasma.sdk import tasks
from services.simulator import server as simulator_server
from services.simulator.config import Config
from tests.conftest import running

ESCAPE = "\x1b"


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = Config(address="127.0.0.1:0", store_dir=tmp_path_factory.mktemp("cli-output"))
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address:
        yield address


def _plasma(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def dataset(simulator: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "plasma.cli", "collect", "--steps", "200", "--seed", "3",
                             "--json", "--simulator", simulator], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert ESCAPE not in result.stdout + result.stderr  # a pipe is no terminal
    # The stage's final state, not only its first event: collection did not stop at 2 steps.
    assert "[collect] 200/200 real steps" in result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_collect_json_is_the_dataset(dataset: dict[str, Any]) -> None:
    assert dataset["datasetId"].startswith("ds-") and int(dataset["numTransitions"]) == 200
    assert dataset["envSpec"]["envId"] == "CartPole-v1"


@pytest.fixture(scope="module")
def fitted(simulator: str, dataset: dict[str, Any]) -> tuple[str, str]:
    """`plasma fit` on the dataset, into a pipe: (stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "plasma.cli", "fit", dataset["datasetId"], "--simulator",
                             simulator], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_fit_prints_its_quality_as_tables_not_json(fitted: tuple[str, str]) -> None:
    out, err = fitted
    assert ESCAPE not in out + err and not out.lstrip().startswith("{")
    lines = out.splitlines()
    assert lines[0].startswith("world model wm-")
    quality = lines.index(next(line for line in lines if line.startswith("world model quality (after)")))
    assert lines[quality + 1].split() == ["steps", "windows", "model", "RMSE", "naive", "RMSE", "model/naive"]
    assert "one-step 90 % interval coverage" in out
    assert max(len(line) for line in lines) < 200  # no 1,500-character JSON line
    final = [line for line in err.splitlines() if line.startswith("[fit] step ")][-1]
    done, total = final.split()[2].split("/")
    assert done == total  # the last step, before "done"
    assert err.splitlines()[-1].startswith("[fit] done in ")


def test_list_json_parses_and_the_table_names_each_object(
    simulator: str, dataset: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _plasma(capsys, "list", "datasets", "--json", "--simulator", simulator)
    assert code == 0 and dataset["datasetId"] in [d["datasetId"] for d in json.loads(out)["datasets"]]
    code, out, _ = _plasma(capsys, "list", "datasets", "--simulator", simulator)
    assert code == 0 and ESCAPE not in out
    assert out.splitlines()[1].split()[:3] == ["id", "name", "version"]
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == [dataset["datasetId"]])
    assert row[1:4] == ["CartPole-v1", "1", "200"]


def test_a_tracking_target_outside_the_model_s_observation_is_refused_before_training(
    simulator: str, fitted: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    model_id = fitted[0].split()[2]  # "world model wm-..."
    # The trainer's address leads nowhere: the CLI refuses before it would call it.
    code, _, err = _plasma(capsys, "train", model_id, "--task", "track:obs[1]=0,obs[4]=1",
                           "--simulator", simulator, "--trainer", "127.0.0.1:1")
    assert code == 2
    assert "obs[4] is outside the observation, which has 4 elements: use obs[0] to obs[3]" in err


def test_evaluate_checks_a_tracking_target_against_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _plasma(capsys, "evaluate", "--env", "Pendulum-v1", "--task", "track:obs[3]=0",
                           "--edge", "127.0.0.1:1")
    assert code == 2 and "which has 3 elements" in err


@pytest.mark.parametrize("spec, message", [
    ("track:obs[1]", "is not obs[I]=V or obs[I]=V@W"),
    ("track:obs[1]=up", "'up' is not a number"),
    ("track:obs[1]=0@-1", "the weight must be positive"),
    ("track:obs[1]=0,obs[1]=1", "name obs[1] twice"),
    ("track:obs[0]=inf", "must be finite"),
    ("walk=3", "track:obs[I]=V"),
])
def test_a_bad_task_spec_is_a_usage_error_that_says_what_is_wrong(
    spec: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["train", "wm-1", "--task", spec])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_track_builds_a_tracking_task_for_the_observation() -> None:
    spec = tasks.parse_task("track:obs[1]=0.5, obs[3]=-2@0.1", 4)
    assert spec.name == "track-obs1=0.5+obs3=-2w0.1"
    assert list(spec.tracking.target_observation) == [0.0, 0.5, 0.0, -2.0]
    assert list(spec.tracking.state_weights) == pytest.approx([0.0, 1.0, 0.0, 0.1])
    assert spec.tracking.alive_bonus == 0 and not spec.tracking.terminate_below
    with pytest.raises(ValueError, match="needs the observation's size"):
        tasks.parse_task("track:obs[1]=0.5")


def test_workflow_json_goes_to_stdout_or_to_a_file() -> None:
    assert cli.build_parser().parse_args(["demo", "--json"]).json == cli.STDOUT
    assert cli.build_parser().parse_args(["run", "--json", "summary.json"]).json == "summary.json"
    assert cli.build_parser().parse_args(["demo"]).json is None


def test_a_terminal_gets_rich_tables_and_a_pipe_plain_text(tmp_path: Path) -> None:
    script = ("from plasma.cli import output; from plasma.sdk.table import Table; "
              "output.show(False, {}, [Table('packets', ('id', 'bytes'), [('pkt-1', '10,037')], frozenset({1}))])")
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80"}
    piped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                           check=True)
    assert piped.stdout.splitlines() == ["packets", "  id      bytes", "  pkt-1  10,037"]
    main, secondary = pty.openpty()
    with subprocess.Popen([sys.executable, "-c", script], stdout=secondary, env=env) as process:
        os.close(secondary)
        drawn = b""
        while chunk := _read(main):
            drawn += chunk
        assert process.wait(timeout=60) == 0
    os.close(main)
    assert ESCAPE.encode() in drawn and b"pkt-1" in drawn and b"10,037" in drawn


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # the terminal's other end closed
        return b""
