"""Lesson 4: sampling error, and PROPS's adaptive behaviour policy that corrects it."""

# %% [markdown]
# # Lesson 4: sampling error
#
# Policy-gradient methods such as PPO are *on-policy*: the gradient
# $\nabla_\theta J = \mathbb{E}_{s, a \sim \pi_\theta}[\nabla_\theta \log \pi_\theta(a|s)\, A(s, a)]$ is an expectation
# under the current policy, and we estimate it with a batch of actions sampled from $\pi_\theta$. But a finite batch
# is never exactly distributed as $\pi_\theta$: by chance some actions show up more often than the policy says, and
# others less. Corrado & Hanna ("On-Policy Policy Gradient Reinforcement Learning Without On-Policy Sampling",
# [arXiv 2311.08290](https://arxiv.org/abs/2311.08290)) call this gap **sampling error**, and argue that what the
# gradient needs is on-policy *data*, not on-policy *sampling*. Their algorithm, **PROPS** (Proximal Robust On-Policy
# Sampling), collects data with a separate *behaviour* policy that is tuned to fill in what the batch has
# under-sampled so far.
#
# In this lesson you will
#
# 1. measure the sampling error of a batch (KL and total variation between its empirical distribution and the target);
# 2. see how it shrinks with the batch size under on-policy sampling;
# 3. derive the direction of PROPS's behaviour update on a toy policy;
# 4. compare on-policy and adaptive sampling for a fixed target: on the toy, then with palaestra's `PROPS` on CartPole.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from palaestra.agents.online import PROPS
from palaestra.agents.online.props import props_behavior_loss, sampling_error
from palaestra.course import budget
from palaestra.course.checks.lesson04 import (
    check_batch_sampling_error,
    check_props_direction,
    reference_props_direction,
    reference_sampling_error,
)

th.set_num_threads(1)  # small networks run fastest on one thread
REPEATS = budget(400, 100)  # independent buffers per sampling scheme in the toy experiments
ROUNDS = budget(32, 16)  # rounds of 16 samples each in the toy
CARTPOLE_SAMPLES = budget(1024, 256)  # buffer size of the CartPole experiment
CARTPOLE_SEEDS = budget(3, 1)

# %% [markdown]
# ## 1. The sampling error of a batch
#
# Take the simplest case: a single state and a target policy $\pi$ over $K = 4$ actions. A batch of $N$ actions
# has the empirical distribution $\hat p(a) = n_a / N$, where $n_a$ counts how often action $a$ occurs. Its sampling
# error is how far $\hat p$ is from $\pi$; the paper uses the KL divergence
#
# $$\mathrm{KL}(\hat p \,\|\, \pi) = \sum_{a:\ n_a > 0} \hat p(a) \log \frac{\hat p(a)}{\pi(a)}$$
#
# (actions the batch never holds contribute $0 \log 0 = 0$), and a second, bounded measure is the total variation
# distance $\mathrm{TV}(\hat p, \pi) = \tfrac12 \sum_a |\hat p(a) - \pi(a)|$, the largest difference in probability
# the two give to any set of actions.

# %%
target = np.array([0.5, 0.25, 0.15, 0.1])
rng = np.random.default_rng(0)
batch = rng.choice(len(target), size=20, p=target)
print("batch:", batch)
print("counts:", np.bincount(batch, minlength=len(target)), "expected counts:", 20 * target)

# %% [markdown]
# **Exercise 1.** Write `batch_sampling_error(actions, target)`, which returns the pair `(kl, tv)` for a batch of
# integer `actions` and the target probabilities `target`. (`np.bincount(..., minlength=K)` counts the actions.)


# %%
def batch_sampling_error(actions, target):
    # BEGIN SOLUTION
    frequencies = np.bincount(actions, minlength=len(target)) / len(actions)
    held = frequencies > 0
    kl = np.sum(frequencies[held] * np.log(frequencies[held] / target[held]))
    return kl, 0.5 * np.abs(frequencies - target).sum()
    # STUB
    # return None  # your code: (KL(p_hat || target), TV(p_hat, target))
    # END SOLUTION


