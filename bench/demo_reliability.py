"""How reliably the main job works: `plasma demo` itself (the four services as local processes, the default
recipe, 20 real evaluation episodes never used for learning) for several seeds of each environment.

    .venv/bin/python -m bench.demo_reliability                      # CartPole-v1 seeds 0-9, Pendulum-v1 seeds 0-4
    .venv/bin/python -m bench.demo_reliability --env Pendulum-v1 --seeds 0 1

One row per seed: real steps, mean real return, the packet's precision and parity figures, the self-test on the
edge, wall time from the first real step to the evaluated packet; then the success rate against each
environment's goal. Runs one demo at a time (each demo's services share the machine's cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from plasma.cli import SOLVED

# The goal of the reliability check: solved, within this many real steps.
BUDGETS = {"CartPole-v1": 500, "Pendulum-v1": 400}
DEFAULT_SEEDS = {"CartPole-v1": list(range(10)), "Pendulum-v1": list(range(5))}


def run_demo(env_id: str, seed: int, directory: Path) -> dict[str, Any]:
    """One `plasma demo` in a fresh process and store; its JSON summary, or the error it ended with."""
    summary = directory / f"{env_id}-{seed}.json"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "plasma.cli", "demo", "--env", env_id, "--seed", str(seed), "--json", str(summary),
         "--store", str(directory / f"{env_id}-{seed}")],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 or not summary.exists():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"env_id": env_id, "seed": seed, "error": last, "process_seconds": time.monotonic() - started}
    record: dict[str, Any] = json.loads(summary.read_text())
    record["seed"] = seed
    return record


def row(record: dict[str, Any]) -> str:
    env_id, seed = record["env_id"], record["seed"]
    if "error" in record:
        return f"{env_id:<12} {seed:>4}  FAILED: {record['error']}"
    packet, served = record["packet"], record["served"]
    parity = packet["parity"]
    tried = "/".join(a.get("precision", "").removeprefix("PRECISION_").lower() for a in packet.get("attempts", []))
    wall = sum(record["stage_seconds"].values())
    self_test = served.get("selfTest", {})
    verdict = "yes" if record["mean_return"] >= SOLVED[env_id] else "NO"
    return (f"{env_id:<12} {seed:>4} {record['real_steps_used']:>6} {record['mean_return']:>9.1f} {verdict:>7}  "
            f"{tried:<28} {100 * parity.get('agreement', 0):>6.2f} {parity.get('nearTies', 0):>6} "
            f"{parity.get('closedLoopReturn', 0):>8.1f} {parity.get('fp32ClosedLoopReturn', 0):>8.1f} "
            f"{'passed' if self_test.get('passed') else 'FAILED':>9} {int(packet['sizeBytes']):>7,} {wall:>7.0f}")


HEADER = (f"{'env':<12} {'seed':>4} {'steps':>6} {'return':>9} {'solved':>7}  {'precisions tried':<28} "
          f"{'agree%':>6} {'ties':>6} {'cl ret':>8} {'fp32 cl':>8} {'self-test':>9} {'bytes':>7} {'wall s':>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", choices=sorted(BUDGETS), default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 0-9 for CartPole-v1, 0-4 for Pendulum-v1")
    parser.add_argument("--out", type=Path, help="write every summary to this JSON file")
    args = parser.parse_args()
    records = []
    with tempfile.TemporaryDirectory(prefix="plasma-reliability-") as tmp:
        print(HEADER, flush=True)
        for env_id in args.env:
            for seed in args.seeds or DEFAULT_SEEDS[env_id]:
                record = run_demo(env_id, seed, Path(tmp))
                records.append(record)
                if args.out:  # after every seed: an hour's figures survive a crash
                    args.out.write_text(json.dumps(records, indent=1))
                print(row(record), flush=True)
    print()
    for env_id in args.env:
        mine = [r for r in records if r["env_id"] == env_id]
        solved = [r for r in mine if "error" not in r and r["mean_return"] >= SOLVED[env_id]
                  and r["real_steps_used"] <= BUDGETS[env_id]]
        finished = [r for r in mine if "error" not in r]
        walls = [sum(r["stage_seconds"].values()) for r in finished]
        print(f"{env_id}: {len(solved)}/{len(mine)} seeds solved (mean real return >= {SOLVED[env_id]:g} with "
              f"<= {BUDGETS[env_id]} real steps); {len(mine) - len(finished)} failed to finish"
              + (f"; wall {min(walls):.0f}-{max(walls):.0f} s" if walls else ""))


if __name__ == "__main__":
    main()
