"""Every service reads its configuration in one place and names a bad variable in its error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plasma.server.settings import ConfigError
from services.simulator.config import Config as SimulatorConfig
from services.trainer.config import Config as TrainerConfig


@pytest.mark.parametrize(
    ("config", "variable", "value"),
    [
        (SimulatorConfig, "PLASMA_SIMULATOR_ADDRESS", "no-port-here"),
        (SimulatorConfig, "PLASMA_SIMULATOR_TORCH_THREADS", "0"),
        (SimulatorConfig, "PLASMA_SIMULATOR_GRACE_SECONDS", "-1"),
        (TrainerConfig, "PLASMA_TRAINER_WORKERS", "many"),
        (TrainerConfig, "PLASMA_SIMULATOR_TARGET", "simulator"),
    ],
)
def test_bad_values_name_the_variable(config: type, variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        config.from_env({variable: value})


def test_defaults_do_not_oversubscribe_two_cores() -> None:
    assert SimulatorConfig.from_env({}).torch_threads == 1
    assert TrainerConfig.from_env({}).torch_threads == 1


def test_a_service_refuses_to_start_with_a_bad_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.trainer.server"],
        env={"PLASMA_TRAINER_ADDRESS": "nowhere", "PATH": ""}, capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert "PLASMA_TRAINER_ADDRESS" in result.stderr
