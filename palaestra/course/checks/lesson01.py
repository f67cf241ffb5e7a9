"""Checks of lesson 1 (the Gym interface)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from palaestra.course.checks import check_array, check_number, report

__all__ = ["check_episode_return", "check_normal_ci", "check_policy_balances"]


def check_episode_return(answer: Any, env_id: str, policy: Any, seed: int) -> bool:
    """The return of one episode of ``policy`` on ``env_id`` reset with ``seed``, recomputed here."""
    env = gym.make(env_id)
    observation, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action, _ = policy.predict(observation, deterministic=True)
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    env.close()
    return check_number("episode return", answer, total, atol=1e-9, hint="add up every reward until terminated or truncated")


def check_policy_balances(policy: Any, min_return: float = 195.0, episodes: int = 5) -> bool:
    """The hand-written policy keeps the nominal RobustCartPole-v0 pole up for ``min_return`` steps on average."""
    from palaestra.evaluation import evaluate

    if not hasattr(policy, "predict"):
        return report("balancing policy", False, f"expected an object with a predict method, got {type(policy).__name__}")
    env = gym.make("RobustCartPole-v0")
    try:
        result = evaluate(policy, env, n_episodes=episodes, seed=0)
    except Exception as error:  # a student's policy may fail in any way; say how, don't crash the notebook
        return report("balancing policy", False, f"evaluating it raised {type(error).__name__}: {error}")
    finally:
        env.close()
    detail = f"mean return {result.mean:.1f} over {episodes} episodes (needs >= {min_return:.0f})"
    return report("balancing policy", result.mean >= min_return, detail)


def check_normal_ci(answer: Any, returns: np.ndarray, z: float = 1.96) -> bool:
    """``(low, high)`` of the normal-approximation interval ``mean -+ z * s / sqrt(n)`` with the sample std."""
    values = np.asarray(returns, dtype=np.float64)
    half = z * values.std(ddof=1) / np.sqrt(values.size)
    expected = np.array([values.mean() - half, values.mean() + half])
    return check_array(
        "normal-approximation interval", answer, expected, atol=1e-6, hint="use the sample standard deviation (ddof=1)"
    )
