import numpy as np
import pytest
import torch

from palaestra.course.checks.lesson06 import (
    check_bc_update,
    check_normalized_score,
    check_td3bc_actor_loss,
    reference_bc_update,
    reference_td3bc_actor_loss,
)


class References:
    """The two reference returns and D4RL's normaliser, as an offline env exposes them."""

    ref_min_score, ref_max_score = -1207.6, -140.1

    def get_normalized_score(self, returns):
        return (np.asarray(returns, dtype=np.float64) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


def test_normalized_score(capsys):
    env = References()
    assert check_normalized_score(lambda r, low, high: 100 * (np.asarray(r) - low) / (high - low), env)
    assert not check_normalized_score(lambda r, low, high: (np.asarray(r) - low) / (high - low), env)
    assert "multiply by 100" in capsys.readouterr().out
    assert not check_normalized_score(lambda r, low, high: 100 * (np.asarray(r) - low) / high, env)
    assert "largest difference" in capsys.readouterr().out
    assert not check_normalized_score(lambda r, low, high: np.mean(r), env)
    assert "expected an array of shape (7,), got shape ()" in capsys.readouterr().out
    assert not check_normalized_score(lambda r, low, high: None, env)
    assert not check_normalized_score(None, env)
    assert not check_normalized_score(lambda r: r, env)
    assert "raised TypeError" in capsys.readouterr().out


def test_normalized_score_on_a_real_offline_env(tmp_path, monkeypatch):
    gym = pytest.importorskip("gymnasium")
    import palaestra  # noqa: F401  (registers the offline ids)

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = gym.make("pendulum-medium-replay-v0", generate=False)  # the reference returns need no dataset
    assert check_normalized_score(lambda r, low, high: 100 * (np.asarray(r) - low) / (high - low), env)


def bc_without_return(policy, optimizer, observations, actions):
    reference_bc_update(policy, optimizer, observations, actions)


def bc_absolute_error(policy, optimizer, observations, actions):
    loss = (policy(observations) - actions).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def bc_without_step(policy, optimizer, observations, actions):
    return ((policy(observations) - actions) ** 2).mean().item()


def test_bc_update(capsys):
    assert check_bc_update(reference_bc_update)
    assert not check_bc_update(bc_without_step)
    assert "did not change" in capsys.readouterr().out
    assert not check_bc_update(bc_absolute_error)
    assert "differ by up to" in capsys.readouterr().out
    assert not check_bc_update(bc_without_return)
    assert "return the loss as one number (got NoneType)" in capsys.readouterr().out
    assert not check_bc_update(lambda *args: None)
    assert not check_bc_update(None)
    assert "expected a function" in capsys.readouterr().out


def lambda_not_detached(q_pi, policy_actions, dataset_actions, alpha):
    return -alpha / q_pi.abs().mean() * q_pi.mean() + ((policy_actions - dataset_actions) ** 2).mean()


def test_td3bc_actor_loss(capsys):
    assert check_td3bc_actor_loss(reference_td3bc_actor_loss)
    assert not check_td3bc_actor_loss(lambda_not_detached)
    assert "compute lambda from q_pi.detach()" in capsys.readouterr().out
    assert not check_td3bc_actor_loss(lambda q, pi, a, alpha: -alpha * q.mean() + ((pi - a) ** 2).mean())
    assert "expected" in capsys.readouterr().out
    assert not check_td3bc_actor_loss(lambda q, pi, a, alpha: ((pi - a) ** 2).mean(dim=1))
    assert "expected a scalar torch tensor (shape ()), got Tensor of shape (64,)" in capsys.readouterr().out
    assert not check_td3bc_actor_loss(lambda q, pi, a, alpha: 1.0)
    assert not check_td3bc_actor_loss(lambda q, pi, a, alpha: None)
    assert not check_td3bc_actor_loss(lambda q, pi, a, alpha: torch.tensor(3.0))
    assert "must depend on q_pi" in capsys.readouterr().out
