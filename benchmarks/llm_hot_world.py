"""Can the tiny LLM agent search a world it never saw? Hot-world EM of the byte-level BPE and word-level tokenizers.

Run from the repository root: ``python -m benchmarks.llm_hot_world``. ToolSearch-v0's ``hot`` split is a second
generated world whose names no training question or document contains. For each tokenizer, question depth
(``--hops``) and seed, the tiny model is built (its tokenizer fitted as the trainer fits it: BPE on the training
split's texts only, word-level on every evaluated split's words), trained by SFT on oracle episodes of the
training split, optionally followed by ``--rl-steps`` GRPO updates, and evaluated greedily on ``--eval-questions``
dev questions (same world as training, unseen questions) and as many hot-world questions. The goal is hot EM
>= 0.8 x dev EM: an agent that reads what its searches return instead of recalling what it was trained on.

Every run is saved as it finishes and a rerun resumes (``--fresh`` starts over); ``--jobs N`` trains N runs at a
time on a local Ray (:func:`benchmarks.harness.run_each`, the engine of ``palaestra sweep``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks.harness import (
    RESULTS_DIR,
    add_runs_saved_meanwhile,
    load_resumable,
    machine_info,
    markdown_table,
    render_readme_section,
    run_each,
    write_results,
)

NAME = "llm_hot_world"
SELECTION = ("hops", "tokenizers", "seeds")  # options that only choose runs
SECTION = "Multi-turn LLM agents: the hot world"
GOAL = 0.8  # hot EM >= GOAL x dev EM
HEADER = ["hops", "tokenizer", "vocab", "seeds", "train EM", "dev EM", "hot EM", "hot recall", "hot / dev", f">= {GOAL}",
          "min/run"]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, nargs="+", default=[1])
    parser.add_argument("--tokenizers", nargs="+", default=["bpe", "word"], choices=["bpe", "word"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sft-steps", type=int, default=3000)
    parser.add_argument("--sft-episodes", type=int, default=4096)
    parser.add_argument("--rl-steps", type=int, default=0, help="GRPO updates after SFT (default 0)")
    parser.add_argument("--vocab-size", type=int, default=1024, help="largest BPE vocabulary")
    parser.add_argument("--train-worlds", type=int, default=32, help="generated worlds the training questions come from")
    parser.add_argument("--eval-questions", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (more than 1: on a local Ray)")
    parser.add_argument("--fresh", action="store_true", help="ignore the runs already saved")
    parser.add_argument("--render-only", action="store_true", help="rewrite the README section from the results")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options a rerun must match (``hops``, ``tokenizers`` and ``seeds`` only choose runs)."""
    return {k: v for k, v in vars(args).items() if k not in ("jobs", "fresh", "render_only")}


