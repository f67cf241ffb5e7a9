import numpy as np

from palaestra.course.checks.lesson01 import check_episode_return, check_normal_ci, check_policy_balances


class Constant:
    def __init__(self, action):
        self.action = action

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return self.action, state


class PD:
    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return int(observation[2] + 0.5 * observation[3] > 0), state


def test_episode_return_is_recomputed_from_the_same_seed(capsys):
    import gymnasium as gym

    env = gym.make("RobustCartPole-v0")
    env.reset(seed=3)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(0)
        total += reward
        done = terminated or truncated
    assert check_episode_return(total, "RobustCartPole-v0", Constant(0), seed=3)
    assert not check_episode_return(total + 1, "RobustCartPole-v0", Constant(0), seed=3)
    assert not check_episode_return([total], "RobustCartPole-v0", Constant(0), seed=3)
    assert "expected a single number, got list of shape (1,)" in capsys.readouterr().out


def test_balancing_policy(capsys):
    assert check_policy_balances(PD())
    assert not check_policy_balances(Constant(1))
    assert not check_policy_balances(object())
    assert "expected an object with a predict method" in capsys.readouterr().out


def test_normal_ci(capsys):
    returns = np.array([10.0, 12.0, 14.0, 20.0])
    half = 1.96 * returns.std(ddof=1) / 2.0
    assert check_normal_ci([returns.mean() - half, returns.mean() + half], returns)
    population = 1.96 * returns.std() / 2.0
    assert not check_normal_ci([returns.mean() - population, returns.mean() + population], returns)
    assert "ddof=1" in capsys.readouterr().out
    assert not check_normal_ci(np.zeros(3), returns)
    assert "expected an array of shape (2,), got shape (3,)" in capsys.readouterr().out
