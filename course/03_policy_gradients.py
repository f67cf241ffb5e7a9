"""Lesson 3: policy gradients, REINFORCE and PPO, seeds and the interquartile mean."""

# %% [markdown]
# # Lesson 3: policy gradients
#
# Value-based methods (lesson 2) learn $Q$ and act greedily on it. **Policy-gradient** methods instead
# parametrise the policy $\pi_\theta(a \mid s)$ directly, here a small neural network, and climb the gradient
# of the expected return $J(\theta) = \mathbb{E}_{\tau \sim \pi_\theta}\big[\sum_t \gamma^t r_t\big]$. The
# policy-gradient theorem (Williams, "Simple statistical gradient-following algorithms for connectionist
# reinforcement learning", Machine Learning 1992; Sutton et al., NeurIPS 2000) writes that gradient as an
# expectation we can sample:
#
# $$\nabla_\theta J(\theta) = \mathbb{E}\Big[\sum_t \nabla_\theta \log \pi_\theta(a_t \mid s_t)\, G_t\Big],
# \qquad G_t = \sum_{k \ge t} \gamma^{k-t} r_k .$$
#
# $G_t$ is the discounted **return-to-go**: only rewards after the action count, since an action cannot change
# the past. This lesson writes REINFORCE (Williams' algorithm) in a page of torch on CartPole-v1, compares it with
# Stable-Baselines3's PPO, and then asks the question every RL result must answer: *over how many seeds, and how
# sure are we?*

# %%
from palaestra.course import require

require("rliable")

import time  # noqa: E402

import gymnasium as gym  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rliable import library, metrics  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from torch import nn  # noqa: E402

import palaestra  # noqa: E402
from palaestra.course import budget  # noqa: E402
from palaestra.course.checks.lesson03 import (  # noqa: E402
    check_iqm,
    check_reinforce_loss,
    check_returns_to_go,
    reference_iqm,
    reference_reinforce_loss,
    reference_returns_to_go,
)

torch.set_num_threads(1)
gym.register_envs(palaestra)

# %% [markdown]
# **Exercise 1.** Write `returns_to_go(rewards, gamma)`: the array of $G_t$ for every step of one episode. The
# recursion $G_t = r_t + \gamma\, G_{t+1}$, with $G_T = 0$ after the last step, computes it in one backward pass.


# %%
def returns_to_go(rewards, gamma):
    """Discounted return-to-go G_t of every step of one episode, as a float array of len(rewards)."""
    # BEGIN SOLUTION
    out = np.zeros(len(rewards))
    following = 0.0
    for t in reversed(range(len(rewards))):
        following = rewards[t] + gamma * following
        out[t] = following
    return out
    # STUB
    # return None  # your code: one backward pass over the rewards
    # END SOLUTION


example_rewards = np.array([1.0, 0.0, 2.0, 1.0, 0.5])
ok = check_returns_to_go(returns_to_go(example_rewards, 0.9), example_rewards, 0.9)
discounted_returns = returns_to_go if ok else reference_returns_to_go

# %% [markdown]
# ## REINFORCE
#
# Sampling one episode gives the estimate $\hat g = \frac1T\sum_t \nabla_\theta \log \pi_\theta(a_t \mid s_t)\,
# G_t$ (averaged over steps). Torch computes gradients of a *loss* we minimise, so we hand it the surrogate
#
# $$L(\theta) = -\frac1T \sum_t \log \pi_\theta(a_t \mid s_t)\, G_t ,$$
#
# whose gradient is $-\hat g$; the returns are constants (no gradient flows through them). Plain REINFORCE is
# noisy: every $G_t$ on CartPole is positive, so every action taken gets pushed up, the good ones only a little
# more than the bad. Subtracting a baseline $b(s_t)$ that does not depend on the action keeps the estimate unbiased
# and can lower its variance a lot (Williams, 1992). Here we use the simplest version: standardise the returns of
# each episode (subtract their mean, divide by their standard deviation), a per-episode baseline plus a rescaling
# of the step size; it adds a small bias that in practice costs far less than the variance it removes.
#
# **Exercise 2.** Write `reinforce_loss(log_probs, returns)`, a scalar torch tensor, from the tensors of
# $\log \pi_\theta(a_t \mid s_t)$ and of the (standardised) returns, both of shape `(T,)`.


# %%
def reinforce_loss(log_probs, returns):
    """The REINFORCE surrogate loss -mean_t log pi(a_t | s_t) G_t (a scalar tensor)."""
    # BEGIN SOLUTION
    return -(log_probs * returns).mean()
    # STUB
    # return None  # your code: minus the mean of log-probabilities times returns
    # END SOLUTION


loss_fn = reinforce_loss if check_reinforce_loss(reinforce_loss) else reference_reinforce_loss

# %% [markdown]
# The whole algorithm: play an episode with the current policy, compute the returns-to-go, take one Adam step on
# the loss, repeat. The policy is a two-layer network whose outputs are the logits of a categorical distribution
# over CartPole's two actions (push left, push right). An episode's return is its length, at most 500.


