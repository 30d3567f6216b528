"""Small real policies for the compiler and edge tests: a trained PolicyNet plus a peft LoRA adapter.

They stand in for what the trainer exports (the trainer has its own tests); `FakeTrainer` serves them
over a real gRPC TrainerService so the compiler is tested through its real client code. Their runs name the
small real world models of tests.support.worlds, which the compiler's parity check rolls them out in.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import grpc
import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from plasma import blobs, packet, signing
from plasma.common.v1 import common_pb2
from plasma.mbrl.policy_net import PolicyNet, PolicySpec, linear_layer_names
from plasma.spaces import EnvSpec
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle
from services.compiler import export, pipeline, precision
from tests.support import worlds

INF = float("inf")
# CartPole-v1's observation bounds (two are unbounded) and a scale for sampling plausible states.
CARTPOLE_LOW, CARTPOLE_HIGH = (-4.8, -INF, -0.418, -INF), (4.8, INF, 0.418, INF)
CARTPOLE_SCALE = np.array([0.5, 0.5, 0.05, 0.5], np.float32)
PENDULUM_SCALE = np.array([0.7, 0.7, 2.0], np.float32)


def env_spec(kind: str) -> common_pb2.EnvSpec:
    if kind == "discrete":
        return common_pb2.EnvSpec(
            env_id="CartPole-v1",
            observation_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=[4], low=CARTPOLE_LOW,
                                               high=CARTPOLE_HIGH),
            action_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_DISCRETE, n=2),
        )
    return common_pb2.EnvSpec(
        env_id="Pendulum-v1",
        observation_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=[3], low=[-1, -1, -8],
                                           high=[1, 1, 8]),
        action_space=common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=[1], low=[-2], high=[2]),
    )


def observations(kind: str, n: int, seed: int) -> np.ndarray:
    scale = CARTPOLE_SCALE if kind == "discrete" else PENDULUM_SCALE
    return (np.random.default_rng(seed).normal(size=(n, scale.size)) * scale).astype(np.float32)


def make_bundle(kind: str = "discrete", seed: int = 0, fragile: bool = False,
                adapter_seed: int | None = None, adapter_std: float = 0.02,
                logit_scale: float = 1.0) -> bundle.PolicyBundle:
    """A policy trained for 200 steps on a simple control rule, with a non-zero LoRA adapter.

    `fragile` gives every unit of the second layer one weight ~100x its others, on a hidden unit that is always 0
    in the base network: per-channel int8 weights round the others (what the policy computes with) to nothing,
    fp16 keeps them. `adapter_seed` draws
    another adapter for the same base (what a fine-tuning run on a shared base produces); a large
    `adapter_std` makes it change many decisions. `logit_scale` scales the output layer: a small one leaves the
    policy undecided (near-ties) wherever its decision is close.
    """
    torch.manual_seed(seed)
    if kind == "discrete":
        spec = PolicySpec(obs_dim=4, action_kind="discrete", action_dim=2, obs_mean=(0.0,) * 4,
                          obs_std=tuple(float(s) for s in CARTPOLE_SCALE))
    else:
        spec = PolicySpec(obs_dim=3, action_kind="box", action_dim=1, action_low=(-2.0,), action_high=(2.0,))
    net = PolicyNet(spec)
    obs = torch.from_numpy(observations(kind, 2048, seed))  # [2048, obs_dim]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        if kind == "discrete":  # push the cart under the pole
            target = (obs[:, 2] + 0.1 * obs[:, 3] > 0).long()
            loss = torch.nn.functional.cross_entropy(net(obs), target)
        else:  # a PD-like torque
            target = (-2.0 * obs[:, 1:2] - 0.3 * obs[:, 2:3]).clamp(-2, 2)
            loss = torch.nn.functional.mse_loss(net.act(obs), target)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        net.body[-1].weight.mul_(logit_scale)
        net.body[-1].bias.mul_(logit_scale)
    if fragile:
        with torch.no_grad():
            net.body[0].weight[0] = 0.0
            net.body[0].bias[0] = 0.0
            net.body[2].weight[:, 0] = 50.0
    base_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if adapter_seed is not None:
        torch.manual_seed(adapter_seed)
    adapted = get_peft_model(net, LoraConfig(r=4, lora_alpha=8, target_modules=linear_layer_names(spec)))
    with torch.no_grad():  # peft starts B at zero; a non-zero adapter makes the merge matter
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.normal_(std=adapter_std)
    return bundle.PolicyBundle(
        spec=spec, base_state=base_state, adapter_files=bundle.adapter_files_of(adapted),
        parity_observations=observations(kind, 256, seed + 1000),
        provenance={"run_id": f"run-{kind}-{seed}" + (f"-a{adapter_seed}" if adapter_seed is not None else ""),
                    "model_id": "model-test"},
    )


def make_run(run_id: str, kind: str) -> trainer_pb2.Run:
    return trainer_pb2.Run(run_id=run_id, model_id=worlds.world(kind).model_id,
                           state=trainer_pb2.RUN_STATE_SUCCEEDED, env_spec=env_spec(kind),
                           config=trainer_pb2.TrainConfig(horizon=worlds.HORIZON))


class FakeTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    """A real gRPC TrainerService over fixed runs; `corrupt` run ids send a chunk that breaks the hash."""

    def __init__(self) -> None:
        self.runs: dict[str, tuple[trainer_pb2.Run, bytes]] = {}
        self.corrupt: set[str] = set()

    def add(self, run: trainer_pb2.Run, data: bytes) -> None:
        self.runs[run.run_id] = (run, data)

    def _find(self, run_id: str, context: grpc.ServicerContext) -> tuple[trainer_pb2.Run, bytes]:
        if run_id not in self.runs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"run {run_id!r} does not exist")
        return self.runs[run_id]

    def GetRun(self, request: trainer_pb2.GetRunRequest, context: grpc.ServicerContext) -> trainer_pb2.GetRunResponse:
        return trainer_pb2.GetRunResponse(run=self._find(request.run_id, context)[0])

    def ExportPolicy(
        self, request: trainer_pb2.ExportPolicyRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.ExportPolicyResponse]:
        _, data = self._find(request.run_id, context)
        yield trainer_pb2.ExportPolicyResponse(header=blobs.header_for(data, bundle.MEDIA_TYPE))
        for i, chunk in enumerate(blobs.chunks(data, 4096)):
            if request.run_id in self.corrupt and i == 1:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            yield trainer_pb2.ExportPolicyResponse(chunk=chunk)


# Signs every packet the tests build; the edge tests trust it.
TEST_KEY = signing.SigningKey.generate()
_COMPILED: dict[tuple[str, int, bool, float, str | None], pipeline.Compiled] = {}


def compiled(kind: str = "discrete", seed: int = 0, adaptable: bool = False,
             adapter_std: float = 0.02, precision: str | None = None) -> pipeline.Compiled:
    """A bundle compiled the way the compiler does it (cached: compiling takes seconds)."""
    key = (kind, seed, adaptable, adapter_std, precision)
    if key not in _COMPILED:
        world = worlds.world(kind)
        _COMPILED[key] = pipeline.compile_model(
            make_bundle(kind, seed, adapter_std=adapter_std), world.scenario(), world.data.obs,
            pipeline.Settings(min_agreement=0.95, threads=1, precision=precision), report=lambda _: None,
            adaptable=adaptable)
    return _COMPILED[key]


def make_packet(kind: str = "discrete", seed: int = 0, version: int = 1, signer: signing.SigningKey = TEST_KEY,
                adaptable: bool = False, name: str = "", adapter_std: float = 0.02,
                self_test: packet.SelfTest | None = None, fallback: bytes | None = None,
                packet_id: str = "") -> tuple[bytes, bytes]:
    """(signed packet, its fp32 model) built the way the compiler builds them, without gRPC (for edge tests).
    The same policy with another version or signer is a different packet (id and bytes); a large
    `adapter_std` gives a policy that decides differently from the plain one. `self_test` replaces the
    compiler's (e.g. with another policy's answers, which this packet's graph fails). `packet_id` replaces the
    readable default, e.g. with one the compiler's store takes (pkt- and 12 hex digits)."""
    result = compiled(kind, seed, adaptable, adapter_std)
    spec = EnvSpec.from_proto(env_spec(kind))
    data = packet.build(
        packet_id=packet_id or f"pkt-{kind[:4]}{seed:02d}{version:06d}", name=name or f"{spec.env_id}-test",
        version=version,
        source_run_id=f"run-{kind}-{seed}",
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        env_id=spec.env_id, observation_space=spec.observation, action_space=spec.action,
        payload=result.payload, opset=export.OPSET, adapter_slots=result.adapter_tensors, signer=signer,
        versions=export.versions(), self_test=self_test or result.self_test, fallback=fallback,
        **pipeline.packet_records(result),
    )
    return data, result.fp32_onnx


