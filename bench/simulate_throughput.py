"""Phantom-path throughput, all in one run on one machine: the rollout in-process (what the simulator computes
for a SimulateRequest, without transport), the Simulate stream over gRPC, and a durable simulation
(StartSimulation, then Subscribe from 0 while it runs) over gRPC, each delivering `--paths` paths of
`--horizon` steps to a client in this process; plus delivered / in-process.

    .venv/bin/python -m bench.simulate_throughput [--paths N] [--horizon T] [--repeats R] [--torch-threads K]
        [--hidden-size H] [--batch-paths B]

Model: CartPole-v1, the default world model architecture (5 members, 3 x 128 SiLU; --hidden-size changes the
width), fitted for 300 steps on 4,000 random real steps. Paths run their full horizon: the real episode ends
are relabelled as truncations (time limits) before fitting, so the learned termination head never fires, and
the paths use REWARD_SOURCE_LEARNED (the learned reward and termination heads) under random actions. The
simulator runs in this process, on its own port, as in the service tests. A "delivered" path is a
SimulateResponse/SubscribeResponse the client received and parsed. Figures depend on the machine and on what
else runs on it; the table shows the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

from plasma import channels
from plasma.mbrl import fitting, rollout
from plasma.mbrl.collect import collect
from plasma.mbrl.models import ensemble
from plasma.server import grpc_server
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from services.simulator import requests
from services.simulator import server as simulator_server
from services.simulator.config import Config
from services.simulator.store import SimulatorStore


def build_store(root: Path, fit: ensemble.WorldModelConfig) -> str:
    """A store holding one CartPole world model fitted on data without terminations; returns its id."""
    spec, data = collect("CartPole-v1", 4000, seed=0)
    data = replace(data, terminated=data.terminated & False, truncated=data.terminated | data.truncated)
    fitted, metrics = fitting.fit(spec, data, fit)
    store = SimulatorStore(root)
    dataset = simulator_pb2.Dataset(
        dataset_id="ds-bench0000000", env_spec=spec.to_proto(), num_transitions=len(data),
        name="bench-cartpole", origin="gymnasium", create_time=grpc_server.now_timestamp(),
    )
    store.save_dataset(dataset, data)
    model = simulator_pb2.WorldModel(
        model_id="wm-bench0000000", dataset_id=dataset.dataset_id, env_spec=dataset.env_spec,
        config=simulator_pb2.WorldModelConfig(**vars(fit)), metrics=simulator_pb2.WorldModelMetrics(**metrics),
        create_time=grpc_server.now_timestamp(),
    )
    store.save_model(model, fitted.save)
    return model.model_id


def flops_per_path_step(model: ensemble.EnsembleWorldModel) -> int:
    """Multiply-adds x 2 of one imagined step of one path: every member's MLP (the audit needs them all)."""
    return sum(2 * members * fan_in * fan_out for members, fan_in, fan_out in (w.shape for w in model.weights))


def addmm_gflops(rows: int, width: int, seconds: float = 0.5) -> float:
    """The machine's matmul rate at the rollout's shapes, in this process and its torch threads: [rows, width] x
    [width, width] + bias, repeated for `seconds`."""
    x, w, b = torch.randn(rows, width), torch.randn(width, width), torch.randn(width)
    out = torch.empty(rows, width)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            torch.addmm(b, x, w, out=out)
        calls += 50
    return calls * 2 * rows * width * width / elapsed / 1e9