# %%
def make_policy():
    """A 4-64-2 tanh network whose outputs are action logits."""
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2))


def train_reinforce(episodes, seed, gamma=0.99, lr=1e-2):
    """REINFORCE on CartPole-v1; returns the policy network and the return of every training episode."""
    torch.manual_seed(seed)
    env = gym.make("CartPole-v1")
    policy = make_policy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    episode_returns = []
    observation, _ = env.reset(seed=seed)
    for _ in range(episodes):
        observations, actions, rewards, done = [], [], [], False
        while not done:  # play one episode; no gradients needed while acting
            with torch.no_grad():
                logits = policy(torch.as_tensor(observation, dtype=torch.float32))
            action = int(torch.multinomial(torch.softmax(logits, dim=0), 1))
            observations.append(observation)
            actions.append(action)
            observation, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
        observation, _ = env.reset()
        # log pi(a_t | s_t) of the whole episode in one batched forward pass, this time with gradients
        all_logits = policy(torch.as_tensor(np.array(observations), dtype=torch.float32))
        log_probs = torch.log_softmax(all_logits, dim=1)[torch.arange(len(actions)), torch.as_tensor(actions)]
        returns = torch.as_tensor(discounted_returns(rewards, gamma), dtype=torch.float32)
        returns = (returns - returns.mean()) / (returns.std() + 1e-8)
        loss = loss_fn(log_probs, returns)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        episode_returns.append(sum(rewards))
    return policy, np.array(episode_returns)


class GreedyPolicy:
    """Wraps a logits network in Stable-Baselines3's predict signature (palaestra's Policy protocol)."""

    def __init__(self, network):
        self.network = network

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        """The most likely action (deterministic=True) or a sampled one."""
        with torch.no_grad():
            logits = self.network(torch.as_tensor(observation, dtype=torch.float32))
        action = logits.argmax() if deterministic else torch.distributions.Categorical(logits=logits).sample()
        return int(action), state


seeds = list(range(budget(5, 3)))
episodes = budget(200, 100)
start = time.perf_counter()
reinforce_runs = [train_reinforce(episodes, seed) for seed in seeds]
print(f"REINFORCE: {episodes} episodes x {len(seeds)} seeds in {time.perf_counter() - start:.0f} s")

fig, ax = plt.subplots(figsize=(7, 4))
for seed, (_, episode_returns) in zip(seeds, reinforce_runs, strict=True):
    smoothed = np.convolve(episode_returns, np.ones(10) / 10, mode="valid")
    ax.plot(np.arange(len(smoothed)) + 10, smoothed, label=f"seed {seed}")
ax.set_xlabel("episode")
ax.set_ylabel("episode return (mean of the last 10)")
ax.set_title("REINFORCE on CartPole-v1: same code, different seeds")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Same code, same hyperparameters: the curves differ only by the seed (the network's initial weights, the
# sampled actions, the start states), and they differ a lot. One run tells you little about an algorithm.
#
# ## PPO
#
# Proximal Policy Optimization (Schulman et al., "Proximal Policy Optimization Algorithms", arXiv:1707.06347,
# 2017) keeps the policy-gradient idea but fixes REINFORCE's worst habits: a learned value function as the
# baseline (with generalised advantage estimation, Schulman et al., ICLR 2016), several epochs of minibatch
# updates on each batch of experience, and a clipped probability ratio $\min\big(\rho_t A_t,
# \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon) A_t\big)$, $\rho_t = \pi_\theta(a_t \mid s_t) /
# \pi_{\text{old}}(a_t \mid s_t)$, that stops one batch from moving the policy too far. We use Stable-Baselines3's
# implementation with smaller rollouts than its default (256 steps instead of 2048), so that it updates often
# within our small budget.

# %%
ppo_steps = budget(15_000, 4_000)
start = time.perf_counter()
ppo_models = [
    PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, n_epochs=4, seed=seed, verbose=0).learn(ppo_steps)
    for seed in seeds
]
print(f"PPO: {ppo_steps} steps x {len(seeds)} seeds in {time.perf_counter() - start:.0f} s")
reinforce_steps = [int(episode_returns.sum()) for _, episode_returns in reinforce_runs]
print("REINFORCE used", ", ".join(f"{n} steps" for n in reinforce_steps), "(one per reward on CartPole)")

# %% [markdown]
# ## Scoring runs: per-seed scores, then an aggregate with a confidence interval
#
# We score every trained policy on two tasks with `palaestra.evaluate` (deterministic actions, a few episodes each):
# the nominal cart-pole and `RobustCartPole-v0` with half the motor force. Dividing by the maximum return, 500,
# puts the scores in $[0, 1]$. The result is a `(seeds, tasks)` matrix per algorithm.

# %%
tasks = {
    "CartPole-v1": lambda: gym.make("CartPole-v1"),
    "weak motor": lambda: gym.make("RobustCartPole-v0", perturbation={"force_mag": 0.5}),
}


eval_episodes = budget(10, 5)


