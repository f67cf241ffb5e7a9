"""Lesson 3's checks: pass on the right answer, say the expected shape on a wrong-shaped one, fail on a wrong value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from palaestra.course.checks import FAIL, PASS
from palaestra.course.checks.lesson03 import (
    check_iqm,
    check_reinforce_loss,
    check_returns_to_go,
    reference_iqm,
    reference_reinforce_loss,
    reference_returns_to_go,
)


def test_reference_returns_to_go_by_hand():
    assert reference_returns_to_go([1.0, 0.0, 2.0], 0.5) == pytest.approx([1.5, 1.0, 2.0])
    assert reference_returns_to_go([], 0.9).shape == (0,)


def test_returns_to_go(capsys):
    rewards = np.array([1.0, 0.0, 2.0, 1.0])
    assert check_returns_to_go(reference_returns_to_go(rewards, 0.9), rewards, 0.9)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_returns_to_go(np.zeros(3), rewards, 0.9)
    assert "expected an array of shape (4,), got shape (3,)" in capsys.readouterr().out
    undiscounted = np.cumsum(rewards[::-1])[::-1]
    assert not check_returns_to_go(undiscounted, rewards, 0.9)
    assert capsys.readouterr().out.startswith(FAIL)
    assert not check_returns_to_go(None, rewards, 0.9)
    assert "no answer yet" in capsys.readouterr().out


def test_reinforce_loss(capsys):
    assert check_reinforce_loss(reference_reinforce_loss)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_reinforce_loss(lambda log_probs, returns: log_probs * returns)
    assert "expected a scalar torch tensor (shape ()), got Tensor of shape (7,)" in capsys.readouterr().out
    assert not check_reinforce_loss(lambda log_probs, returns: (log_probs * returns).mean())  # sign flipped
    assert capsys.readouterr().out.startswith(FAIL)
    assert not check_reinforce_loss(lambda log_probs, returns: torch.tensor(-(log_probs * returns).mean().item()))
    assert "no gradient" in capsys.readouterr().out
    assert not check_reinforce_loss(lambda log_probs, returns: None)
    assert "no answer yet" in capsys.readouterr().out
    assert not check_reinforce_loss(lambda log_probs, returns: log_probs @ returns[:3])
    assert "raised RuntimeError" in capsys.readouterr().out


def test_iqm(capsys):
    scores = np.array([[0.1, 0.9], [0.5, 0.6], [0.2, 1.0], [0.4, 0.3]])
    assert reference_iqm(scores) == pytest.approx(np.mean([0.3, 0.4, 0.5, 0.6]))
    assert check_iqm(reference_iqm(scores), scores)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_iqm(np.full(3, 0.45), scores)
    assert "expected a single number, got ndarray of shape (3,)" in capsys.readouterr().out
    assert not check_iqm(float(scores.mean()), scores)
    assert capsys.readouterr().out.startswith(FAIL)
