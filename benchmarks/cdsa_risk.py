"""CDSA on top of frozen TD3+BC and IQL policies: return and risk (VaR/CVaR) with and without the correction.

The claim (Liu, Yang & Li 2024): a score-based correction applied at acting time to a pre-trained offline
policy raises its mean return and, above all, the low tail of the return distribution (a more risk-averse
policy), in particular when the policy meets states or actions outside its data. This script pretrains
TD3+BC and IQL on ``pendulum-medium-v0`` (frozen afterwards), fits CDSA's score model on the same data and
evaluates each policy with and without the correction for 100 episodes on the clean env, with Gaussian
observation noise (``sigma = 0.1``) and from perturbed starts (initial angular speed up to the maximum, 8,
instead of 1), reporting the normalised score (x100), VaR_10% and CVaR_10% of the
returns and the mean size of the correction, for several pretraining seeds (resumable: a rerun skips the
seeds already in the results file), with CDSA's gains paired by seed. CDSA's recipe here is palaestra's
reconstruction (the paper published no code). Run: ``python -m benchmarks.cdsa_risk``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import palaestra  # noqa: F401
from benchmarks.harness import (
    RESULTS_DIR,
    load_resumable,
    machine_info,
    markdown_table,
    render_readme_section,
    write_results,
)
from palaestra.agents.offline.cdsa import CDSA, DatasetScoreModel
from palaestra.agents.offline.iql import IQL
from palaestra.agents.offline.td3_bc import TD3BC
from palaestra.evaluation import bootstrap_ci, evaluate

NAME = "cdsa_risk"
SECTION = "CDSA on frozen offline policies: return and risk"
#: the correction's settings (step size, annealed noise levels, per-step norm cap)
KNOBS = {"step_size": 0.5, "n_steps": 5, "sigma_start": 0.3, "sigma_end": 0.05, "max_step_norm": 0.1}


class ObservationNoise(gym.ObservationWrapper):
    """Adds seeded Gaussian noise to every observation (a perturbation the policy never saw in its data)."""

    def __init__(self, env: gym.Env, sigma: float, seed: int) -> None:
        super().__init__(env)
        self.sigma, self.rng = sigma, np.random.default_rng(seed)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The observation plus ``N(0, sigma^2)`` noise."""
        return (observation + self.sigma * self.rng.standard_normal(observation.shape)).astype(np.float32)


class PerturbedStarts(gym.Wrapper):
    """Starts every episode with the given reset options (for pendulum: a wider initial-state range)."""

    def __init__(self, env: gym.Env, **start_options: float) -> None:
        super().__init__(env)
        self.start_options = start_options

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """The wrapped env's reset with the start options (explicit ``options`` take precedence)."""
        return self.env.reset(seed=seed, options={**self.start_options, **(options or {})})


def conditions(env: gym.Env, seed: int) -> dict[str, Callable[[], gym.Env]]:
    """The evaluation conditions (clean, observation noise, perturbed starts), each as an env factory.

    A fresh noise stream per evaluation gives the policy with and without CDSA the same noise.
    """
    return {
        "clean": lambda: env,
        "observation noise 0.1": lambda: ObservationNoise(env, 0.1, seed + 7),
        "perturbed starts": lambda: PerturbedStarts(env, y_init=8.0),
    }


class CorrectionSize:
    """Wraps a CDSA policy and records ``||a - a0||`` of each call."""

    def __init__(self, cdsa: CDSA) -> None:
        self.cdsa, self.sizes = cdsa, []

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True) -> Any:
        """CDSA's action; the uncorrected one is computed too, to measure the correction."""
        base, _ = self.cdsa.policy.predict(observation, state, episode_start, deterministic)
        action, state = self.cdsa.predict(observation, state, episode_start, deterministic)
        self.sizes.append(float(np.linalg.norm(np.asarray(action) - np.asarray(base))))
        return action, state


def risk(returns: np.ndarray, level: float = 0.1) -> tuple[float, float]:
    """``(VaR_level, CVaR_level)``: the ``level``-quantile of the returns and the mean of the worst ``level`` share."""
    returns = np.sort(np.asarray(returns, dtype=np.float64))
    var = float(np.quantile(returns, level))
    tail = returns[: max(1, int(np.ceil(level * len(returns))))]
    return var, float(tail.mean())


