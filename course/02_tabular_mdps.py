"""Lesson 2: tabular MDPs, value iteration, Q-learning and the effective horizon."""

# %% [markdown]
# # Lesson 2: tabular MDPs
#
# A Markov decision process (MDP) is a set of states $S$, a set of actions $A$, transition probabilities
# $P(s' \mid s, a)$, rewards $R_t(s, a)$ and a horizon $T$ (Puterman, *Markov Decision Processes*, 1994;
# Sutton & Barto, *Reinforcement Learning: An Introduction*, 2nd ed., 2018, ch. 3-4). When $S$ and $A$ are
# small we can write the whole MDP down as arrays and solve it exactly. This lesson does that on palaestra's
# **StickyGrid** gridworlds, then learns the same grids from samples with Q-learning, and finally asks why
# some grids are much harder to learn than others.
#
# The grids follow MiniGrid's layouts (an empty room, lava gaps, a locked door and its key, four rooms). Every
# step, with probability 0.25, the env repeats the previously executed action instead of yours: these are
# *sticky actions* (Machado et al., "Revisiting the Arcade Learning Environment", JAIR 2018). To keep the
# MDP Markov, a state is the cell, whether the key is held, and the last executed action. Reaching the goal
# at step $t$ pays $1 - 0.9\,t/T$, so faster is better; lava ends the episode with nothing.

# %%
import time

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

import palaestra
from palaestra.course import budget
from palaestra.course.checks.lesson02 import (
    check_bellman_backup,
    check_q_learning_update,
    check_value_iteration,
    reference_q_learning_update,
)
from palaestra.envs.control import GRIDWORLDS, effective_horizon, policy_return
from palaestra.envs.control.effective_horizon import value_iteration as palaestra_value_iteration

gym.register_envs(palaestra)

env = gym.make("StickyGrid-DoorKey-6x6-v0", render_mode="ansi")
mdp = env.unwrapped.mdp
env.reset(seed=0)
print(env.render())
print(mdp)
print("P:", mdp.transitions.shape, " R:", mdp.rewards.shape, " initial:", mdp.initial.shape)
print("layouts:", ", ".join(GRIDWORLDS))

# %% [markdown]
# `env.unwrapped.mdp` is the exact table the env samples from: `transitions[s, a, s']` $= P(s' \mid s, a)$,
# `rewards[t, s, a]` $= R_t(s, a)$ (the expected reward of acting at step $t$), `initial[s]` the start
# distribution and `terminal[s]` the absorbing states (goal reached, fell in lava), which pay nothing more.
#
# ## Value iteration
#
# With a finite horizon the optimal values satisfy the Bellman optimality equation, computed backwards
# from $V^*_T = 0$ (Bellman, 1957):
#
# $$Q^*_t(s, a) = R_t(s, a) + \sum_{s'} P(s' \mid s, a)\, V^*_{t+1}(s'), \qquad V^*_t(s) = \max_a Q^*_t(s, a).$$
#
# One application of the right-hand side is a **Bellman backup**. With arrays it is one line: `P @ V` sums
# over the last axis of `P`, which is exactly $\sum_{s'} P(s' \mid s, a) V(s')$ for every $(s, a)$.
#
# **Exercise 1.** Write `bellman_backup(mdp, t, next_values)` returning $Q_t$, shape `(S, A)`, from
# $V_{t+1}$, shape `(S,)`.


# %%
def bellman_backup(mdp, t, next_values):
    """Q_t(s, a) = R_t(s, a) + sum_s' P(s' | s, a) next_values(s'), shape (S, A)."""
    # BEGIN SOLUTION
    return mdp.rewards[t] + mdp.transitions @ next_values
    # STUB
    # return None  # your code: rewards at step t plus the expected next value
    # END SOLUTION


rng = np.random.default_rng(0)
some_values = rng.uniform(size=mdp.n_states)
check_bellman_backup(bellman_backup(mdp, 10, some_values), mdp, 10, some_values)

