"""Lesson 1: the Gym interface, a hand-written policy, and what a confidence interval says."""

# %% [markdown]
# # Lesson 1: the Gym interface
#
# Reinforcement learning is a loop: an **agent** sees an observation, picks an action, and the
# **environment** answers with a reward and the next observation. [Gymnasium](https://gymnasium.farama.org)
# fixes the shape of that loop so that any agent can meet any environment, and palaestra's environments
# all speak it. In this lesson you will
#
# 1. make an environment and read its **spaces**;
# 2. run the loop by hand and see what **seeding** makes reproducible;
# 3. write a **policy** yourself, with the same `predict` method a trained Stable-Baselines3 agent has;
# 4. evaluate it with `palaestra.evaluate` and learn what the **confidence interval** it prints says.
#
# Run it as a notebook or as a script (`python course/01_gym_interface.py`).

# %%
import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

import palaestra
from palaestra.course import budget
from palaestra.course.checks.lesson01 import check_episode_return, check_normal_ci, check_policy_balances

EPISODES = budget(100, 30)  # evaluation episodes; the fast setting (PALAESTRA_COURSE_FAST=1) uses fewer

# %% [markdown]
# ## 1. Spaces
#
# `gym.make(id)` builds an environment from its registered id (`palaestra list` prints palaestra's).
# Every environment declares what it observes and what it accepts as **spaces**. `RobustCartPole-v0` is the
# classic cart-pole, a pole hinged on a cart that you push left or right, with physical parameters you can
# change (lesson 5 uses that).

# %%
env = gym.make("RobustCartPole-v0")
print("observation space:", env.observation_space)  # cart position, cart velocity, pole angle, pole spin
print("action space:     ", env.action_space)  # 0: push left, 1: push right
print("a random action:  ", env.action_space.sample())

# %% [markdown]
# ## 2. The loop, and seeding
#
# `reset(seed=...)` starts an episode; `step(action)` returns five things: the next observation, the
# reward, `terminated` (the task ended: the pole fell), `truncated` (a time limit cut the episode: 500 steps
# here) and an `info` dictionary. The episode ends when either flag is true. Seeding the reset makes the
# episode reproducible: the same seed and the same actions give the same observations.

# %%
first, _ = env.reset(seed=42)
again, _ = env.reset(seed=42)
other, _ = env.reset(seed=43)
print("same seed, same start:", np.array_equal(first, again), "| another seed:", np.array_equal(first, other))


# %% [markdown]
# A **policy** maps observations to actions. In palaestra (and Stable-Baselines3) it is any object with a
# `predict(observation, state=None, episode_start=None, deterministic=False)` method that returns
# `(action, state)`; `state` is for recurrent policies and is passed through here. Here is the simplest
# one, which ignores what it sees:


# %%
class RandomPolicy:
    """Uniform random pushes, whatever the observation."""

    def __init__(self, action_space, seed=0):
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return self.action_space.sample(), state


random_policy = RandomPolicy(env.action_space)

# %% [markdown]
# ### Exercise 1: run one episode by hand
#
# Reset `env` with `seed=0`, then step it with `random_policy`'s actions until the episode ends, and add up
# the rewards (CartPole gives +1 for every step the pole stays up).

# %%
# BEGIN SOLUTION
observation, _ = env.reset(seed=0)
episode_return, done = 0.0, False
while not done:
    action, _ = random_policy.predict(observation)
    observation, reward, terminated, truncated, _ = env.step(action)
    episode_return += float(reward)
    done = terminated or truncated
# STUB
# episode_return = None  # your code: reset with seed=0, step until terminated or truncated, sum the rewards
# END SOLUTION
print("return of one random episode:", episode_return)
check_episode_return(episode_return, "RobustCartPole-v0", RandomPolicy(gym.make("RobustCartPole-v0").action_space), seed=0)