def score_matrix(policies):
    """Normalised mean evaluation return of each policy (rows) on each task (columns)."""
    return np.array(
        [
            [palaestra.evaluate(policy, make(), n_episodes=eval_episodes, seed=100).mean / 500 for make in tasks.values()]
            for policy in policies
        ]
    )


scores = {
    "REINFORCE": score_matrix([GreedyPolicy(network) for network, _ in reinforce_runs]),
    "PPO": score_matrix(ppo_models),
}
for algorithm, matrix in scores.items():
    for seed, row in zip(seeds, matrix, strict=True):
        print(
            f"{algorithm:9s} seed {seed}: " + ", ".join(f"{task} {value:.2f}" for task, value in zip(tasks, row, strict=True))
        )
    print(f"{algorithm:9s} mean {matrix.mean():.2f}, standard deviation over seeds {matrix.mean(axis=1).std():.2f}")

# %% [markdown]
# How should we summarise such a matrix? The mean is pulled around by one lucky or unlucky run; the median of a
# handful of runs ignores most of them. Agarwal et al. ("Deep Reinforcement Learning at the Edge of the
# Statistical Precipice", NeurIPS 2021) recommend the **interquartile mean** (IQM): pool all runs of all tasks,
# drop the lowest and highest quarter, and average the middle half. With $n$ scores it drops the
# $\lfloor n/4 \rfloor$ smallest and $\lfloor n/4 \rfloor$ largest.
#
# **Exercise 3.** Write `iqm(matrix)` by hand (numpy's `sort` is enough); `rliable` computes the same thing
# below.


# %%
def iqm(matrix):
    """Interquartile mean of every entry of `matrix`: the mean of the middle half of the sorted scores."""
    # BEGIN SOLUTION
    ordered = np.sort(np.asarray(matrix, dtype=float).ravel())
    cut = len(ordered) // 4
    return float(ordered[cut : len(ordered) - cut].mean())
    # STUB
    # return None  # your code: sort, drop a quarter at each end, average
    # END SOLUTION


by_hand = iqm(scores["PPO"])
iqm_fn = iqm if check_iqm(by_hand, scores["PPO"]) else reference_iqm
print(f"PPO IQM by hand {iqm_fn(scores['PPO']):.4f}, rliable's aggregate_iqm {metrics.aggregate_iqm(scores['PPO']):.4f}")

# %% [markdown]
# A point estimate from a few seeds needs an interval. rliable's **stratified bootstrap** resamples runs *within
# each task* (seeds with replacement, column by column), recomputes the IQM on each resample, and reports the
# 2.5 and 97.5 percentiles of those IQMs as a 95% confidence interval. Stratifying keeps every task in every
# resample, so the interval reflects seed-to-seed variation and not which tasks happened to be drawn. rliable
# draws its resamples from NumPy's global generator, so we seed that for a reproducible interval.

# %%
np.random.seed(0)  # noqa: NPY002  (rliable's bootstrap uses the global generator)
point, interval = library.get_interval_estimates(
    scores, lambda matrix: np.array([metrics.aggregate_iqm(matrix)]), reps=budget(2_000, 500)
)
for algorithm in scores:
    (low,), (high,) = interval[algorithm]
    print(f"{algorithm:9s} IQM {point[algorithm][0]:.2f}, 95% stratified-bootstrap CI [{low:.2f}, {high:.2f}]")

fig, ax = plt.subplots(figsize=(6, 3))
for row, algorithm in enumerate(scores):
    (low,), (high,) = interval[algorithm]
    ax.plot([low, high], [row, row], linewidth=8, alpha=0.4, solid_capstyle="butt")
    ax.plot(point[algorithm][0], row, "k|", markersize=18)
    ax.scatter(scores[algorithm].ravel(), np.full(scores[algorithm].size, row) + 0.25, s=12, color="grey")
ax.set_yticks(range(len(scores)), list(scores))
ax.set_xlabel("normalised score (return / 500)")
ax.set_title("IQM with 95% stratified-bootstrap CI (grey: individual runs)")
plt.show()

# %% [markdown]
# Read the plot before any conclusion: where the two intervals overlap, these seeds do not separate the
# algorithms, however different their means look; the grey dots show the spread the aggregate hides. With
# more seeds the intervals shrink roughly like $1/\sqrt{n}$. Also keep the budgets in mind when you compare:
# printed above is how many env steps each REINFORCE run used, next to PPO's fixed budget.
#
# **Exercise 4.** Why can the IQM of 5 runs be a better summary than their mean, and when would the median
# be just as good? Answer in a sentence or two.

# %% [markdown]
# BEGIN SOLUTION
# The mean moves with a single outlier run (one seed that collapsed or got lucky), and the median uses only the
# one or two middle runs, so its estimate varies a lot from one set of seeds to the next; the IQM averages the
# middle half, so it is robust to outliers yet uses more of the runs, which gives it a smaller variance (a
# tighter bootstrap interval) than the median (Agarwal et al., 2021). With 5 runs the IQM drops only one run at
# each end, i.e. it averages the middle three; the median is as good only when the middle runs barely differ.
# END SOLUTION
