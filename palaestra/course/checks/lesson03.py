"""Checks of lesson 3 (policy gradients): the discounted return-to-go, the REINFORCE loss and the IQM.

Each check computes the expected answer itself from the inputs (the return-to-go and the loss from their
definitions, the IQM with ``scipy.stats.trim_mean``, which rliable's ``aggregate_iqm`` calls), prints one line
and returns a bool. The ``reference_*`` functions are what the lesson falls back on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import stats

from palaestra.course.checks import check_array, check_number, report

__all__ = [
    "check_iqm",
    "check_reinforce_loss",
    "check_returns_to_go",
    "reference_iqm",
    "reference_reinforce_loss",
    "reference_returns_to_go",
]


def reference_returns_to_go(rewards: Any, gamma: float) -> np.ndarray:
    """``G_t = sum_{k >= t} gamma^(k - t) r_k`` for every step of one episode, shape ``(len(rewards),)``."""
    rewards = np.asarray(rewards, dtype=np.float64)
    returns = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def check_returns_to_go(answer: Any, rewards: Any, gamma: float) -> bool:
    """``answer`` should be the discounted return-to-go of ``rewards``, one value per step."""
    return check_array(
        "return-to-go",
        answer,
        reference_returns_to_go(rewards, gamma),
        hint="G_t = r_t + gamma G_(t+1), computed from the last step backwards with G_T = 0",
    )


def reference_reinforce_loss(log_probs: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """``-mean_t log pi(a_t | s_t) G_t``: its gradient is minus the REINFORCE estimate of the policy gradient."""
    return -(log_probs * returns).mean()


def check_reinforce_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> bool:
    """``loss_fn(log_probs, returns)`` should be a scalar tensor ``-mean(log_probs * returns)`` that back-propagates."""
    name = "REINFORCE loss"
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 2, generator=generator, requires_grad=True)
    actions = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    log_probs = torch.log_softmax(logits, dim=1)[torch.arange(7), actions]
    returns = torch.randn(7, generator=generator)
    expected = reference_reinforce_loss(log_probs, returns)
    try:
        answer = loss_fn(log_probs, returns)
    except Exception as error:  # a check never raises: it says what went wrong
        return report(name, False, f"calling the loss raised {type(error).__name__}: {error}")
    if answer is None:
        return report(name, False, "no answer yet; expected a scalar torch tensor")
    if not isinstance(answer, torch.Tensor) or answer.ndim != 0:
        shape = tuple(answer.shape) if isinstance(answer, torch.Tensor) else np.shape(answer)
        return report(name, False, f"expected a scalar torch tensor (shape ()), got {type(answer).__name__} of shape {shape}")
    if answer.grad_fn is None:
        return report(name, False, "the loss does not depend on log_probs through torch, so it has no gradient")
    return check_number(
        name,
        answer.item(),
        expected.item(),
        atol=1e-5,
        hint="minimise minus the mean over steps of log_probs * returns",
    )


def reference_iqm(scores: Any) -> float:
    """Interquartile mean of all entries: drop the lowest and highest ``floor(n / 4)``, average the rest."""
    return float(stats.trim_mean(np.asarray(scores, dtype=np.float64), proportiontocut=0.25, axis=None))


def check_iqm(answer: Any, scores: Any) -> bool:
    """``answer`` should be the interquartile mean of every entry of ``scores`` (a single number)."""
    return check_number(
        "interquartile mean",
        answer,
        reference_iqm(scores),
        hint="flatten and sort the scores, drop the floor(n / 4) lowest and highest, average the rest",
    )