def timed(run: Callable[[], Iterator[tuple[int, int]]]) -> tuple[float, int, int]:
    """(seconds, paths, steps) of one run of `run()`, which returns an iterable of (index, length)."""
    started = time.perf_counter()
    paths = steps = 0
    for _, length in run():
        paths += 1
        steps += length
    return time.perf_counter() - started, paths, steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=4096)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="runs per way; the best is reported")
    parser.add_argument("--torch-threads", type=int, default=1, help="in this process and the simulator (default 1, "
                        "as the service's PLASMA_SIMULATOR_TORCH_THREADS)")
    parser.add_argument("--hidden-size", type=int, default=ensemble.WorldModelConfig.hidden_size,
                        help="world model width (default: the service's default)")
    parser.add_argument("--batch-paths", type=int, default=rollout.BATCH_PATHS,
                        help="paths rolled out together (rollout.BATCH_PATHS, set for this process, which runs the "
                        "simulator too); other values give other paths for a seed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    rollout.BATCH_PATHS = args.batch_paths
    with tempfile.TemporaryDirectory(prefix="plasma-bench-") as tmp:
        root = Path(tmp)
        model_id = build_store(root, ensemble.WorldModelConfig(hidden_size=args.hidden_size, train_steps=300))
        request = simulator_pb2.SimulateRequest(
            model_id=model_id, num_paths=args.paths, horizon=args.horizon, seed=1,
            reward_source=simulator_pb2.REWARD_SOURCE_LEARNED,
        )
        request.policy.random.SetInParent()
        store = SimulatorStore(root)
        models = requests.ModelCache(store, 1)
        flops_per_step = flops_per_path_step(models.get(model_id))

        def in_process() -> Iterator[tuple[int, int]]:
            paths = requests.open_paths(request, store, models, requests.Execution())
            return ((i, p.length) for i, p in enumerate(paths))

        config = Config(address="127.0.0.1:0", store_dir=root, torch_threads=args.torch_threads)
        server, port, _ = simulator_server.create_server(config)
        server.start()
        channel = channels.channel(f"127.0.0.1:{port}")
        stub = simulator_pb2_grpc.SimulatorServiceStub(channel)

        def simulate() -> Iterator[tuple[int, int]]:
            return ((r.path.index, r.path.length) for r in stub.Simulate(request, timeout=3600))

        def subscribe() -> Iterator[tuple[int, int]]:
            started = stub.StartSimulation(simulator_pb2.StartSimulationRequest(request=request), timeout=60)
            sub = simulator_pb2.SubscribeRequest(simulation_id=started.simulation.simulation_id)
            return ((r.path.index, r.path.length) for r in stub.Subscribe(sub, timeout=3600))

        ways = {"in-process rollout": in_process, "Simulate (gRPC)": simulate,
                "StartSimulation + Subscribe (gRPC)": subscribe}
        results: dict[str, tuple[float, int, int]] = {}
        for _ in range(args.repeats):  # interleaved, so that load changes hit every way alike
            for name, run in ways.items():
                seconds, paths, steps = timed(run)
                if paths != args.paths:
                    raise RuntimeError(f"{name} delivered {paths} paths, expected {args.paths}")
                if name not in results or seconds < results[name][0]:
                    results[name] = (seconds, paths, steps)
        channel.close()
        server.stop(None).wait()
    peaks = {rows: addmm_gflops(rows, args.hidden_size) for rows in (args.batch_paths, 1024)}
    base = results["in-process rollout"][0]
    command = ["python", "-m", "bench.simulate_throughput", *(sys.argv[1:] if argv is None else argv)]
    print(f"command: {' '.join(command)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, torch threads {args.torch_threads}")
    print(f"{args.paths} paths x {args.horizon} steps, best of {args.repeats}; world model 5 x 3 x {args.hidden_size}, "
          f"rollout batch {args.batch_paths} paths")
    peak = peaks[args.batch_paths]
    print(f"{'way':<36} {'seconds':>8} {'paths/s':>9} {'steps/s':>10} {'vs in-process':>14} {'GFLOP/s':>8} "
          f"{'of peak':>8}")
    for name, (seconds, paths, steps) in results.items():
        gflops = steps * flops_per_step / seconds / 1e9
        print(f"{name:<36} {seconds:>8.2f} {paths / seconds:>9.0f} {steps / seconds:>10.0f} "
              f"{base / seconds:>13.0%} {gflops:>8.1f} {gflops / peak:>8.0%}")
    print(f"model FLOP per path-step (all members): {flops_per_step:,}; torch.addmm [rows, {args.hidden_size}] x "
          f"[{args.hidden_size}, {args.hidden_size}] in this run: "
          + ", ".join(f"{gflops:.1f} GFLOP/s at {rows} rows" for rows, gflops in peaks.items())
          + " (\"of peak\": against the rollout batch's rows)")


if __name__ == "__main__":
    main()
