"""UploadTransitions and dataset versions against a real server on port 0: logged data with no Gymnasium
environment, every validation error with its status, appends, a cancelled stream, a restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from plasma import cli, tensors
from plasma.common.v1 import common_pb2
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from services.simulator import server as simulator_server
from services.simulator.config import Config
from tests.conftest import rpc_error, running
from tests.support import linear_system
from tests.support.linear_system import batch, commit, header
from tests.support.waiting import eventually

T = 30.0
Stub = simulator_pb2_grpc.SimulatorServiceStub
Request = simulator_pb2.UploadTransitionsRequest


def _start(store: Path):  # type: ignore[no-untyped-def]
    config = Config(address="127.0.0.1:0", store_dir=store)
    return running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upload-store")


@pytest.fixture(scope="module")
def address(store: Path) -> Iterator[str]:
    with _start(store) as address:
        yield address


@pytest.fixture(scope="module")
def stub(address: str) -> Iterator[Stub]:
    with grpc.insecure_channel(address) as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return linear_system.rollouts(episodes=6, length=60, seed=0)  # 360 rows


def _upload(stub: Stub, requests: Iterator[Request]) -> list[simulator_pb2.UploadTransitionsResponse]:
    return list(stub.UploadTransitions(requests, timeout=T))


@pytest.fixture(scope="module")
def first(stub: Stub, data: dict[str, np.ndarray]) -> tuple[simulator_pb2.Dataset, list]:
    responses = _upload(stub, linear_system.requests("linear", data, size=100))
    return responses[-1].dataset, responses[:-1]


def test_each_batch_is_acknowledged_then_the_version_committed(
    stub: Stub, store: Path, first: tuple[simulator_pb2.Dataset, list]
) -> None:
    dataset, acks = first
    assert [a.ack.batch_index for a in acks] == [0, 1, 2, 3]
    assert [a.ack.transitions_stored for a in acks] == [100, 200, 300, 360]
    assert (dataset.name, dataset.version, dataset.parent_dataset_id, dataset.origin) == ("linear", 1, "", "upload")
    # Episodes of 60 steps span batches of 100: counted from the truncated flags, not from batch edges.
    assert (dataset.num_transitions, dataset.num_episodes) == (360, 6)
    assert list(dataset.env_spec.observation_space.low) == [-np.inf] * 3  # no bounds given: unbounded
    assert stub.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id=dataset.dataset_id), timeout=T).dataset == dataset
    assert list((store / "staging").iterdir()) == []


def test_append_creates_version_2_and_leaves_version_1_unchanged(
    stub: Stub, first: tuple[simulator_pb2.Dataset, list]
) -> None:
    base = first[0]
    more = linear_system.rollouts(episodes=2, length=60, seed=1)
    appended = _upload(stub, linear_system.requests("", more, append_to=base.dataset_id))[-1].dataset
    assert (appended.name, appended.version, appended.parent_dataset_id) == ("linear", 2, base.dataset_id)
    assert appended.dataset_id != base.dataset_id
    assert (appended.num_transitions, appended.num_episodes) == (480, 8)
    listed = stub.ListDatasets(simulator_pb2.ListDatasetsRequest(name="linear"), timeout=T).datasets
    assert [(d.version, d.dataset_id) for d in listed][:2] == [(1, base.dataset_id), (2, appended.dataset_id)]
    assert stub.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id=base.dataset_id), timeout=T).dataset == base
    other = stub.ListDatasets(simulator_pb2.ListDatasetsRequest(name="no-such-name"), timeout=T).datasets
    assert list(other) == []


def test_episode_ids_may_be_given_and_span_batches(stub: Stub, data: dict[str, np.ndarray]) -> None:
    ids = np.repeat(np.array([70, 3, 12], dtype=np.int64), 120)  # any int64s, each episode contiguous
    arrays = {**data, "truncated": np.zeros(360, dtype=bool), "episode_ids": ids}
    dataset = _upload(stub, linear_system.requests("given-ids", arrays, size=50))[-1].dataset
    assert (dataset.num_transitions, dataset.num_episodes) == (360, 3)


def test_collect_versions_gymnasium_datasets_too(stub: Stub) -> None:
    def collect(**fields: object) -> simulator_pb2.Dataset:
        request = simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=30, seed=3, **fields)
        return list(stub.CollectTransitions(request, timeout=T))[-1].dataset

    first = collect(name="cartpole-log")
    second = collect(append_to_dataset_id=first.dataset_id)
    assert (first.version, first.origin, first.parent_dataset_id) == (1, "gymnasium", "")
    assert (second.name, second.version, second.parent_dataset_id) == ("cartpole-log", 2, first.dataset_id)
    assert second.num_transitions == 60


def _mutated(data: dict[str, np.ndarray], **changes: np.ndarray) -> list[Request]:
    """A header, a good batch, then a batch with `changes` (batch index 1)."""
    good = {k: v[:50] for k, v in data.items()}
    return [header("bad"), Request(batch=batch(good)), Request(batch=batch({**good, **changes}))]


def _spec(**observation: object) -> common_pb2.EnvSpec:
    spec = common_pb2.EnvSpec()
    spec.CopyFrom(linear_system.SPEC)
    spec.observation_space.CopyFrom(common_pb2.Space(**observation))  # type: ignore[arg-type]
    return spec


DISCRETE = common_pb2.EnvSpec(
    observation_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=[3]),
    action_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_DISCRETE, n=2),
)
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _invalid_cases(data: dict[str, np.ndarray]) -> dict[str, tuple[list[Request], grpc.StatusCode, str]]:
    good = {k: v[:50] for k, v in data.items()}
    rows = np.arange(50)
    bad_obs = data["observations"][:50].copy()
    bad_obs[7, 2] = np.nan
    nan_rewards = data["rewards"][:50].copy()
    nan_rewards[4] = np.inf
    wild_actions = data["actions"][:50].copy()
    wild_actions[9, 0] = 1.5
    reused = np.where(rows < 25, 0, 1).astype(np.int64)
    return {
        "empty stream": ([], INVALID, "first message of an upload must be an UploadHeader"),
        "batch first": ([Request(batch=batch(good))], INVALID, "first message of an upload must be an UploadHeader"),
        "second header": ([header("bad"), header("bad")], INVALID, "message 1 of the upload is a second header"),
        "empty part": ([header("bad"), Request()], INVALID, "message 1 of the upload is empty"),
        "no batch": ([header("bad"), commit(0)], INVALID, "without any TransitionBatch"),
        "no commit": ([header("bad"), Request(batch=batch(good))], INVALID,
                      "ended after 1 batches without an UploadCommit"),
        "commit miscounts": ([header("bad"), Request(batch=batch(good)), commit(2)], INVALID,
                             "UploadCommit says 2 batches were sent, but 1 arrived"),
        "after commit": ([header("bad"), Request(batch=batch(good)), commit(1), Request(batch=batch(good))], INVALID,
                         "comes after its UploadCommit"),
        "no name": ([header("")], INVALID, "header name is required"),
        "no spec": ([Request(header=simulator_pb2.UploadHeader(name="bad"))], INVALID, "env_spec is required"),
        "discrete observations": (
            [header("bad", spec=_spec(kind=common_pb2.SPACE_KIND_DISCRETE, n=3))], INVALID, "must be a box"),
        "bounds of the wrong length": (
            [header("bad", spec=_spec(kind=common_pb2.SPACE_KIND_BOX, shape=[3], low=[0.0], high=[1.0]))],
            INVALID, "low and high need 3 values each"),
        "shapeless box": ([header("bad", spec=_spec(kind=common_pb2.SPACE_KIND_BOX))], INVALID,
                          "must list at least one dimension"),
        "wrong observation shape": (
            _mutated(data, observations=data["observations"][:50, :2]), INVALID,
            "batch 1 observations: shape must be [50, 3]"),
        "rows disagree": (_mutated(data, rewards=data["rewards"][:49]), INVALID, "batch 1 rewards: shape must be [50]"),
        "wrong dtype": (_mutated(data, observations=data["observations"][:50].astype(np.float64)), INVALID,
                        "batch 1 observations: dtype must be float32"),
        "missing field": ([header("bad"), Request(batch=simulator_pb2.TransitionBatch(
            **{k: tensors.to_proto(v) for k, v in good.items() if k != "terminated"}))],
            INVALID, "batch 0: terminated is required"),
        "NaN observation": (_mutated(data, observations=bad_obs), INVALID, "batch 1 observations: row 7 holds NaN"),
        "inf reward": (_mutated(data, rewards=nan_rewards), INVALID, "batch 1 rewards: row 4 holds NaN or inf"),
        "box action out of bounds": (_mutated(data, actions=wild_actions), INVALID,
                                     "batch 1 actions: row 9 element 0 = 1.5 lies outside the declared bounds"),
        "discrete action out of range": (
            [header("bad", spec=DISCRETE), Request(batch=batch({**good, "actions": rows % 3}))],
            INVALID, "batch 0 actions: row 2 = 2 is not in 0..1"),
        "discrete action as float": (
            [header("bad", spec=DISCRETE), Request(batch=batch(good))], INVALID, "actions: dtype must be int64"),
        "episode_ids in only some batches": (
            _mutated(data, episode_ids=np.zeros(50, np.int64)), INVALID, "batch 1 has episode_ids, unlike batch 0"),
        "episode interrupted": (
            [header("bad"), Request(batch=batch({**good, "truncated": np.zeros(50, bool),
                                                 "episode_ids": np.where(rows % 20 < 10, 0, 1)}))],
            INVALID, "batch 0 row 20: episode_ids 0 appears again"),
        "episode continues after its end": (
            [header("bad"), Request(batch=batch({**good, "truncated": rows == 10, "episode_ids": reused}))],
            INVALID, "continues after a row marked terminated or truncated"),
        "append to unknown dataset": ([header(append_to="ds-000000000000")], grpc.StatusCode.NOT_FOUND,
                                      "does not exist"),
    }


@pytest.mark.parametrize("case", list(_invalid_cases(linear_system.rollouts(1, 50, 0))))
def test_bad_uploads_fail_with_a_precise_status_and_store_nothing(
    stub: Stub, store: Path, data: dict[str, np.ndarray], case: str
) -> None:
    requests, code, message = _invalid_cases(data)[case]
    before = stub.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=T).datasets
    error = rpc_error(lambda: _upload(stub, iter(requests)))
    assert error.code() == code, error.details()
    assert message in error.details()
    assert stub.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=T).datasets == before
    # The server cleans up after a failed stream on its own thread.
    eventually(lambda: not list((store / "staging").iterdir()), 10.0, "the staging directory emptying")


def test_episode_continuing_after_its_end_is_caught_across_batches(
    stub: Stub, data: dict[str, np.ndarray]
) -> None:
    good = {k: v[:10] for k, v in data.items()}
    ended = {**good, "truncated": np.arange(10) == 9, "episode_ids": np.zeros(10, np.int64)}
    requests = [header("bad"), Request(batch=batch(ended)), Request(batch=batch({**ended, "truncated": np.zeros(
        10, bool)}))]
    error = rpc_error(lambda: _upload(stub, iter(requests)))
    assert "batch 1 row 0: episode 0 continues after a row marked terminated" in error.details()


def test_append_needs_the_same_spec_and_name(stub: Stub, first: tuple[simulator_pb2.Dataset, list]) -> None:
    base_id = first[0].dataset_id
    error = rpc_error(lambda: _upload(stub, iter([header(append_to=base_id, spec=DISCRETE)])))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "discrete(n=2)" in error.details() and base_id in error.details()
    bounded = _spec(kind=common_pb2.SPACE_KIND_BOX, shape=[3], low=[-9.0] * 3, high=[9.0] * 3)
    error = rpc_error(lambda: _upload(stub, iter([header(append_to=base_id, spec=bounded)])))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "bounds differ" in error.details()
    error = rpc_error(lambda: _upload(stub, iter([header("renamed", append_to=base_id)])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "keeps its name" in error.details()


def test_a_stream_cancelled_midway_leaves_no_dataset_and_no_staging(
    stub: Stub, store: Path, data: dict[str, np.ndarray]
) -> None:
    release = threading.Event()

    def requests() -> Iterator[Request]:
        # The batches, but no commit: a commit racing the cancel would store the dataset.
        yield linear_system.header("cancelled")
        for part in linear_system.batches({k: v[:150] for k, v in data.items()}, 50):
            yield Request(batch=part)
        release.wait(T)  # never half-closes until the test is done

    call = stub.UploadTransitions(requests(), timeout=T)
    acks = [next(call).ack.batch_index for _ in range(3)]
    assert acks == [0, 1, 2]
    assert len(list((store / "staging").iterdir())) == 1  # the acknowledged batches are on disk
    call.cancel()
    release.set()
    # The server cleans up after a failed stream on its own thread.
    eventually(lambda: not list((store / "staging").iterdir()), 10.0, "the staging directory emptying")
    assert list(stub.ListDatasets(simulator_pb2.ListDatasetsRequest(name="cancelled"), timeout=T).datasets) == []


def test_a_restarted_server_lists_the_committed_versions_and_drops_stale_staging(
    stub: Stub, store: Path, first: tuple[simulator_pb2.Dataset, list]
) -> None:
    versions = list(stub.ListDatasets(simulator_pb2.ListDatasetsRequest(name="linear"), timeout=T).datasets)
    assert len(versions) >= 2
    crashed = store / "staging" / "up-crashed"
    crashed.mkdir()
    (crashed / "batch-000000.npz").write_bytes(b"half an upload")
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        again = Stub(channel).ListDatasets(simulator_pb2.ListDatasetsRequest(name="linear"), timeout=T).datasets
    assert list(again) == versions
    assert not crashed.exists()


def test_plasma_upload_streams_an_npz_file(
    address: str, tmp_path: Path, data: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logged.npz"
    np.savez(path, obs=data["observations"].astype(np.float64), actions=data["actions"][:, 0],
             rewards=data["rewards"], next_obs=data["next_observations"], terminated=data["terminated"],
             truncated=data["truncated"])
    flags = ["--json", "--simulator", address, "--batch-rows", "100", "--action-low=-1", "--action-high=1"]
    assert cli.main(["upload", str(path), "--name", "from-npz", *flags]) == 0
    out = capsys.readouterr().out
    dataset = json_format.Parse(out, simulator_pb2.Dataset())
    assert (dataset.name, dataset.version, dataset.num_transitions, dataset.num_episodes) == ("from-npz", 1, 360, 6)
    assert list(dataset.env_spec.action_space.low) == [-1.0] and list(dataset.env_spec.action_space.shape) == [1]
    assert cli.main(["upload", str(path), "--append-to", dataset.dataset_id, *flags]) == 0
    appended = json_format.Parse(capsys.readouterr().out, simulator_pb2.Dataset())
    assert (appended.version, appended.parent_dataset_id) == (2, dataset.dataset_id)
    narrow = ["--simulator", address, "--action-low=-0.5", "--action-high=0.5"]
    assert cli.main(["upload", str(path), "--name", "narrow", *narrow]) == 1
    assert "INVALID_ARGUMENT: batch 0 actions" in capsys.readouterr().err