def make_packet_with_model(model: bytes, version: int, kind: str = "discrete") -> bytes:
    """A signed packet whose model.onnx is `model` (e.g. bytes onnxruntime cannot load)."""
    spec = EnvSpec.from_proto(env_spec(kind))
    return packet.build(
        packet_id=f"pkt-bad{version:09d}", name=f"{spec.env_id}-test", version=version, source_run_id="run-bad",
        created_at="2026-01-01T00:00:00Z", env_id=spec.env_id, observation_space=spec.observation,
        action_space=spec.action, payload=model, opset=export.OPSET, signer=TEST_KEY,
        self_test=compiled(kind).self_test,
    )


def make_adapter_packet(base: bytes, adapter_seed: int, version: int, kind: str = "discrete", seed: int = 0,
                        signer: signing.SigningKey = TEST_KEY,
                        adapter_std: float = 0.3) -> tuple[bytes, pipeline.Compiled]:
    """An adapter packet for the adaptable packet `base` (same base weights, another adapter)."""
    base_manifest, base_model = packet.read(base)
    result = pipeline.compile_adapter(
        make_bundle(kind, seed, adapter_seed=adapter_seed, adapter_std=adapter_std),
        pipeline.Base(base_model, base_manifest.adapter_slots, str(base_manifest.quantization["precision"])),
        worlds.world(kind).scenario(), pipeline.Settings(min_agreement=0.9, threads=1), report=lambda _: None)
    spec = EnvSpec.from_proto(env_spec(kind))
    data = packet.build(
        kind=packet.KIND_ADAPTER, packet_id=f"pkt-adpt{adapter_seed:02d}{version:06d}", name=base_manifest.name,
        version=version, source_run_id=f"run-{kind}-{seed}-{adapter_seed}", created_at="2026-01-01T00:00:00Z",
        env_id=spec.env_id, observation_space=spec.observation, action_space=spec.action,
        payload=result.payload, adapter_parameters=result.adapter_tensors, adapter_rank=result.lora_rank,
        base=packet.BaseRef(base_manifest.packet_id, base_manifest.name, base_manifest.version,
                            base_manifest.payload.sha256),
        signer=signer, versions=export.versions(), self_test=result.self_test, **pipeline.packet_records(result),
    )
    return data, result


