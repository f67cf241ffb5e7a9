"""Checks of lesson 2 (tabular MDPs): one Bellman backup, finite-horizon value iteration and the Q-learning update.

Each check computes the expected answer itself from the inputs (the Bellman backup and Q-learning update from
their definitions, value iteration with :func:`palaestra.envs.control.effective_horizon.value_iteration`), prints
one line and returns a bool. :func:`reference_q_learning_update` is the update the lesson falls back on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from palaestra.course.checks import check_array, report
from palaestra.envs.control.effective_horizon import value_iteration
from palaestra.envs.control.gridworlds import TabularMDP

__all__ = ["check_bellman_backup", "check_q_learning_update", "check_value_iteration", "reference_q_learning_update"]


def check_bellman_backup(q_values: Any, mdp: TabularMDP, t: int, next_values: np.ndarray) -> bool:
    """``q_values`` should be ``Q_t(s, a) = R_t(s, a) + sum_s' P(s' | s, a) V_{t+1}(s')``, shape ``(S, A)``."""
    expected = mdp.rewards[t] + mdp.transitions @ np.asarray(next_values, dtype=np.float64)
    return check_array(
        "Bellman backup",
        q_values,
        expected,
        hint="add the expected next value, sum over s' of P[s, a, s'] V[s'], to the reward R[t, s, a]",
    )


def check_value_iteration(values: Any, mdp: TabularMDP) -> bool:
    """``values`` should be the optimal values ``V*_t(s)`` of every step, shape ``(T, S)``."""
    expected = value_iteration(mdp).optimal_values
    return check_array(
        "value iteration",
        values,
        expected,
        hint="go backwards from V_T = 0; row t holds max_a Q_t(s, a) computed from row t + 1",
    )


def reference_q_learning_update(
    q: np.ndarray, state: int, action: int, reward: float, next_state: int, terminated: bool, alpha: float, gamma: float
) -> None:
    """Watkins' Q-learning update of ``q[state, action]`` in place (no bootstrap from a terminal next state)."""
    bootstrap = 0.0 if terminated else gamma * float(np.max(q[next_state]))
    q[state, action] += alpha * (reward + bootstrap - q[state, action])


_UpdateFn = Callable[[np.ndarray, int, int, float, int, bool, float, float], Any]


def check_q_learning_update(update: _UpdateFn) -> bool:
    """``update(q, s, a, r, s_next, terminated, alpha, gamma)`` should change ``q[s, a]`` in place as Q-learning does."""
    name = "Q-learning update"
    rng = np.random.default_rng(0)
    start = rng.uniform(0.0, 1.0, size=(5, 3))
    transitions = [(0, 1, 0.5, 3, False), (3, 2, 1.0, 4, True), (4, 0, 0.0, 0, False), (0, 1, 0.0, 2, False)]
    alpha, gamma = 0.3, 0.9
    answer, expected = start.copy(), start.copy()
    try:
        for state, action, reward, next_state, terminated in transitions:
            update(answer, state, action, reward, next_state, terminated, alpha, gamma)
            reference_q_learning_update(expected, state, action, reward, next_state, terminated, alpha, gamma)
    except Exception as error:  # a check never raises: it says what went wrong
        return report(name, False, f"calling the update raised {type(error).__name__}: {error}")
    if np.array_equal(answer, start):
        return report(name, False, "the table is unchanged; update q[state, action] in place (the function returns nothing)")
    return check_array(
        name,
        answer,
        expected,
        hint="move q[s, a] by alpha times r + gamma max_a' q[s', a'] - q[s, a], without the max term when terminated",
    )
