"""What Ray Tune costs and gives: a 2-configs x 3-seeds sweep on 1 and 2 CPUs against the same six trainings in turn.

Run from the repository root: ``python -m benchmarks.sweep_scaling``. Every arm trains the same six trials
(PPO on CartPole-v1, ``learning_rate`` 3e-4 and 1e-3, seeds 0-2, one torch thread each) with the code a
``palaestra sweep`` trial runs (:func:`palaestra.sweep.train_and_evaluate`: ``palaestra train`` then a 10-episode
evaluation):

- ``sequential``: the six trainings one after another in one process, no Ray;
- ``ray-1cpu`` and ``ray-2cpu``: the six as trials of :func:`palaestra.sweep.run_trials` on a local Ray of 1 or 2
  CPUs (one CPU per trial), Ray's start included.

Each arm runs in a fresh interpreter and is timed from launch to exit, so every arm pays its imports; the arms
alternate over ``--repeats`` rounds so machine noise falls on all of them alike. Ray's overhead per trial is
``(ray-1cpu - sequential) / 6``: one CPU runs the trials in turn, as the sequential arm does, so the difference is
what Ray adds (its start, a worker process per trial that imports torch and SB3 again, Tune's bookkeeping).
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

import numpy as np

from benchmarks.harness import machine_info, markdown_table, render_readme_section, write_results

SECTION = "Sweep scaling on Ray Tune"
ARMS = {"sequential": None, "ray-1cpu": 1, "ray-2cpu": 2}
TRIALS = 6


def spec(timesteps: int) -> Any:
    """The benchmark's sweep: PPO on CartPole-v1, two learning rates, three seeds."""
    from palaestra.sweep import SweepSpec

    return SweepSpec("ppo", ("CartPole-v1",), 3, timesteps, grid={"learning_rate": [3e-4, 1e-3]}, eval_episodes=10)


def run_arm(arm: str, timesteps: int, out: Path) -> dict[str, Any]:
    """Train the six trials as ``arm`` says (in this process); the seconds each part took."""
    import torch

    from palaestra import sweep

    torch.set_num_threads(1)
    configs = sweep.trial_configs(spec(timesteps), out, threads=1)
    started = time.perf_counter()
    if ARMS[arm] is None:
        trials = [sweep.train_and_evaluate(config) for config in configs]
        return {"ray_start_seconds": 0.0, "train_seconds": [trial["train_seconds"] for trial in trials]}
    sweep.start_ray(None, ARMS[arm], verbose=False)
    ray_start = time.perf_counter() - started
    outcomes = sweep.run_trials(sweep.train_trial, configs, out, num_cpus=ARMS[arm])
    failed = [outcome.name for outcome in outcomes if outcome.error or "train_seconds" not in outcome.metrics]
    if failed or len(outcomes) != len(configs):
        raise RuntimeError(f"trials did not finish: {failed}")
    return {"ray_start_seconds": ray_start, "train_seconds": [outcome.metrics["train_seconds"] for outcome in outcomes]}


def time_arm(arm: str, timesteps: int) -> dict[str, Any]:
    """Run ``arm`` in a fresh interpreter; its wall time from launch to exit and what it measured inside."""
    with tempfile.TemporaryDirectory(prefix="palaestra-scaling-") as out:
        command = [sys.executable, "-m", "benchmarks.sweep_scaling", "--arm", arm, "--timesteps", str(timesteps)]
        started = time.perf_counter()
        done = subprocess.run([*command, "--out", out], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{arm} failed:\n{done.stderr[-2000:]}")
    return {"arm": arm, "wall_seconds": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean wall time per arm, the 2-CPU speed-up and Ray's overhead per trial, both against ``sequential``."""
    wall = {arm: float(np.mean([r["wall_seconds"] for r in rounds if r["arm"] == arm])) for arm in ARMS}
    train = {arm: float(np.mean([sum(r["train_seconds"]) for r in rounds if r["arm"] == arm])) for arm in ARMS}
    start = float(np.mean([r["ray_start_seconds"] for r in rounds if r["arm"] != "sequential"]))
    return {
        "wall_seconds": wall,
        "train_seconds_summed": train,
        "ray_start_seconds": start,
        "speedup_2cpu_vs_sequential": wall["sequential"] / wall["ray-2cpu"],
        "speedup_2cpu_vs_1cpu": wall["ray-1cpu"] / wall["ray-2cpu"],
        "ray_overhead_per_trial_seconds": (wall["ray-1cpu"] - wall["sequential"]) / TRIALS,
    }


def render(payload: dict[str, Any]) -> None:
    """The README section: wall time per arm and the ratios."""
    summary, args = payload["summary"], payload["args"]
    rows = [
        [arm, f"{summary['wall_seconds'][arm]:.1f}", f"{summary['train_seconds_summed'][arm]:.1f}",
         f"{summary['wall_seconds']['sequential'] / summary['wall_seconds'][arm]:.2f}x"]
        for arm in ARMS
    ]  # fmt: skip
    body = (
        f"Six trainings (PPO on CartPole-v1, {args['timesteps']:,} steps, learning rate 3e-4 and 1e-3 x seeds 0-2, "
        "each then evaluated on 10 episodes, one torch thread per trial) on this 2-core machine, mean of "
        f"{args['repeats']} alternating rounds, each arm a fresh interpreter timed from launch to exit "
        '(`python -m benchmarks.sweep_scaling`). "trainings" sums the six `palaestra train` calls inside the arm '
        "(on 2 CPUs two run at once, so each one is slower).\n\n"
        + markdown_table(["arm", "wall s", "trainings s (summed)", "speed vs sequential"], rows)
        + f"\n\nOn one CPU Ray adds {TRIALS * summary['ray_overhead_per_trial_seconds']:.1f} s to the six trials, "
        f"**{summary['ray_overhead_per_trial_seconds']:.1f} s per trial** ((ray-1cpu - sequential) / 6): starting Ray "
        f"takes {summary['ray_start_seconds']:.1f} s once, and each trial starts a worker process that imports torch "
        f"and SB3 again. Two CPUs make the sweep {summary['speedup_2cpu_vs_1cpu']:.2f}x faster than one CPU and "
        f"{summary['speedup_2cpu_vs_sequential']:.2f}x faster than the trainings in turn without Ray; with trials "
        "of minutes instead of 20 s, the fixed cost shrinks to a few percent.\n"
    )
    render_readme_section(SECTION, body)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring); ``--arm`` runs one arm in this process (used by the rounds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=16384, help="PPO steps per trial")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the three arms")
    parser.add_argument("--arm", choices=list(ARMS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--render-only", action="store_true", help="rewrite the README section from the results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds (or one arm, or only the README section)."""
    args = parse_args(argv)
    if args.arm is not None:
        print(json.dumps(run_arm(args.arm, args.timesteps, args.out)))
        return 0
    if args.render_only:
        render(json.loads((Path(__file__).parent / "results" / "sweep_scaling.json").read_text()))
        return 0
    rounds = []
    for index in range(args.repeats):
        for arm in ARMS:
            rounds.append(time_arm(arm, args.timesteps))
            print(f"round {index + 1} {arm}: {rounds[-1]['wall_seconds']:.1f} s", flush=True)
    payload = {
        "benchmark": "sweep_scaling",
        "args": {"timesteps": args.timesteps, "repeats": args.repeats},
        "machine": machine_info(torch_threads=1),
        "rounds": rounds,
        "summary": summarize(rounds),
    }
    write_results("sweep_scaling", payload)
    render(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
