"""Env step throughput of palaestra's robust control envs against Gymnasium's own, measured in the same run.

Run from the repository root: ``python -m benchmarks.env_throughput``. Both envs of a pair come from
``gym.make`` (same wrapper stack: TimeLimit, OrderEnforcing, PassiveEnvChecker), take the same action
sequence, and reset on episode end; rounds of the two alternate so that machine noise hits both alike.
The overhead ratio is palaestra's median time per step over Gymnasium's (target: <= 1.10).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import palaestra  # noqa: F401  (registers the ids)
from benchmarks.harness import machine_info, markdown_table, render_readme_section, time_callables, write_results
from palaestra.throughput import env_stepper

PAIRS = {"RobustCartPole-v0": "CartPole-v1", "RobustPendulum-v0": "Pendulum-v1"}
TARGET_RATIO = 1.10


def vector_stepper(envs: gym.vector.VectorEnv, actions: np.ndarray) -> Callable[[], None]:
    """Return a function that steps every copy of a vector env (autoreset is inside the env)."""
    envs.reset(seed=0)
    return lambda: envs.step(actions)


def run(number: int, repeats: int, num_envs: int) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    for ours, theirs in PAIRS.items():
        space = gym.make(theirs).action_space
        space.seed(0)
        actions = [space.sample() for _ in range(1000)]
        timings = time_callables(
            {ours: env_stepper(gym.make(ours), actions), theirs: env_stepper(gym.make(theirs), actions)},
            number=number,
            repeats=repeats,
        )
        rows.append(_row(ours, theirs, timings, number))
    vector_actions = rng.integers(0, 2, size=num_envs)
    vector = {
        f"RobustCartPole-v0 x{num_envs} (vector)": gym.make_vec(
            "RobustCartPole-v0", num_envs, vectorization_mode="vector_entry_point"
        ),
        f"CartPole-v1 x{num_envs} (vector)": gym.make_vec("CartPole-v1", num_envs, vectorization_mode="vector_entry_point"),
    }
    (ours, envs_a), (theirs, envs_b) = vector.items()
    timings = time_callables(
        {ours: vector_stepper(envs_a, vector_actions), theirs: vector_stepper(envs_b, vector_actions)},
        number=max(1, number // 4),
        repeats=repeats,
    )
    rows.append(_row(ours, theirs, timings, number // 4, steps_per_call=num_envs))
    return {"benchmark": "env_throughput", "target_ratio": TARGET_RATIO, "number": number, "repeats": repeats, "rows": rows}


def _row(ours: str, theirs: str, timings: dict, number: int, steps_per_call: int = 1) -> dict:
    ratio = timings[ours].median_s / timings[theirs].median_s
    return {
        "palaestra_env": ours,
        "baseline_env": theirs,
        "palaestra_steps_per_s": steps_per_call / timings[ours].median_s,
        "baseline_steps_per_s": steps_per_call / timings[theirs].median_s,
        "overhead_ratio": ratio,
        "meets_target": ratio <= TARGET_RATIO,
        "timings": {name: timing.to_dict() for name, timing in timings.items()},
    }


def render(result: dict) -> str:
    rows = [
        [
            row["palaestra_env"],
            row["baseline_env"],
            f"{row['palaestra_steps_per_s']:,.0f}",
            f"{row['baseline_steps_per_s']:,.0f}",
            f"{row['overhead_ratio']:.2f}",
            "yes" if row["meets_target"] else "no",
        ]
        for row in result["rows"]
    ]
    header = ["palaestra env", "Gymnasium baseline", "palaestra steps/s", "baseline steps/s", "time ratio", "<= 1.10"]
    machine = result["machine"]
    note = (
        f"Median of {result['repeats']} interleaved rounds of {result['number']} steps each, same actions, both made by "
        f"`gym.make`; {machine['cpu']}, {machine['cores']} cores, gymnasium {machine['packages']['gymnasium']}, "
        f"numpy {machine['packages']['numpy']}. Rerun: `python -m benchmarks.env_throughput`."
    )
    return f"{markdown_table(header, rows)}\n\n{note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per env")
    parser.add_argument("--num-envs", type=int, default=16, help="copies in the vector-env comparison")
    args = parser.parse_args()
    result = {"machine": machine_info(torch_threads=None), **run(args.number, args.repeats, args.num_envs)}
    path = write_results("env_throughput", result)
    render_readme_section("Env step throughput", render(result))
    print(render(result))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