# %% [markdown]
# **Exercise 2.** Write `value_iteration(mdp)`: start from $V_T = 0$ and apply the backup for
# $t = T-1, \dots, 0$. Return the optimal values, shape `(T, S)` (row $t$ is $V^*_t$), and the greedy policy,
# shape `(T, S)` of action indices (row $t$ is $\arg\max_a Q^*_t(s, \cdot)$). In a finite-horizon problem
# this backward pass is exact after $T$ backups; with a discount $\gamma < 1$ and no horizon the same backup
# is repeated until it stops changing, since it is a $\gamma$-contraction.


# %%
def value_iteration(mdp):
    """Backward induction: the optimal values V*_t(s) and a greedy policy, both of shape (T, S)."""
    values = np.zeros((mdp.horizon, mdp.n_states))
    policy = np.zeros((mdp.horizon, mdp.n_states), dtype=int)
    # BEGIN SOLUTION
    next_values = np.zeros(mdp.n_states)
    for t in reversed(range(mdp.horizon)):
        q_t = bellman_backup(mdp, t, next_values)
        values[t], policy[t] = q_t.max(axis=1), q_t.argmax(axis=1)
        next_values = values[t]
    # STUB
    # pass  # your code: fill values[t] and policy[t] for t = T-1, ..., 0
    # END SOLUTION
    return values, policy


values, policy = value_iteration(mdp)
if not check_value_iteration(values, mdp):  # go on with palaestra's own value iteration
    optimal_q = palaestra_value_iteration(mdp).optimal_q
    values, policy = optimal_q.max(axis=2), optimal_q.argmax(axis=2)

optimal_return = float(mdp.initial @ values[0])
print(f"optimal return V*_0(start) = {optimal_return:.4f}")
print(f"exact return of the greedy policy = {policy_return(mdp, policy):.4f}")

# %% [markdown]
# The greedy policy's exact return (a forward pass over the table, `policy_return`) equals $V^*_0$ at the start:
# acting greedily on $Q^*$ is optimal. Below, $V^*_0$ on each cell, averaged over the remembered previous
# action: without the key the values lead to the key, with it they lead through the door to the goal.


# %%
def value_map(env, state_values):
    """Average state values per (has_key, row, col) cell; NaN for walls and cells never reached."""
    grid = env.unwrapped.grid
    total, count = np.zeros((2, *grid.shape)), np.zeros((2, *grid.shape))
    for state in np.flatnonzero(~env.unwrapped.mdp.terminal):
        row, col, has_key, _ = env.unwrapped.decode(state)
        total[int(has_key), row, col] += state_values[state]
        count[int(has_key), row, col] += 1
    with np.errstate(invalid="ignore"):
        return total / count


maps = value_map(env, values[0])
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
for ax, has_key in zip(axes, (0, 1), strict=True):
    image = ax.imshow(maps[has_key], cmap="viridis", vmin=0, vmax=np.nanmax(maps))
    for (row, col), char in np.ndenumerate(env.unwrapped.grid):
        if char in "GKDL":
            ax.text(col, row, char, ha="center", va="center", color="white")
    ax.set_title(f"$V^*_0$, {'with' if has_key else 'without'} the key")
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()

# %% [markdown]
# ## Q-learning: the same grids from samples
#
# Value iteration needs the table. Q-learning (Watkins, 1989; Watkins & Dayan, 1992) only sees transitions
# $(s, a, r, s')$ and moves its estimate towards a one-sample Bellman target:
#
# $$Q(s, a) \leftarrow Q(s, a) + \alpha\,\big(r + \gamma \max_{a'} Q(s', a') - Q(s, a)\big),$$
#
# with no bootstrap term ($\gamma \max_{a'} Q(s', a')$ replaced by 0) when $s'$ is terminal. A time-limit
# truncation is not terminal: the state still has a future, so we bootstrap. Q-learning keeps no time index,
# so we use a discount $\gamma = 0.9$, which also favours reaching the goal sooner.
#
# **Exercise 3.** Write the update, changing `q[state, action]` in place.


# %%
def q_learning_update(q, state, action, reward, next_state, terminated, alpha, gamma):
    """One Q-learning update of q[state, action], in place."""
    # BEGIN SOLUTION
    target = reward if terminated else reward + gamma * q[next_state].max()
    q[state, action] += alpha * (target - q[state, action])
    # STUB
    # pass  # your code: move q[state, action] towards the one-step target
    # END SOLUTION


