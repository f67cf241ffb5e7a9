"""Checks of lesson 4 (sampling error: on-policy sampling vs PROPS)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from palaestra.course.checks import check_array, report

__all__ = [
    "check_batch_sampling_error",
    "check_props_direction",
    "reference_props_direction",
    "reference_sampling_error",
]


def reference_sampling_error(actions: Any, target: Any) -> np.ndarray:
    """``[KL(p_hat || target), TV(p_hat, target)]`` of a batch of discrete ``actions`` (``0 log 0 = 0``)."""
    target = np.asarray(target, dtype=np.float64)
    counts = np.bincount(np.asarray(actions, dtype=np.int64), minlength=len(target))
    empirical = counts / counts.sum()
    seen = empirical > 0
    kl = float(np.sum(empirical[seen] * np.log(empirical[seen] / target[seen])))
    tv = 0.5 * float(np.abs(empirical - target).sum())
    return np.array([kl, tv])


def reference_props_direction(logits: Any, actions: Any) -> np.ndarray:
    """The negative gradient of palaestra's PROPS behaviour loss w.r.t. the behaviour logits, at ``phi = theta``.

    Computed by autograd through :func:`palaestra.agents.online.props.props_behavior_loss` for a one-state softmax
    policy (the loss is the clipped ratio objective with every advantage set to -1, plus the KL regulariser).
    """
    import torch as th

    from palaestra.agents.online.props import props_behavior_loss

    target_logits = th.as_tensor(np.asarray(logits, dtype=np.float64))
    behaviour = target_logits.clone().requires_grad_(True)
    index = th.as_tensor(np.asarray(actions, dtype=np.int64))
    log_phi, log_theta = th.log_softmax(behaviour, -1), th.log_softmax(target_logits, -1)
    kl = (log_phi.exp() * (log_phi - log_theta)).sum().reshape(1)
    loss = props_behavior_loss(log_phi[index] - log_theta[index], kl, clip_range=0.3, kl_coef=0.3)
    (gradient,) = th.autograd.grad(loss, behaviour)
    return -gradient.numpy()


_BATCHES = (
    (np.array([0, 0, 1, 2, 0, 1, 0, 3]), np.array([0.4, 0.3, 0.2, 0.1])),
    (np.array([1, 1, 1, 0, 1]), np.array([0.25, 0.25, 0.25, 0.25])),  # two actions never sampled
    (np.array([2, 0, 1, 2, 2, 0]), np.array([0.2, 0.3, 0.5])),
)


def _call(function: Callable[..., Any], *args: Any) -> tuple[Any, str]:
    try:
        return function(*args), ""
    except Exception as error:  # a student's function may fail in any way; say how, don't crash the notebook
        return None, f"calling it raised {type(error).__name__}: {error}"


def check_batch_sampling_error(function: Callable[[np.ndarray, np.ndarray], Any]) -> bool:
    """``function(actions, target)`` returns ``(kl, tv)`` of the batch: tried on three batches, one with unseen actions."""
    name = "sampling error of a batch"
    if not callable(function):
        return report(name, False, f"expected a function, got {type(function).__name__}")
    for actions, target in _BATCHES:
        answer, problem = _call(function, actions.copy(), target.copy())
        if problem:
            return report(name, False, problem)
        if answer is None:
            return report(name, False, "no answer yet; expected (kl, tv), two numbers")
        if np.shape(answer) != (2,):
            return report(name, False, f"expected (kl, tv), two numbers, got shape {np.shape(answer)}")
        expected = reference_sampling_error(actions, target)
        hint = "KL(p_hat || target) sums only over actions the batch holds (0 log 0 = 0); TV is half the L1 distance"
        if not np.allclose(np.asarray(answer, dtype=np.float64), expected, atol=1e-9):
            return check_array(name, answer, expected, atol=1e-9, hint=f"on actions {actions.tolist()}; {hint}")
    return report(name, True, "KL and TV match on three batches")


def check_props_direction(function: Callable[[np.ndarray, np.ndarray], Any]) -> bool:
    """``function(logits, actions)`` returns the behaviour update direction: checked against autograd of palaestra's loss."""
    name = "PROPS behaviour update direction"
    if not callable(function):
        return report(name, False, f"expected a function, got {type(function).__name__}")
    for actions, target in _BATCHES:
        logits = np.log(target) + 0.5  # any constant shift: same softmax policy
        answer, problem = _call(function, logits.copy(), actions.copy())
        if problem:
            return report(name, False, problem)
        expected = reference_props_direction(logits, actions)
        if answer is None or np.shape(answer) != expected.shape:
            return check_array(name, answer, expected)
        if not np.allclose(np.asarray(answer, dtype=np.float64), expected, atol=1e-8):
            return check_array(name, answer, expected, atol=1e-8, hint="minus the gradient of mean(ratio) at phi = theta")
    return report(name, True, "matches autograd through props_behavior_loss on three batches")
