"""GRPO vs IGPO vs GiGPO on ToolSearch-v0 with the tiny model, from one SFT start, on this CPU.

Run from the repository root: ``python -m benchmarks.llm_agents`` (``--help`` for the budget). One SFT warm start
is trained and saved; then every algorithm and seed starts RL from that same checkpoint. Every ``--eval-every``
RL updates the agent is evaluated greedily on ``--eval-questions`` dev questions and as many from the unseen
"hot" world (EM). The papers' qualitative claim (IGPO, GiGPO) is that dense turn-level credit learns faster than
GRPO when many groups are all-fail (zero variance); the table reports each method's zero-variance-group rate, its
step time relative to GRPO's (measured in the same run, interleaved round by round), and the trainer's
generation and training throughput.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from benchmarks.harness import machine_info, markdown_table, render_readme_section, write_results
from benchmarks.plotting import plot_learning_curves
from palaestra.agents.llm.trainer import GRPO, IGPO, GiGPO, MultiTurnAgent

ALGOS: dict[str, type[MultiTurnAgent]] = {"grpo": GRPO, "igpo": IGPO, "gigpo": GiGPO}
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, nargs="+", default=[1], help="question hops (default 1; the papers' claim is 2 3)")
    parser.add_argument("--seeds", type=int, default=3, help="RL seeds per algorithm (default 3)")
    parser.add_argument("--steps", type=int, default=200, help="RL updates per run (default 200)")
    parser.add_argument("--eval-every", type=int, default=25, help="RL updates between evaluations (default 25)")
    parser.add_argument("--eval-questions", type=int, default=64, help="questions per split and evaluation (default 64)")
    parser.add_argument("--sft-steps", type=int, default=1200, help="SFT updates of the shared warm start (default 1200)")
    parser.add_argument("--group-size", type=int, default=8, help="rollouts per question (default 8)")
    parser.add_argument("--n-prompts", type=int, default=4, help="questions per RL update (default 4)")
    parser.add_argument("--sft-checkpoint", help="start from this saved agent instead of training the SFT start")
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="RL learning rate (default 3e-4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--name", help="result file stem (default llm_agents_<hops>hop)")
    return parser.parse_args(argv)


SUMMARY_COLUMNS = {
    "final_train_em": "train EM",
    "final_dev_em": "dev EM",
    "dev_em_gain_over_sft": "dev EM - SFT start",
    "final_hot_em": "hot EM",
    "train_em": "rollout EM (sampled)",
    "zero_variance_groups": "zero-variance groups",
    "step_time_ratio_vs_grpo": "step time / GRPO",
    "step_s": "step s",
    "gen_tokens_per_s": "gen tok/s",
    "train_tokens_per_s": "train tok/s",
}
SPLITS = ("train", "dev", "hot")


def section(payload: dict[str, Any]) -> str:
    """The README section of a results payload."""
    return f"Multi-turn LLM agents: {'+'.join(map(str, payload['config']['hops']))}-hop questions"


def summary_table(payload: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the summary table (columns an older results file lacks are left out)."""
    summary = payload["summary"]
    keys = [key for key in SUMMARY_COLUMNS if all(key in s for s in summary.values())]
    return ["algo", *(SUMMARY_COLUMNS[key] for key in keys)], [[algo, *(s[k] for k in keys)] for algo, s in summary.items()]


def render_markdown(payload: dict[str, Any], name: str | None = None) -> str:
    """The README section body (settings, table, plots and the rerun command) of a results payload.

    ``name`` is the results file stem the plots are named after (default: the run's ``--name``).
    """
    config, sft_eval = payload["config"], payload["sft_eval"]
    name = name or config["name"]
    options = vars(parse_args([]))
    args = {key: config[key] for key in options if key in config}
    table = markdown_table(*summary_table(payload))
    start = "a saved checkpoint" if config["sft_checkpoint"] else f"{config['sft_steps']} updates"
    return (
        f"ToolSearch-v0 ({config['env_kwargs']}), tiny Qwen2 model ({payload['n_parameters']} parameters), one shared SFT "
        f"start ({start}; train EM "
        f"{sft_eval['eval/train_em']:.3g}, dev EM {sft_eval['eval/dev_em']:.3g}, hot EM "
        f"{sft_eval['eval/hot_em']:.3g}), then {config['steps']} RL updates x {config['seeds']} seeds, "
        f"G={config['group_size']}, {config['n_prompts']} questions per update, RL learning rate "
        f"{config['learning_rate']:g}, {config['threads']} torch thread(s); "
        "final EM after the last update, "
        f"mean over seeds on {config['eval_questions']} questions per split (greedy). "
        f"Peak RSS {payload['peak_rss_mb']:.0f} MB.\n\n{table}\n\n"
        + " ".join(f"![{split} EM](results/{name}_{split}_em.png)" for split in SPLITS)
        + "\n\nRerun: `python -m benchmarks.llm_agents "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in args.items()
            if v is not None and k != "name" and not (config["sft_checkpoint"] and k in ("hops", "sft_steps"))
        )
        + "`."
    )