def evaluate_seed(args: argparse.Namespace, seed: int, env: gym.Env) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Pretrain both policies and the score model with ``seed``; evaluate every (condition, policy) row."""
    timings: dict[str, float] = {}
    policies = {}
    for name, cls in (("TD3+BC", TD3BC), ("IQL", IQL)):
        started = time.perf_counter()
        policies[name] = cls(env, seed=seed, eval_freq=0).learn(args.agent_steps)
        timings[f"{name} pretraining s"] = time.perf_counter() - started
    started = time.perf_counter()
    score_model = DatasetScoreModel.from_dataset(env.get_dataset(), env, hidden_sizes=(128, 128, 128))
    score_model.fit(steps=args.score_steps, batch_size=512, seed=seed)
    timings["score model fit s"] = time.perf_counter() - started
    results = []
    for condition, make in conditions(env, seed).items():
        for name, policy in policies.items():
            for corrected in (False, True):
                wrapped = CorrectionSize(CDSA(policy, score_model, **KNOBS)) if corrected else policy
                result = evaluate(wrapped, make(), n_episodes=args.episodes, seed=30_000 + seed)
                var, cvar = risk(result.returns)
                results.append(
                    {
                        "seed": seed,
                        "condition": condition,
                        "policy": name + (" + CDSA" if corrected else ""),
                        "score": 100.0 * float(env.get_normalized_score(result.mean)),
                        "mean_return": result.mean,
                        "VaR10": var,
                        "CVaR10": cvar,
                        "mean_correction": float(np.mean(wrapped.sizes)) if corrected else 0.0,
                    }
                )
                print(f"seed {seed} {condition} {results[-1]['policy']}: score {results[-1]['score']:.1f}", flush=True)
    return results, timings


def render_markdown(payload: dict[str, Any]) -> str:
    """README section body: per row the mean over seeds, and CDSA's paired gain over the bare policy with a CI."""
    a, results = payload["args"], payload["results"]
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in results:
        by_key.setdefault((entry["condition"], entry["policy"]), []).append(entry)
    rows, parts = [], []
    for (condition, policy), entries in by_key.items():
        means = {metric: np.mean([e[metric] for e in entries]) for metric in ("score", "VaR10", "CVaR10", "mean_correction")}
        row = [condition, policy, len(entries), f"{means['score']:.1f}", f"{means['VaR10']:.0f}", f"{means['CVaR10']:.0f}"]
        bare = by_key.get((condition, policy.removesuffix(" + CDSA")))
        if policy.endswith(" + CDSA") and bare is not None:
            gains = {}
            for metric in ("score", "VaR10", "CVaR10"):
                diff = np.array([c[metric] - b[metric] for c, b in zip(entries, bare, strict=True)])
                low, high = bootstrap_ci(diff)
                gains[metric] = (diff.mean(), low, high)
            row += [f"{gains[m][0]:+.1f} [{gains[m][1]:+.1f}, {gains[m][2]:+.1f}]" for m in ("score", "VaR10", "CVaR10")]
            above = sum(gains[m][1] > 0 for m in gains)
            parts.append(f"{policy.removesuffix(' + CDSA')}, {condition}: {above} of 3 gains with a CI above 0")
        else:
            row += ["", "", ""]
        rows.append([*row, f"{means['mean_correction']:.3f}"])
    header = ["condition", "policy", "seeds", "normalised score", "VaR 10%", "CVaR 10%", "CDSA gain: score", "VaR 10%",
              "CVaR 10%", "mean ||a - a0||"]  # fmt: skip
    note = (
        f"`pendulum-medium-v0` with {a['dataset_size']} transitions; for each of seeds {a['seeds']}, TD3+BC and IQL "
        f"pretrained {a['agent_steps']} gradient steps (default hyperparameters) and frozen, and a CDSA score model "
        f"(3x128, {a['score_steps']} steps, batch 512) fitted; CDSA knobs {json.dumps(KNOBS)}. {a['episodes']} "
        "evaluation episodes per row and seed (the same episode seeds with and without CDSA); perturbed starts draw "
        "the initial angular speed from [-8, 8] instead of [-1, 1]; VaR/CVaR over the "
        "episode returns, then averaged over seeds; gains are CDSA minus the bare policy, paired by seed, mean with "
        "a bootstrap 95% CI over seeds. CDSA here is a reconstruction of the paper's method. "
        f"{payload['machine']['cpu']}, 1 torch thread. Rerun: `python -m benchmarks.{NAME}`."
    )
    finding = "Finding (CDSA minus the bare policy): " + "; ".join(parts) + "."
    return f"{markdown_table(header, rows)}\n\n{finding}\n\n{note}"


def render(payload: dict[str, Any]) -> None:
    """Write the README section of a results payload."""
    render_readme_section(SECTION, render_markdown(payload))


def main(argv: list[str] | None = None) -> int:
    """Pretrain, fit and evaluate per seed (resumable), write JSON and the README table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-size", type=int, default=20_000)
    parser.add_argument("--agent-steps", type=int, default=3000)
    parser.add_argument("--score-steps", type=int, default=3000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fresh", action="store_true", help="ignore seeds already in the results file")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    if args.render_only:
        render(json.loads((RESULTS_DIR / f"{NAME}.json").read_text()))
        return 0
    torch.set_num_threads(1)
    os.environ.setdefault("MINARI_DATASETS_PATH", str(Path(tempfile.gettempdir()) / "palaestra-bench-minari"))
    env = gym.make("pendulum-medium-v0", dataset_size=args.dataset_size, progress=False)
    settings = {k: v for k, v in vars(args).items() if k not in ("fresh", "render_only")}
    settings["conditions"] = list(conditions(env, 0))  # results lacking a condition are not resumed
    payload = {"results": [], "timings": {}, **load_resumable(NAME, settings, args.fresh)}
    payload.update(machine=machine_info(torch_threads=1), cdsa=KNOBS)
    for seed in args.seeds:
        if any(entry["seed"] == seed for entry in payload["results"]):
            continue
        results, timings = evaluate_seed(args, seed, env)
        payload["results"] += results
        payload["timings"][str(seed)] = timings
        write_results(NAME, payload)
    render(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
