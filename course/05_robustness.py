"""Lesson 5: robustness: perturbed physics, sticky actions, domain randomisation and DR-RPO's TV ball."""

# %% [markdown]
# # Lesson 5: robustness
#
# A policy is trained in one environment and deployed in another: a simulator's pole length, motor strength or
# market drift are never exactly those of the real system. **Robust RL** asks how much return a policy keeps when the
# dynamics move, and how to train for the worst case. In this lesson you will
#
# 1. train PPO on the nominal cart-pole and evaluate it over a **grid of physical perturbations**, finding the worst case;
# 2. make the env stochastic with **sticky actions** (Machado et al., 2018, [arXiv 1709.06009](https://arxiv.org/abs/1709.06009));
# 3. train with **domain randomisation** (Tobin et al., 2017, [arXiv 1703.06907](https://arxiv.org/abs/1703.06907)):
#    new physics every episode;
# 4. compute the **worst-case expectation over a total-variation ball**, the core of robust MDPs (Iyengar 2005;
#    Nilim & El Ghaoui 2005), and use it through **DR-RPO** (Gu, He, Liu & Xu, [arXiv 2510.14246](https://arxiv.org/abs/2510.14246))
#    on an American put option whose price drift shifts at test time.

# %%
import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch
from stable_baselines3 import PPO

import palaestra
from palaestra.agents.online import DRRPO
from palaestra.agents.online.drrpo import tv_robust_expectation
from palaestra.course import budget
from palaestra.course.checks.lesson05 import (
    check_perturbation_grid,
    check_tv_worst_case,
    check_worst_case,
    reference_perturbation_grid,
)
from palaestra.wrappers import StickyActions

torch.set_num_threads(1)  # small networks run fastest on one thread
PPO_STEPS = budget(25_000, 2_048)  # env steps of each PPO run
EPISODES = budget(5, 2)  # evaluation episodes per perturbation
DRRPO_STEPS = budget(6_000, 1_000)  # env steps of each DR-RPO run (episodes of at most 20 steps)
OPTION_EPISODES = budget(200, 40)  # evaluation episodes per drift
LENGTHS = (0.5, 1.0, 2.0, 4.0)  # factors of the pole's length
FORCE_MAGS = (0.25, 0.5, 1.0, 2.0)  # factors of the motor's force

# %% [markdown]
# ## 1. A policy trained on the nominal model, evaluated off it
#
# `RobustCartPole-v0` is Gymnasium's cart-pole with its physical parameters exposed. A `perturbation` scales them:
# `gym.make("RobustCartPole-v0", perturbation={"length": 2.0})` doubles the pole's length. We train PPO on the
# nominal model only.

# %%
nominal_ppo = PPO("MlpPolicy", "RobustCartPole-v0", seed=0).learn(PPO_STEPS)
result = palaestra.evaluate(nominal_ppo, gym.make("RobustCartPole-v0"), n_episodes=EPISODES, seed=0)
print("nominal:", result)

# %% [markdown]
# **Exercise 1.** Write `perturbation_grid(policy, lengths, force_mags, n_episodes)`, returning the array `grid` of
# shape `(len(lengths), len(force_mags))` whose entry `[i, j]` is the mean return of `policy` with the length scaled by
# `lengths[i]` and the force by `force_mags[j]`: `palaestra.evaluate(policy, env, n_episodes=n_episodes, seed=0).mean`.


# %%
def perturbation_grid(policy, lengths, force_mags, n_episodes):
    # BEGIN SOLUTION
    grid = np.zeros((len(lengths), len(force_mags)))
    for i, length in enumerate(lengths):
        for j, force in enumerate(force_mags):
            perturbed = gym.make("RobustCartPole-v0", perturbation={"length": length, "force_mag": force})
            grid[i, j] = palaestra.evaluate(policy, perturbed, n_episodes=n_episodes, seed=0).mean
    return grid
    # STUB
    # return None  # your code: the (len(lengths), len(force_mags)) array of mean returns
    # END SOLUTION


nominal_grid = perturbation_grid(nominal_ppo, LENGTHS, FORCE_MAGS, EPISODES)
if not check_perturbation_grid(nominal_grid, nominal_ppo, LENGTHS, FORCE_MAGS, EPISODES):
    nominal_grid = reference_perturbation_grid(nominal_ppo, LENGTHS, FORCE_MAGS, EPISODES)
print(np.round(nominal_grid, 1))

# %% [markdown]
# **Exercise 2.** A robust-control engineer reads such a grid by its minimum. Set `worst` to the triple
# `(length factor, force factor, mean return)` of the grid's worst cell (`np.argmin` and `np.unravel_index` help).

