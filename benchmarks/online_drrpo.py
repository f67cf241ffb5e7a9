"""DR-RPO vs its non-robust version (rho = 0) and SB3 PPO on the same features, under increasing dynamics shift.

* ``LinearRobustMDP-v0``: train on the nominal kernel, evaluate exactly (from the env's tables) at transition
  shifts ``q = 0 .. 1``; also the cumulative nominal regret of the policy played at each training episode.
* ``AmericanPutOption-v0``: train at drift ``up_probability = 0.5``, evaluate (Monte Carlo, seeded) at 0.3 .. 0.8.

PPO observes the same information DR-RPO uses: ``phi(s, a)`` for every action, concatenated, plus a one-hot of
the step index (DR-RPO's policy is step-indexed). Run: ``python benchmarks/online_drrpo.py`` (``--quick``: smoke run).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from benchmarks.harness import RESULTS_DIR, machine_info, markdown_table, render_readme_section, write_results
from palaestra.agents.online.drrpo import DRRPO
from palaestra.envs.control.linear_robust_mdp import LinearRobustMDPEnv
from palaestra.evaluation import bootstrap_ci, evaluate

THREADS = 1


class FeatureObservation(gym.Wrapper):
    """Observation = ``[phi(s, a) for every a]`` concatenated with a one-hot of the step index (PPO's input)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        self.horizon, self.n_actions = base.horizon, env.action_space.n
        self.n_features = len(base.phi(env.observation_space.sample(), 0))
        size = self.n_actions * self.n_features + self.horizon + 1
        self.observation_space = spaces.Box(0.0, 1.0, (size,), np.float32)
        self._step = 0

    def _features(self, observation: Any) -> np.ndarray:
        phi = [self.env.unwrapped.phi(observation, a) for a in range(self.n_actions)]
        return np.concatenate([*phi, np.eye(self.horizon + 1)[min(self._step, self.horizon)]]).astype(np.float32)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env and the step counter."""
        observation, info = self.env.reset(**kwargs)
        self._step = 0
        return self._features(observation), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step the env and count the step."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._step += 1
        return self._features(observation), float(reward), terminated, truncated, info


# --- Exact evaluation on the linear MDP -------------------------------------------------------------
def policy_table(act: Any) -> np.ndarray:
    """``pi[h, s, a]`` of a policy given as ``act(states, h) -> probabilities (S, A)``."""
    return np.stack([act(h) for h in range(3)])


def exact_return(env: LinearRobustMDPEnv, policy: np.ndarray) -> float:
    v = np.zeros(5)
    for h in reversed(range(3)):
        q = env.features @ env.reward_weights(h) + env.transition_table(h) @ v
        v = (policy[h] * q).sum(axis=1)
    return float(v[0])


def optimal_nominal_return() -> float:
    env, v = LinearRobustMDPEnv(), np.zeros(5)
    for h in reversed(range(3)):
        v = (env.features @ env.reward_weights(h) + env.transition_table(h) @ v).max(axis=1)
    return float(v[0])


def drrpo_table(agent: DRRPO, deterministic: bool) -> np.ndarray:
    def act(h: int) -> np.ndarray:
        probabilities = np.stack([agent.action_probabilities(s, h) for s in range(5)])
        return np.eye(16)[probabilities.argmax(axis=1)] if deterministic else probabilities

    return policy_table(act)


def ppo_table(model: PPO, wrapper: FeatureObservation) -> np.ndarray:
    def act(h: int) -> np.ndarray:
        wrapper._step = h
        observations = np.stack([wrapper._features(s) for s in range(5)])
        return np.eye(16)[model.predict(observations, deterministic=True)[0]]

    return policy_table(act)


class RegretCallback(BaseCallback):
    """Nominal suboptimality of the (stochastic) policy played in each training episode."""

    def __init__(self, optimum: float):
        super().__init__()
        self.optimum, self.gaps = optimum, []

    def _on_rollout_start(self) -> None:
        self.gaps.append(self.optimum - exact_return(LinearRobustMDPEnv(), drrpo_table(self.model, deterministic=False)))

    def _on_step(self) -> bool:
        return True


def linear_mdp(seeds: int, budget: int, radii: list[float], shifts: list[float]) -> dict[str, Any]:
    optimum = optimal_nominal_return()
    arms: dict[str, Any] = {}
    for rho in radii:
        label = f"DR-RPO rho={rho}" if rho > 0 else "non-robust (rho=0)"
        returns, regrets, seconds = [], [], []
        for seed in range(seeds):
            agent = DRRPO(gym.make("LinearRobustMDP-v0"), rho=rho, seed=seed)
            callback = RegretCallback(optimum)
            start = time.perf_counter()
            agent.learn(budget, callback=callback)
            seconds.append(time.perf_counter() - start)
            table = drrpo_table(agent, deterministic=True)
            returns.append([exact_return(LinearRobustMDPEnv(perturbation=q), table) for q in shifts])
            regrets.append(np.cumsum(callback.gaps).tolist())
        arms[label] = {"rho": rho, "returns": returns, "cumulative_regret": regrets, "seconds": seconds}
    returns = []
    for seed in range(seeds):
        wrapper = FeatureObservation(gym.make("LinearRobustMDP-v0"))
        model = PPO("MlpPolicy", wrapper, n_steps=128, batch_size=64, seed=seed)
        model.learn(budget)
        table = ppo_table(model, wrapper)
        returns.append([exact_return(LinearRobustMDPEnv(perturbation=q), table) for q in shifts])
    arms["PPO (same features)"] = {"returns": returns}
    return {"optimal_nominal_return": optimum, "shifts": shifts, "arms": arms}


def put_option(seeds: int, budget: int, radii: list[float], drifts: list[float], episodes: int) -> dict[str, Any]:
    arms: dict[str, Any] = {}
    for rho in radii:
        label = f"DR-RPO rho={rho}" if rho > 0 else "non-robust (rho=0)"
        returns, lengths, seconds = [], [], []
        for seed in range(seeds):
            agent = DRRPO(gym.make("AmericanPutOption-v0"), rho=rho, bonus_scale=1.0, seed=seed)
            start = time.perf_counter()
            agent.learn(budget)
            seconds.append(time.perf_counter() - start)
            results = [
                evaluate(agent, gym.make("AmericanPutOption-v0", up_probability=p), episodes, seed=1000 + seed) for p in drifts
            ]
            returns.append([r.mean for r in results])
            lengths.append([float(r.lengths.mean()) for r in results])
        arms[label] = {"rho": rho, "returns": returns, "exercise_step": lengths, "seconds": seconds}
    returns = []
    for seed in range(seeds):
        model = PPO("MlpPolicy", FeatureObservation(gym.make("AmericanPutOption-v0")), n_steps=256, batch_size=64, seed=seed)
        model.learn(budget)
        returns.append(
            [
                evaluate(
                    model, FeatureObservation(gym.make("AmericanPutOption-v0", up_probability=p)), episodes, seed=1000 + seed
                ).mean
                for p in drifts
            ]
        )
    arms["PPO (same features)"] = {"returns": returns}
    return {"drifts": drifts, "arms": arms}


def summarise(arms: dict[str, Any]) -> dict[str, Any]:
    for arm in arms.values():
        values = np.asarray(arm["returns"])
        arm["mean"] = values.mean(axis=0).tolist()
        arm["ci"] = [bootstrap_ci(values[:, j]) for j in range(values.shape[1])]
    return arms


def plot(linear: dict[str, Any], put: dict[str, Any], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for axis, data, x_key, xlabel, title in (
        (axes[0], linear, "shifts", "transition shift q (goal -> fail at step 1)", "LinearRobustMDP-v0 (exact return)"),
        (axes[1], put, "drifts", "up-move probability at test time (trained at 0.5)", "AmericanPutOption-v0"),
    ):
        x = np.asarray(data[x_key])
        for label, arm in data["arms"].items():
            ci = np.asarray(arm["ci"])
            axis.plot(x, arm["mean"], marker="o", ms=3, label=label)
            axis.fill_between(x, ci[:, 0], ci[:, 1], alpha=0.2)
        axis.set(xlabel=xlabel, ylabel="average return", title=title)
        axis.legend(fontsize=7)
    for label, arm in linear["arms"].items():
        if "cumulative_regret" in arm:
            regret = np.asarray(arm["cumulative_regret"])
            axes[2].plot(np.arange(1, regret.shape[1] + 1), regret.mean(axis=0), label=label)
    axes[2].set(
        xlabel="episode k", ylabel="cumulative nominal regret", title="LinearRobustMDP-v0: regret of the played policy"
    )
    axes[2].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def render_markdown(payload: dict[str, Any]) -> str:
    """The README section body (both tables and the plot) of a results payload."""
    linear, put, config = payload["linear_mdp"], payload["put_option"], payload["config"]
    shifts, drifts = linear["shifts"], put["drifts"]

    def rows(data: dict[str, Any], columns: list[int]) -> list[list[str]]:
        table = []
        for label, arm in data["arms"].items():
            cells = [f"{arm['mean'][j]:.3f} [{arm['ci'][j][0]:.3f}, {arm['ci'][j][1]:.3f}]" for j in columns]
            table.append([label, *cells])
        return table

    linear_cols = [j for j in (0, 3, 5, 7, 10) if j < len(shifts)]
    put_cols = list(range(len(drifts)))
    seeds, budget = config["linear"]["seeds"], config["linear"]["budget_env_steps"]
    put_seeds, put_budget, put_episodes = (config["put"][key] for key in ("seeds", "budget_env_steps", "test_episodes"))
    return (
        f"`python benchmarks/online_drrpo.py` — {THREADS} torch thread. DR-RPO (eta 1, beta 100) at several TV radii, "
        "its non-robust version (rho = 0) and SB3 PPO on the same features, trained on the nominal model only. "
        "Mean return over seeds with 95% bootstrap CIs.\n\n"
        f"**LinearRobustMDP-v0** ({seeds} seeds, {budget} env steps = {budget // 3} episodes; "
        f"exact returns; optimal nominal return {linear['optimal_nominal_return']:.3f}):\n\n"
        + markdown_table(["agent", *(f"q = {shifts[j]}" for j in linear_cols)], rows(linear, linear_cols))
        + f"\n\n**AmericanPutOption-v0** ({put_seeds} seeds, {put_budget} env steps at drift 0.5, "
        f"{put_episodes} test episodes per drift):\n\n"
        + markdown_table(["agent", *(f"p_up = {drifts[j]}" for j in put_cols)], rows(put, put_cols))
        + "\n\n![DR-RPO under dynamics shift](results/online_drrpo.png)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--linear-budget", type=int, default=1_500, help="env steps (500 episodes of H = 3)")
    parser.add_argument("--put-seeds", type=int, default=3)
    parser.add_argument("--put-budget", type=int, default=10_000, help="env steps on the put option")
    parser.add_argument("--put-episodes", type=int, default=500, help="test episodes per drift")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.put_seeds, args.linear_budget, args.put_budget, args.put_episodes = 2, 1, 300, 1_000, 50
    torch.set_num_threads(THREADS)
    shifts = [round(0.1 * i, 1) for i in range(11)]
    drifts = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    linear = linear_mdp(args.seeds, args.linear_budget, [0.0, 0.1, 0.3, 0.5], shifts)
    put = put_option(args.put_seeds, args.put_budget, [0.0, 0.05, 0.2], drifts, args.put_episodes)
    summarise(linear["arms"])
    summarise(put["arms"])
    payload = {
        "machine": machine_info(THREADS),
        "config": {
            "linear": {
                "seeds": args.seeds,
                "budget_env_steps": args.linear_budget,
                "drrpo": {"eta": 1.0, "beta": 100.0, "bonus_scale": 0.1},
            },
            "put": {
                "seeds": args.put_seeds,
                "budget_env_steps": args.put_budget,
                "test_episodes": args.put_episodes,
                "drrpo": {"eta": 1.0, "beta": 100.0, "bonus_scale": 1.0},
            },
            "ppo": "SB3 defaults, n_steps 128 (linear) / 256 (put), batch 64, on [phi(s, a) for all a] + one-hot step",
        },
        "linear_mdp": linear,
        "put_option": put,
    }
    write_results("online_drrpo", payload)
    plot(linear, put, RESULTS_DIR / "online_drrpo.png")

    body = render_markdown(payload)
    render_readme_section("online_drrpo", body)
    print(body)


if __name__ == "__main__":
    main()
