"""CLI flags and the keys command: connection flags only where they are used (demo, serve and keys start or
wire their own services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plasma import signing
from plasma.cli import build_parser


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_commands_that_start_their_own_services_refuse_a_service_address(command: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--simulator", "elsewhere:50051"])


def test_commands_against_running_services_take_their_addresses_and_tls() -> None:
    args = build_parser().parse_args(["collect", "--simulator", "elsewhere:50051", "--tls-ca", "ca.pem"])
    assert args.simulator == "elsewhere:50051"
    assert args.tls_ca == "ca.pem"


def test_keys_makes_one_pair_and_prints_the_variables_that_wire_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run_keys() -> dict[str, str]:
        args = build_parser().parse_args(["keys", "--dir", str(tmp_path / "keys")])
        assert args.handler(args) == 0
        lines = capsys.readouterr().out.splitlines()
        return dict(line.removeprefix("export ").split("=", 1) for line in lines)

    first, second = run_keys(), run_keys()
    assert first == second  # the key is made once and kept
    private = signing.SigningKey.from_file(Path(first["PLASMA_COMPILER_SIGNING_KEY"]))
    assert private.public.base64 == first["PLASMA_EDGE_TRUSTED_KEYS"]
