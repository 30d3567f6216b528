"""What the SDK's clients send and how they read the answers, in one place for the sync client
(plasma.sdk.client) and the asyncio one (plasma.sdk.aio), which differ only in how they wait."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from plasma import blobs, tensors
from plasma.common.v1 import common_pb2
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.trainer.v1 import trainer_pb2

Progress = Callable[[Any], None]
SERVICES = ("simulator", "trainer", "compiler", "edge")


def result(message: Any, result_field: str, on_progress: Progress | None) -> Any | None:
    """One message of a progress stream: its result when it carries `result_field`, else None after
    forwarding its progress event."""
    event = message.WhichOneof("event")
    if event == result_field:
        return getattr(message, result_field)
    if on_progress is not None:
        on_progress(getattr(message, event))
    return None


def no_result(result_field: str) -> RuntimeError:
    return RuntimeError(f"stream ended without a {result_field}")


# Simulator

def collect(env_id: str, num_steps: int, seed: int, **request: Any) -> simulator_pb2.CollectTransitionsRequest:
    return simulator_pb2.CollectTransitionsRequest(env_id=env_id, num_steps=num_steps, seed=seed, **request)


def fit(dataset_id: str, config: simulator_pb2.WorldModelConfig | None,
        init_from_model_id: str) -> simulator_pb2.FitWorldModelRequest:
    return simulator_pb2.FitWorldModelRequest(dataset_id=dataset_id, config=config,
                                              init_from_model_id=init_from_model_id)


def upload(env_spec: common_pb2.EnvSpec, arrays: Mapping[str, np.ndarray], name: str, append_to: str,
           batch_rows: int) -> Iterator[simulator_pb2.UploadTransitionsRequest]:
    """The header, `arrays` in batches of `batch_rows`, then the commit."""
    yield simulator_pb2.UploadTransitionsRequest(header=simulator_pb2.UploadHeader(
        env_spec=env_spec, name=name, append_to_dataset_id=append_to))
    starts = range(0, len(arrays["observations"]), batch_rows)
    for start in starts:
        part = {field: tensors.to_proto(np.asarray(array[start : start + batch_rows]))
                for field, array in arrays.items()}
        yield simulator_pb2.UploadTransitionsRequest(batch=simulator_pb2.TransitionBatch(**part))
    yield simulator_pb2.UploadTransitionsRequest(commit=simulator_pb2.UploadCommit(batches=len(starts)))


def forecast(model_id: str, start_observation: np.ndarray, policy: simulator_pb2.RolloutPolicy, horizon: int,
             num_samples: int, seed: int, **request: Any) -> simulator_pb2.ForecastErrorsRequest:
    return simulator_pb2.ForecastErrorsRequest(
        model_id=model_id, start_observation=tensors.to_proto(np.asarray(start_observation, np.float32)),
        policy=policy, horizon=horizon, num_samples=num_samples, seed=seed, **request,
    )


# Trainer and compiler

def train(model_id: str, config: trainer_pb2.TrainConfig | None, task: task_pb2.TaskSpec | None,
          base_run_id: str) -> trainer_pb2.TrainRequest:
    return trainer_pb2.TrainRequest(model_id=model_id, config=config, task=task, base_run_id=base_run_id)


def compile_packet(run_id: str, name: str, kind: common_pb2.PacketKind, base_packet_id: str,
                   precision: compiler_pb2.Precision, float_fallback: bool, min_agreement: float,
                   profile: compiler_pb2.Profile | str = compiler_pb2.PROFILE_UNSPECIFIED, size_budget_bytes: int = 0,
                   compression_level: int | None = None) -> compiler_pb2.CompileRequest:
    """`profile` by value or name ("edge", "mobile", "server"); `compression_level` None: the profile's."""
    return compiler_pb2.CompileRequest(run_id=run_id, name=name, kind=kind, base_packet_id=base_packet_id,
                                       precision=precision, float_fallback=float_fallback,
                                       min_agreement=min_agreement, profile=profile_value(profile),
                                       size_budget_bytes=size_budget_bytes, compression_level=compression_level)


PROFILES = {"edge": compiler_pb2.PROFILE_EDGE, "mobile": compiler_pb2.PROFILE_MOBILE,
            "server": compiler_pb2.PROFILE_SERVER}
PROFILE_NAMES = tuple(PROFILES)


def profile_value(profile: compiler_pb2.Profile | str) -> compiler_pb2.Profile:
    """A profile's enum value from its name ("edge" -> PROFILE_EDGE); enum values pass through unchanged (the
    compiler refuses an unknown one)."""
    if not isinstance(profile, str):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    return PROFILES[profile]


# Edge runtime

def deploy(data: bytes, media_type: str) -> Iterator[edge_pb2.LoadPacketRequest]:
    return blobs.send(data, media_type, edge_pb2.LoadPacketRequest)


def act(observation: np.ndarray) -> edge_pb2.ActRequest:
    return edge_pb2.ActRequest(observation=tensors.to_proto(np.asarray(observation, dtype=np.float32)))


def action(response: edge_pb2.ActResponse) -> np.ndarray:
    return tensors.from_proto(response.action, "action")


def control(sequence: int, observation: np.ndarray, reward: float | None = None, terminated: bool = False,
            truncated: bool = False) -> edge_pb2.ControlRequest:
    """`reward` (the step's that led to `observation`) and the done flags are what an edge recording experience
    pairs with the previous message (docs/feedback-loop.md); None sends no reward."""
    return edge_pb2.ControlRequest(sequence=sequence, observation=tensors.to_proto(np.asarray(observation, np.float32)),
                                   reward=reward, terminated=terminated, truncated=truncated)


def check_sequence(response: edge_pb2.ControlResponse, sequence: int) -> edge_pb2.ControlResponse:
    if response.sequence != sequence:
        raise RuntimeError(f"Control answered sequence {response.sequence}, expected {sequence}")
    return response

