"""A2PR vs TD3+BC and IQL on suboptimal data: the claim that advantage-guided BC beats plain BC on mixed data.

A2PR (Liu et al. 2024) claims its largest gains where the dataset is dominated by poor actions. This script
trains TD3+BC, IQL and A2PR with the same seeds, the same two-layer networks (A2PR's actor, critics, value net
and VAE, and IQL's actor, critics and value net, at the same width, as CPU-sized experiments require) and the
same budget on:

* ``<task>-medium-replay-v0``: the replay buffer of the SAC run that produced the medium policy (random
  warm-up steps plus early learning);
* ``mixed (90% random + 10% expert)``: ``<task>-random-v0`` and ``<task>-expert-v0`` transitions
  concatenated, the "mostly random plus a little expert" setting.

``--task`` is ``pendulum`` (the default, minutes) or a MuJoCo task (``hopper``, ``halfcheetah``, ``walker2d``),
whose medium-replay run uses the authors' preset for that dataset (:data:`A2PR_PRESETS`).

It reports the D4RL-style normalised score (x100) of the final policy
(mean of the last two evaluations, ``--episodes`` episodes each), mean over seeds with a bootstrap 95% CI,
the learning curves, and gradient steps per second relative to TD3+BC measured in the same run. Each run is
one ``learn`` call (IQL's cosine schedule spans it); results are written after every run and a rerun with the
same settings skips the finished ones. ``--rerun A2PR`` (or another agent) discards that agent's saved runs
and trains them again, keeping the others' (for a change to one agent's code; resume an interrupted rerun
without ``--rerun``); the rendered note says which agents were rerun and when, and their speed ratio to runs made
at another time is left out. Run:
``python -m benchmarks.a2pr_vs_td3bc`` (``--steps``, ``--seeds`` and ``--width`` change the budget).
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
from palaestra.agents.offline.a2pr import A2PR, A2PR_PRESETS
from palaestra.agents.offline.common import OfflineAgent
from palaestra.agents.offline.iql import IQL
from palaestra.agents.offline.td3_bc import TD3BC
from palaestra.evaluation import bootstrap_ci

ALGOS = ("TD3+BC", "IQL", "A2PR")
REPLAY = "medium-replay"


def result_name(task: str) -> str:
    """Results file stem (the pendulum run keeps the historical ``a2pr_vs_td3bc``)."""
    return "a2pr_vs_td3bc" if task == "pendulum" else f"a2pr_vs_td3bc_{task}"


def section(task: str) -> str:
    """The README section of a task's results."""
    return "A2PR vs TD3+BC on suboptimal pendulum data" if task == "pendulum" else f"A2PR vs TD3+BC and IQL on {task}"


def agents(width: int, preset: dict[str, float]) -> dict[str, tuple[type[OfflineAgent], dict[str, Any]]]:
    """``{label: (class, hyperparameters)}``, every network ``width``-``width`` (A2PR's V and VAE, IQL's V too).

    ``preset`` holds A2PR's per-dataset ``alpha``, ``vae_weight``, ``mask`` and ``gamma`` (empty: the defaults).
    """
    hidden = (width, width)
    a2pr = {"hidden_sizes": hidden, "critic_hidden_sizes": hidden, "value_hidden_sizes": hidden, "vae_hidden_sizes": hidden}
    a2pr.update({key: value for key, value in preset.items() if key != "gamma"})
    a2pr_gamma = {"gamma": preset["gamma"]} if "gamma" in preset else {}
    return {
        "TD3+BC": (TD3BC, {"hidden_sizes": hidden}),
        "IQL": (IQL, {"hidden_sizes": hidden}),
        "A2PR": (A2PR, {**a2pr, **a2pr_gamma}),
    }


def datasets(task: str, mixed_size: int) -> dict[str, tuple[gym.Env, dict[str, np.ndarray] | None]]:
    """``{label: (evaluation env, dataset or None for the env's own)}``."""
    replay = gym.make(f"{task}-{REPLAY}-v0", progress=False)
    n_expert = mixed_size // 10
    random_env = gym.make(f"{task}-random-v0", dataset_size=mixed_size - n_expert, progress=False)
    expert_env = gym.make(f"{task}-expert-v0", dataset_size=n_expert, progress=False)
    parts = [random_env.get_dataset(), expert_env.get_dataset()]
    mixed = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return {REPLAY: (replay, None), "mixed 90% random + 10% expert": (random_env, mixed)}


def rerun_command(settings: dict[str, Any]) -> str:
    """The command line that reproduces (or resumes) a results file made with ``settings``."""
    defaults = vars(parse_args([])) | {"width": default_width(settings.get("task", "pendulum"))}
    options = [
        f"--{key.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
        for key, value in settings.items()
        if key in defaults and value != defaults[key]
    ]
    return " ".join(["python -m benchmarks.a2pr_vs_td3bc", *options])


