"""A tool-using text agent's world: ToolSearch-v0, its transcript, and the floor and ceiling of its score.

ToolSearch-v0 asks a question about a generated world of documents; the agent's actions are messages that
either search the corpus (``<search> query </search>``) or answer (``<answer> text </answer>``). This example
plays one episode with the oracle (which knows the gold queries) and prints the transcript the agent sees,
then evaluates the oracle and a random policy on one- and two-hop questions: the ceiling the search tool
allows and the floor every learning agent has to beat.

    python examples/tool_agent.py                  # 50 episodes per cell
    python examples/tool_agent.py --episodes 5
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import palaestra
from palaestra.agents.text_baselines import OracleSearchPolicy, RandomTextPolicy


def show_one_episode(seed: int = 0) -> None:
    """Play one two-hop question with the oracle and print the transcript."""
    env = gym.make("ToolSearch-v0", hops=2, max_doc_chars=160, render_mode="ansi")
    oracle = OracleSearchPolicy(env)
    observation, _ = env.reset(seed=seed)
    done = False
    while not done:
        message, _ = oracle.predict(observation)
        observation, reward, terminated, truncated, info = env.step(message)
        done = terminated or truncated
    print(env.render())
    print(f"reward {reward}, exact match {info['em']}, searches {info['tool_calls']}\n")


def main(argv: list[str] | None = None) -> dict[str, dict[int, float]]:
    """Print one transcript, then print and return each policy's success rate by hop count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="episodes per policy and hop count")
    args = parser.parse_args(argv)

    show_one_episode()
    rates: dict[str, dict[int, float]] = {"oracle": {}, "random": {}}
    for hops in (1, 2):
        env = gym.make("ToolSearch-v0", hops=hops, split="dev")
        policies = {"oracle": OracleSearchPolicy(env), "random": RandomTextPolicy(env.action_space, seed=0)}
        for name, policy in policies.items():
            result = palaestra.evaluate(policy, env, n_episodes=args.episodes, seed=0)
            rates[name][hops] = float(np.mean(result.successes))
    print(f"success rate over {args.episodes} dev questions:")
    for name, by_hops in rates.items():
        print(f"  {name:<7}" + "".join(f"  {hops}-hop {rate:5.2f}" for hops, rate in by_hops.items()))
    return rates


if __name__ == "__main__":
    main()
