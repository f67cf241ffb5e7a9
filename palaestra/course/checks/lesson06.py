"""Checks of lesson 6 (offline RL): the normalised score, a behaviour-cloning update and TD3+BC's actor loss."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from palaestra.agents.offline.td3_bc import td3bc_actor_loss
from palaestra.course.checks import check_array, report

__all__ = [
    "check_bc_update",
    "check_normalized_score",
    "check_td3bc_actor_loss",
    "reference_bc_update",
    "reference_td3bc_actor_loss",
]


def check_normalized_score(normalized_score: Any, env: Any) -> bool:
    """``normalized_score(returns, ref_min, ref_max)`` gives ``100 * env.get_normalized_score(returns)``.

    It is called with ``env``'s reference returns on an array of returns around them (a scalar must work too).
    """
    name = "normalised score"
    if not callable(normalized_score):
        return report(
            name, False, f"expected a function (returns, ref_min, ref_max) -> scores, got {type(normalized_score).__name__}"
        )
    ref_min, ref_max = float(env.ref_min_score), float(env.ref_max_score)
    returns = np.linspace(ref_min - 200.0, ref_max + 50.0, 7)
    expected = 100.0 * np.asarray(env.get_normalized_score(returns), dtype=np.float64)
    try:
        answer = normalized_score(returns, ref_min, ref_max)
    except Exception as error:  # a student's function may fail in any way; say how, don't crash the notebook
        return report(name, False, f"calling it on an array of returns raised {type(error).__name__}: {error}")
    if answer is not None and np.shape(answer) == expected.shape:
        # the references themselves must land on 0 and 100 (the x100 scale)
        try:
            ends = np.asarray(normalized_score(np.array([ref_min, ref_max]), ref_min, ref_max), dtype=np.float64)
        except Exception as error:
            return report(name, False, f"calling it on the reference returns raised {type(error).__name__}: {error}")
        if ends.shape == (2,) and np.allclose(ends, [0.0, 1.0]):
            return report(name, False, "the references give 0 and 1; multiply by 100 for the 0-100 scale")
    return check_array(name, answer, expected, atol=1e-6, hint="(R - ref_min) / (ref_max - ref_min), times 100")


def reference_bc_update(policy: nn.Module, optimizer: torch.optim.Optimizer, observations: torch.Tensor,
                        actions: torch.Tensor) -> float:  # fmt: skip
    """One behaviour-cloning step: minimise the mean squared error between ``policy(s)`` and the data's ``a``."""
    loss = ((policy(observations) - actions) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def check_bc_update(bc_update: Any) -> bool:
    """``bc_update(policy, optimizer, observations, actions)`` takes one SGD step on the MSE and returns the loss.

    A fresh small network and an SGD optimiser are built here; the parameters after the student's step must
    equal those after :func:`reference_bc_update` from the same start, and the returned loss the pre-step MSE.
    """
    name = "behaviour-cloning update"
    if not callable(bc_update):
        return report(
            name,
            False,
            f"expected a function (policy, optimizer, observations, actions) -> loss, got {type(bc_update).__name__}",
        )
    generator = torch.Generator().manual_seed(0)
    observations = torch.randn(32, 3, generator=generator)
    actions = 2.0 * torch.rand(32, 1, generator=generator) - 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1), nn.Tanh())
    reference = copy.deepcopy(policy)
    expected_loss = reference_bc_update(
        reference, torch.optim.SGD(reference.parameters(), lr=0.1), observations.clone(), actions.clone()
    )
    initial = {key: param.detach().clone() for key, param in policy.named_parameters()}
    try:
        answer = bc_update(policy, torch.optim.SGD(policy.parameters(), lr=0.1), observations.clone(), actions.clone())
    except Exception as error:  # a student's function may fail in any way; say how, don't crash the notebook
        return report(name, False, f"calling it raised {type(error).__name__}: {error}")
    after = {key: param.detach() for key, param in policy.named_parameters()}
    expected = {key: param.detach() for key, param in reference.named_parameters()}
    if all(torch.equal(after[key], initial[key]) for key in after):
        return report(name, False, "the policy's parameters did not change: call backward() and optimizer.step()")
    largest = max(float((after[key] - expected[key]).abs().max()) for key in after)
    if largest > 1e-6:
        return report(
            name,
            False,
            f"after one step the parameters differ by up to {largest:.3g} from one SGD step on the mean squared error",
        )
    if answer is None or isinstance(answer, bool) or np.ndim(answer) != 0:
        return report(name, False, f"the step is right; now return the loss as one number (got {type(answer).__name__})")
    value = float(answer.detach()) if isinstance(answer, torch.Tensor) else float(answer)
    if abs(value - expected_loss) > 1e-6:
        return report(name, False, f"the step is right but it returned {value:.6g}, expected the loss {expected_loss:.6g}")
    return report(name, True, f"one SGD step matches, loss {value:.4g}")


