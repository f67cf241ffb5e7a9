"""SB3 on text envs through candidate actions: PPO and MaskablePPO on 1-hop ToolSearch-v0 and a small TextWorld game.

ToolSearch-v0 (1-hop questions, ``top_k=3``, 4 turns): each agent trains on the ``train`` split drawn from
``--train-worlds`` generated worlds (so names cannot be memorised as ids; the wrapper hashes them anyway) and is
evaluated, deterministically, on ``--eval-episodes`` questions of ``dev`` (the training world's held-out
questions) and of ``hot`` (a world no training question names). The agents:

* ``maskable-ppo``: sb3-contrib's MaskablePPO with palaestra's candidate scorer policy (one network scores every
  slot; :mod:`palaestra.agents.candidate_policy`), what ``palaestra train --algo maskable-ppo`` builds;
* ``ppo``: SB3's PPO with the same scorer, ``invalid_action="noop"`` (it samples without masks, so an empty slot
  is an invalid turn);
* ``maskable-ppo (MlpPolicy)``: MaskablePPO with SB3's ``MlpPolicy`` over the whole observation, the baseline
  the scorer is measured against;
* ``random``: a uniform choice among the offered candidates (the floor).

TextWorld-v0: MaskablePPO with the scorer on one generated game (``--textworld-game``), won episodes out of
``--eval-episodes`` greedy episodes.

EM and win rates are means over seeds with 95% bootstrap CIs. 1 torch thread. Resumable: each finished run is
saved. Run: ``python -m benchmarks.text_candidates`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from benchmarks.harness import (
    RESULTS_DIR,
    add_runs_saved_meanwhile,
    load_resumable,
    machine_info,
    mean_ci,
    publish,
    write_results,
)
from palaestra.agents.candidate_policy import scorer_policy_for
from palaestra.evaluation import evaluate
from palaestra.tables import markdown_table
from palaestra.wrappers import CandidateActions

NAME = "text_candidates"
SECTION = "SB3 on text envs: candidate actions"
THREADS = 1
AGENTS = ("maskable-ppo", "ppo", "maskable-ppo (MlpPolicy)")
PPO_KWARGS = {"n_steps": 512, "batch_size": 64}  # SB3's defaults otherwise (n_epochs 10, lr 3e-4, gamma 0.99)
SPLITS = ("dev", "hot")


def toolsearch(split: str, train_worlds: int, invalid_action: str = "error") -> gym.Env:
    """1-hop ToolSearch-v0 on ``split`` behind :class:`CandidateActions` (train: ``train_worlds`` worlds)."""
    kwargs: dict[str, Any] = {"hops": 1, "split": split, "request_infos": ["candidates"]}
    if split == "train" and train_worlds > 1:
        kwargs["train_worlds"] = train_worlds
    return CandidateActions(gym.make("ToolSearch-v0", **kwargs), invalid_action=invalid_action)


def textworld(game: dict[str, int]) -> gym.Env:
    """TextWorld-v0 on one generated game, choosing among its admissible commands."""
    return CandidateActions(gym.make("TextWorld-v0", request_infos=["admissible_commands"], **game))


class RandomCandidate:
    """A uniform choice among the offered candidates (``predict`` with ``action_masks``, as MaskablePPO's)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[np.ndarray, None]:  # fmt: skip
        """One offered candidate, uniformly."""
        assert action_masks is not None  # internal invariant: evaluate passes the wrapper's masks
        return np.asarray(self.rng.choice(np.flatnonzero(action_masks))), None


def build(agent: str, env: gym.Env, seed: int) -> Any:
    """The SB3 model of ``agent`` on ``env``."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    algorithm = PPO if agent == "ppo" else MaskablePPO
    policy = "MlpPolicy" if agent.endswith("(MlpPolicy)") else scorer_policy_for(algorithm)
    return algorithm(policy, env, seed=seed, verbose=0, **PPO_KWARGS)


def train_toolsearch(agent: str, seed: int, steps: int, train_worlds: int, eval_episodes: int) -> dict[str, Any]:
    """Train one agent (or none, for ``random``) and measure its EM on dev and hot."""
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    invalid_action = "noop" if agent == "ppo" else "error"
    if agent == "random":
        model: Any = RandomCandidate(seed)
    else:
        model = build(agent, toolsearch("train", train_worlds, invalid_action), seed).learn(steps)
    seconds = time.perf_counter() - started
    em = {}
    for split in SPLITS:
        result = evaluate(model, toolsearch(split, train_worlds, invalid_action), n_episodes=eval_episodes,
                          seed=10_000 + seed, deterministic=True)  # fmt: skip
        em[split] = float(result.mean)
    return {"env": "ToolSearch-v0", "agent": agent, "seed": seed, "steps": steps, "seconds": seconds, "em": em}


def train_textworld(seed: int, steps: int, game: dict[str, int], eval_episodes: int) -> dict[str, Any]:
    """Train MaskablePPO with the scorer on one TextWorld game; the share of greedy episodes it wins."""
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    model = build("maskable-ppo", textworld(game), seed).learn(steps)
    seconds = time.perf_counter() - started
    env, wins = textworld(game), []
    for episode in range(eval_episodes):
        observation, _ = env.reset(seed=10_000 + seed + episode)
        done, info = False, {}
        while not done:
            action, _ = model.predict(observation, action_masks=env.action_masks(), deterministic=True)
            observation, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        wins.append(float(info.get("won", False)))
    return {"env": "TextWorld-v0", "agent": "maskable-ppo", "seed": seed, "steps": steps, "seconds": seconds,
            "win_rate": float(np.mean(wins))}  # fmt: skip


def _run_key(run: dict[str, Any]) -> tuple[str, str, int]:
    return run["env"], run["agent"], run["seed"]


def report(payload: dict[str, Any]) -> str:
    """The README section: the EM table, the TextWorld row and the settings."""
    args = payload["args"]
    runs = payload["runs"]
    rows = []
    for agent in ("random", *AGENTS):
        mine = [run for run in runs if run["env"] == "ToolSearch-v0" and run["agent"] == agent]
        if mine:
            rows.append([agent, len(mine), *(mean_ci([run["em"][split] for run in mine]) for split in SPLITS),
                         "-" if agent == "random" else f"{np.mean([run['seconds'] for run in mine]):.0f}"])  # fmt: skip
    table = markdown_table(["agent", "seeds", "dev EM", "hot EM", "train s"], rows)
    games = [run for run in runs if run["env"] == "TextWorld-v0"]
    textworld_line = (
        f"TextWorld-v0 (game {args['textworld_game']}, {args['textworld_steps']} steps): MaskablePPO with the scorer "
        f"wins {mean_ci([run['win_rate'] for run in games])} of {args['eval_episodes']} greedy episodes "
        f"({len(games)} seeds)."
        if games
        else "TextWorld-v0: not run yet."
    )
    return (
        f"1-hop ToolSearch-v0 (top_k 3, 4 turns), {args['steps']} env steps per run on the train split drawn from "
        f"{args['train_worlds']} generated worlds; exact match of the greedy policy on {args['eval_episodes']} dev and "
        f"hot questions, mean over seeds {sorted({run['seed'] for run in runs})} with a 95% bootstrap CI. "
        f"PPO settings: SB3's defaults with {PPO_KWARGS}. {THREADS} torch thread on a shared 2-core CPU. "
        "Rerun: `python -m benchmarks.text_candidates`.\n\n"
        f"{table}\n\n{textworld_line}\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Train the runs that are missing, save each, and render the README section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-worlds", type=int, default=32)
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--textworld-steps", type=int, default=20_000)
    parser.add_argument("--textworld-game", type=str, default="game_seeds=0,nb_rooms=5,nb_objects=8,quest_length=5")
    parser.add_argument("--agents", nargs="+", default=["random", *AGENTS, "textworld"])
    parser.add_argument("--fresh", action="store_true", help="discard saved runs")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets, results not saved")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.textworld_steps, args.eval_episodes, args.seeds = 512, 512, 4, [0]
    game = {key: int(value) for key, value in (item.split("=") for item in args.textworld_game.split(","))}
    settings = {key: getattr(args, key) for key in ("steps", "seeds", "train_worlds", "eval_episodes",
                                                     "textworld_steps", "textworld_game")}  # fmt: skip
    payload = {"runs": []} if args.quick else load_resumable(NAME, settings, args.fresh, selection=("seeds",))
    payload.setdefault("runs", [])
    payload["args"] = settings
    done = {_run_key(run) for run in payload["runs"]}
    for seed in args.seeds:
        for agent in args.agents:
            if agent == "textworld":
                if ("TextWorld-v0", "maskable-ppo", seed) not in done:
                    record = train_textworld(seed, args.textworld_steps, game, args.eval_episodes)
                    print(f"TextWorld-v0 maskable-ppo seed {seed}: win rate {record['win_rate']:.2f}", flush=True)
                    payload["runs"].append(record)
            elif ("ToolSearch-v0", agent, seed) not in done:
                record = train_toolsearch(agent, seed, args.steps, args.train_worlds, args.eval_episodes)
                print(f"ToolSearch-v0 {agent} seed {seed}: dev EM {record['em']['dev']:.2f}, hot EM "
                      f"{record['em']['hot']:.2f} ({record['seconds']:.0f} s)", flush=True)  # fmt: skip
                payload["runs"].append(record)
            if not args.quick:  # another invocation (other seeds) may have saved runs meanwhile: keep them
                add_runs_saved_meanwhile(payload, RESULTS_DIR / f"{NAME}.json", _run_key, selection=("seeds",))
                payload["machine"] = machine_info(THREADS)
                write_results(NAME, payload)
    publish(NAME, SECTION, report(payload), saved=not args.quick)


if __name__ == "__main__":
    main()
