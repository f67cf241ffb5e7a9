import gymnasium as gym
import numpy as np

from benchmarks.cdsa_risk import PerturbedStarts, risk


def test_perturbed_starts_widen_the_initial_speed_range_on_every_reset():
    env = PerturbedStarts(gym.make("Pendulum-v1"), y_init=8.0)
    speeds = [env.reset(seed=0)[0][2]] + [env.reset()[0][2] for _ in range(50)]
    assert max(np.abs(speeds)) > 4.0  # the default range is [-1, 1]
    assert abs(env.reset(options={"y_init": 0.0})[0][2]) == 0.0  # explicit options still win


def test_risk_is_the_lower_quantile_and_the_mean_of_the_worst_share():
    var, cvar = risk(np.arange(1.0, 11.0), level=0.2)
    assert var == 2.8  # numpy's linear quantile of 1..10 at 0.2
    assert cvar == 1.5  # the mean of the worst 2