update = q_learning_update if check_q_learning_update(q_learning_update) else reference_q_learning_update

# %% [markdown]
# The agent explores $\varepsilon$-greedily: a random action with probability $\varepsilon$, else a greedy one
# (ties broken at random, so an all-zero row acts uniformly). Because we have the table we can score the greedy
# policy *exactly* every few hundred steps with `policy_return`, instead of averaging noisy episodes.


# %%
def q_learning(env, steps, update, alpha=0.1, gamma=0.9, epsilon=0.1, every=500, seed=0):
    """Tabular Q-learning; returns Q and the exact return of its greedy policy every `every` steps."""
    mdp = env.unwrapped.mdp
    rng = np.random.default_rng(seed)
    q = np.zeros((mdp.n_states, mdp.n_actions))
    state, _ = env.reset(seed=seed)
    curve = []
    for step in range(1, steps + 1):
        if rng.random() < epsilon:
            action = int(rng.integers(mdp.n_actions))
        else:
            action = int(rng.choice(np.flatnonzero(q[state] == q[state].max())))
        next_state, reward, terminated, truncated, _ = env.step(action)
        update(q, state, action, reward, next_state, terminated, alpha, gamma)
        state = next_state
        if terminated or truncated:
            state, _ = env.reset()
        if step % every == 0:
            curve.append(policy_return(mdp, q.argmax(axis=1)))
    return q, np.array(curve)


steps = budget(20_000, 10_000)
every = 500
start = time.perf_counter()
results = {}
for name in GRIDWORLDS:
    grid_env = gym.make(f"StickyGrid-{name}-v0")
    optimum = float(grid_env.unwrapped.mdp.initial @ palaestra_value_iteration(grid_env.unwrapped.mdp).optimal_values[0])
    _, curve = q_learning(grid_env, steps, update, every=every)
    results[name] = curve / optimum
print(f"Q-learning, {steps} steps on each of {len(results)} grids: {time.perf_counter() - start:.0f} s")


def steps_to_solve(fraction_of_optimum, threshold=0.9):
    """Env steps until the greedy policy first reaches `threshold` of the optimal return (None if never)."""
    hits = np.flatnonzero(fraction_of_optimum >= threshold)
    return int((hits[0] + 1) * every) if hits.size else None


solved = {name: steps_to_solve(curve) for name, curve in results.items()}
for name, n in solved.items():
    print(f"{name:17s} {'not solved' if n is None else f'90% of optimal after {n} steps'}")

fig, ax = plt.subplots(figsize=(7, 4))
checkpoints = np.arange(1, len(next(iter(results.values()))) + 1) * every
for name in ("Empty-5x5", "DoorKey-6x6", "FourRooms-9x9", "DoorKey-8x8", "LavaCrossing-7x7"):
    ax.plot(checkpoints, results[name], label=name)
ax.axhline(0.9, color="grey", linestyle=":", label="90% of optimal")
ax.set_xlabel("env steps")
ax.set_ylabel("greedy return / optimal return")
ax.set_title("Tabular Q-learning on StickyGrid")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Why are some grids hard? The effective horizon
#
# All grids are tiny (at most a few hundred states), yet Q-learning needs very different numbers of steps.
# The number of states and the horizon $T$ are rough guides at best: Empty-8x8 and FourRooms-9x9 have the same
# number of states (`mdp.n_states`). Laidlaw, Russell & Dragan ("Bridging RL Theory and Practice with the
# Effective Horizon", NeurIPS 2023; extended to stochastic MDPs such as sticky actions in Laidlaw et al.,
# ICLR 2024) observed that in many environments acting greedily on the Q-function of the **uniformly random
# policy**, $Q^1 = Q^{\pi_{\text{rand}}}$, is already optimal, or becomes so after a few Bellman backups
# $Q^{k+1} = \text{backup}(Q^k)$. If $k$ backups suffice, an agent can learn by estimating $Q^1$ with
# random rollouts and planning $k$ steps ahead; the rollouts needed grow with how small the gaps between
# actions' $Q^k$ values are compared to the variance of random returns. Writing $m_k$ for that number of
# rollouts, the **effective horizon** is
#
# $$H = \min_k \; k + \log_A m_k,$$
#
# so the work scales like $A^H$: exponential in $H$, not in $T$. `effective_horizon(mdp)` computes it exactly
# from the table (and `min_k`, the smallest $k$ for which greedy on $Q^k$ is optimal).

