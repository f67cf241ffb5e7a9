"""SQIRL vs SB3 PPO and DQN on the sticky-action gridworld registry, against the exact effective horizon.

Reproduces the shape of Laidlaw et al. (ICLR 2024), Sec. 6: per MDP, the env steps and episodes each
algorithm needs before its (deterministic) policy first reaches ``--fraction`` of the optimal return, the
Spearman rank correlation of SQIRL's sample complexity with PPO's and DQN's, and of each with the
effective horizon computed exactly from the table; plus how many MDPs each solves within the budget.
Returns are computed exactly from each env's transition table (no evaluation noise). SQIRL's sample
complexity is the best over its ``k x m`` grid (median over seeds per setting), as in the paper.
Also times one SQIRL fitted-Q iteration (tabular and MLP regressors).

Run: ``python benchmarks/online_sqirl.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy import stats
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from benchmarks.harness import RESULTS_DIR, machine_info, markdown_table, render_readme_section, time_callables, write_results
from palaestra.agents.online.sqirl import SQIRL
from palaestra.envs.control.effective_horizon import effective_horizon
from palaestra.envs.control.gridworlds import GRIDWORLDS, policy_return
from palaestra.evaluation import bootstrap_ci

THREADS = 1
# SB3 settings of the paper's deep-RL baselines (effective_horizon/sb3/train.py defaults), scaled to this budget:
# PPO 4 envs instead of 8 and DQN learning_starts 1000 instead of 1e5 (the budget here is far below 5M steps).
PPO_KWARGS = dict(n_steps=128, batch_size=256, n_epochs=4, learning_rate=2.5e-4, clip_range=0.1, ent_coef=0.01, gamma=0.99)
DQN_KWARGS = dict(
    learning_rate=1e-4,
    batch_size=32,
    buffer_size=100_000,
    learning_starts=1_000,
    target_update_interval=1_000,
    train_freq=4,
    exploration_fraction=0.1,
    exploration_final_eps=0.01,
    gamma=0.99,
)


class ExactEvaluation(BaseCallback):
    """Record the exact return of the current deterministic policy every ``eval_freq`` steps (or each SQIRL iteration)."""

    def __init__(self, mdp: Any, table_fn: Any, eval_freq: int | None):
        super().__init__()
        self.mdp, self.table_fn, self.eval_freq = mdp, table_fn, eval_freq
        self.episodes = 0
        self.history: list[tuple[int, int, float]] = []

    def _evaluate(self) -> None:
        self.history.append((self.model.num_timesteps, self.episodes, policy_return(self.mdp, self.table_fn(self.model))))

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_rollout_start(self) -> None:
        if self.eval_freq is None:  # SQIRL: after every fit-and-freeze iteration
            self._evaluate()

    def _on_step(self) -> bool:
        dones = self.locals.get("dones", self.locals.get("done"))
        self.episodes += int(np.sum(dones))
        if self.eval_freq is not None and self.model.num_timesteps % self.eval_freq == 0:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        self._evaluate()


def stationary_table(model: Any) -> np.ndarray:
    states = np.arange(model.observation_space.n)
    return model.predict(states, deterministic=True)[0]


def sqirl_table(agent: SQIRL) -> np.ndarray:
    states = np.arange(agent.observation_space.n)
    return np.stack(
        [agent.predict(states, state=(np.full(len(states), t),), deterministic=True)[0] for t in range(agent.horizon)]
    )


def first_reach(history: list[tuple[int, int, float]], threshold: float) -> tuple[float, float]:
    for steps, episodes, value in history:
        if value >= threshold - 1e-9:
            return float(steps), float(episodes)
    return float("inf"), float("inf")


def run(algo: str, env_id: str, seed: int, budget: int, eval_freq: int, config: dict[str, Any]) -> dict[str, Any]:
    mdp = gym.make(env_id).unwrapped.mdp
    start = time.perf_counter()
    if algo == "sqirl":
        model = SQIRL(gym.make(env_id), seed=seed, **config)
        callback = ExactEvaluation(mdp, sqirl_table, None)
    elif algo == "ppo":
        model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=4, seed=seed), seed=seed, **PPO_KWARGS)
        callback = ExactEvaluation(mdp, stationary_table, eval_freq)
    else:
        model = DQN("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=seed), seed=seed, **DQN_KWARGS)
        callback = ExactEvaluation(mdp, stationary_table, eval_freq)
    model.learn(budget, callback=callback)
    return {"history": callback.history, "seconds": time.perf_counter() - start}


def time_fqi(budget: int) -> dict[str, Any]:
    """Seconds per fitted-Q iteration (one ``_fit`` call on the buffer SQIRL holds after ``budget`` steps)."""
    results = {}
    for regressor, env_id in (("tabular", "StickyGrid-Empty-8x8-v0"), ("mlp", "StickyGrid-Empty-8x8-v0")):
        agent = SQIRL(gym.make(env_id), regressor=regressor, planning_depth=2, episodes_per_timestep=32, seed=0)
        agent.learn(budget)
        buffer = agent._buffer_len

        def fit(agent: SQIRL = agent, new: int = agent.episodes_per_timestep * 30) -> None:
            agent._new_transitions = new  # the MLP's gradient steps scale with the new data of one iteration
            agent._fit()

        timing = time_callables({regressor: fit}, number=1, repeats=5)[regressor]
        results[regressor] = {"buffer_transitions": buffer, **timing.to_dict()}
    return results


def jsonable(value: Any) -> Any:
    """Numpy scalars to Python, and +inf (not solved) to ``None``, recursively."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def spearman(x: list[float], y: list[float]) -> float | None:
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    # Unsolved MDPs (inf) rank above every solved one; spearmanr ranks inf consistently.
    if len(x_arr) < 3 or np.all(x_arr == x_arr[0]) or np.all(y_arr == y_arr[0]):
        return None
    return float(stats.spearmanr(x_arr, y_arr).statistic)


