"""Checks of lesson 5 (robustness: perturbed physics, worst cases and the TV ball of DR-RPO)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from palaestra.course.checks import check_array, check_number, report

__all__ = [
    "check_perturbation_grid",
    "check_tv_worst_case",
    "check_worst_case",
    "perturbed_return",
    "reference_perturbation_grid",
    "tv_worst_case_lp",
]


def perturbed_return(policy: Any, length: float, force_mag: float, n_episodes: int, seed: int = 0) -> float:
    """Mean return of ``policy`` on RobustCartPole-v0 with ``length`` and ``force_mag`` scaled by the given factors."""
    from palaestra.evaluation import evaluate

    env = gym.make("RobustCartPole-v0", perturbation={"length": float(length), "force_mag": float(force_mag)})
    try:
        return evaluate(policy, env, n_episodes=n_episodes, seed=seed).mean
    finally:
        env.close()


def reference_perturbation_grid(
    policy: Any, lengths: Sequence[float], force_mags: Sequence[float], n_episodes: int, seed: int = 0
) -> np.ndarray:
    """``grid[i, j]``: mean return with the pole length scaled by ``lengths[i]`` and the force by ``force_mags[j]``."""
    return np.array(
        [[perturbed_return(policy, length, force, n_episodes, seed) for force in force_mags] for length in lengths]
    )


def check_perturbation_grid(
    grid: Any, policy: Any, lengths: Sequence[float], force_mags: Sequence[float], n_episodes: int, seed: int = 0
) -> bool:
    """The grid of mean returns: its shape, then two of its cells (the first and the worst) re-evaluated here."""
    name = "perturbation grid"
    shape = (len(lengths), len(force_mags))
    if grid is None or np.shape(grid) != shape:
        return check_array(name, grid, np.zeros(shape))
    values = np.asarray(grid, dtype=np.float64)
    worst = np.unravel_index(int(np.argmin(values)), shape)
    for i, j in {(0, 0), (int(worst[0]), int(worst[1]))}:
        expected = perturbed_return(policy, lengths[i], force_mags[j], n_episodes, seed)
        if not np.isclose(values[i, j], expected, atol=1e-6):
            detail = (
                f"cell [{i}, {j}] (length x{lengths[i]}, force_mag x{force_mags[j]}) is {values[i, j]:.2f}, expected "
                f"{expected:.2f}: row i is lengths[i], column j is force_mags[j], each palaestra.evaluate(..., "
                f"n_episodes={n_episodes}, seed={seed}).mean"
            )
            return report(name, False, detail)
    return report(name, True, f"shape {shape}, cells re-evaluated match")


def check_worst_case(answer: Any, grid: Any, lengths: Sequence[float], force_mags: Sequence[float]) -> bool:
    """``(length factor, force_mag factor, mean return)`` of the grid's worst cell."""
    values = np.asarray(grid, dtype=np.float64)
    i, j = (int(index) for index in np.unravel_index(int(np.argmin(values)), values.shape))
    expected = np.array([lengths[i], force_mags[j], values[i, j]])
    return check_array(
        "worst case", answer, expected, hint="the lowest mean return, with the factors of its row and column (np.argmin)"
    )


def tv_worst_case_lp(values: Any, nominal: Any, rho: float) -> float:
    """``min {mu . values : mu in the simplex, TV(mu, nominal) <= rho}`` as a linear program (scipy's HiGHS).

    Variables ``(mu, t)`` with ``t >= |mu - nominal|`` elementwise and ``sum(t) <= 2 rho``.
    """
    from scipy.optimize import linprog

    v, p = np.asarray(values, dtype=np.float64), np.asarray(nominal, dtype=np.float64)
    n, eye = len(v), np.eye(len(v))
    cost = np.concatenate([v, np.zeros(n)])
    a_ub = np.block([[eye, -eye], [-eye, -eye], [np.zeros((1, n)), np.ones((1, n))]])
    b_ub = np.concatenate([p, -p, [2.0 * rho]])
    a_eq = np.concatenate([np.ones(n), np.zeros(n)])[None]
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0], bounds=[(0, None)] * (2 * n), method="highs")
    if not result.success:
        raise RuntimeError(f"the linear program failed: {result.message}")
    return float(result.fun)


_CASES = (
    (np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.25, 0.25, 0.25, 0.25]), 0.1),
    (np.array([5.0, 0.0, 2.0]), np.array([0.7, 0.1, 0.2]), 0.3),
    (np.array([3.0, 1.0, 2.0, 0.5, 4.0]), np.array([0.1, 0.3, 0.2, 0.1, 0.3]), 0.45),  # more mass moved than one state holds
    (np.array([2.0, 1.0]), np.array([0.5, 0.5]), 0.0),
)


def check_tv_worst_case(function: Callable[[np.ndarray, np.ndarray, float], Any]) -> bool:
    """``function(values, nominal, rho)``: the worst-case expectation over the TV ball, against an LP and DR-RPO's dual."""
    from palaestra.agents.online.drrpo import tv_robust_expectation

    name = "TV worst-case expectation"
    if not callable(function):
        return report(name, False, f"expected a function, got {type(function).__name__}")
    for values, nominal, rho in _CASES:
        try:
            answer = function(values.copy(), nominal.copy(), rho)
        except Exception as error:  # a student's function may fail in any way; say how, don't crash the notebook
            return report(name, False, f"calling it raised {type(error).__name__}: {error}")
        expected = tv_worst_case_lp(values, nominal, rho)
        dual = tv_robust_expectation(values, nominal, rho)
        if not np.isclose(expected, dual, atol=1e-7):  # the two references must agree before they judge anyone
            return report(name, False, f"internal: the LP gives {expected:.6f} but DR-RPO's dual {dual:.6f}")
        if answer is None or isinstance(answer, bool) or np.ndim(answer) != 0:
            return check_number(name, answer, expected)
        if not np.isclose(float(answer), expected, atol=1e-7):
            hint = f"on values {values.tolist()}, nominal {nominal.tolist()}, rho {rho}: move rho of mass to the lowest value"
            return check_number(name, answer, expected, atol=1e-7, hint=hint)
    return report(name, True, "matches the linear program and DR-RPO's dual on four cases")
