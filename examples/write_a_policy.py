"""Write a policy by hand and evaluate it like any trained agent.

A palaestra policy is anything with Stable-Baselines3's ``predict`` signature, so a hand-written controller
goes through ``palaestra.evaluate``, SB3's ``evaluate_policy`` and the CLI exactly as a trained agent does.
This example balances RobustCartPole-v0 with three controllers: random pushes, a proportional controller that
pushes the way the pole leans, and a proportional-derivative one that also counts how fast it is falling.
Each is evaluated on the nominal cart-pole and on perturbed ones (a longer, heavier pole; a weaker motor),
the comparison robust RL starts from.

    python examples/write_a_policy.py              # 20 episodes per cell
    python examples/write_a_policy.py --episodes 3
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
import numpy as np

import palaestra

CONDITIONS: dict[str, dict[str, float] | None] = {
    "nominal": None,
    "long heavy pole": {"length": 2.0, "masspole": 2.0},
    "weak motor": {"force_mag": 0.3},
}


class LinearController:
    """Push right when ``gains . observation > 0``; the observation is (x, x_dot, theta, theta_dot)."""

    def __init__(self, gains: tuple[float, float, float, float]) -> None:
        self.gains = np.asarray(gains, dtype=float)

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[Any, tuple[np.ndarray, ...] | None]:
        """One action per observation; a batch from a vectorised env gets a batch of actions."""
        observations = np.asarray(observation, dtype=float)
        actions = (observations.reshape(-1, 4) @ self.gains > 0).astype(np.int64)
        return (actions if observations.ndim > 1 else actions[0]), state


class RandomPolicy:
    """Uniform random actions from the env's action space."""

    def __init__(self, action_space: gym.Space, seed: int = 0) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[Any, tuple[np.ndarray, ...] | None]:
        """A random action, whatever the observation."""
        return self.action_space.sample(), state


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print and return the mean return of every controller under every condition."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20, help="episodes per controller and condition")
    args = parser.parse_args(argv)

    policies = {
        "random": RandomPolicy(gym.make("RobustCartPole-v0").action_space),
        "P (angle)": LinearController((0.0, 0.0, 1.0, 0.0)),
        "PD (angle, spin)": LinearController((0.0, 0.0, 1.0, 0.5)),
    }
    assert all(isinstance(policy, palaestra.Policy) for policy in policies.values())  # the protocol is structural

    table: dict[str, dict[str, float]] = {}
    for name, policy in policies.items():
        table[name] = {}
        for condition, perturbation in CONDITIONS.items():
            env = gym.make("RobustCartPole-v0", perturbation=perturbation)
            result = palaestra.evaluate(policy, env, n_episodes=args.episodes, seed=0)
            table[name][condition] = result.mean
    print(f"{'controller':<18}" + "".join(f"{condition:>17}" for condition in CONDITIONS))
    for name, row in table.items():
        print(f"{name:<18}" + "".join(f"{row[condition]:>17.1f}" for condition in CONDITIONS))
    return table


if __name__ == "__main__":
    main()
