"""Policy-guided diffusion downstream: TD3+BC and IQL trained on real data, unguided synthetic data and PGD data.

The claim (Jackson et al. 2024, Sec. 5): an offline agent trained on mostly synthetic batches from a trajectory
diffusion model guided by the agent's own policy scores higher than the same agent trained on the real data
alone, and higher than on unguided synthetic data. For each seed this script fits one trajectory diffusion
model on the dataset and shares it between the synthetic arms, then trains, with the same seed and budget:

* ``real``: TD3+BC / IQL on the real transitions only;
* ``unguided diffusion``: the same agent on 240/256 synthetic batches sampled with guidance 0;
* ``PGD``: the same, with the pool guided by the current policy (``--guidance``, normalised guidance).

It reports the D4RL-style normalised score (x100) of the final policy (mean of the last two evaluations,
10 episodes each), mean over seeds with a bootstrap 95% CI, learning curves, gradient steps per second
relative to the real-data arm of the same agent (pool regeneration included), and the sampling time per
synthetic transition. Results are written after every run, and a rerun skips the runs already in the file
(``--fresh`` starts over). Run: ``python -m benchmarks.pgd_downstream``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import palaestra  # noqa: F401  (registers the offline ids)
from benchmarks.harness import (
    BENCH_DIR,
    compare_means,
    load_resumable,
    machine_info,
    markdown_table,
    render_readme_section,
    train_with_evaluations,
    write_results,
)
from benchmarks.plotting import plot_learning_curves
from palaestra.agents.offline.common import OfflineAgent
from palaestra.agents.offline.iql import IQL
from palaestra.agents.offline.pgd import PGD, PGDIQL, TrajectoryDiffusion
from palaestra.agents.offline.td3_bc import TD3BC
from palaestra.evaluation import bootstrap_ci

NAME = "pgd_downstream"
SECTION = "Policy-guided diffusion: downstream scores"
#: agent label -> (real-data class, synthetic-data class)
AGENTS: dict[str, tuple[type[OfflineAgent], type[OfflineAgent]]] = {"TD3+BC": (TD3BC, PGD), "IQL": (IQL, PGDIQL)}
DATA_ARMS = ("real", "unguided diffusion", "PGD")


def fit_shared_diffusion(env: gym.Env, seed: int, steps: int) -> tuple[dict[str, torch.Tensor], float]:
    """One diffusion model per seed, fitted as the PGD agents would fit it; returns its state and the fit time."""
    defaults = PGD.GUIDED_DEFAULTS
    started = time.perf_counter()
    model, windows = TrajectoryDiffusion.from_dataset(
        env.get_dataset(),
        env.action_space.high,
        defaults["horizon"],
        defaults["stride"],
        features=defaults["features"],
        levels=defaults["levels"],
    )
    model.fit(windows, steps, defaults["diffusion_batch_size"], defaults["diffusion_lr"], seed)
    return model.state_dict(), time.perf_counter() - started


def build_agent(
    agent: str, arm: str, env: gym.Env, seed: int, guidance: float, regenerate_every: int, diffusion: dict[str, Any]
) -> OfflineAgent:
    """The agent of one (agent, data arm) cell, with the seed's shared diffusion model loaded."""
    real_cls, synthetic_cls = AGENTS[agent]
    if arm == "real":
        return real_cls(env, seed=seed, eval_freq=0)
    coeff = guidance if arm == "PGD" else 0.0
    model = synthetic_cls(env, seed=seed, eval_freq=0, guidance_coeff=coeff, regenerate_every=regenerate_every)
    model.diffusion.load_state_dict(diffusion)  # type: ignore[attr-defined]
    return model


def sampling_seconds_per_transition(env: gym.Env, diffusion: dict[str, Any], seed: int, guidance: float) -> float:
    """Time of one guided pool regeneration divided by the synthetic transitions it yields."""
    model = PGD(env, seed=seed, eval_freq=0, guidance_coeff=guidance)
    model.diffusion.load_state_dict(diffusion)
    model.regenerate_pool()  # the first pool is unguided; time a guided one
    started = time.perf_counter()
    model.regenerate_pool()
    seconds = time.perf_counter() - started
    assert model._pool is not None
    return seconds / len(model._pool["rewards"])


def finished_agents(payload: dict[str, Any]) -> list[str]:
    """The agents of a results payload with every data arm's runs finished for every seed."""
    a = payload["args"]
    return [
        agent
        for agent in AGENTS
        if all(len(payload["results"].get(agent, {}).get(arm, [])) == len(a["seeds"]) for arm in DATA_ARMS)
    ]


