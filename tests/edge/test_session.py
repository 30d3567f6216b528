"""ServedPacket's two ways to an action: one observation through a per-thread IOBinding, anything else through
onnxruntime's ordinary run. Both must answer exactly what the packet's graph answers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edge_runtime.runtime import Runtime
from edge_runtime.session import ServedPacket
from edge_runtime.store import EdgeStore
from plasma import packet, tensors
from tests.support import policies
from tests.support.edge import TRUSTED


def served(tmp_path: Path, data: bytes) -> ServedPacket:
    return Runtime(EdgeStore(tmp_path / "edge"), TRUSTED).load(data)[0]


def graph(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(packet.read(data)[1])


@pytest.mark.parametrize("kind", ["discrete", "box"])
def test_one_observation_answers_what_the_graph_answers_for_it(
        tmp_path: Path, kind: str, discrete: tuple[bytes, bytes], box: bytes) -> None:
    data = discrete[0] if kind == "discrete" else box
    runtime_packet, reference = served(tmp_path, data), graph(data)
    for obs in policies.observations(kind, 100, seed=31):
        expected = reference.run(["action"], {"observation": obs[None]})[0]
        actions, single = runtime_packet.answer(tensors.to_proto(obs), 8)
        assert single and actions.dtype == expected.dtype
        np.testing.assert_array_equal(actions, expected)  # bit for bit, not approximately
        as_batch, single = runtime_packet.answer(tensors.to_proto(obs[None]), 8)
        assert not single
        np.testing.assert_array_equal(as_batch, expected)
        np.testing.assert_array_equal(runtime_packet.run(obs[None]), expected)


def test_an_answer_is_the_callers_to_keep(tmp_path: Path, box: bytes) -> None:
    runtime_packet = served(tmp_path, box)
    first_obs, second_obs = policies.observations("box", 2, seed=32)
    first, _ = runtime_packet.answer(tensors.to_proto(first_obs), 8)
    kept = first.copy()
    second, _ = runtime_packet.answer(tensors.to_proto(second_obs), 8)
    assert not np.array_equal(first, second)  # else this test shows nothing
    np.testing.assert_array_equal(first, kept)  # the next answer did not write into the first


def test_threads_answering_at_once_each_get_their_own_answers(tmp_path: Path, discrete: tuple[bytes, bytes]) -> None:
    runtime_packet, reference = served(tmp_path, discrete[0]), graph(discrete[0])
    observations = policies.observations("discrete", 400, seed=33)
    # One run per observation: a dynamically quantized graph's answer depends on the rest of its batch.
    expected = [int(reference.run(["action"], {"observation": obs[None]})[0][0]) for obs in observations]
    answers: dict[int, list[int]] = {}

    def answer_all(worker: int) -> None:
        answers[worker] = [int(runtime_packet.answer(tensors.to_proto(obs), 8)[0][0]) for obs in observations]

    threads = [threading.Thread(target=answer_all, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in range(4):
        assert answers[worker] == expected