def plot(rows: list[dict[str, Any]], budget: int, path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    horizons = [row["effective_horizon"] for row in rows]
    cap = 2.0 * budget
    for algo, marker in (("sqirl", "o"), ("ppo", "s"), ("dqn", "^")):
        values = [min(row[algo]["median_steps"], cap) for row in rows]
        axes[0].scatter(horizons, values, marker=marker, label=algo.upper())
    axes[0].axhline(budget, color="grey", ls="--", lw=0.8)
    axes[0].set(xlabel="effective horizon H (exact)", ylabel="env steps to reach threshold", yscale="log")
    axes[0].set_title("sample complexity vs effective horizon\n(points at 2x budget: not solved)")
    axes[0].legend()
    for axis, other in zip(axes[1:], ("ppo", "dqn"), strict=True):
        sqirl = [min(row["sqirl"]["median_steps"], cap) for row in rows]
        deep = [min(row[other]["median_steps"], cap) for row in rows]
        axis.scatter(sqirl, deep)
        for row, x, y in zip(rows, sqirl, deep, strict=True):
            axis.annotate(row["mdp"], (x, y), fontsize=6)
        lims = [min(sqirl + deep) / 2, cap * 1.5]
        axis.plot(lims, lims, color="grey", lw=0.8)
        axis.set(xscale="log", yscale="log", xlabel="SQIRL env steps", ylabel=f"{other.upper()} env steps")
        axis.set_title(f"SQIRL vs {other.upper()}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def render_markdown(payload: dict[str, Any]) -> str:
    """The README section body (table, correlations, FQI timing and plot) of a results payload."""
    config, rows, solved, correlations = payload["config"], payload["rows"], payload["solved"], payload["spearman"]
    fqi, seeds = payload["fqi_seconds_per_iteration"], config["seeds"]

    def summary(result: dict[str, Any]) -> str:
        steps = result["median_steps"]
        if steps is None or not np.isfinite(steps):  # JSON writes an unsolved median as null
            return f"not solved ({result['solved_seeds']}/{seeds})"
        return f"{steps:.0f} ({result['median_episodes']:.0f} ep, {result['solved_seeds']}/{seeds})"

    table_rows = [
        [
            r["mdp"],
            f"{r['effective_horizon']:.2f}",
            r["min_k"],
            f"{r['optimal_return']:.3f}",
            *(summary(r[a]) for a in ("sqirl", "ppo", "dqn")),
        ]
        for r in rows
    ]
    header = ["MDP", "eff. horizon H", "min k", "optimal return", "SQIRL steps (episodes, seeds solved)", "PPO", "DQN"]
    corr = ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} n/a" for k, v in correlations.items())
    return (
        f"`python benchmarks/online_sqirl.py` — {seeds} seeds, {config['budget_env_steps']} env steps per run, "
        f"{THREADS} torch thread; solved = the deterministic policy's exact return reaches "
        f"{config['fraction_of_optimal']:.0%} of the optimal return "
        "(median over seeds of the first env step/episode where it does; SQIRL: best of its k x m grid).\n\n"
        + markdown_table(header, table_rows)
        + f"\n\nMDPs solved (median seed): SQIRL {solved['sqirl']}, PPO {solved['ppo']}, DQN {solved['dqn']} of {len(rows)}. "
        f"Spearman rank correlations: {corr}.\n\n"
        f"SQIRL fitted-Q time per iteration (Empty-8x8, k=2): tabular {fqi['tabular']['median_s'] * 1e3:.2f} ms "
        f"({fqi['tabular']['buffer_transitions']} transitions), MLP {fqi['mlp']['median_s'] * 1e3:.1f} ms.\n\n"
        "![SQIRL vs PPO/DQN](results/online_sqirl.png)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=50_000, help="env steps per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.9, help="fraction of the optimal return that counts as solved")
    parser.add_argument("--eval-freq", type=int, default=1_000)
    parser.add_argument("--mdps", nargs="*", default=list(GRIDWORLDS))
    parser.add_argument("--quick", action="store_true", help="two MDPs, 1 seed, 5k steps")
    args = parser.parse_args()
    if args.quick:
        args.budget, args.seeds, args.mdps = 5_000, 1, args.mdps[:2]
    torch.set_num_threads(THREADS)
    sqirl_grid = [{"planning_depth": k, "episodes_per_timestep": m} for k in (1, 2) for m in (8, 32, 128)]
    rows: list[dict[str, Any]] = []
    for name in args.mdps:
        env_id = f"StickyGrid-{name}-v0"
        mdp = gym.make(env_id).unwrapped.mdp
        eh = effective_horizon(mdp)
        threshold = args.fraction * eh.optimal_return
        row: dict[str, Any] = {
            "mdp": name,
            "env_id": env_id,
            "states": mdp.n_states,
            "horizon": mdp.horizon,
            "effective_horizon": eh.effective_horizon,
            "min_k": eh.min_k,
            "optimal_return": eh.optimal_return,
            "random_return": eh.random_return,
            "threshold": threshold,
        }
        arms: dict[str, list[dict[str, Any]]] = {"ppo": [{}], "dqn": [{}], "sqirl": sqirl_grid}
        for algo, configs in arms.items():
            per_config = []
            for config in configs:
                runs = [run(algo, env_id, seed, args.budget, args.eval_freq, config) for seed in range(args.seeds)]
                reach = [first_reach(r["history"], threshold) for r in runs]
                steps = [s for s, _ in reach]
                per_config.append(
                    {
                        "config": config,
                        "steps": steps,
                        "episodes": [e for _, e in reach],
                        "median_steps": float(np.median(steps)),
                        "final_return": [r["history"][-1][2] for r in runs],
                        "seconds": [r["seconds"] for r in runs],
                        "curves": [r["history"] for r in runs],
                    }
                )
            best = min(per_config, key=lambda c: (c["median_steps"], -np.mean(c["final_return"])))
            final = np.asarray(best["final_return"])
            row[algo] = {
                "best_config": best["config"],
                "median_steps": best["median_steps"],
                "median_episodes": float(np.median(best["episodes"])),
                "steps": best["steps"],
                "episodes": best["episodes"],
                "solved_seeds": int(np.sum(np.isfinite(best["steps"]))),
                "final_return_mean": float(final.mean()),
                "final_return_ci": bootstrap_ci(final),
                "all_configs": per_config,
            }
            print(
                f"{name:18s} H={eh.effective_horizon:5.2f} {algo:5s} median steps {best['median_steps']:>9} "
                f"final {final.mean():.3f} (opt {eh.optimal_return:.3f}) config {best['config']}",
                flush=True,
            )
        rows.append(row)
        write_results("online_sqirl_partial", jsonable({"rows": rows}))

    fqi = time_fqi(min(args.budget, 20_000))
    solved = {algo: int(sum(np.isfinite(row[algo]["median_steps"]) for row in rows)) for algo in ("sqirl", "ppo", "dqn")}
    horizons = [row["effective_horizon"] for row in rows]
    correlations = {
        "sqirl_vs_ppo": spearman([r["sqirl"]["median_steps"] for r in rows], [r["ppo"]["median_steps"] for r in rows]),
        "sqirl_vs_dqn": spearman([r["sqirl"]["median_steps"] for r in rows], [r["dqn"]["median_steps"] for r in rows]),
        **{
            f"{a}_vs_effective_horizon": spearman(horizons, [r[a]["median_steps"] for r in rows])
            for a in ("sqirl", "ppo", "dqn")
        },
    }
    payload = {
        "machine": machine_info(THREADS),
        "config": {
            "budget_env_steps": args.budget,
            "seeds": args.seeds,
            "fraction_of_optimal": args.fraction,
            "eval_freq": args.eval_freq,
            "sqirl_grid": sqirl_grid,
            "ppo": {**PPO_KWARGS, "n_envs": 4},
            "dqn": DQN_KWARGS,
        },
        "rows": rows,
        "solved": solved,
        "spearman": correlations,
        "fqi_seconds_per_iteration": fqi,
    }
    write_results("online_sqirl", jsonable(payload))
    (RESULTS_DIR / "online_sqirl_partial.json").unlink(missing_ok=True)
    plot(rows, args.budget, RESULTS_DIR / "online_sqirl.png")

    body = render_markdown(jsonable(payload))
    render_readme_section("online_sqirl", body)
    print(body)


if __name__ == "__main__":
    main()
