"""Lesson 8's checks: pass on the right answer, say the expected shape on a wrong-shaped one, fail on a wrong value."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from palaestra.course.checks import FAIL, PASS
from palaestra.course.checks.lesson08 import (
    check_clipped_surrogate,
    check_gigpo_step_advantages,
    check_grpo_advantages,
)


def test_grpo_advantages(capsys):
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 0.0])
    right = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-6)
    assert check_grpo_advantages(right, rewards)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_grpo_advantages(right[:3], rewards)
    assert "expected an array of shape (5,), got shape (3,)" in capsys.readouterr().out
    biased = (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    assert not check_grpo_advantages(biased, rewards)
    out = capsys.readouterr().out
    assert out.startswith(FAIL) and "ddof=1" in out
    assert not check_grpo_advantages(None, rewards)
    assert "no answer yet" in capsys.readouterr().out


def test_clipped_surrogate(capsys):
    def right(ratio, advantage, clip_range=0.2):
        return -min(ratio * advantage, float(np.clip(ratio, 1 - clip_range, 1 + clip_range)) * advantage)

    assert check_clipped_surrogate(right)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_clipped_surrogate(lambda r, a, c=0.2: None)
    assert "returned None; expected a number" in capsys.readouterr().out
    assert not check_clipped_surrogate(lambda r, a, c=0.2: np.array([r * a, r]))
    assert "expected a single number, got ndarray" in capsys.readouterr().out
    no_min = lambda r, a, c=0.2: -float(np.clip(r, 1 - c, 1 + c)) * a  # noqa: E731  (clips but forgets the min)
    assert not check_clipped_surrogate(no_min)
    assert capsys.readouterr().out.startswith(FAIL)


def test_gigpo_step_advantages(capsys):
    rewards = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    mask = np.array([[True, True], [True, True], [True, False]])
    anchors = [["s0", "s1"], ["s0", "s1"], ["s0"]]
    gamma = 0.9
    returns_s0 = np.array([0.9, 0.0, 1.0])
    a_s0 = (returns_s0 - returns_s0.mean()) / (returns_s0.std(ddof=1) + 1e-6)
    returns_s1 = np.array([1.0, 0.0])
    a_s1 = (returns_s1 - returns_s1.mean()) / (returns_s1.std(ddof=1) + 1e-6)
    right = np.array([[a_s0[0], a_s1[0]], [a_s0[1], a_s1[1]], [a_s0[2], 0.0]])
    assert check_gigpo_step_advantages(right, rewards, mask, anchors, gamma)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_gigpo_step_advantages(right[:, 0], rewards, mask, anchors, gamma)
    assert "expected an array of shape (3, 2), got shape (3,)" in capsys.readouterr().out
    assert not check_gigpo_step_advantages(right + 0.1, rewards, mask, anchors, gamma)
    out = capsys.readouterr().out
    assert out.startswith(FAIL) and "anchor" in out