# %%
start = time.perf_counter()
grid_mdps = {name: gym.make(f"StickyGrid-{name}-v0").unwrapped.mdp for name in GRIDWORLDS}
horizons = {name: effective_horizon(grid_mdp) for name, grid_mdp in grid_mdps.items()}
n_states = {name: grid_mdp.n_states for name, grid_mdp in grid_mdps.items()}
print(f"effective horizons of {len(horizons)} grids: {time.perf_counter() - start:.1f} s")
print(f"{'grid':17s} {'S':>4s} {'T':>4s} {'H':>6s} {'min k':>5s} {'random return':>13s} {'optimal':>8s}")
for name, result in horizons.items():
    print(
        f"{name:17s} {n_states[name]:4d} {GRIDWORLDS[name].horizon:4d} {result.effective_horizon:6.2f} "
        f"{result.min_k!s:>5s} {result.random_return:13.4f} {result.optimal_return:8.3f}"
    )

# Unsolved runs are ranked last (as if solved one step after the budget).
names = list(GRIDWORLDS)
effective = np.array([horizons[name].effective_horizon for name in names])
needed = np.array([steps + 1 if solved[name] is None else solved[name] for name in names])
rho = stats.spearmanr(effective, needed).statistic
print(f"Spearman rank correlation between H and Q-learning's steps to 90% of optimal: {rho:.2f}")

fig, ax = plt.subplots(figsize=(7, 4))
unsolved = np.array([solved[name] is None for name in names])
ax.scatter(effective[~unsolved], needed[~unsolved], label="solved")
ax.scatter(effective[unsolved], needed[unsolved], marker="x", color="red", label=f"not solved in {steps} steps")
for name, x, y in zip(names, effective, needed, strict=True):
    ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.set_xlabel("effective horizon H")
ax.set_ylabel("Q-learning steps to 90% of optimal")
ax.set_yscale("log")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# A rank correlation near 1 means the grids line up in the same order by $H$ and by the samples Q-learning
# needed; one seed per grid is noisy, so expect a few grids out of place (lesson 3 shows how to handle seeds).
#
# **Exercise 4.** Look at the table and the plots. Which grid is the hardest by its effective horizon, and why
# is it hard even though its random policy reaches the goal more often than on some easier grids? What does
# LavaCrossing-7x7 show about using the random policy's return as a measure of difficulty?

# %% [markdown]
# BEGIN SOLUTION
# DoorKey-8x8 has the largest effective horizon (about 15.5) and the largest `min_k` (4): acting greedily on the
# random policy's Q-values, or on one to three backups of them, is not optimal there. The trouble is the long
# way back: once the agent holds the key in the far corner of the left room, it must cross that room to the door
# and then go on to the goal. From those states random play almost never gets through the door and to the goal
# before the horizon, so the random policy's Q-values hardly tell the actions apart and greedy on them points the
# wrong way; the right direction only appears after several steps of lookahead (backups). An agent that explores
# randomly must find such long action sequences by chance, which costs about $A^H$ episodes even though the
# random policy does sometimes reach the goal. LavaCrossing-7x7 has a tiny random return (random walks fall in
# lava) but a smaller effective horizon than DoorKey-8x8 (about 11, `min_k` 1): once a random rollout's return is
# estimated well enough, greedy on $Q^1$ is already optimal, so its difficulty is the number of rollouts needed
# to tell actions apart (small gaps against noisy returns), not lookahead. The random return alone conflates the
# two and does not rank grids by difficulty; the effective horizon combines both. Q-learning does not explore by
# random rollouts alone, so its order need not match exactly, but the grids it needs the most steps on (or does not
# solve in the budget), FourRooms-9x9, LavaCrossing-7x7 and DoorKey-8x8, are among the four with the largest $H$.
# END SOLUTION
