"""The checks of lesson 5 pass on right answers and say "not yet" (never raising) on wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

from palaestra.agents.online.drrpo import tv_robust_expectation
from palaestra.course.checks import FAIL, PASS
from palaestra.course.checks.lesson05 import (
    check_perturbation_grid,
    check_tv_worst_case,
    check_worst_case,
    reference_perturbation_grid,
    tv_worst_case_lp,
)

LENGTHS, FORCES = (1.0, 2.0), (0.5, 1.0, 2.0)


class Push:
    """Pushes right whenever the pole leans right: a cheap policy with short episodes."""

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return int(observation[2] > 0), state


def _line(capsys: pytest.CaptureFixture[str]) -> str:
    (line,) = capsys.readouterr().out.splitlines()
    return line


def test_grid_passes_on_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    grid = reference_perturbation_grid(Push(), LENGTHS, FORCES, n_episodes=2)
    assert grid.shape == (2, 3)
    assert check_perturbation_grid(grid, Push(), LENGTHS, FORCES, n_episodes=2)
    assert _line(capsys).startswith(PASS)


def test_grid_says_the_shape_it_expected(capsys: pytest.CaptureFixture[str]) -> None:
    assert not check_perturbation_grid(np.zeros((3, 2)), Push(), LENGTHS, FORCES, n_episodes=2)
    line = _line(capsys)
    assert line.startswith(FAIL) and "(2, 3)" in line and "(3, 2)" in line
    assert not check_perturbation_grid(None, Push(), LENGTHS, FORCES, n_episodes=2)
    assert _line(capsys).startswith(FAIL)


def test_grid_fails_on_wrong_values(capsys: pytest.CaptureFixture[str]) -> None:
    grid = reference_perturbation_grid(Push(), LENGTHS, FORCES, n_episodes=2)
    assert not check_perturbation_grid(grid + 1.0, Push(), LENGTHS, FORCES, n_episodes=2)
    assert _line(capsys).startswith(FAIL)


def test_worst_case(capsys: pytest.CaptureFixture[str]) -> None:
    grid = np.array([[5.0, 3.0, 9.0], [4.0, 2.0, 6.0]])
    assert check_worst_case((2.0, 1.0, 2.0), grid, LENGTHS, FORCES)
    assert _line(capsys).startswith(PASS)
    assert not check_worst_case((1.0, 1.0, 3.0), grid, LENGTHS, FORCES)  # the first row's minimum
    assert _line(capsys).startswith(FAIL)
    assert not check_worst_case((2.0, 1.0), grid, LENGTHS, FORCES)
    line = _line(capsys)
    assert line.startswith(FAIL) and "shape (3,)" in line


def greedy(values, nominal, rho):
    order = np.argsort(values)
    mass, left = nominal.astype(float).copy(), rho
    for state in order[:0:-1]:
        moved = min(left, mass[state])
        mass[state] -= moved
        left -= moved
    mass[order[0]] += rho - left
    return float(mass @ values)


def test_lp_agrees_with_the_dual_and_the_greedy_answer() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        values, nominal, rho = rng.normal(size=6), rng.dirichlet(np.ones(6)), float(rng.uniform())
        expected = tv_robust_expectation(values, nominal, rho)
        assert tv_worst_case_lp(values, nominal, rho) == pytest.approx(expected, abs=1e-7)
        assert greedy(values, nominal, rho) == pytest.approx(expected, abs=1e-9)


def test_tv_passes_on_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_tv_worst_case(greedy)
    assert _line(capsys).startswith(PASS)


def test_tv_says_what_it_expected(capsys: pytest.CaptureFixture[str]) -> None:
    assert not check_tv_worst_case(lambda values, nominal, rho: np.array([1.0, 2.0]))
    line = _line(capsys)
    assert line.startswith(FAIL) and "single number" in line and "(2,)" in line


@pytest.mark.parametrize(
    "wrong",
    [
        lambda values, nominal, rho: float(values @ nominal),  # the nominal expectation
        lambda values, nominal, rho: float(values @ nominal - rho * values.max()),  # removes mass without moving it
        lambda values, nominal, rho: None,
    ],
)
def test_tv_fails_on_a_wrong_value(wrong, capsys: pytest.CaptureFixture[str]) -> None:
    assert not check_tv_worst_case(wrong)
    assert _line(capsys).startswith(FAIL)


def test_tv_survives_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(values, nominal, rho):
        raise ValueError("no")

    assert not check_tv_worst_case(broken)
    assert "ValueError" in _line(capsys)