def reference_td3bc_actor_loss(q_pi: torch.Tensor, policy_actions: torch.Tensor, dataset_actions: torch.Tensor,
                               alpha: float) -> torch.Tensor:  # fmt: skip
    """TD3+BC's actor loss (palaestra's :func:`~palaestra.agents.offline.td3_bc.td3bc_actor_loss`, loss only)."""
    return td3bc_actor_loss(q_pi, policy_actions, dataset_actions, alpha)[0]


def check_td3bc_actor_loss(actor_loss: Any, alpha: float = 2.5) -> bool:
    """``actor_loss(q_pi, policy_actions, dataset_actions, alpha)``: value and gradients of palaestra's function.

    The gradient with respect to ``q_pi`` tells whether ``lambda = alpha / mean|Q|`` was detached (the paper
    treats it as a constant of the batch).
    """
    name = "TD3+BC actor loss"
    if not callable(actor_loss):
        return report(
            name,
            False,
            f"expected a function (q_pi, policy_actions, dataset_actions, alpha) -> loss, got {type(actor_loss).__name__}",
        )
    generator = torch.Generator().manual_seed(1)
    q_pi = -50.0 + 20.0 * torch.randn(64, 1, generator=generator)
    policy_actions = 2.0 * torch.rand(64, 1, generator=generator) - 1.0
    dataset_actions = 2.0 * torch.rand(64, 1, generator=generator) - 1.0

    def value_and_grads(function: Any) -> tuple[Any, torch.Tensor | None, torch.Tensor | None]:
        q, pi = q_pi.clone().requires_grad_(True), policy_actions.clone().requires_grad_(True)
        loss = function(q, pi, dataset_actions.clone(), alpha)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0 or not loss.requires_grad:
            return loss, None, None
        q_grad, pi_grad = torch.autograd.grad(loss, (q, pi), allow_unused=True)
        return loss, q_grad, pi_grad

    expected_loss, expected_q_grad, expected_pi_grad = value_and_grads(reference_td3bc_actor_loss)
    expected = float(expected_loss.detach())
    try:
        answer, q_grad, pi_grad = value_and_grads(actor_loss)
    except Exception as error:  # a student's function may fail in any way; say how, don't crash the notebook
        return report(name, False, f"calling it raised {type(error).__name__}: {error}")
    if answer is None:
        return report(name, False, "no answer yet; expected a scalar torch tensor")
    if not isinstance(answer, torch.Tensor) or answer.ndim != 0:
        return report(
            name,
            False,
            f"expected a scalar torch tensor (shape ()), got {type(answer).__name__} of shape {tuple(np.shape(answer))}",
        )
    if q_grad is None or pi_grad is None:
        return report(name, False, "the loss must depend on q_pi and on policy_actions through torch operations")
    difference = abs(float(answer.detach()) - float(expected))
    if difference > 1e-5:
        return report(
            name,
            False,
            f"got {float(answer.detach()):.6g}, expected {float(expected):.6g}; loss = -lambda * mean Q + mean (pi - a)^2",
        )
    assert expected_q_grad is not None and expected_pi_grad is not None
    if not torch.allclose(q_grad, expected_q_grad, atol=1e-6) or not torch.allclose(pi_grad, expected_pi_grad, atol=1e-6):
        return report(name, False, "the value is right but the gradients are not: compute lambda from q_pi.detach()")
    return report(name, True, f"value {float(answer.detach()):.4g} and gradients match")