# %% [markdown]
# ## 3. A policy you write
#
# The pole falls the way it leans, so a sensible first controller pushes the cart *under* the pole: right
# when the pole leans right (angle > 0). A better one also looks at how fast the pole is turning, the way a
# proportional-derivative (PD) controller does.
#
# ### Exercise 2: a balancing policy
#
# Fill in `predict` so that the policy keeps the pole up for at least 195 steps on average. The observation
# is `(x, x_dot, theta, theta_dot)`; return `1` (push right) or `0` (push left).


# %%
class BalancingPolicy:
    """Push the cart under the falling pole."""

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        _, _, theta, theta_dot = observation  # cart position and velocity are not needed here
        # BEGIN SOLUTION
        action = int(theta + 0.5 * theta_dot > 0)
        # STUB
        # action = 0  # your code: 1 to push right, 0 to push left
        # END SOLUTION
        return action, state


my_policy = BalancingPolicy()
check_policy_balances(my_policy)

# %% [markdown]
# ## 4. Evaluation and confidence intervals
#
# One episode says little: the start state is random. `palaestra.evaluate` runs many seeded episodes
# (the same ones Stable-Baselines3's `evaluate_policy` runs) and reports the mean return with a 95%
# **bootstrap confidence interval**: resample the episodes' returns with replacement many times, take the
# mean of each resample, and keep the middle 95% of those means. If you repeated the whole evaluation many
# times, intervals built this way would contain the true mean return about 95% of the time. It is an
# interval for the *mean*, not for one episode: most single episodes can fall outside it.

# %%
results = {
    "random": palaestra.evaluate(random_policy, env, n_episodes=EPISODES, seed=0),
    "yours": palaestra.evaluate(my_policy, env, n_episodes=EPISODES, seed=0),
}
for name, result in results.items():
    print(f"{name:>7}: {result}")

# %% [markdown]
# ### Exercise 3: the normal approximation
#
# The textbook interval is $\bar x \pm 1.96\, s / \sqrt{n}$, with $s$ the sample standard deviation
# (`ddof=1`). Compute it for the random policy's returns as an array `[low, high]`, and compare it with
# the bootstrap interval above. They agree when the returns are roughly normal and numerous; the
# bootstrap makes no such assumption, and never leaves the range the returns can take (a normal interval
# can claim returns above 500, which CartPole cannot give).

# %%
returns = results["random"].returns
# BEGIN SOLUTION
half_width = 1.96 * returns.std(ddof=1) / np.sqrt(len(returns))
normal_ci = np.array([returns.mean() - half_width, returns.mean() + half_width])
# STUB
# normal_ci = None  # your code: [mean - 1.96 s / sqrt(n), mean + 1.96 s / sqrt(n)]
# END SOLUTION
print("normal approximation:", normal_ci, "| bootstrap:", (results["random"].ci_low, results["random"].ci_high))
check_normal_ci(normal_ci, returns)

# %% [markdown]
# ## 5. How many episodes?
#
# The interval narrows like $1/\sqrt{n}$: four times the episodes for half the width. The plot shows the
# bootstrap interval of the random policy's mean return as the number of episodes grows.

# %%
sizes = [n for n in (5, 10, 20, 40, 80) if n <= EPISODES]
widths = [np.subtract(*reversed(palaestra.evaluation.bootstrap_ci(returns[:n]))) for n in sizes]
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
left.hist([result.returns for result in results.values()], bins=20, label=list(results))
left.set(xlabel="episode return", ylabel="episodes", title="returns of each policy")
left.legend()
right.plot(sizes, widths, "o-", label="bootstrap 95% CI width")
right.plot(sizes, widths[0] * np.sqrt(sizes[0] / np.array(sizes)), "--", label=r"$\propto 1/\sqrt{n}$")
right.set(xscale="log", xlabel="episodes", ylabel="interval width", title="the random policy's mean return")
right.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What to remember
#
# - An environment is its spaces plus `reset` and `step`; `terminated` and `truncated` are different things
#   (lesson 6 shows why an offline agent must not confuse them).
# - A policy is anything with `predict`; hand-written, SB3-trained and palaestra agents are evaluated alike.
# - Report a mean return with its interval and the number of episodes and seeds; compare two policies by
#   whether their intervals overlap, not by their means alone.