# %%
# BEGIN SOLUTION
row, column = np.unravel_index(np.argmin(nominal_grid), nominal_grid.shape)
worst = (LENGTHS[row], FORCE_MAGS[column], nominal_grid[row, column])
# STUB
# worst = None  # your code: (length factor, force factor, mean return) of the lowest cell
# END SOLUTION
check_worst_case(worst, nominal_grid, LENGTHS, FORCE_MAGS)
print(f"nominal PPO: mean over the grid {nominal_grid.mean():.1f}, worst cell {nominal_grid.min():.1f}")

# %% [markdown]
# ## 2. Sticky actions
#
# Perturbing parameters is one way to move the dynamics; another is to make them stochastic. Machado et al. made the
# Atari games stochastic with **sticky actions**: at every step, with probability $p$, the environment repeats the
# previous executed action instead of the agent's. `palaestra.wrappers.StickyActions` does this for any env, and its
# `info` says which steps were repeated. Compare the rows with each other: the wrapper draws its coin flips from the
# env's own random stream, so even $p = 0$ gives other episodes than the unwrapped env at the same seed.

# %%
sticky = {}
for p in (0.0, 0.25, 0.5):
    env = StickyActions(gym.make("RobustCartPole-v0"), repeat_action_probability=p)
    sticky[p] = palaestra.evaluate(nominal_ppo, env, n_episodes=EPISODES, seed=0).mean
    print(f"repeat probability {p:.2f}: mean return {sticky[p]:.1f}")

# %% [markdown]
# ## 3. Domain randomisation
#
# If the deployment physics are unknown but lie in a range, train on that range: at every reset draw new factors, so
# the policy never sees the same pole twice. The wrapper below passes them through `reset(options={"perturbation":
# ...})`, which `RobustCartPole-v0` reads at every episode. Factors are drawn log-uniformly over the grid's range.


# %%
class RandomPhysics(gym.Wrapper):
    """New length and force factors at every reset, log-uniform in [low, high] per parameter."""

    def __init__(self, env, ranges, seed=0):
        super().__init__(env)
        self.ranges, self.rng = ranges, np.random.default_rng(seed)

    def reset(self, *, seed=None, options=None):
        factors = {name: float(np.exp(self.rng.uniform(np.log(lo), np.log(hi)))) for name, (lo, hi) in self.ranges.items()}
        return self.env.reset(seed=seed, options={**(options or {}), "perturbation": factors})


ranges = {"length": (min(LENGTHS), max(LENGTHS)), "force_mag": (min(FORCE_MAGS), max(FORCE_MAGS))}
randomised_ppo = PPO("MlpPolicy", RandomPhysics(gym.make("RobustCartPole-v0"), ranges), seed=0).learn(PPO_STEPS)
randomised_grid = reference_perturbation_grid(randomised_ppo, LENGTHS, FORCE_MAGS, EPISODES)
for name, values in (("nominal PPO", nominal_grid), ("randomised PPO", randomised_grid)):
    print(f"{name:15s}: grid mean {values.mean():6.1f}, worst cell {values.min():6.1f}, nominal cell {values[1, 2]:6.1f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
panels = (("trained on nominal", nominal_grid), ("domain randomised", randomised_grid))
for axis, (name, values) in zip(axes, panels, strict=True):
    image = axis.imshow(values, origin="lower", vmin=0, vmax=500, cmap="viridis")
    axis.set(xticks=range(len(FORCE_MAGS)), xticklabels=FORCE_MAGS, yticks=range(len(LENGTHS)), yticklabels=LENGTHS)
    axis.set(xlabel="force_mag factor", title=f"{name}: worst {values.min():.0f}")
    for (i, j), value in np.ndenumerate(values):
        axis.text(j, i, f"{value:.0f}", ha="center", va="center", color="w" if value < 250 else "k")
axes[0].set_ylabel("length factor")
fig.colorbar(image, ax=axes, label="mean return")
plt.show()

# %% [markdown]
# Compare the two heat maps and the printed summary: domain randomisation spends the same training budget on the
# whole range instead of one point of it, which typically trades some return at the nominal cell for return at the
# hard corners; how the trade falls depends on the budget, so read it off your numbers. Domain randomisation
# optimises the *average* over the training distribution, not the worst case, which leads to the robust formulation.
#
# ## 4. Robust MDPs and the total-variation ball
#
# A robust MDP replaces the nominal next-state distribution $\mu_0$ by an **uncertainty set** around it and evaluates
# a policy under the worst member. With a total-variation ball of radius $\rho$ the robust Bellman backup needs
#
# $$\inf_{\mu:\ \mathrm{TV}(\mu, \mu_0) \le \rho} \mathbb{E}_{\mu}[V]
#   = \max_{\alpha} \Big( \mathbb{E}_{\mu_0}[\min(V, \alpha)] - \rho\,(\alpha - \min_s V(s)) \Big),$$
#
# the right-hand side being the dual DR-RPO estimates by regression (`palaestra.agents.online.drrpo.tv_robust_expectation`
# computes it for a small vector). The primal is a linear program in $\mu$ (`scipy.optimize.linprog` solves it), but it
# also has a direct answer: the adversary moves mass $\rho$ from the highest-value states onto the lowest-value one.
#
# **Exercise 3.** Write `tv_worst_case(values, nominal, rho)` for a finite vector of next-state `values` and the
# nominal distribution `nominal`, returning the worst-case expectation (a float), by the greedy argument or by an LP.
# The check compares it with an LP and with DR-RPO's dual.


# %%
def tv_worst_case(values, nominal, rho):
    # BEGIN SOLUTION
    order = np.argsort(values)
    adversarial, to_move = nominal.astype(float).copy(), rho
    for state in order[:0:-1]:  # highest value first, never the lowest
        taken = min(to_move, adversarial[state])
        adversarial[state] -= taken
        to_move -= taken
    adversarial[order[0]] += rho - to_move
    return float(adversarial @ values)
    # STUB
    # return None  # your code: the smallest expectation of values over distributions within TV rho of nominal
    # END SOLUTION


ok = check_tv_worst_case(tv_worst_case)
worst_expectation = tv_worst_case if ok else tv_robust_expectation
values, nominal = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.3, 0.4])
radii = np.linspace(0.0, 1.0, 21)
plt.plot(radii, [worst_expectation(values, nominal, rho) for rho in radii], marker=".")
plt.xlabel("TV radius rho")
plt.ylabel("worst-case expectation of V")
plt.title(f"V = {values.tolist()}, nominal = {nominal.tolist()}")
plt.show()

