"""Lesson 2's checks: pass on the right answer, say the expected shape on a wrong-shaped one, fail on a wrong value."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import palaestra
from palaestra.course.checks import FAIL, PASS
from palaestra.course.checks.lesson02 import (
    check_bellman_backup,
    check_q_learning_update,
    check_value_iteration,
    reference_q_learning_update,
)
from palaestra.envs.control.effective_horizon import value_iteration

gym.register_envs(palaestra)


@pytest.fixture(scope="module")
def mdp():
    return gym.make("StickyGrid-DoorKey-5x5-v0").unwrapped.mdp


def test_bellman_backup(mdp, capsys):
    values = np.linspace(0.0, 1.0, mdp.n_states)
    right = mdp.rewards[3] + np.einsum("sap,p->sa", mdp.transitions, values)
    assert check_bellman_backup(right, mdp, 3, values)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_bellman_backup(right[:, 0], mdp, 3, values)
    assert f"expected an array of shape ({mdp.n_states}, 4), got shape ({mdp.n_states},)" in capsys.readouterr().out
    assert not check_bellman_backup(right + 0.01, mdp, 3, values)
    assert capsys.readouterr().out.startswith(FAIL)
    assert not check_bellman_backup(None, mdp, 3, values)
    assert "no answer yet" in capsys.readouterr().out


def test_value_iteration(mdp, capsys):
    expected = value_iteration(mdp).optimal_values
    assert check_value_iteration(expected.copy(), mdp)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_value_iteration(expected[0], mdp)
    assert f"expected an array of shape ({mdp.horizon}, {mdp.n_states})" in capsys.readouterr().out
    assert not check_value_iteration(np.zeros_like(expected), mdp)
    assert capsys.readouterr().out.startswith(FAIL)


def test_q_learning_update(capsys):
    assert check_q_learning_update(reference_q_learning_update)
    assert capsys.readouterr().out.startswith(PASS)

    def always_bootstraps(q, state, action, reward, next_state, terminated, alpha, gamma):
        q[state, action] += alpha * (reward + gamma * q[next_state].max() - q[state, action])

    assert not check_q_learning_update(always_bootstraps)
    assert "largest difference" in capsys.readouterr().out

    def returns_a_copy(q, state, action, reward, next_state, terminated, alpha, gamma):
        return q.copy()

    assert not check_q_learning_update(returns_a_copy)
    assert "in place" in capsys.readouterr().out

    def raises(q, *args):
        raise IndexError("oops")

    assert not check_q_learning_update(raises)
    assert "raised IndexError: oops" in capsys.readouterr().out


def test_reference_update_skips_the_bootstrap_on_termination():
    q = np.ones((2, 2))
    reference_q_learning_update(q, 0, 1, 0.5, 1, True, 0.5, 0.9)
    assert q[0, 1] == pytest.approx(0.75)
    reference_q_learning_update(q, 0, 0, 0.0, 1, False, 0.5, 0.9)
    assert q[0, 0] == pytest.approx(0.95)
