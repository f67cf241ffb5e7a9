"""Where TD3+BC's walker2d-medium episodes fail: early falls at checkpoints, against the behaviour policy and the data.

    python -m benchmarks.offline_start_probe [--task walker2d] [--kind medium] [--steps 40000] [--every 2500]

Trains TD3+BC (CORL hyperparameters, one torch thread) and, every ``--every`` gradient steps, runs ``--episodes``
deterministic episodes from fixed start seeds, recording each one's length, whether it terminated (the robot fell)
and its final torso angle (``qpos[2]``, the hinge that Hopper's and Walker2d's health check bounds). An episode that
terminates within ``--early`` steps is an early fall. For comparison it runs the dataset's behaviour policy from
the same kind of start seeds (sampled and deterministic actions) and summarises the data's episode starts: how
many transitions they are, the mean and spread of the behaviour policy's opening action, the shortest episode.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import README, RESULTS_DIR, machine_info, markdown_table, render_readme_section, write_results

SECTION = "Offline agents: start probe"
Act = Callable[[np.ndarray], np.ndarray]


def run_episode(act: Act, env: Any, seed: int) -> dict[str, Any]:
    """One episode from ``env.reset(seed=seed)``: length, return, termination, opening action, final torso angle."""
    observation, _ = env.reset(seed=seed)
    first_action, length, episode_return, done, terminated = None, 0, 0.0, False, False
    while not done:
        action = act(observation)
        first_action = np.asarray(action, dtype=np.float64) if first_action is None else first_action
        observation, reward, terminated, truncated, _ = env.step(action)
        length, episode_return, done = length + 1, episode_return + float(reward), terminated or truncated
    data = getattr(env.unwrapped, "data", None)  # MuJoCo envs; classic control has no qpos
    return {
        "length": length,
        "return": episode_return,
        "terminated": bool(terminated),
        "first_action": [round(float(a), 3) for a in first_action],
        "torso_angle": None if data is None else round(float(data.qpos[2]), 3),
    }


def is_early_fall(episode: dict[str, Any], early: int) -> bool:
    """The episode terminated (the robot fell) within ``early`` steps."""
    return bool(episode["terminated"]) and episode["length"] <= early


def probe(act: Act, env: Any, seeds: range, early: int) -> dict[str, Any]:
    """Run one episode per seed; count the early falls (terminated within ``early`` steps)."""
    episodes = [run_episode(act, env, seed) for seed in seeds]
    mean_return = float(np.mean([e["return"] for e in episodes]))
    return {
        "episodes": episodes,
        "early_falls": sum(is_early_fall(e, early) for e in episodes),
        "mean_return": mean_return,
        "normalized_score": 100.0 * float(env.get_normalized_score(mean_return)),
    }


def data_starts(data: dict[str, np.ndarray]) -> dict[str, Any]:
    """The data's episode starts: their share of transitions, the opening actions' mean and std, the shortest episode."""
    from palaestra.envs.offline import episode_bounds

    starts, ends = episode_bounds(data["terminals"] | data["timeouts"])
    opening = data["actions"][starts].astype(np.float64)
    return {
        "episodes": len(starts),
        "start_fraction": len(starts) / len(data["rewards"]),
        "opening_action_mean": np.round(opening.mean(axis=0), 3).tolist(),
        "opening_action_std": np.round(opening.std(axis=0), 3).tolist(),
        "shortest_episode": int((ends - starts + 1).min()),
    }


def behaviour_lengths(task: str, kind: str, env: Any, seeds: range) -> dict[str, list[int]]:
    """Episode lengths of the kind's behaviour policy (medium-replay: the medium policy), sampled and deterministic."""
    from palaestra.envs.offline.policies import load_behaviour_policy

    actor = load_behaviour_policy(task, "medium" if kind == "medium-replay" else kind)
    rng = np.random.default_rng(0)
    return {
        "sampled": [run_episode(lambda o: actor(o, rng, False), env, seed)["length"] for seed in seeds],
        "deterministic": [run_episode(lambda o: actor(o, None, True), env, seed)["length"] for seed in seeds],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="walker2d", help="hopper, walker2d or pendulum")
    parser.add_argument("--kind", default="medium", choices=["medium", "medium-replay", "expert"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=40_000, help="TD3+BC gradient steps")
    parser.add_argument("--every", type=int, default=2_500, help="gradient steps between probes")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per probe")
    parser.add_argument("--behaviour-episodes", type=int, default=20)
    parser.add_argument("--early", type=int, default=20, help="a termination within this many steps is a fall")
    parser.add_argument("--dataset-size", type=int, default=None, help="transitions (default: the id's standard size)")
    parser.add_argument("--name", default="offline_start_probe")
    parser.add_argument("--section", default=SECTION)
    args = parser.parse_args(argv)
    for name in ("steps", "every", "episodes", "behaviour_episodes", "early"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def fall_angles(checkpoint: dict[str, Any], early: int) -> str:
    """The range of final torso angles (rad) of a checkpoint's early falls, or "-" without falls or a MuJoCo pose."""
    angles = [e["torso_angle"] for e in checkpoint["episodes"] if is_early_fall(e, early) and e["torso_angle"] is not None]
    return "-" if not angles else f"{min(angles):.2f} to {max(angles):.2f}"


def report(args: argparse.Namespace, payload: dict[str, Any]) -> str:
    """The README section: early falls per checkpoint, then the behaviour policy and the data for comparison."""
    rows = [
        [c["step"], f"{c['normalized_score']:.1f}", f"{c['early_falls']}/{args.episodes}", fall_angles(c, args.early),
         " ".join(str(e["length"]) for e in c["episodes"])]
        for c in payload["checkpoints"]
    ]  # fmt: skip
    behaviour, starts = payload["behaviour_lengths"], payload["data_starts"]
    return "\n\n".join(
        [
            f"`python -m benchmarks.offline_start_probe --task {args.task} --kind {args.kind} --seed {args.seed} "
            f"--steps {args.steps} --every {args.every}`: TD3+BC on {payload['env_id']}, one torch thread; each "
            f"probe runs {args.episodes} deterministic episodes from start seeds 100-{99 + args.episodes}. An early "
            f"fall is a termination within {args.early} steps.",
            markdown_table(["gradient steps", "score", "early falls", "torso angle at the falls", "episode lengths"], rows),
            f"Behaviour policy from {args.behaviour_episodes} start seeds: sampled actions "
            f"{min(behaviour['sampled'])}-{max(behaviour['sampled'])} steps, deterministic "
            f"{min(behaviour['deterministic'])}-{max(behaviour['deterministic'])} steps. Data: {starts['episodes']} "
            f"episodes, starts are {100 * starts['start_fraction']:.1f}% of the transitions, opening action mean "
            f"{starts['opening_action_mean']} (std {starts['opening_action_std']}), shortest episode "
            f"{starts['shortest_episode']} steps.",
        ]
    )


def main(argv: list[str] | None = None, results_dir: Path = RESULTS_DIR, readme: Path = README) -> dict[str, Any]:
    args = parse_args(argv)
    import gymnasium as gym
    import torch

    from palaestra.agents.offline import TD3BC

    torch.set_num_threads(1)
    env_id = f"{args.task}-{args.kind}-v0"
    env = gym.make(env_id, dataset_size=args.dataset_size, progress=False)
    agent = TD3BC(env, seed=args.seed, eval_freq=0)
    probe_seeds = range(100, 100 + args.episodes)
    checkpoints: list[dict[str, Any]] = []

    def probe_checkpoint(model: TD3BC) -> None:
        if model.num_timesteps % args.every == 0:
            result = probe(lambda o: model.predict(o)[0], env, probe_seeds, args.early)
            checkpoints.append({"step": model.num_timesteps, **result})
            print(f"step {model.num_timesteps}: score {result['normalized_score']:.1f}, "
                  f"early falls {result['early_falls']}/{args.episodes}", flush=True)  # fmt: skip

    agent.learn(args.steps, callback=probe_checkpoint)
    payload = {
        "machine": machine_info(torch_threads=1),
        "args": vars(args),
        "env_id": env_id,
        "checkpoints": checkpoints,
        "behaviour_lengths": behaviour_lengths(args.task, args.kind, env, range(args.behaviour_episodes)),
        "data_starts": data_starts(env.get_dataset()),
    }
    write_results(args.name, payload, results_dir)
    render_readme_section(args.section, report(args, payload), readme)
    return payload


if __name__ == "__main__":
    main()