def train_run(hops: int, tokenizer: str, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    """SFT (and GRPO) one tiny agent on ``hops``-hop questions; its dev and hot EM."""
    import torch as th

    from palaestra.agents.llm.trainer import GRPO

    th.set_num_threads(1)
    started = time.perf_counter()
    agent = GRPO(
        "ToolSearch-v0",
        # as benchmarks.llm_agents: one 300-character document per search shows the answer in 99% of oracle episodes
        {"hops": hops, "top_k": 1, "max_doc_chars": 300, "max_turns": hops + 2, "train_worlds": options["train_worlds"]},
        sft_steps=options["sft_steps"],
        sft_episodes=options["sft_episodes"],
        max_new_tokens=24,
        max_length=640 * hops,
        eval_questions=options["eval_questions"],
        eval_splits=("dev", "hot"),
        learning_rate=3e-4,
        tiny_model_kwargs={
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "tokenizer": tokenizer,
            "vocab_size": options["vocab_size"],
        },
        seed=seed,
    )
    agent.sft()
    if options["rl_steps"]:
        agent.learn(total_timesteps=options["rl_steps"])
    metrics = agent.evaluate_splits(splits=("train", "dev", "hot"))
    return {
        "hops": hops,
        "tokenizer": tokenizer,
        "seed": seed,
        "vocabulary": len(agent.tokenizer),
        "parameters": sum(p.numel() for p in agent.model.parameters()),
        "seconds": time.perf_counter() - started,
        **{key.removeprefix("eval/"): float(value) for key, value in metrics.items()},
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (hops, tokenizer): mean dev and hot EM over seeds with 95% bootstrap CIs, and hot / dev."""
    from palaestra.evaluation import bootstrap_ci

    rows = []
    for hops, tokenizer in sorted({(run["hops"], run["tokenizer"]) for run in runs}):
        cell = [run for run in runs if (run["hops"], run["tokenizer"]) == (hops, tokenizer)]
        row: dict[str, Any] = {"hops": hops, "tokenizer": tokenizer, "seeds": len(cell)}
        for split in ("train", "dev", "hot"):
            values = np.array([run[f"{split}_em"] for run in cell])
            row[split] = (float(values.mean()), *map(float, bootstrap_ci(values)))
        row["hot_recall"] = float(np.mean([run["hot_gold_doc_recall"] for run in cell]))
        row["ratio"] = row["hot"][0] / row["dev"][0] if row["dev"][0] > 0 else float("nan")
        row["vocabulary"] = int(np.mean([run["vocabulary"] for run in cell]))
        row["minutes"] = float(np.mean([run["seconds"] for run in cell])) / 60
        rows.append(row)
    return rows


def goal_met(row: dict[str, Any]) -> str:
    """``yes`` when hot EM >= GOAL x dev EM and dev EM's CI clears 0 (a ratio of two near-zero EMs says nothing)."""
    if row["dev"][1] <= 0.0:
        return "no (dev EM's CI reaches 0)"
    return "yes" if row["ratio"] >= GOAL else "no"


def render(payload: dict[str, Any]) -> str:
    """The README section body."""
    args = payload["args"]

    def cell(value: tuple[float, float, float]) -> str:
        return f"{value[0]:.2f} [{value[1]:.2f}, {value[2]:.2f}]"

    rows = [
        [row["hops"], row["tokenizer"], row["vocabulary"], row["seeds"], cell(row["train"]), cell(row["dev"]),
         cell(row["hot"]), f"{row['hot_recall']:.2f}", f"{row['ratio']:.2f}",
         goal_met(row), f"{row['minutes']:.1f}"]
        for row in summarize(payload["runs"])
    ]  # fmt: skip
    rl = f", then {args['rl_steps']} GRPO updates" if args["rl_steps"] else ""
    return (
        f"ToolSearch-v0 (top_k 1, 300 characters per document), tiny Qwen2 model (hidden 64, 2 layers), SFT of "
        f"{args['sft_steps']} updates on {args['sft_episodes']} oracle episodes of the training questions of "
        f"{args['train_worlds']} generated worlds (`train_worlds`){rl}; greedy EM "
        f"on {args['eval_questions']} questions per split, mean over seeds with a 95% bootstrap CI; one torch thread "
        'per run. "hot recall" is the share of hot questions whose gold document a search retrieved. Goal: hot EM '
        f">= {GOAL} x dev EM (`python -m benchmarks.llm_hot_world`).\n\n" + markdown_table(HEADER, rows)
    )


def run_key(run: dict[str, Any]) -> tuple[int, str, int]:
    """A run's identity: ``(hops, tokenizer, seed)``."""
    return run["hops"], run["tokenizer"], run["seed"]


def main(argv: list[str] | None = None) -> int:
    """Train the missing runs (saving each), then write the JSON and the README section."""
    args = parse_args(argv)
    if args.render_only:
        payload = load_resumable(NAME, settings(args), selection=SELECTION)
        render_readme_section(SECTION, render(payload))
        return 0
    payload = {"runs": [], **load_resumable(NAME, settings(args), args.fresh, selection=SELECTION)}
    done = {(run["hops"], run["tokenizer"], run["seed"]) for run in payload["runs"]}
    keys = ("sft_steps", "sft_episodes", "rl_steps", "vocab_size", "train_worlds", "eval_questions")
    options = {key: getattr(args, key) for key in keys}
    todo = {
        f"{hops}-hop {tokenizer} seed {seed}": {"hops": hops, "tokenizer": tokenizer, "seed": seed, "options": options}
        for hops in args.hops
        for tokenizer in args.tokenizers
        for seed in args.seeds
        if (hops, tokenizer, seed) not in done
    }

    def save(run: dict[str, Any]) -> None:
        payload["runs"].append(run)
        add_runs_saved_meanwhile(payload, RESULTS_DIR / f"{NAME}.json", run_key, SELECTION)
        payload["machine"] = machine_info(torch_threads=1)
        write_results(NAME, payload)
        render_readme_section(SECTION, render(payload))
        print(f"{run['hops']}-hop {run['tokenizer']} seed {run['seed']}: dev EM {run['dev_em']:.2f}, hot EM "
              f"{run['hot_em']:.2f} ({run['seconds'] / 60:.1f} min)", flush=True)  # fmt: skip

    run_each(train_run, todo, save, jobs=args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
