"""The CLI offers connection flags only where they are used: demo and serve start their own services."""

from __future__ import annotations

import pytest

from plasma.cli import build_parser


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_commands_that_start_their_own_services_refuse_a_service_address(command: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--simulator", "elsewhere:50051"])


def test_commands_against_running_services_take_their_addresses_and_tls() -> None:
    args = build_parser().parse_args(["collect", "--simulator", "elsewhere:50051", "--tls-ca", "ca.pem"])
    assert args.simulator == "elsewhere:50051"
    assert args.tls_ca == "ca.pem"
