import gymnasium as gym
import pytest

from palaestra.throughput import env_stepper, step_timings, time_callables


class RecordSteps(gym.Wrapper):
    """Counts resets and records the actions taken."""

    def __init__(self, env):
        super().__init__(env)
        self.resets = 0
        self.actions = []

    def reset(self, **kwargs):
        self.resets += 1
        return self.env.reset(**kwargs)

    def step(self, action):
        self.actions.append(action)
        return self.env.step(action)


def test_time_callables_interleaves_rounds_and_counts_calls():
    order = []
    callables = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    timings = time_callables(callables, number=2, repeats=2, warmup=1)
    assert "".join(order) == "aabb" * 3  # round by round: one warm-up, then two timed
    assert timings["a"].number == 2 and len(timings["a"].per_call_s) == 2
    assert timings["a"].min_s <= timings["a"].median_s
    assert set(timings["b"].to_dict()) >= {"median_s", "min_s", "max_s", "number", "per_call_s"}
    with pytest.raises(ValueError, match="need number >= 1, repeats >= 1, warmup >= 0; got 0, 7, 1"):
        time_callables(callables, number=0)


def test_env_stepper_cycles_through_the_actions_and_resets_at_episode_end():
    env = RecordSteps(gym.make("CartPole-v1"))
    step = env_stepper(env, [0, 1, 1])
    for _ in range(7):
        step()
    assert env.actions == [0, 1, 1, 0, 1, 1, 0]
    for _ in range(300):  # two pushes right for every push left: the pole falls within a few dozen steps
        step()
    assert env.resets > 3  # the first reset, then one per fallen pole


def test_step_timings_times_every_env_over_its_rounds_with_seeded_actions():
    envs = {"cartpole": RecordSteps(gym.make("CartPole-v1")), "pendulum": gym.make("Pendulum-v1")}
    timings = step_timings(envs, steps=30, repeats=3)
    assert set(timings) == {"cartpole", "pendulum"}
    for timing in timings.values():
        assert timing.number == 30 and len(timing.per_call_s) == 3 and timing.median_s > 0
    again = RecordSteps(gym.make("CartPole-v1"))
    step_timings({"cartpole": again}, steps=30, repeats=3)
    assert again.actions == envs["cartpole"].actions  # the same seed draws the same actions
