"""Timing on a shared machine: interleaved rounds with warm-up, and env step rates (``palaestra bench``).

Absolute times on a few busy cores are noisy; rounds of the candidates alternate so that noise hits them
alike, and what is worth quoting is the ratio between them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym

__all__ = ["Timing", "env_stepper", "step_timings", "time_callables"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one callable over ``repeats`` rounds of ``number`` calls each."""

    name: str
    number: int
    per_call_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        """Median seconds per call over the rounds."""
        return statistics.median(self.per_call_s)

    @property
    def min_s(self) -> float:
        """Fastest round's seconds per call."""
        return min(self.per_call_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with median, min and max per call."""
        return {**asdict(self), "median_s": self.median_s, "min_s": self.min_s, "max_s": max(self.per_call_s)}


def time_callables(
    callables: Mapping[str, Callable[[], object]], number: int, repeats: int = 7, warmup: int = 1
) -> dict[str, Timing]:
    """Time several callables, interleaving their rounds so that machine noise hits all of them alike.

    Args:
        callables: ``{name: fn}``; each ``fn()`` is one unit of work (one env step, one update, ...).
        number: Calls per round.
        repeats: Timed rounds per callable.
        warmup: Untimed rounds per callable before timing.

    Returns:
        ``{name: Timing}``.

    Raises:
        ValueError: If ``number`` or ``repeats`` is below 1 or ``warmup`` below 0.
    """
    if number < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need number >= 1, repeats >= 1, warmup >= 0; got {number}, {repeats}, {warmup}")
    rounds: dict[str, list[float]] = {name: [] for name in callables}
    for round_index in range(warmup + repeats):
        for name, fn in callables.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                rounds[name].append(elapsed / number)
    return {name: Timing(name, number, tuple(values)) for name, values in rounds.items()}


def env_stepper(env: gym.Env, actions: Sequence[Any], seed: int = 0) -> Callable[[], None]:
    """A function that takes one step of ``env`` (cycling through ``actions``), resetting at episode end."""
    env.reset(seed=seed)
    position = 0

    def step() -> None:
        nonlocal position
        action = actions[position % len(actions)]
        position += 1
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()

    return step


def step_timings(envs: Mapping[str, gym.Env], steps: int, repeats: int = 5, seed: int = 0) -> dict[str, Timing]:
    """Seconds per ``env.step`` of each env under uniform random actions, in interleaved rounds of ``steps`` steps.

    Each env draws up to 1,000 actions from its own action space (seeded with ``seed``) before timing, so
    sampling is not timed; resets at episode ends are, as a training loop pays them.
    """
    steppers = {}
    for name, env in envs.items():
        env.action_space.seed(seed)
        actions = [env.action_space.sample() for _ in range(min(steps, 1000))]
        steppers[name] = env_stepper(env, actions, seed)
    return time_callables(steppers, number=steps, repeats=repeats)