def main() -> None:
    args = parse_args()
    th.set_num_threads(args.threads)
    args.name = args.name or f"llm_agents_{'+'.join(map(str, args.hops))}hop"
    # top_k 1 and 300 characters per document: the answer is visible in 99% of 1-hop oracle episodes (at 120
    # characters only in 35%, so the SFT start would learn to guess), at about 40 words per observation.
    env_kwargs = {"hops": args.hops, "top_k": 1, "max_doc_chars": 300, "max_turns": max(args.hops) + 2}
    common = {
        "group_size": args.group_size,
        "n_prompts": args.n_prompts,
        "max_new_tokens": 10,
        "max_length": 384 * max(args.hops),
        "eval_questions": args.eval_questions,
        "eval_splits": ("dev", "hot"),
        "learning_rate": args.learning_rate,
        "tiny_model_kwargs": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2},
    }
    start = time.perf_counter()
    if args.sft_checkpoint:  # a saved SFT start (its env kwargs and model config are the saved ones)
        sft_dir = Path(args.sft_checkpoint)
        warm = GRPO.load(sft_dir, eval_questions=args.eval_questions, group_size=args.group_size, n_prompts=args.n_prompts)
        env_kwargs = warm.env_kwargs
    else:
        sft_dir = Path(tempfile.mkdtemp(prefix="palaestra-sft-")) / "sft"
        warm = GRPO("ToolSearch-v0", env_kwargs, sft_steps=args.sft_steps, sft_episodes=4096, seed=0, **common)
        warm.sft()
        warm.save(sft_dir)
    sft_time = time.perf_counter() - start
    sft_eval = warm.evaluate_splits(splits=("train", "dev", "hot"))
    n_params = sum(p.numel() for p in warm.model.parameters())
    print(f"SFT: {sft_time:.0f} s, {n_params} parameters, {sft_eval}", flush=True)

    overrides = {
        "eval_questions": args.eval_questions,
        "group_size": args.group_size,
        "n_prompts": args.n_prompts,
        "learning_rate": args.learning_rate,
    }
    agents = {
        (algo, seed): cls.load(sft_dir, seed=seed, **overrides) for algo, cls in ALGOS.items() for seed in range(args.seeds)
    }
    evals = list(range(0, args.steps + 1, args.eval_every))
    splits = SPLITS
    em: dict[tuple[str, int], dict[str, list[float]]] = {key: {split: [] for split in splits} for key in agents}
    logs: dict[tuple[str, int], list[dict[str, float]]] = {key: [] for key in agents}
    for key, agent in agents.items():
        agent._total_updates = args.steps  # EPO phase weight horizon (unused unless ent_coef > 0)
        for split in splits:
            em[key][split].append(sft_eval[f"eval/{split}_em"])
    for step in range(1, args.steps + 1):
        for key, agent in agents.items():  # interleaved: machine noise hits every method alike
            logs[key].append(agent.train_step())
            if step in evals:
                result = agent.evaluate_splits(splits=splits)
                for split in splits:
                    em[key][split].append(result[f"eval/{split}_em"])
        print(f"step {step}/{args.steps}", flush=True)

    summary = {}
    for algo in ALGOS:
        runs = [logs[(algo, s)] for s in range(args.seeds)]
        flat = [row for run in runs for row in run]
        summary[algo] = {
            "final_train_em": float(np.mean([em[(algo, s)]["train"][-1] for s in range(args.seeds)])),
            "final_dev_em": float(np.mean([em[(algo, s)]["dev"][-1] for s in range(args.seeds)])),
            "final_hot_em": float(np.mean([em[(algo, s)]["hot"][-1] for s in range(args.seeds)])),
            "dev_em_gain_over_sft": float(np.mean([em[(algo, s)]["dev"][-1] for s in range(args.seeds)]))
            - sft_eval["eval/dev_em"],
            "best_dev_em": float(np.mean([max(em[(algo, s)]["dev"]) for s in range(args.seeds)])),
            "zero_variance_groups": float(np.mean([r["rollout/zero_variance_groups"] for r in flat])),
            "train_em": float(np.mean([r["rollout/em"] for r in flat])),
            "step_s": float(np.median([r["time/step_s"] for r in flat])),
            "gen_tokens_per_s": float(np.median([r["time/gen_tokens_per_s"] for r in flat])),
            "train_tokens_per_s": float(np.median([r["time/train_tokens_per_s"] for r in flat])),
        }
    for algo in ALGOS:
        summary[algo]["step_time_ratio_vs_grpo"] = summary[algo]["step_s"] / summary["grpo"]["step_s"]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    for split in splits:
        curves = {algo: (np.array(evals), np.array([em[(algo, s)][split] for s in range(args.seeds)])) for algo in ALGOS}
        plot_learning_curves(curves, RESULTS / f"{args.name}_{split}_em.png", xlabel="RL updates", ylabel=f"EM ({split})",
                             title=f"ToolSearch-v0 hops={env_kwargs['hops']}, tiny model, {split}")  # fmt: skip
    payload = {
        "machine": machine_info(args.threads),
        "config": {**vars(args), "env_kwargs": env_kwargs, **{k: v for k, v in common.items() if k != "eval_splits"}},
        "n_parameters": n_params,
        "sft_seconds": sft_time,
        "sft_eval": sft_eval,
        "eval_steps": evals,
        "em": {f"{a}/seed{s}": em[(a, s)] for a, s in agents},
        "summary": summary,
        "peak_rss_mb": peak_rss_mb,
    }
    write_results(args.name, payload)
    render_readme_section(section(payload), render_markdown(payload))
    print(markdown_table(*summary_table(payload)))


if __name__ == "__main__":
    main()