def self_test_of(fp32: bytes, graph: bytes, observations: np.ndarray, per_row: bool = False) -> packet.SelfTest:
    """A self-test over `observations` that holds `fp32`'s answers, and `graph`'s on this CPU."""
    reference_action, reference_output = export.Graph(fp32, 1).run(observations)
    _, expected_output = export.Graph(graph, 1, per_row=per_row).run(observations)
    return packet.SelfTest(observations=observations, reference_output=reference_output,
                           reference_action=reference_action, expected_output=expected_output, min_agreement=0.95)


def make_miscomputing_packet(version: int, fallback: bool) -> tuple[bytes, bytes]:
    """(packet, its fp32 graph): the fragile policy's int8 graph, which decides unlike its fp32 graph, with a
    self-test of the fp32 graph's answers: what a device sees whose int8 kernels compute wrongly. With
    `fallback` the packet also carries the fp32 graph."""
    policy = make_bundle(fragile=True)
    net, _ = export.merge_adapter(policy, policy.parity_observations)
    fp32 = export.export_onnx(net)
    world = worlds.world("discrete")
    int8 = precision.build(precision.INT8, fp32, world.data.obs)
    spec = EnvSpec.from_proto(env_spec("discrete"))
    data = packet.build(
        packet_id=f"pkt-miscomp{version:05d}", name=f"{spec.env_id}-test", version=version,
        source_run_id="run-fragile", created_at="2026-01-01T00:00:00Z", env_id=spec.env_id,
        observation_space=spec.observation, action_space=spec.action, payload=int8,
        opset=export.OPSET, signer=TEST_KEY, quantization={"precision": precision.INT8},
        self_test=self_test_of(fp32, int8, world.data.obs[:48]), fallback=fp32 if fallback else None,
    )
    return data, fp32
