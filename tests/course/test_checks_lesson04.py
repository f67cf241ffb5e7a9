"""The checks of lesson 4 pass on right answers and say "not yet" (never raising) on wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

from palaestra.course.checks import FAIL, PASS
from palaestra.course.checks.lesson04 import (
    check_batch_sampling_error,
    check_props_direction,
    reference_props_direction,
    reference_sampling_error,
)


def _line(capsys: pytest.CaptureFixture[str]) -> str:
    (line,) = capsys.readouterr().out.splitlines()
    return line


def test_reference_sampling_error_by_hand() -> None:
    kl, tv = reference_sampling_error(np.array([0, 0, 1, 1]), np.array([0.25, 0.25, 0.5]))
    assert kl == pytest.approx(2 * 0.5 * np.log(0.5 / 0.25))
    assert tv == pytest.approx(0.5)


def test_reference_direction_is_target_minus_empirical() -> None:
    target, actions = np.array([0.4, 0.3, 0.2, 0.1]), np.array([0, 0, 1, 3, 3])
    expected = target - np.bincount(actions, minlength=4) / 5
    np.testing.assert_allclose(reference_props_direction(np.log(target), actions), expected, atol=1e-12)


def test_sampling_error_passes_on_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_batch_sampling_error(lambda actions, target: tuple(reference_sampling_error(actions, target)))
    assert _line(capsys).startswith(PASS)


def test_sampling_error_says_the_shape_it_expected(capsys: pytest.CaptureFixture[str]) -> None:
    assert not check_batch_sampling_error(lambda actions, target: np.zeros(3))
    line = _line(capsys)
    assert line.startswith(FAIL) and "(kl, tv)" in line and "(3,)" in line


@pytest.mark.parametrize(
    "wrong",
    [
        lambda actions, target: (0.0, 0.0),
        # the reversed KL(target || p_hat), a classic mistake
        lambda actions, target: (
            float(
                np.sum(target * np.log(target / np.maximum(np.bincount(actions, minlength=len(target)) / len(actions), 1e-12)))
            ),
            reference_sampling_error(actions, target)[1],
        ),
        lambda actions, target: None,
    ],
)
def test_sampling_error_fails_on_a_wrong_value(wrong, capsys: pytest.CaptureFixture[str]) -> None:
    assert not check_batch_sampling_error(wrong)
    assert _line(capsys).startswith(FAIL)


def test_sampling_error_survives_a_crashing_function(capsys: pytest.CaptureFixture[str]) -> None:
    def broken(actions, target):
        raise KeyError("oops")

    assert not check_batch_sampling_error(broken)
    assert "KeyError" in _line(capsys)
    assert not check_batch_sampling_error(None)  # type: ignore[arg-type]
    assert "expected a function" in _line(capsys)


def test_direction_passes_on_the_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    def right(logits, actions):
        probabilities = np.exp(logits - logits.max())
        return probabilities / probabilities.sum() - np.bincount(actions, minlength=len(logits)) / len(actions)

    assert check_props_direction(right)
    assert _line(capsys).startswith(PASS)


def test_direction_says_the_shape_it_expected(capsys: pytest.CaptureFixture[str]) -> None:
    assert not check_props_direction(lambda logits, actions: np.zeros(len(logits) + 1))
    line = _line(capsys)
    assert line.startswith(FAIL) and "shape" in line


@pytest.mark.parametrize(
    "wrong",
    [
        # the gradient itself instead of minus it
        lambda logits, actions: (
            np.bincount(actions, minlength=len(logits)) / len(actions) - np.exp(logits) / np.exp(logits).sum()
        ),
        lambda logits, actions: None,
    ],
)
def test_direction_fails_on_a_wrong_value(wrong, capsys: pytest.CaptureFixture[str]) -> None:
    assert not check_props_direction(wrong)
    assert _line(capsys).startswith(FAIL)