# %% [markdown]
# The worst case falls linearly while the adversary drains the best state, then more gently as it moves to
# worse ones, and reaches $\min V$ once $\rho$ covers all the mass outside the worst state.
#
# ## 5. DR-RPO on an American put option
#
# `AmericanPutOption-v0`: each step you hold or exercise a put with strike 100 on a price that moves ±2% with
# up-probability `up_probability` (0.5 nominal), for 20 steps. An upward drift makes the put worth less, so a policy
# trained at 0.5 and deployed at 0.7 faces an adverse shift. DR-RPO learns from the nominal env only, on its linear
# features $\phi(s, a)$, with the robust backup above applied to each factor of a d-rectangular linear MDP, plus an
# exploration bonus and a KL-regularised mirror-descent policy step. `rho = 0` is the same algorithm without
# robustness.

# %%
drifts = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
option_returns = {}
for rho in (0.0, 0.2):
    agent = DRRPO(gym.make("AmericanPutOption-v0"), rho=rho, bonus_scale=1.0, seed=0).learn(DRRPO_STEPS)
    option_returns[rho] = [
        palaestra.evaluate(agent, gym.make("AmericanPutOption-v0", up_probability=p), n_episodes=OPTION_EPISODES).mean
        for p in drifts
    ]
    print(f"rho = {rho}: " + ", ".join(f"p_up {p}: {r:.2f}" for p, r in zip(drifts, option_returns[rho], strict=True)))

# %%
for rho, returns in option_returns.items():
    plt.plot(drifts, returns, marker="o", label="non-robust (rho = 0)" if rho == 0 else f"DR-RPO rho = {rho}")
plt.axvline(0.5, color="grey", linestyle=":", label="training drift")
plt.xlabel("up_probability at test time")
plt.ylabel("mean return")
plt.title(f"AmericanPutOption-v0, trained {DRRPO_STEPS} steps at drift 0.5")
plt.legend()
plt.show()
robust_gain = option_returns[0.2][-1] - option_returns[0.0][-1]
nominal_cost = option_returns[0.0][2] - option_returns[0.2][2]
print(f"at p_up = 0.8, DR-RPO minus non-robust: {robust_gain:+.2f}")
print(f"at the nominal p_up = 0.5, non-robust minus DR-RPO: {nominal_cost:+.2f}")

# %% [markdown]
# **Question.** Read the two differences printed above. What does the robust agent give up, and what does it buy?
#
# BEGIN SOLUTION
# A positive first number means the robust policy keeps more return under the adverse drift; a positive second one is
# the price paid at the nominal drift. Planning against the worst distribution in the TV ball makes holding look less
# valuable, so DR-RPO exercises earlier: it forgoes part of the option's value when the model is right and loses less
# when the price drifts up. (README's DR-RPO benchmark, over 3 seeds, finds both numbers positive at this budget.)
# END SOLUTION
#
# **Take-aways.**
# - Evaluate over a grid of perturbations and report the worst cell as well as the nominal one.
# - Sticky actions and domain randomisation are cheap ways to move or widen the training dynamics; domain
#   randomisation optimises an average, not the worst case.
# - The TV-robust backup has a simple dual, $\max_\alpha \mathbb{E}_{\mu_0}[\min(V,\alpha)] - \rho(\alpha - \min V)$,
#   which DR-RPO estimates from nominal data only, trading nominal return for return under adverse shifts.
