"""The four services as processes (LocalStack) with mutual TLS and authorization on, driven through the SDK:
collect, fit and train go through the simulator and the trainer (which calls the simulator with its own
operator certificate), the compiler fetches the run with its reader certificate, the edge serves the packet;
a reader may look and act, not train or deploy; a plaintext client is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma.compiler.v1 import compiler_pb2
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.local import LocalStack
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from tests.support import certs
from tests.support.training import TINY_TRAIN, T

pytestmark = pytest.mark.slow

TINY_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=2, hidden_size=32, train_steps=100, seed=1)


def test_a_local_stack_on_mutual_tls_runs_collect_fit_train_compile_and_deploy(
    tmp_path: Path, dev_certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shell set up for another stack must not leak into this one's services.
    monkeypatch.setenv("PLASMA_TLS_CA", str(tmp_path / "missing-ca.pem"))
    with LocalStack(tmp_path / "stack", certs=dev_certs) as stack, PlasmaClient(stack.endpoints) as operator:
        assert stack.endpoints.security is not None
        dataset = operator.collect("CartPole-v1", num_steps=200, seed=0)
        model = operator.fit_world_model(dataset.dataset_id, TINY_MODEL)
        run = operator.train(model.model_id, TINY_TRAIN)
        assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
        # The compiler fetches the run and its world model with its reader certificate; float_fallback ships
        # whatever the gate makes of this tiny policy.
        packet = operator.compile(run.run_id, float_fallback=True)
        data = operator.download_packet(packet.packet_id)
        assert operator.deploy(data).packet_id == packet.packet_id

        reader = Endpoints(**{name: getattr(stack.endpoints, name) for name in ("simulator", "trainer", "compiler",
                                                                                "edge")},
                           security=certs.client(dev_certs, "reader"))
        with PlasmaClient(reader) as client:
            runs = client.trainer.ListRuns(trainer_pb2.ListRunsRequest(), timeout=T).runs
            assert [r.run_id for r in runs] == [run.run_id]
            client.compiler.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=T)
            client.act(np.zeros(4, np.float32))
            for refused in (lambda: client.train(model.model_id, TINY_TRAIN), lambda: client.deploy(data)):
                with pytest.raises(grpc.RpcError) as caught:
                    refused()
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # The CLI: the same settings as flags.
        ca, reader_cert = dev_certs / "ca" / "ca.pem", dev_certs / "reader"
        flags = [f"--trainer={stack.endpoints.trainer}", f"--tls-ca={ca}", f"--tls-cert={reader_cert / 'client.pem'}",
                 f"--tls-key={reader_cert / 'client-key.pem'}"]
        listed = subprocess.run([sys.executable, "-m", "plasma.cli", "list", "runs", *flags], capture_output=True,
                                text=True, timeout=120, check=False)
        assert listed.returncode == 0 and run.run_id in listed.stdout, listed.stderr
        trained = subprocess.run([sys.executable, "-m", "plasma.cli", "train", model.model_id, *flags],
                                 capture_output=True, text=True, timeout=120, check=False)
        assert trained.returncode == 1
        assert "PERMISSION_DENIED: Train needs the operator role; caller 'reader'" in trained.stderr

        with PlasmaClient(Endpoints(simulator=stack.endpoints.simulator)) as plaintext, \
                pytest.raises(grpc.RpcError) as caught:
            plaintext.simulator.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=T)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
