"""The experience log (edge_runtime.experience): transitions paired from Control messages, the size cap, restarts,
damaged segments, and ExportExperience on a real edge server."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from edge_runtime import experience
from edge_runtime import server as edge_server
from edge_runtime.config import Config
from edge_runtime.experience import ExperienceLog, Transition
from plasma import blobs, tensors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.server.settings import ConfigError
from services.common import transitions_archive
from tests.conftest import rpc_error, running
from tests.support.edge import TRUSTED, T, load

Stub = edge_pb2_grpc.EdgeRuntimeServiceStub


def transition(i: int, terminated: bool = False) -> Transition:
    obs = np.full(4, i, np.float32)
    return Transition(obs, np.asarray(i % 2, np.int64), 1.0, obs + 0.5, terminated, False)


def arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def request(obs: list[float], reward: float | None = None, terminated: bool = False,
            batch: bool = False) -> edge_pb2.ControlRequest:
    observation = np.array([obs] if batch else obs, np.float32)
    message = edge_pb2.ControlRequest(observation=tensors.to_proto(observation), terminated=terminated)
    if reward is not None:
        message.reward = reward
    return message


def test_consecutive_messages_become_transitions_split_into_episodes(tmp_path: Path) -> None:
    log = ExperienceLog(tmp_path, 1 << 20)
    recorder = log.recorder()
    one = np.array([1], np.int64)
    for message in (request([0, 0, 0, 0]),  # an episode's first observation: no reward yet
                    request([1, 1, 1, 1], reward=1.0),
                    request([2, 2, 2, 2], reward=0.5, terminated=True),  # its action is not recorded
                    request([3, 3, 3, 3]),  # the next episode
                    request([4, 4, 4, 4], reward=1.0),
                    request([5, 5, 5, 5]),  # no reward: no transition, and the chain breaks
                    request([6, 6, 6, 6], reward=1.0),
                    request([7, 7, 7, 7], reward=1.0, batch=True)):  # [1, 4] is one observation too
        recorder.observe(message, one)
    recorder.observe(request([8, 8, 8, 8], reward=1.0), np.array([1, 0], np.int64))  # a batch: not recorded
    got = arrays(log.export() or b"")
    np.testing.assert_array_equal(got["obs"][:, 0], [0, 1, 3, 5, 6])
    np.testing.assert_array_equal(got["next_obs"][:, 0], [1, 2, 4, 6, 7])
    np.testing.assert_array_equal(got["rewards"], [1.0, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(got["terminated"], [False, True, False, False, False])
    np.testing.assert_array_equal(got["actions"], [1, 1, 1, 1, 1])
    assert got["actions"].dtype == np.int64 and got["obs"].dtype == np.float32
    # Episodes: [0, 1], [3] and [5, 6] (the missing reward broke the chain); ids are first sequence numbers.
    np.testing.assert_array_equal(got["episode_ids"], [0, 0, 2, 3, 3])
    np.testing.assert_array_equal(got["sequences"], [0, 1, 2, 3, 4])
    # What ExportDataset streams, and so what an upload is built from.
    assert len(transitions_archive.load(log.export() or b"")) == 5
    np.testing.assert_array_equal(arrays(log.export(3) or b"")["sequences"], [3, 4])
    assert log.export(5) is None


def test_interleaved_streams_are_exported_one_episode_after_another(tmp_path: Path) -> None:
    log = ExperienceLog(tmp_path, 1 << 20)
    first, second = log.recorder(), log.recorder()
    one = np.array([0], np.int64)
    first.observe(request([0, 0, 0, 0]), one)
    second.observe(request([10, 10, 10, 10]), one)
    for step in range(1, 4):
        first.observe(request([step] * 4, reward=1.0), one)
        second.observe(request([10 + step] * 4, reward=1.0), one)
    got = arrays(log.export() or b"")
    np.testing.assert_array_equal(got["obs"][:, 0], [0, 1, 2, 10, 11, 12])
    np.testing.assert_array_equal(got["episode_ids"], [0, 0, 0, 1, 1, 1])


def test_a_box_action_is_kept_as_floats(tmp_path: Path) -> None:
    log = ExperienceLog(tmp_path, 1 << 20)
    recorder = log.recorder()
    recorder.observe(request([0, 0, 0, 0]), np.array([[0.25, -1.5]], np.float32))
    recorder.observe(request([1, 1, 1, 1], reward=-2.0), np.array([[0.0, 0.0]], np.float32))
    got = arrays(log.export() or b"")
    np.testing.assert_array_equal(got["actions"], [[0.25, -1.5]])
    assert got["actions"].dtype == np.float32


def test_the_log_stays_under_its_cap_by_dropping_the_oldest_segments(tmp_path: Path) -> None:
    log = ExperienceLog(tmp_path, 4096)
    for i in range(1000):
        assert log.append(transition(i), episode=None) == i
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert on_disk == log.size_bytes <= 4096
    assert len(list(tmp_path.iterdir())) <= experience.SEGMENTS_PER_CAP + 1
    sequences = arrays(log.export() or b"")["sequences"]
    # The newest transitions are kept, without a gap, and the oldest are gone.
    assert sequences[-1] == 999 and sequences[0] > 0
    np.testing.assert_array_equal(sequences, np.arange(sequences[0], 1000))
    assert len(sequences) * 60 > 4096 // 2  # most of the cap holds transitions


def test_a_restart_keeps_the_log_and_continues_its_sequence(tmp_path: Path) -> None:
    log = ExperienceLog(tmp_path, 1 << 20)
    for i in range(5):
        log.append(transition(i, terminated=i == 4), episode=0)
    log.close()
    again = ExperienceLog(tmp_path, 1 << 20)
    assert again.next_sequence == 5
    assert again.append(transition(5), episode=None) == 5
    got = arrays(again.export() or b"")
    np.testing.assert_array_equal(got["sequences"], np.arange(6))
    np.testing.assert_array_equal(got["episode_ids"], [0, 0, 0, 0, 0, 5])  # an id no earlier episode had
    assert len(list(tmp_path.glob("segment-*.log"))) == 2  # a restart starts a new segment


@pytest.mark.parametrize("damage", ["torn", "flipped", "garbage"])
def test_a_damaged_tail_is_ignored_and_recording_goes_on(tmp_path: Path, damage: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    log = ExperienceLog(tmp_path, 1 << 20)
    for i in range(10):
        log.append(transition(i), episode=0)
    log.close()
    (segment,) = tmp_path.glob("segment-*.log")
    data = segment.read_bytes()
    if damage == "torn":  # a power loss in the middle of the last frame
        segment.write_bytes(data[:-7])
    elif damage == "flipped":  # a bit of the last frame's payload changed
        segment.write_bytes(data[:-3] + bytes([data[-3] ^ 0x10]) + data[-2:])
    else:  # a frame header that promises more than there is
        segment.write_bytes(data + b"\xff\xff\x00\x00\x12\x34")
    with caplog.at_level(logging.WARNING, logger="edge_runtime.experience"):
        again = ExperienceLog(tmp_path, 1 << 20)
    assert any(segment.name in r.getMessage() for r in caplog.records)
    kept = 10 if damage == "garbage" else 9
    assert again.next_sequence == kept
    again.append(transition(kept), episode=None)
    np.testing.assert_array_equal(arrays(again.export() or b"")["sequences"], np.arange(kept + 1))
    # The damaged segment is left as it is: nothing is ever written after a bad frame.
    assert len(list(tmp_path.glob("segment-*.log"))) == 2


def test_a_segment_without_one_good_frame_is_removed(tmp_path: Path) -> None:
    (tmp_path / "segment-00000000000000000000.log").write_bytes(b"\x01\x02")
    log = ExperienceLog(tmp_path, 1 << 20)
    assert log.next_sequence == 0 and list(tmp_path.iterdir()) == []
    assert log.append(transition(0), episode=None) == 0


def test_a_failed_write_is_logged_and_serving_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = ExperienceLog(tmp_path / "log", 1 << 20)
    log.append(transition(0), episode=None)
    log.close()
    (tmp_path / "log" / "segment-00000000000000000000.log").unlink()
    (tmp_path / "log").rmdir()
    (tmp_path / "log").write_text("not a directory any more")
    with caplog.at_level(logging.WARNING, logger="edge_runtime.experience"):
        assert log.append(transition(1), episode=None) is None
    assert "experience not recorded" in caplog.text


def test_config_reads_the_experience_variables(tmp_path: Path) -> None:
    assert Config.from_env({}).experience_dir is None  # off by default
    config = Config.from_env({"PLASMA_EDGE_EXPERIENCE_DIR": str(tmp_path), "PLASMA_EDGE_EXPERIENCE_MAX_BYTES": "65536"})
    assert config.experience_dir == tmp_path and config.experience_max_bytes == 65536
    for bad in ("100", str(blobs.MAX_BLOB_BYTES + 1), "lots"):
        with pytest.raises(ConfigError, match="PLASMA_EDGE_EXPERIENCE_MAX_BYTES"):
            Config.from_env({"PLASMA_EDGE_EXPERIENCE_MAX_BYTES": bad})


@contextmanager
def edge(store: Path, experience_dir: Path | None) -> Iterator[Stub]:
    cfg = Config(address="127.0.0.1:0", store_dir=store, trusted_keys=TRUSTED, experience_dir=experience_dir)
    with running(lambda: edge_server.create_server(cfg), edge_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        yield Stub(channel)


def export(stub: Stub, from_sequence: int = 0) -> dict[str, np.ndarray]:
    stream = stub.ExportExperience(edge_pb2.ExportExperienceRequest(from_sequence=from_sequence), timeout=T)
    return arrays(blobs.receive(stream, "ExportExperience", (experience.MEDIA_TYPE,)))


def test_export_streams_what_control_streams_recorded_across_a_restart(
    tmp_path: Path, discrete: tuple[bytes, bytes]
) -> None:
    observations = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    with edge(tmp_path / "store", tmp_path / "experience") as stub:
        load(stub, discrete[0])
        with pytest.raises(grpc.RpcError) as nothing:
            export(stub)
        assert nothing.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        messages = [request(list(obs), reward=None if i == 0 else float(i), terminated=i == 5)
                    for i, obs in enumerate(observations)]
        answers = list(stub.Control(iter(messages), timeout=T))
        got = export(stub)
    served = [int(tensors.from_proto(a.action, "action")) for a in answers]
    np.testing.assert_array_equal(got["obs"], observations[:5])
    np.testing.assert_array_equal(got["next_obs"], observations[1:])
    np.testing.assert_array_equal(got["actions"], served[:5])  # the actions the edge served
    np.testing.assert_array_equal(got["rewards"], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(got["terminated"], [False] * 4 + [True])
    with edge(tmp_path / "store", tmp_path / "experience") as stub:  # restarted on the same directories
        np.testing.assert_array_equal(export(stub)["sequences"], np.arange(5))
        np.testing.assert_array_equal(export(stub, 3)["sequences"], [3, 4])
        with pytest.raises(grpc.RpcError) as negative:
            export(stub, -1)
        assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_without_an_experience_dir_nothing_is_recorded_or_exported(
    tmp_path: Path, discrete: tuple[bytes, bytes]
) -> None:
    with edge(tmp_path / "store", None) as stub:
        load(stub, discrete[0])
        list(stub.Control(iter([request([0, 0, 0, 0]), request([1, 1, 1, 1], reward=1.0)]), timeout=T))
        error = rpc_error(lambda: export(stub))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "PLASMA_EDGE_EXPERIENCE_DIR" in error.details()
    assert not any(p.name == "experience" for p in tmp_path.rglob("*"))
