import gymnasium as gym
import pytest

from palaestra.throughput import env_stepper, step_timings, time_callables


class CountResets(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.resets = 0

    def reset(self, **kwargs):
        self.resets += 1
        return self.env.reset(**kwargs)


def test_env_stepper_cycles_actions_and_resets_at_episode_end():
    env = CountResets(gym.make("CartPole-v1"))
    step = env_stepper(env, [1])  # always pushing right: the pole falls within a few dozen steps
    for _ in range(300):
        step()
    assert env.resets > 3  # the first reset, then one per fallen pole


def test_step_timings_times_every_env_over_its_rounds():
    envs = {"cartpole": gym.make("CartPole-v1"), "pendulum": gym.make("Pendulum-v1")}
    timings = step_timings(envs, steps=30, repeats=3)
    assert set(timings) == {"cartpole", "pendulum"}
    for timing in timings.values():
        assert timing.number == 30 and len(timing.per_call_s) == 3 and timing.median_s > 0


def test_time_callables_rejects_an_empty_round():
    with pytest.raises(ValueError, match="need number >= 1"):
        time_callables({"noop": lambda: None}, number=0)
