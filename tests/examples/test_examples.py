"""Each example in examples/ run as a user runs it (a subprocess, with --quick), and the figures it prints checked:
the services it starts (or is given) on free ports really learn what the example says they do."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from plasma.sdk.client import PlasmaClient
from plasma.sdk.local import LocalStack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT_S = 600

pytestmark = [pytest.mark.pipeline, pytest.mark.slow, pytest.mark.timeout(TIMEOUT_S + 60)]


def run_example(script: str, *args: str) -> str:
    """The example's stdout, after checking it exited 0; torch on one thread in every service it starts."""
    env = {**os.environ, **{f"PLASMA_{name}_TORCH_THREADS": "1" for name in ("SIMULATOR", "TRAINER", "COMPILER")}}
    # Its own process group: a timeout kills the services it started too, not only the example.
    with subprocess.Popen([sys.executable, str(EXAMPLES / script), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"{script} did not finish within {TIMEOUT_S} s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    print(stdout)  # the figures, with -s
    assert process.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    return stdout


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return float(found[1])


def test_basic_simulation(tmp_path: Path) -> None:
    plot = tmp_path / "forecast.png"
    out = run_example("basic_simulation.py", "--quick", "--plot", str(plot))

    assert "collected 300 real steps of CartPole-v1" in out
    # The world model predicts held-out real steps far better than "the state stays where it is".
    mse = number(r"held-out one-step MSE ([\d.e+-]+)", out)
    naive = number(r"\(naive next=current ([\d.e+-]+)\)", out)
    assert mse < naive / 10
    # 16 phantom paths streamed in order, each audited; random actions topple the pole about as fast in the model
    # as in the real CartPole.
    assert [int(i) for i in re.findall(r"^  path +(\d+):", out, re.MULTILINE)] == list(range(16))
    verdicts = re.search(r"audit PASS (\d+), TRUNCATE (\d+), REJECT (\d+)", out)
    assert verdicts is not None and sum(int(count) for count in verdicts.groups()) == 16
    phantom = number(r"mean length ([\d.]+), mean return [\d.-]+ \(real", out)
    real = number(r"real episodes: mean length ([\d.]+)", out)
    assert real / 2 < phantom < real * 2
    # The forecast: random actions fail within a few dozen steps, as real CartPole episodes do.
    assert 5 <= number(r"likely failure step (-?\d+)", out) <= 60
    assert number(r"failure probability by the end ([\d.]+)", out) > 0.5
    assert re.search(r"actions replayed in the real CartPole-v1: [1-9]\d* of \d+ failed, at mean step", out)
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_lora_training() -> None:
    out = run_example("lora_training.py", "--quick")

    rows = re.findall(r"^(pkt-\w+) \((\S+)\) +(ADAPTABLE|ADAPTER) +([\d,]+) +([\d,]+) +(-?[\d.]+)  "
                      r"(-?[\d.]+) \(x ([+-][\d.]+)\) \| (-?[\d.]+) \(x ([+-][\d.]+)\)$", out, re.MULTILINE)
    assert [(row[1], row[2]) for row in rows] == [("environment", "ADAPTABLE"), ("cartpole-x=1", "ADAPTER")], out
    base, adapter = rows
    assert f"the adapter packet applies to {base[0]}" in out
    size = {row[2]: int(row[3].replace(",", "")) for row in rows}
    assert size["ADAPTER"] < size["ADAPTABLE"]
    # The base balances the real pole (random actions: about 22); the adapter on the same base moves the cart
    # towards x = 1.
    assert float(base[6]) >= 150
    assert float(adapter[7]) > float(base[7])


def test_client_server_against_running_services(tmp_path: Path) -> None:
    with LocalStack(tmp_path) as stack:
        endpoints = stack.endpoints
        out = run_example("client_server.py", "--quick", "--simulator", endpoints.simulator, "--trainer",
                          endpoints.trainer, "--compiler", endpoints.compiler, "--edge", endpoints.edge)
        with PlasmaClient(endpoints) as client:
            status = client.edge_status()

    assert "started the services" not in out  # it used the given ones
    packet = re.search(r"^compiler   packet (pkt-\w+):", out, re.MULTILINE)
    assert packet is not None and status.packet.packet_id == packet[1]
    assert re.search(rf"^edge       serving {packet[1]} v1 \(\S+\), self-test passed$", out, re.MULTILINE)
    # The packet, acting through one Control stream, balances the real pole far longer than random actions.
    mean, random = number(r"mean real return ([\d.]+)", out), number(r"\(random actions ([\d.]+)\)", out)
    assert mean >= 150 and mean > 3 * random
    steps = number(r"(\d+) steps$", out)
    assert number(r"^edge       (\d+) observations served", out) == steps == status.observations_served


def test_custom_environment() -> None:
    out = run_example("custom_env/train_tank.py", "--quick")

    assert re.search(r"^logged 500 steps of WaterTank-v0 under random commands: [1-9]\d* spills$", out, re.MULTILINE)
    assert number(r"held-out MSE ([\d.e+-]+)", out) < number(r"\(naive ([\d.e+-]+)\)", out) / 10
    assert re.search(r"packet pkt-\w+ \([\d,]+ bytes, \S+\) served by the edge runtime", out)
    # The served packet keeps the real tank near half full: better than random commands (which spill it) and
    # at least as good as the fixed command that holds the set point once reached.
    policy = number(r"packet (-?[\d.]+) ±", out)
    assert policy > number(r"random commands: (-?[\d.]+)", out) + 50
    assert policy >= number(r"fixed command [\d.]+: (-?[\d.]+)", out) - 2
    assert abs(number(r"\(level ([\d.]+) ±", out) - 0.5) < 0.05