def render(payload: dict[str, Any]) -> None:
    """Learning-curve plots and README section (table and verdicts) from a results payload."""
    a = payload["args"]
    x = np.arange(1, a["steps"] // a["eval_every"] + 1) * a["eval_every"]
    for agent in finished_agents(payload):
        runs = payload["results"][agent]
        plot_learning_curves(
            {arm: (x, np.array([run["curve"] for run in runs[arm]])) for arm in DATA_ARMS},
            BENCH_DIR / "results" / f"{NAME}_{agent.lower().replace('+', '')}.png",
            xlabel="gradient steps",
            ylabel="normalised score (x100)",
            title=f"{agent} on {a['env']}",
        )
    body = render_markdown(payload)
    if body:
        render_readme_section(SECTION, body)


def render_markdown(payload: dict[str, Any]) -> str:
    """The README section body (table, verdicts, settings) of a results payload; empty if no agent has finished."""
    a = payload["args"]
    rows, verdicts = [], []
    for agent in finished_agents(payload):
        runs = payload["results"][agent]
        scores = {arm: np.array([run["final_score"] for run in runs[arm]]) for arm in DATA_ARMS}
        speed = {arm: np.mean([run["steps_per_second"] for run in runs[arm]]) for arm in DATA_ARMS}
        for arm in DATA_ARMS:
            low, high = bootstrap_ci(scores[arm])
            ratio = speed[arm] / speed["real"]
            mean = scores[arm].mean()
            rows.append([agent, arm, len(scores[arm]), f"{mean:.1f}", f"[{low:.1f}, {high:.1f}]", f"{ratio:.2f}"])
        versus_real = compare_means(scores["PGD"], scores["real"])
        versus_unguided = compare_means(scores["PGD"], scores["unguided diffusion"])
        verdicts.append(f"{agent}: PGD vs real data {versus_real}, vs unguided diffusion {versus_unguided}")
    if not rows:
        return ""
    table = markdown_table(["agent", "data", "seeds", "final normalised score", "95% CI", "grad steps/s vs real"], rows)
    d = PGD.GUIDED_DEFAULTS
    note = (
        f"`{a['env']}`; {a['steps']} gradient steps per run, seeds {a['seeds']}; final score = mean of the last two "
        f"evaluations ({a['episodes']} episodes each, every {a['eval_every']} steps), mean over seeds with a bootstrap "
        f"95% CI. Agents at their published defaults (256-256 networks). Synthetic arms: one trajectory diffusion model "
        f"per seed ({a['diffusion_steps']} EDM steps, windows of {d['horizon']}, U-Net width {d['features']} with "
        f"{d['levels']} levels; fit {np.mean(payload['diffusion_fit_s']):.0f} s), a pool of {d['pool_windows']} windows "
        f"({d['sampling_steps']} Heun steps) regenerated every {a['regenerate_every']} steps, "
        f"{round(d['synthetic_ratio'] * 256)}/256 synthetic transitions per batch, guidance {a['guidance']:g} "
        f"(normalised). Guided sampling costs {payload['sampling_s_per_transition'] * 1e3:.2f} ms per synthetic "
        f"transition. {payload['machine']['cpu']}, 1 torch thread. Plots: `results/{NAME}_*.png`. "
        f"Rerun: `python -m benchmarks.{NAME}`."
    )
    return f"{table}\n\nFinding: {'; '.join(verdicts)}. A normalised score of 0 is a uniform random policy.\n\n{note}"


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the benchmark, or only re-render the README from saved results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="pendulum-medium-v0")
    parser.add_argument("--steps", type=int, default=10_000, help="gradient steps per run (default 10000)")
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--diffusion-steps", type=int, default=5000)
    parser.add_argument("--guidance", type=float, default=0.1)
    parser.add_argument("--regenerate-every", type=int, default=1000, help="agent steps between synthetic pools")
    parser.add_argument("--fresh", action="store_true", help="ignore runs already in the results file")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    path = BENCH_DIR / "results" / f"{NAME}.json"
    if args.render_only:
        render(json.loads(path.read_text()))
        return 0
    torch.set_num_threads(1)
    os.environ.setdefault("MINARI_DATASETS_PATH", str(Path(tempfile.gettempdir()) / "palaestra-bench-minari"))
    settings = {k: v for k, v in vars(args).items() if k not in ("fresh", "render_only")}
    payload = {"results": {}, "diffusion_fit_s": [], **load_resumable(NAME, settings, args.fresh)}
    payload["machine"] = machine_info(torch_threads=1)
    env = gym.make(args.env, progress=False)
    for seed in args.seeds:
        pending = [
            (agent, arm)
            for agent in AGENTS
            for arm in DATA_ARMS
            if len(payload["results"].get(agent, {}).get(arm, [])) <= args.seeds.index(seed)
        ]
        if not pending:
            continue
        diffusion, fit_seconds = fit_shared_diffusion(env, seed, args.diffusion_steps)
        payload["diffusion_fit_s"].append(fit_seconds)
        if "sampling_s_per_transition" not in payload:
            payload["sampling_s_per_transition"] = sampling_seconds_per_transition(env, diffusion, seed, args.guidance)
        for agent, arm in pending:
            model = build_agent(agent, arm, env, seed, args.guidance, args.regenerate_every, diffusion)
            run = train_with_evaluations(model, env, args.steps, args.eval_every, args.episodes)
            payload["results"].setdefault(agent, {}).setdefault(arm, []).append(run)
            print(f"seed {seed} {agent} {arm}: {run['final_score']:.1f} ({run['steps_per_second']:.0f} steps/s)", flush=True)
            write_results(NAME, payload)
    render(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