def render(payload: dict[str, Any]) -> None:
    """README table and learning-curve plots from a results payload (datasets with every run finished)."""
    a = payload["args"]
    task = a.get("task", "pendulum")  # results written before --task existed are pendulum's
    name = result_name(task)
    preset = A2PR_PRESETS.get(f"{task}-{REPLAY}")
    presets = "alpha 2.5, mask 0.5, vae_weight 1.0 (the authors' defaults)" + (
        f"; on {REPLAY} the authors' preset {json.dumps(preset)}" if preset else " (no preset exists for this task)"
    )
    x = np.arange(1, a["steps"] // a["eval_every"] + 1) * a["eval_every"]
    reruns = payload.get("reruns", {})
    rows, verdicts = [], []
    for label, runs in payload["results"].items():
        if not all(len(runs.get(algo, [])) == len(a["seeds"]) for algo in ALGOS):
            continue
        finals = {algo: np.array([run["final_score"] for run in runs[algo]]) for algo in ALGOS}
        speed = {algo: np.mean([run["steps_per_second"] for run in runs[algo]]) for algo in ALGOS}
        for algo in ALGOS:
            low, high = bootstrap_ci(finals[algo])
            mean, ratio = finals[algo].mean(), speed[algo] / speed["TD3+BC"]
            # a retrained agent's runs and TD3+BC's ran at different times, under other loads: no ratio
            shown = "n/a" if (algo in reruns) != ("TD3+BC" in reruns) else f"{ratio:.2f}"
            rows.append([label, algo, len(finals[algo]), f"{mean:.1f}", f"[{low:.1f}, {high:.1f}]", shown])
        plot_learning_curves(
            {algo: (x, np.array([run["curve"] for run in runs[algo]])) for algo in ALGOS},
            BENCH_DIR / "results" / f"{name}_{label.split()[0]}.png",
            xlabel="gradient steps",
            ylabel="normalised score (x100)",
            title=f"{task} {label}",
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
        f"A2PR {presets}. The mixed "
        f"dataset has {a['mixed_size']} transitions. {payload['machine']['cpu']}, 1 torch thread. "
        f"Plots: `results/{name}_*.png`. Rerun: `{rerun_command(a)}`."
    )
    if reruns:
        when = "; ".join(f"{algo} on {date[:10]} ({why})" for algo, (date, why) in sorted(reruns.items()))
        note += (
            f" Retrained after a code change: {when}; the other agents' runs are older, and a speed ratio between "
            "runs made at different times (n/a) is not shown."
        )
    verdict = "; ".join(verdicts)
    render_readme_section(
        section(task), f"{table}\n\nFinding: {verdict}. A normalised score of 0 is a uniform random policy.\n\n{note}"
    )


def default_width(task: str) -> int:
    """Hidden width when ``--width`` is not given: 128 on pendulum (CPU-sized), the published 256 otherwise."""
    return 128 if task == "pendulum" else 256


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--width`` is resolved from the task when not given)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mixed-size", type=int, default=10_000)
    parser.add_argument("--task", default="pendulum", choices=("pendulum", "hopper", "halfcheetah", "walker2d"))
    parser.add_argument("--width", type=int, help="hidden width of every network (two layers; default 128 for "
                        "pendulum, the published 256 otherwise)")  # fmt: skip
    parser.add_argument("--fresh", action="store_true", help="ignore runs already in the results file")
    parser.add_argument("--rerun", nargs="+", choices=ALGOS, default=[], help="discard these agents' saved runs "
                        "and train them again (the other agents' runs are kept)")  # fmt: skip
    parser.add_argument("--rerun-reason", default="", help="why --rerun was needed, quoted in the README note")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    args.width = args.width or default_width(args.task)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the benchmark, or only re-render the README from saved results."""
    args = parse_args(argv)
    if args.render_only:
        render(json.loads((BENCH_DIR / "results" / f"{result_name(args.task)}.json").read_text()))
        return 0
    torch.set_num_threads(1)
    os.environ.setdefault("MINARI_DATASETS_PATH", str(Path(tempfile.gettempdir()) / "palaestra-bench-minari"))
    name = result_name(args.task)
    settings = {k: v for k, v in vars(args).items() if k not in ("fresh", "render_only", "rerun", "rerun_reason")}
    payload = {"results": {}, **load_resumable(name, settings, args.fresh)}
    payload["machine"] = machine_info(torch_threads=1)
    for algo in args.rerun:
        for runs in payload["results"].values():
            runs.pop(algo, None)
        payload.setdefault("reruns", {})[algo] = [payload["machine"]["date"], args.rerun_reason or "code change"]
    for label, (env, dataset) in datasets(args.task, args.mixed_size).items():
        runs = payload["results"].setdefault(label, {})
        for index, seed in enumerate(args.seeds):
            preset = A2PR_PRESETS.get(f"{args.task}-{label}", {})
            for algo, (cls, hyper) in agents(args.width, preset).items():
                if len(runs.setdefault(algo, [])) > index:
                    continue
                agent = cls(env, dataset=dataset, seed=seed, eval_freq=0, **hyper)
                run = train_with_evaluations(agent, env, args.steps, args.eval_every, args.episodes)
                runs[algo].append(run)
                print(f"{label} {algo} seed {seed}: {runs[algo][-1]['final_score']:.1f}", flush=True)
                write_results(name, payload)
    render(payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
