"""Checks of lesson 7 (tool agents on ToolSearch-v0): answer metrics, an episode's return and a search policy.

Each check computes the expected answer itself: the metrics with :mod:`palaestra.envs.text.rewards` (the env's
own scoring), the return by replaying the episode in ToolSearch-v0, the policy's score by playing dev questions.
Each prints one line and returns a bool, without raising on a wrong answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from palaestra.course.checks import as_number, check_number, report
from palaestra.envs.text.rewards import exact_match, token_f1

__all__ = ["METRIC_CASES", "check_answer_metrics", "check_episode_return", "check_search_policy"]

#: (prediction, gold answers) pairs the metric check tries: case, punctuation, articles, aliases, partial overlap,
#: repeated tokens, yes/no and empty strings.
METRIC_CASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Punoukaem Labs", ("Punoukaem Labs",)),
    ("the punoukaem labs!", ("Punoukaem Labs",)),
    ("Punoukaem", ("Punoukaem Labs",)),
    ("Labs of Punoukaem Labs", ("Punoukaem Labs",)),
    ("An  Upper-Ciakriax", ("Upper Ciakriax",)),
    ("Tridaece, Quoubethask", ("Quoubethask Tridaece", "Tridaece, Quoubethask")),
    ("Quoubethask", ("Quoubethask Tridaece", "Tridaece, Quoubethask")),
    ("1748", ("1748",)),
    ("1749", ("1748",)),
    ("yes", ("no",)),
    ("no", ("no",)),
    ("yes it is", ("yes",)),
    ("", ("Port Elsby",)),
    ("port port elsby", ("Port Elsby",)),
    ("Elsby Port", ("Port Elsby",)),
)

_Metric = Callable[[str, list[str]], Any]


def check_answer_metrics(exact_match_fn: _Metric, token_f1_fn: _Metric) -> bool:
    """``exact_match_fn(prediction, answers)`` and ``token_f1_fn`` should agree with the env's scoring on every case."""
    name = "exact match and token F1"
    for label, mine, reference in (("exact match", exact_match_fn, exact_match), ("token F1", token_f1_fn, token_f1)):
        for prediction, answers in METRIC_CASES:
            expected = reference(prediction, answers)
            try:
                value = mine(prediction, list(answers))
            except Exception as error:  # a student's function may fail in any way
                return report(name, False, f"{label}({prediction!r}, {list(answers)}) raised {type(error).__name__}: {error}")
            number, problem = as_number(value)
            if number is None:
                problem = "returned None; expected a number" if value is None else problem
                return report(name, False, f"{label}({prediction!r}, {list(answers)}): {problem}")
            if not abs(number - expected) <= 1e-9:
                return report(name, False, f"{label}({prediction!r}, {list(answers)}) = {number:.4g}, expected {expected:.4g}")
    return report(name, True, f"both agree with the env's scoring on {len(METRIC_CASES)} cases")


def check_episode_return(
    answer: Any, messages: Sequence[str], seed: int, options: dict[str, Any] | None = None, **env_kwargs: Any
) -> bool:
    """``answer`` should be the summed reward of ``messages`` played in ToolSearch-v0 made with ``env_kwargs``."""
    env = gym.make("ToolSearch-v0", **env_kwargs)
    env.reset(seed=seed, options=options)
    total = 0.0
    for message in messages:
        _, reward, terminated, truncated, _ = env.step(message)
        total += float(reward)
        if terminated or truncated:
            break
    return check_number(
        "episode return",
        answer,
        total,
        atol=1e-6,
        hint="the last step pays the outcome reward; every turn costs step_cost and each invalid one the penalty too",
    )


def check_search_policy(policy: Any, n_questions: int = 20, threshold: float = 0.8) -> bool:
    """``policy`` (SB3's ``predict``) should reach EM >= ``threshold`` on 1-hop dev questions, searching each time."""
    name = "search policy"
    env = gym.make("ToolSearch-v0", split="dev", hops=1)
    successes, searched = [], []
    for episode in range(n_questions):
        observation, _ = env.reset(seed=episode)
        calls, done = 0, False
        info: dict[str, Any] = {}
        try:
            while not done:
                message, _ = policy.predict(observation)
                observation, _, terminated, truncated, info = env.step(message)
                calls = info["tool_calls"]
                done = terminated or truncated
        except Exception as error:  # a student's policy may fail in any way
            return report(name, False, f"episode {episode} raised {type(error).__name__}: {error}")
        successes.append(bool(info.get("is_success", False)))
        searched.append(calls > 0)
    em, share = float(np.mean(successes)), float(np.mean(searched))
    if share < 1.0:
        return report(name, False, f"EM {em:.2f}, but only {share:.0%} of the episodes searched; search the entity first")
    if em < threshold:
        return report(name, False, f"EM {em:.2f} on {n_questions} dev questions; expected at least {threshold}")
    return report(name, True, f"EM {em:.2f} on {n_questions} dev questions, a search in every episode")
