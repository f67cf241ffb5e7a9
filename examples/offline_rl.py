"""Offline RL from a fixed dataset: D4RL's API on palaestra's own data, then TD3+BC and IQL.

An offline agent never acts in the env while it learns: it only reads transitions someone else collected. Here
that someone is a SAC agent halfway through its training (pendulum's ``medium-replay`` buffer: mostly poor
episodes, a few good ones). The example prints what the data hold, trains TD3+BC and IQL on them for the same
number of gradient steps, and scores each policy in the real env on D4RL's normalised scale (0: random,
100: expert), beside the score of the data's own episodes.

    python examples/offline_rl.py                  # 5,000 gradient steps per agent, a few minutes on one core
    python examples/offline_rl.py --steps 500 --dataset-size 2000
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import palaestra
from palaestra.agents.offline import IQL, TD3BC
from palaestra.envs.offline import episode_returns


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print and return the normalised score of the data and of each agent."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="gradient steps per agent")
    parser.add_argument("--dataset-size", type=int, help="transitions (default: the whole replay buffer)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per agent")
    args = parser.parse_args(argv)

    # generated on first use (then read from the Minari datasets folder), like D4RL's download
    env = gym.make("pendulum-medium-replay-v0", dataset_size=args.dataset_size)
    data = env.get_dataset()
    returns = episode_returns(data["rewards"], data["terminals"] | data["timeouts"])
    print(f"dataset: {len(data['rewards'])} transitions in {len(returns)} episodes; keys {sorted(data)}")
    scores = {"data": 100 * float(np.mean(env.get_normalized_score(returns)))}

    for name, agent_class in (("TD3+BC", TD3BC), ("IQL", IQL)):
        agent = agent_class(env, seed=0, eval_freq=0).learn(args.steps)
        result = palaestra.evaluate(agent, env, n_episodes=args.episodes, seed=0)
        scores[name] = 100 * float(env.get_normalized_score(result.mean))
    print(f"D4RL-normalised score after {args.steps} gradient steps:")
    for name, score in scores.items():
        print(f"  {name:<7} {score:6.1f}")
    return scores


if __name__ == "__main__":
    torch.set_num_threads(1)  # small networks train fastest on one thread
    main()
