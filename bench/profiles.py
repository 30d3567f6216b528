"""Device profiles against each other: packet bytes, parity, inference latency and load time on this CPU.

    .venv/bin/python -m bench.profiles [--kinds discrete box] [--calls 5000] [--loads 5]

For each action kind it compiles the tests' stand-in policy (tests.support.policies: a 64x64 PolicyNet with a LoRA
adapter, trained 200 steps on a control rule; CartPole-v1 or Pendulum-v1 shaped) the way the compiler does, with
the parity gate in closed loop in a small world model fitted on 600 real steps (tests.support.worlds), once per
profile: none named (the plain request), edge, mobile, server. Printed per profile: the precision and sparsity it
chose, the packet's bytes, its decision agreement with fp32 on the decisive visited states (the gate's figure),
inference latency p50/p99 of an onnxruntime session over the packet's graph called directly (one thread, as the edge
runtime runs it; batch 1, and batch 64 for server), and load time: verify the signature and hashes, build the
session, warm up and run the packet's self-test, as the edge runtime does on LoadPacket (median of --loads).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.runtime import checked_session
from edge_runtime.session import new_session
from plasma import packet, signing
from plasma.spaces import EnvSpec
from services.compiler import export, pipeline, profiles

PROFILES = (profiles.DEFAULT, profiles.EDGE, profiles.MOBILE, profiles.SERVER)
SERVER_BATCH = 64


def cpu() -> tuple[str, str]:
    """(model name, the SIMD flags that decide int8 and float kernels) from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")
    return model, " ".join(f for f in wanted if f in flags) or "none of avx2/avx512f/avx512_vnni/avx_vnni"


def latency_ms(model: bytes, observations: np.ndarray, batch: int, calls: int) -> tuple[float, float]:
    """(p50, p99) of one session.run over `batch` observations, in milliseconds."""
    session = new_session(model, 1, 1)
    outputs = [packet.ACTION_OUTPUT]
    feeds = [{packet.INPUT_NAME: np.ascontiguousarray(observations[i : i + batch])}
             for i in range(0, len(observations) - batch + 1, batch)]
    for feed in feeds[:50]:  # warm caches and allocator
        session.run(outputs, feed)
    times = np.empty(calls)
    for i in range(calls):
        feed = feeds[i % len(feeds)]
        started = time.perf_counter_ns()
        session.run(outputs, feed)
        times[i] = time.perf_counter_ns() - started
    p50, p99 = np.percentile(times, [50, 99]) / 1e6
    return float(p50), float(p99)


def load_ms(data: bytes, trusted: dict[str, signing.VerifyingKey], loads: int) -> float:
    """Median time from packet bytes to a self-tested, warm session, as LoadPacket does it."""
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        served = checked_session(packet.verify(data, trusted), None, None)
        times.append(time.perf_counter() - started)
        assert served.self_test is not None and served.self_test.passed
    return float(np.median(times)) * 1e3


def bench(kind: str, calls: int, loads: int) -> list[tuple[str, ...]]:
    # The tests' stand-in policy and world (torch, gymnasium), imported by name: the type check of bench/ stops at
    # tests/, which it does not cover.
    policies = importlib.import_module("tests.support.policies")
    worlds = importlib.import_module("tests.support.worlds")

    world = worlds.world(kind)
    policy = policies.make_bundle(kind)
    spec = EnvSpec.from_proto(policies.env_spec(kind))
    key = signing.SigningKey.generate()
    trusted = {key.key_id: key.public}
    observations = policies.observations(kind, 4096, seed=11)
    rows: list[tuple[str, ...]] = []
    for profile in PROFILES:
        settings = pipeline.Settings(min_agreement=0.95, threads=1, profile=profile,
                                     compression_level=profile.compression_level)
        compiled = pipeline.compile_model(policy, world.scenario(), world.data.obs, settings, report=lambda _: None)
        records: dict[str, Any] = pipeline.packet_records(compiled)
        data = packet.build(
            packet_id="", name="bench", version=1, env_id=spec.env_id, observation_space=spec.observation,
            action_space=spec.action, payload=compiled.payload, opset=export.OPSET, signer=key,
            versions=export.versions(), self_test=compiled.self_test,
            model_file=packet.MODEL_ORT_FILE if compiled.graph_format == profiles.ORT else packet.MODEL_FILE,
            compression_level=settings.compression_level, **records)
        p50, p99 = latency_ms(compiled.payload, observations, 1, calls)
        batched = "-"
        if profile is profiles.SERVER:
            b50, b99 = latency_ms(compiled.payload, observations, SERVER_BATCH, calls // 10)
            batched = f"{b50:.4f} / {b99:.4f}"
        sparsity = compiled.packaging.sparsity if compiled.packaging is not None else 0.0
        rows.append((f"{spec.env_id}", profile.name, compiled.precision, compiled.graph_format, f"{sparsity:.0%}",
                     f"{len(data):,}", f"{100 * compiled.verdict.agreement.share:.2f}", f"{p50:.4f} / {p99:.4f}",
                     batched, f"{load_ms(data, trusted, loads):.1f}"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=["discrete", "box"], choices=["discrete", "box"])
    parser.add_argument("--calls", type=int, default=5000, help="session.run calls per latency figure")
    parser.add_argument("--loads", type=int, default=5, help="loads per load-time figure")
    args = parser.parse_args(argv)
    model, flags = cpu()
    header = ("policy", "profile", "precision", "format", "pruned", "packet bytes", "agree % (fp32)",
              "batch 1 p50 / p99 ms", f"batch {SERVER_BATCH} p50 / p99 ms", "load ms")
    rows = [row for kind in args.kinds for row in bench(kind, args.calls, args.loads)]
    print(f"command: python -m bench.profiles {shlex.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"CPU: {model}; flags: {flags}; onnxruntime threads: 1")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
