"""Checks of lesson 8 (RL for language-model agents): GRPO advantages, the clipped surrogate, GiGPO step advantages.

Each check computes the expected answer itself with :mod:`palaestra.agents.llm.advantages` and
:mod:`palaestra.agents.llm.losses` (the trainer's own functions), prints one line and returns a bool.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import torch as th

from palaestra.agents.llm.advantages import gigpo_advantages, grpo_advantages
from palaestra.agents.llm.losses import clipped_surrogate_loss
from palaestra.course.checks import as_number, check_array, report

__all__ = ["SURROGATE_CASES", "check_clipped_surrogate", "check_gigpo_step_advantages", "check_grpo_advantages"]

#: (ratio, advantage) pairs the surrogate check tries: inside the trust region, beyond either edge, both signs.
SURROGATE_CASES: tuple[tuple[float, float], ...] = (
    (1.0, 1.0),
    (1.1, 2.0),
    (1.5, 1.0),
    (1.5, -1.0),
    (0.5, 1.0),
    (0.5, -1.0),
    (0.9, -0.5),
    (3.0, -2.0),
    (0.1, 0.0),
)


def check_grpo_advantages(answer: Any, rewards: Any, eps: float = 1e-6) -> bool:
    """``answer`` should be GRPO's ``(R_i - mean R) / (std R + eps)`` for the group ``rewards``, shape ``(G,)``."""
    group = th.as_tensor(np.asarray(rewards, dtype=np.float64))
    expected = grpo_advantages(group, eps=eps).numpy()
    return check_array(
        "GRPO advantages",
        answer,
        expected,
        atol=1e-5,
        hint="the std is the unbiased one (ddof=1), with eps added to it",
    )


def check_clipped_surrogate(loss_fn: Callable[[float, float, float], Any], clip_range: float = 0.2) -> bool:
    """``loss_fn(ratio, advantage, clip_range)`` should be PPO's per-token loss ``-min(rho A, clip(rho) A)``."""
    name = "clipped surrogate"
    for ratio, advantage in SURROGATE_CASES:
        log_ratio = th.tensor([[float(np.log(ratio))]], dtype=th.float64)
        loss, _ = clipped_surrogate_loss(
            log_ratio, th.tensor([[advantage]], dtype=th.float64), th.ones(1, 1), clip_range=clip_range
        )
        expected = float(loss)
        try:
            value = loss_fn(ratio, advantage, clip_range)
        except Exception as error:  # a student's function may fail in any way
            return report(name, False, f"loss({ratio}, {advantage}) raised {type(error).__name__}: {error}")
        number, problem = as_number(value)
        if number is None:
            problem = "returned None; expected a number" if value is None else problem
            return report(name, False, f"loss({ratio}, {advantage}): {problem}")
        if not abs(number - expected) <= 1e-6:
            return report(
                name,
                False,
                f"loss(ratio={ratio}, A={advantage}) = {number:.4g}, expected {expected:.4g} "
                "(the loss is minus the smaller of the two surrogates)",
            )
    return report(name, True, f"matches PPO's per-token loss on {len(SURROGATE_CASES)} (ratio, advantage) pairs")


def check_gigpo_step_advantages(
    answer: Any,
    step_rewards: Any,
    turn_mask: Any,
    anchors: Sequence[Sequence[Hashable]],
    gamma: float = 0.95,
) -> bool:
    """``answer`` should be GiGPO's step-level advantages ``A^S`` (anchor groups, discounted returns), ``(G, K)``.

    The expected values are the step part of :func:`~palaestra.agents.llm.advantages.gigpo_advantages`: its
    ``omega=1`` output minus its ``omega=0`` output (the episode part), zero on padded steps.
    """
    rewards = th.as_tensor(np.asarray(step_rewards, dtype=np.float64))
    mask = th.as_tensor(np.asarray(turn_mask, dtype=bool))
    combined = gigpo_advantages(rewards, mask, anchors, gamma=gamma, omega=1.0)
    episode = gigpo_advantages(rewards, mask, anchors, gamma=gamma, omega=0.0)
    return check_array(
        "GiGPO step advantages",
        answer,
        (combined - episode).numpy(),
        atol=1e-5,
        hint="group steps by anchor, normalise each group's discounted returns (std ddof=1); singletons get 0",
    )
