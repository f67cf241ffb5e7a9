"""A2PR vs TD3+BC and IQL on suboptimal pendulum data: the claim that advantage-guided BC beats plain BC on mixed data.

A2PR (Liu et al. 2024) claims its largest gains where the dataset is dominated by poor actions. This script
trains TD3+BC, IQL and A2PR with the same seeds, the same two-layer networks (A2PR's actor, critics, value net
and VAE, and IQL's actor, critics and value net, at the same width, as CPU-sized experiments require) and the
same budget on:

* ``pendulum-medium-replay-v0``: the replay buffer of the SAC run that produced the medium policy (random
  warm-up steps plus early learning);
* ``mixed (90% random + 10% expert)``: ``pendulum-random-v0`` and ``pendulum-expert-v0`` transitions
  concatenated, the "mostly random plus a little expert" setting.

It reports the D4RL-style normalised score (x100, palaestra's pendulum references) of the final policy
(mean of the last two evaluations, ``--episodes`` episodes each), mean over seeds with a bootstrap 95% CI,
the learning curves, and gradient steps per second relative to TD3+BC measured in the same run. Each run is
one ``learn`` call (IQL's cosine schedule spans it); results are written after every run and a rerun with the
same settings skips the finished ones. Run: ``python -m benchmarks.a2pr_vs_td3bc`` (``--steps``, ``--seeds``
and ``--width`` change the budget).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
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
from palaestra.agents.offline.a2pr import A2PR
from palaestra.agents.offline.common import OfflineAgent
from palaestra.agents.offline.iql import IQL
from palaestra.agents.offline.td3_bc import TD3BC
from palaestra.evaluation import bootstrap_ci

NAME = "a2pr_vs_td3bc"
SECTION = "A2PR vs TD3+BC on suboptimal pendulum data"
ALGOS = ("TD3+BC", "IQL", "A2PR")


def agents(width: int) -> dict[str, tuple[type[OfflineAgent], dict[str, Any]]]:
    """``{label: (class, hyperparameters)}``, every network ``width``-``width`` (A2PR's V and VAE, IQL's V too)."""
    hidden = (width, width)
    a2pr = {"hidden_sizes": hidden, "critic_hidden_sizes": hidden, "value_hidden_sizes": hidden, "vae_hidden_sizes": hidden}
    return {"TD3+BC": (TD3BC, {"hidden_sizes": hidden}), "IQL": (IQL, {"hidden_sizes": hidden}), "A2PR": (A2PR, a2pr)}


def datasets(mixed_size: int) -> dict[str, tuple[gym.Env, dict[str, np.ndarray] | None]]:
    """``{label: (evaluation env, dataset or None for the env's own)}``."""
    replay = gym.make("pendulum-medium-replay-v0", progress=False)
    n_expert = mixed_size // 10
    random_env = gym.make("pendulum-random-v0", dataset_size=mixed_size - n_expert, progress=False)
    expert_env = gym.make("pendulum-expert-v0", dataset_size=n_expert, progress=False)
    parts = [random_env.get_dataset(), expert_env.get_dataset()]
    mixed = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return {"medium-replay": (replay, None), "mixed 90% random + 10% expert": (random_env, mixed)}


def render(payload: dict[str, Any]) -> None:
    """README table and learning-curve plots from a results payload (datasets with every run finished)."""
    a = payload["args"]
    x = np.arange(1, a["steps"] // a["eval_every"] + 1) * a["eval_every"]
    rows, verdicts = [], []
    for label, runs in payload["results"].items():
        if not all(len(runs.get(algo, [])) == len(a["seeds"]) for algo in ALGOS):
            continue
        finals = {algo: np.array([run["final_score"] for run in runs[algo]]) for algo in ALGOS}
        speed = {algo: np.mean([run["steps_per_second"] for run in runs[algo]]) for algo in ALGOS}
        for algo in ALGOS:
            low, high = bootstrap_ci(finals[algo])
            mean, ratio = finals[algo].mean(), speed[algo] / speed["TD3+BC"]
            rows.append([label, algo, len(finals[algo]), f"{mean:.1f}", f"[{low:.1f}, {high:.1f}]", f"{ratio:.2f}"])
        plot_learning_curves(
            {algo: (x, np.array([run["curve"] for run in runs[algo]])) for algo in ALGOS},
            BENCH_DIR / "results" / f"{NAME}_{label.split()[0]}.png",
            xlabel="gradient steps",
            ylabel="normalised score (x100)",
            title=f"pendulum {label}",
        )
        versus = {base: compare_means(finals["A2PR"], finals[base]) for base in ("TD3+BC", "IQL")}
        verdicts.append(f"{label}: A2PR vs TD3+BC {versus['TD3+BC']}, vs IQL {versus['IQL']}")
    if not rows:
        return
    table = markdown_table(["dataset", "agent", "seeds", "final normalised score", "95% CI", "grad steps/s vs TD3+BC"], rows)
    note = (
        f"{a['steps']} gradient steps, batch 256, seeds {a['seeds']}; final score = mean of the last two evaluations "
        f"({a['episodes']} episodes each, every {a['eval_every']} steps), mean over seeds with a bootstrap 95% CI. "
        f"Every network {a['width']}-{a['width']}; TD3+BC alpha 2.5; IQL expectile 0.7, beta 3, cosine actor schedule; "
        f"A2PR alpha 2.5, mask 0.5, vae_weight 1.0 (the authors' defaults; no pendulum preset exists). The mixed "
        f"dataset has {a['mixed_size']} transitions. {payload['machine']['cpu']}, 1 torch thread. "
        f"Plots: `results/{NAME}_*.png`. Rerun: `python -m benchmarks.{NAME}`."
    )
    verdict = "; ".join(verdicts)
    render_readme_section(
        SECTION, f"{table}\n\nFinding: {verdict}. A normalised score of 0 is a uniform random policy.\n\n{note}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the benchmark, or only re-render the README from saved results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mixed-size", type=int, default=10_000)
    parser.add_argument("--width", type=int, default=128, help="hidden width of every network (two layers)")
    parser.add_argument("--fresh", action="store_true", help="ignore runs already in the results file")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    if args.render_only:
        render(json.loads((BENCH_DIR / "results" / f"{NAME}.json").read_text()))
        return 0
    torch.set_num_threads(1)
    os.environ.setdefault("MINARI_DATASETS_PATH", str(Path(tempfile.gettempdir()) / "palaestra-bench-minari"))
    settings = {k: v for k, v in vars(args).items() if k not in ("fresh", "render_only")}
    payload = {"results": {}, **load_resumable(NAME, settings, args.fresh)}
    payload["machine"] = machine_info(torch_threads=1)
    for label, (env, dataset) in datasets(args.mixed_size).items():
        runs = payload["results"].setdefault(label, {})
        for index, seed in enumerate(args.seeds):
            for algo, (cls, hyper) in agents(args.width).items():
                if len(runs.setdefault(algo, [])) > index:
                    continue
                agent = cls(env, dataset=dataset, seed=seed, eval_freq=0, **hyper)
                run = train_with_evaluations(agent, env, args.steps, args.eval_every, args.episodes)
                runs[algo].append({**run, "final_score": float(np.mean(run["curve"][-2:]))})
                print(f"{label} {algo} seed {seed}: {runs[algo][-1]['final_score']:.1f}", flush=True)
                write_results(NAME, payload)
    render(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