ok = check_batch_sampling_error(batch_sampling_error)
measure = batch_sampling_error if ok else reference_sampling_error
kl, tv = measure(batch, target)
print(f"this batch of 20: KL = {kl:.4f} nats, TV = {tv:.3f}")

# %% [markdown]
# ## 2. On-policy sampling: the error shrinks like $1/N$
#
# For i.i.d. sampling, $2N\,\mathrm{KL}(\hat p\,\|\,\pi)$ is approximately $\chi^2$-distributed with $K-1$ degrees of
# freedom (the likelihood-ratio statistic), so $\mathbb{E}[\mathrm{KL}] \approx (K-1)/(2N)$, while the TV distance
# shrinks only like $1/\sqrt N$. Let us draw many batches and watch.

# %%
sizes = 16 * np.arange(1, ROUNDS + 1)
on_policy = rng.choice(len(target), size=(REPEATS, sizes[-1]), p=target)
on_policy_kl = np.array([[measure(row[:n], target)[0] for n in sizes] for row in on_policy]).mean(axis=0)
on_policy_tv = np.array([[measure(row[:n], target)[1] for n in sizes] for row in on_policy]).mean(axis=0)
for n, value, approx in list(zip(sizes, on_policy_kl, (len(target) - 1) / (2 * sizes), strict=True))[:: ROUNDS // 4]:
    print(f"N = {n:4d}: mean KL {value:.4f} (chi-square approximation {approx:.4f})")

# %% [markdown]
# ## 3. PROPS: a behaviour policy that fills in what the batch lacks
#
# PROPS keeps a buffer $\mathcal{D}$ and, every $m$ steps, sets the behaviour policy $\pi_\phi$ to the target
# $\pi_\theta$ and takes a few gradient steps on (paper, Eq. 5)
#
# $$\mathcal{L}(\phi) = \frac{1}{|\mathcal{D}|}\sum_{(s,a) \in \mathcal{D}}
#   \max\Big(r_\phi(a|s),\ \mathrm{clip}\big(r_\phi(a|s), 1-\epsilon, 1+\epsilon\big)\Big)
#   + \lambda\, \mathrm{KL}(\pi_\phi \,\|\, \pi_\theta), \qquad r_\phi = \frac{\pi_\phi(a|s)}{\pi_\theta(a|s)},$$
#
# PPO's clipped objective with every advantage set to $-1$: *each sampled action is made less likely*, so the actions
# that were sampled *less* than their share gain probability. The clip stops pushing an action once its ratio is below
# $1-\epsilon$, and the KL term keeps $\pi_\phi$ close to $\pi_\theta$. palaestra implements the loss as
# `palaestra.agents.online.props.props_behavior_loss(log_ratio, kl, clip_range, kl_coef)`.
#
# **Exercise 2.** For one state and a softmax policy $\pi_\phi = \mathrm{softmax}(z)$, the first behaviour step
# starts at $\phi = \theta$, where every ratio is 1 and the KL term has zero gradient. Write
# `props_direction(logits, actions)`: the update direction $-\nabla_z \mathcal{L}$ at $z$ = `logits`, for the buffer
# `actions`. (Hint: $\nabla_z \log \pi(a) = e_a - \pi$.) The check compares it with autograd through palaestra's loss.


# %%
def softmax(logits):
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def props_direction(logits, actions):
    # BEGIN SOLUTION
    sampled_share = np.bincount(actions, minlength=len(logits)) / len(actions)
    return softmax(logits) - sampled_share
    # STUB
    # return None  # your code: minus the gradient of the PROPS loss w.r.t. the logits, at phi = theta
    # END SOLUTION


ok = check_props_direction(props_direction)
direction = (props_direction if ok else reference_props_direction)(np.log(target), batch)
print("direction on the batch of 20:", np.round(direction, 3))

# %% [markdown]
# **Question.** Which actions does the first behaviour step make more likely, and why does it not need to know the
# rewards?
#
# BEGIN SOLUTION
# The direction is $\pi - \hat p$: its entry is positive exactly for the actions the buffer holds *less* often than
# the target policy says (and negative for over-sampled ones), so the next samples are steered towards the deficit.
# Sampling error is a property of the actions alone, so the correction needs no rewards; the data still counts as
# on-policy for $\pi_\theta$, because the *buffer as a whole* looks more like $\pi_\theta$.
# END SOLUTION

# %% [markdown]
# ## 4. On-policy vs adaptive sampling for a fixed target, on the toy
#
# Now fill `REPEATS` buffers in rounds of $m = 16$ actions, either from the target itself (on-policy sampling) or from
# a behaviour policy re-fitted before each round: reset to the target, then 16 Adam steps on palaestra's PROPS loss
# over the buffer so far ($\epsilon = 0.3$, $\lambda = 0.3$). The buffers are independent, so we run them side by side
# as rows of one logits tensor.


# %%
def fill_buffers(adaptive, seed, m=16, steps=16, learning_rate=0.1):
    generator = np.random.default_rng(seed)
    target_logits = th.log(th.as_tensor(target)).repeat(REPEATS, 1)
    buffers = np.zeros((REPEATS, 0), dtype=np.int64)
    for _ in range(ROUNDS):
        probabilities = np.tile(target, (REPEATS, 1))
        if adaptive and buffers.shape[1] > 0:
            logits = target_logits.clone().requires_grad_(True)
            optimizer = th.optim.Adam([logits], lr=learning_rate)
            taken = th.as_tensor(buffers)
            for _ in range(steps):
                log_phi, log_theta = th.log_softmax(logits, 1), th.log_softmax(target_logits, 1)
                log_ratio = (log_phi.gather(1, taken) - log_theta.gather(1, taken)).flatten()
                kl_per_buffer = (log_phi.exp() * (log_phi - log_theta)).sum(1)
                # one mean over all buffers scales every row's gradient alike, which Adam's step ignores
                loss = props_behavior_loss(log_ratio, kl_per_buffer, clip_range=0.3, kl_coef=0.3)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            probabilities = th.softmax(logits, 1).detach().numpy()
        draws = (generator.random((REPEATS, m, 1)) > probabilities.cumsum(1)[:, None, :]).sum(2)
        buffers = np.concatenate([buffers, np.minimum(draws, len(target) - 1)], axis=1)
    return buffers


curves = {}
for name, adaptive in (("on-policy", False), ("PROPS", True)):
    buffers = fill_buffers(adaptive, seed=1)
    errors = np.array([[measure(row[:n], target) for n in sizes] for row in buffers])  # (REPEATS, sizes, 2)
    curves[name] = errors.mean(axis=0)
ratio = curves["PROPS"][-1, 0] / curves["on-policy"][-1, 0]
print(f"mean KL after {sizes[-1]} samples: on-policy {curves['on-policy'][-1, 0]:.5f}, PROPS {curves['PROPS'][-1, 0]:.5f}")
print(f"PROPS / on-policy: {ratio:.2f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for index, (axis, label) in enumerate(zip(axes, ("KL (nats)", "TV"), strict=True)):
    for name, curve in curves.items():
        axis.plot(sizes, curve[:, index], marker=".", label=name)
    axis.set(xscale="log", yscale="log", xlabel="samples in the buffer", ylabel=f"mean {label}")
axes[0].plot(sizes, (len(target) - 1) / (2 * sizes), "k--", label="(K-1)/(2N)")
axes[0].legend()
fig.suptitle(f"Sampling error of a growing buffer, one state, {REPEATS} buffers per scheme")
plt.show()

# %% [markdown]
# The two curves start together (the first round is always drawn from the target), and from then on the adaptive
# buffer's error is the ratio printed above of the on-policy one: the behaviour policy keeps steering the buffer
# back towards $\pi$, so its error falls faster than the $1/N$ of i.i.d. sampling.
#
# ## 5. The real agent: `PROPS` on CartPole with a fixed target
#
# With states, $\hat p$ is no longer a table of counts. The paper measures the sampling error of a buffer as
# $\mathrm{KL}(\pi_\mathcal{D} \,\|\, \pi_\theta)$, where $\pi_\mathcal{D}$ is the maximum-likelihood policy of the
# data: the target network with its hidden layers frozen and its output layer refitted on $\mathcal{D}$
# (`palaestra.agents.online.props.sampling_error`; for one repeated state it is exactly the KL above).
#
# To hold the target fixed, we let `PROPS` collect a single batch of `n_steps` samples (its target is only updated
# after a batch is complete) and read the buffer in a callback at the end of the rollout. The target is the freshly
# initialised policy, which is close to uniform over CartPole's two actions. `adaptive_sampling=False` samples with
# the target itself: on-policy sampling with the same code.


# %%
class SamplingErrorOfPrefixes(BaseCallback):
    """At the end of the rollout (before the target update): the sampling error of the first n samples, for each n."""

    def __init__(self, prefixes):
        super().__init__()
        self.prefixes, self.errors = prefixes, []

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        observations, actions = self.model.rollout_buffer.transitions()
        observations, actions = th.as_tensor(observations), th.as_tensor(actions).long().flatten()
        self.errors = [sampling_error(self.model.policy, observations[:n], actions[:n]) for n in self.prefixes]


prefixes = [n for n in (64, 128, 256, 512, 1024, 2048) if n <= CARTPOLE_SAMPLES]
cartpole = {"on-policy": [], "PROPS": []}
for seed in range(CARTPOLE_SEEDS):
    for name in cartpole:
        model = PROPS(
            "MlpPolicy",
            "CartPole-v1",
            n_steps=CARTPOLE_SAMPLES,
            buffer_batches=1,
            props_n_steps=64,
            batch_size=CARTPOLE_SAMPLES // 4,
            n_epochs=1,
            adaptive_sampling=name == "PROPS",
            log_sampling_error=False,
            props_kl_coef=0.1,
            props_target_kl=0.03,
            seed=seed,
        )
        callback = SamplingErrorOfPrefixes(prefixes)
        model.learn(CARTPOLE_SAMPLES, callback=callback)
        cartpole[name].append(callback.errors)
cartpole_mean = {name: np.mean(values, axis=0) for name, values in cartpole.items()}
for n, on, adaptive in zip(prefixes, cartpole_mean["on-policy"], cartpole_mean["PROPS"], strict=True):
    print(f"{n:5d} samples: on-policy {on:.4f}, PROPS {adaptive:.4f}")
lower = sum(a < o for a, o in zip(cartpole_mean["PROPS"][1:], cartpole_mean["on-policy"][1:], strict=True))
print(f"PROPS lower at {lower} of {len(prefixes) - 1} buffer sizes after the first round ({CARTPOLE_SEEDS} seed(s))")

# %%
for name, values in cartpole_mean.items():
    plt.plot(prefixes, values, marker="o", label=name)
plt.xscale("log")
plt.yscale("log")
plt.xlabel("samples in the buffer")
plt.ylabel("sampling error (nats)")
plt.title(f"CartPole-v1, fixed untrained target, mean of {CARTPOLE_SEEDS} seed(s)")
plt.legend()
plt.show()

# %% [markdown]
# Look at the numbers printed above before drawing a conclusion. With states and a neural network the picture is
# noisier than on the toy: each state is visited roughly once, the behaviour network generalises its correction across
# states, and the estimator $\pi_\mathcal{D}$ itself overfits small buffers (with two actions its refitted output
# layer has 65 free parameters, a bias of order $65 / 2N$ on its own). README's PROPS benchmark
# (`python -m benchmarks.online_props`) runs the same fixed-target study on trained CartPole policies and finds no
# clear reduction there, while during training PROPS's buffer has a slightly (not significantly) lower error than the
# same buffer filled on-policy.
#
# **Take-aways.**
# - A finite on-policy batch is off by $\mathrm{KL} \approx (K-1)/(2N)$ from its policy: the gradient estimate
#   inherits that error.
# - PROPS's behaviour update moves probability towards the under-sampled actions, along $\pi - \hat p$ at its start,
#   and needs no rewards; in one state it cuts the error well below on-policy sampling.
# - Whether it pays off in a deep-RL task depends on how much the policy leaves to correct and on how well the
#   network's correction transfers across states.
#
# **Going further.** Try a nearly deterministic target in section 4 (e.g. `[0.97, 0.01, 0.01, 0.01]`), or change
# `props_n_steps` and `props_kl_coef` in section 5 and watch the CartPole curve.
