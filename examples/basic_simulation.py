"""Basic simulation: a few real steps, a world model, and phantom paths with their audit and error forecast.

Starts the four services as local processes, collects real steps of a Gymnasium environment with random actions,
fits the ensemble world model on them and prints its held-out quality. Then it streams phantom paths (random
actions, rolled out in the model) from a durable simulation, each with its audit verdict, and forecasts from one
real start state how likely paths fail or leave what the model knows, held against the real environment
replaying the same actions from the same state. No policy is trained here: this is what the trainer learns from.

    .venv/bin/python examples/basic_simulation.py                        # CartPole-v1, 1,000 real steps
    .venv/bin/python examples/basic_simulation.py --env Pendulum-v1 --plot forecast.png
    .venv/bin/python examples/basic_simulation.py --quick                # the small budget make test runs
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np

from plasma import tensors
from plasma.sdk import real_rollouts
from plasma.sdk.client import PlasmaClient
from plasma.sdk.local import LocalStack
from plasma.sdk.quality_table import format_quality
from plasma.simulator.v1 import audit_pb2, simulator_pb2

RANDOM = simulator_pb2.RolloutPolicy(random=simulator_pb2.RandomPolicy())


def verdict(path: simulator_pb2.PhantomPath) -> str:
    """The audit's verdict (PASS, TRUNCATE or REJECT), with the step and detail of its first finding if any."""
    audit = path.audit
    name = audit_pb2.AuditVerdict.Name(audit.verdict).removeprefix("AUDIT_VERDICT_")
    if not audit.findings:
        return name
    first = min(audit.findings, key=lambda finding: finding.step)
    reason = audit_pb2.AuditReason.Name(first.reason).removeprefix("AUDIT_REASON_").lower().replace("_", " ")
    return f"{name} at step {audit.valid_steps}: {reason} ({first.detail})"


def failed(steps: list[int], paths: int) -> str:
    """How many of `paths` failed, and at which step on average (`steps`: the step each failed path ended at)."""
    return f"{len(steps)} of {paths} failed" + (f", at mean step {np.mean(steps):.1f}" if steps else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--steps", type=int, default=1000, help="real steps to collect (random actions)")
    parser.add_argument("--paths", type=int, default=32, help="phantom paths to stream")
    parser.add_argument("--horizon", type=int, default=100, help="steps per phantom path and forecast")
    parser.add_argument("--samples", type=int, default=256, help="sampled paths the forecast is made of")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="also draw the forecast against the real rollouts to this PNG")
    parser.add_argument("--quick", action="store_true", help="a small budget: 300 steps, a small model, 16 paths")
    args = parser.parse_args()
    model_config = simulator_pb2.WorldModelConfig(seed=args.seed)
    if args.quick:
        args.steps, args.paths, args.samples = 300, 16, 64
        model_config = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300,
                                                      seed=args.seed)

    with tempfile.TemporaryDirectory(prefix="plasma-example-") as root, LocalStack(Path(root)) as stack, \
            PlasmaClient(stack.endpoints) as client:
        # 1. Real data: random actions in the real environment.
        dataset = client.collect(args.env, args.steps, args.seed)
        print(f"collected {dataset.num_transitions} real steps of {args.env} in {dataset.num_episodes} episodes "
              f"(mean return of random actions {dataset.mean_episode_return:.1f}): {dataset.dataset_id}")

        # 2. The world model, and how well it predicts held-out real episodes.
        reports: list[simulator_pb2.QualityReport] = []

        def keep_reports(event: object) -> None:  # progress events, and the quality reports among them
            if isinstance(event, simulator_pb2.QualityReport):
                reports.append(event)

        model = client.fit_world_model(dataset.dataset_id, model_config, on_progress=keep_reports)
        metrics = model.metrics
        print(f"world model {model.model_id}: held-out one-step MSE {metrics.holdout_obs_mse:.2e} "
              f"(naive next=current {metrics.holdout_naive_obs_mse:.2e}), fitted in {model.fit_seconds:.1f} s")
        for report in reports:
            print(format_quality(report.quality, report.stage))

        # 3. Phantom paths from a durable simulation: logged in the simulator, read here in order.
        simulation = client.start_simulation(simulator_pb2.SimulateRequest(
            model_id=model.model_id, policy=RANDOM, num_paths=args.paths, horizon=args.horizon, seed=args.seed,
            start_states=simulator_pb2.START_STATES_EPISODE_STARTS))
        verdicts: collections.Counter[str] = collections.Counter()
        returns, lengths = [], []
        for path in client.simulation_paths(simulation.simulation_id):
            verdicts[audit_pb2.AuditVerdict.Name(path.audit.verdict).removeprefix("AUDIT_VERDICT_")] += 1
            returns.append(path.total_reward)
            lengths.append(path.length)
            print(f"  path {path.index:>3}: {path.length:>3} steps, return {path.total_reward:7.1f} "
                  f"(penalized {path.audit.penalized_return:7.1f}), {verdict(path)}")
        counts = ", ".join(f"{name} {verdicts[name]}" for name in ("PASS", "TRUNCATE", "REJECT"))
        print(f"phantom paths: {len(returns)} from {simulation.simulation_id}, mean length {np.mean(lengths):.1f}, "
              f"mean return {np.mean(returns):.1f} (real episodes: mean length "
              f"{dataset.num_transitions / dataset.num_episodes:.1f}, mean return {dataset.mean_episode_return:.1f}); "
              f"audit {counts}")

        # 4. Error forecast from one real start state, and the real environment from that state.
        start = real_rollouts.start_state(args.env, args.seed)
        forecast = client.forecast(model.model_id, start, RANDOM, horizon=args.horizon, num_samples=args.samples,
                                   seed=args.seed)
        real = [real_rollouts.replay(args.env, start, tensors.from_proto(sample.actions, "actions"), args.seed)
                for sample in forecast.samples]
        failure = tensors.from_proto(forecast.failure_probability, "failure_probability")
        model_error = tensors.from_proto(forecast.model_error_probability, "model_error_probability")
        phantom_ends = [sample.length for sample in forecast.samples if tensors.from_proto(sample.dones, "dones").any()]
        real_ends = [len(path.states) - 1 for path in real if path.terminated]
        print(f"forecast from {np.array2string(start, precision=3)} over {args.samples} sampled paths: "
              f"likely failure step {forecast.likely_failure_step}, likely model-error step "
              f"{forecast.likely_model_error_step} (-1: never within {args.horizon}); failure probability by the end "
              f"{failure[-1]:.2f}, model-error probability by the end {model_error[-1]:.2f}")
        print(f"the {len(real)} drawn samples' actions replayed in the real {args.env}: "
              f"{failed(real_ends, len(real))}; in the model: {failed(phantom_ends, len(real))}")
        if args.plot:
            from plasma.sdk import plot  # matplotlib only when drawing

            figure = plot.forecast_figure(forecast, real, env_id=args.env,
                                          title=f"{args.env}: random actions, {args.samples} phantom paths")
            print(f"wrote {plot.save(figure, args.plot)}")


if __name__ == "__main__":
    main()
