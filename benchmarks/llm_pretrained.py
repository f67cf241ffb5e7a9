"""A real pretrained model through the trainer: SmolLM2-135M-Instruct on ToolSearch-v0, offline.

Two parts, each saved as it finishes (``benchmarks/results/llm_pretrained.json``):

* **Generation speed.** The trainer's batched sampler (:func:`~palaestra.agents.llm.rollout.sample_actions`:
  left-padded batch, KV cache, the last position's logits only) against ``model.generate`` on the same model and
  the same left-padded batch of ToolSearch-v0 prompts in the chat template, greedy, both made to write exactly
  ``--new-tokens`` tokens. Tokens/s is new tokens over the wall time of the call (prompt forward included); the
  two alternate, ``--repeats`` times, and the median is reported. Beside them, two ceilings measured in the same
  run: the *matmul limit* (float32 GEMM throughput of this CPU, from a square matmul, over the model's 2 x 134.5M
  multiply-adds per token) and the *memory limit* at batch 1 (memory copy bandwidth over the 538 MB of weights
  every decoding step reads).
* **Exact match.** The instruct model zero-shot, greedy, in the chat template (the task as the first user
  message, each env reply as the next), on ``--questions`` dev and hot questions of 1- and 2-hop ToolSearch-v0.

The model is converted once into palaestra's cache (``--model smollm2-135m-instruct``). ``--threads`` torch
threads (default 1). Run: ``python -m benchmarks.llm_pretrained`` (``--quick``: a smoke run, nothing saved).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import gymnasium as gym
import torch

from benchmarks.harness import (
    RESULTS_DIR,
    add_runs_saved_meanwhile,
    load_resumable,
    machine_info,
    mean_ci,
    publish,
    write_results,
)
from palaestra.agents.llm.models import NAMED_MODELS, load_model, resolve_model
from palaestra.agents.llm.rollout import ChatTurns, prompt_ids, sample_actions

NAME = "llm_pretrained"
SECTION = "Multi-turn LLM agents: a pretrained model (SmolLM2-135M-Instruct)"
MODEL = "smollm2-135m-instruct"
SELECTION = ("seeds", "sft_hops")  # which hot-world runs to make: invocations with other seeds share the file
# A pretrained model takes small steps: the tiny model's learning rates (3e-3 SFT, 1e-3 RL) would wreck it.
SFT_SETTINGS = {"sft_steps": 20, "sft_episodes": 64, "sft_batch_size": 4, "sft_learning_rate": 5e-5}
RL_SETTINGS = {"advantage": "grpo", "group_size": 4, "n_prompts": 2, "learning_rate": 5e-6}


class _NeverStop:
    """A stop criterion that lets every row write the full budget, so both generators write the same tokens."""

    def __call__(self, ids: Any) -> bool:
        return False


def chat_prompts(tokenizer: Any, n: int, hops: int = 1) -> list[list[int]]:
    """The first-turn ids of ``n`` ToolSearch-v0 dev questions in the model's chat template."""
    env, chat = gym.make("ToolSearch-v0", hops=hops), ChatTurns.from_tokenizer(tokenizer)
    return [prompt_ids(tokenizer, env.reset(seed=i, options={"split": "dev"})[0], chat) for i in range(n)]


def _left_padded(contexts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, context in enumerate(contexts):
        ids[row, width - len(context) :], mask[row, width - len(context) :] = torch.tensor(context), 1
    return ids, mask


def time_generators(model: Any, tokenizer: Any, batch: int, new_tokens: int, repeats: int) -> dict[str, Any]:
    """Median tokens/s of the trainer's sampler and of ``model.generate`` on one batch, alternating."""
    contexts = chat_prompts(tokenizer, batch)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids, mask = _left_padded(contexts, pad_id)
    seconds: dict[str, list[float]] = {"sampler": [], "generate": []}
    for _ in range(repeats):
        start = time.perf_counter()
        rows = sample_actions(model, contexts, new_tokens, _NeverStop(), pad_id, temperature=0.0)  # type: ignore[arg-type]
        seconds["sampler"].append(time.perf_counter() - start)
        assert all(len(row) == new_tokens for row in rows)  # internal invariant: nothing stops a row early
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad_id)  # fmt: skip
        seconds["generate"].append(time.perf_counter() - start)
        assert out.shape[1] == ids.shape[1] + new_tokens
    tokens = batch * new_tokens
    speed = {name: tokens / statistics.median(values) for name, values in seconds.items()}
    return {"batch": batch, "new_tokens": new_tokens, "prompt_tokens": [len(c) for c in contexts],
            "sampler_tokens_per_s": speed["sampler"], "generate_tokens_per_s": speed["generate"],
            "ratio": speed["sampler"] / speed["generate"], "seconds": seconds}  # fmt: skip


def matmul_flops(size: int = 1024, repeats: int = 10) -> float:
    """Float32 GEMM throughput of this CPU (FLOP/s) at the current thread count, from a square matmul."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def copy_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth (bytes/s read plus written) of copying a ``megabytes`` float32 tensor."""
    source = torch.empty(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    target.copy_(source)
    start = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    return 2 * source.numel() * 4 * repeats / (time.perf_counter() - start)


def speed_part(model: Any, tokenizer: Any, batches: list[int], new_tokens: int, repeats: int) -> dict[str, Any]:
    """Both generators at each batch size, and the CPU's two ceilings."""
    parameters = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    flops, bandwidth = matmul_flops(), copy_bandwidth()
    rows = [time_generators(model, tokenizer, batch, new_tokens, repeats) for batch in batches]
    return {"parameters": parameters, "weight_bytes": weight_bytes, "dtype": str(model.dtype).removeprefix("torch."),
            "matmul_flops": flops, "copy_bandwidth": bandwidth, "matmul_limit_tokens_per_s": flops / (2 * parameters),
            "memory_limit_tokens_per_s_batch_1": bandwidth / weight_bytes, "rows": rows}  # fmt: skip


def em_part(questions: int, hops_list: list[int], max_new_tokens: int) -> list[dict[str, Any]]:
    """Zero-shot greedy EM (and searches, invalid turns) of the instruct model on dev and hot."""
    from palaestra.agents.llm.trainer import MultiTurnAgent

    rows = []
    for hops in hops_list:
        agent = MultiTurnAgent("ToolSearch-v0", env_kwargs={"hops": hops}, model=MODEL, seed=0,
                               max_new_tokens=max_new_tokens, eval_questions=questions)  # fmt: skip
        start = time.perf_counter()
        metrics = agent.evaluate_splits()
        rows.append({"hops": hops, "stage": "zero-shot", "questions": questions, "metrics": metrics,
                     "seconds": time.perf_counter() - start})  # fmt: skip
    return rows


def training_part(questions: int, max_new_tokens: int, sft: dict[str, Any], rl_updates: int,
                  rl: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    """1-hop: a short SFT on oracle episodes, evaluated; then a short GRPO run from there, evaluated."""
    from palaestra.agents.llm.trainer import MultiTurnAgent

    agent = MultiTurnAgent("ToolSearch-v0", env_kwargs={"hops": 1}, model=MODEL, seed=0, max_new_tokens=max_new_tokens,
                           eval_questions=questions, **sft, **rl)  # fmt: skip
    rows = []
    start = time.perf_counter()
    agent.learn(0)  # the SFT warm start alone
    trained = time.perf_counter() - start
    rows.append({"hops": 1, "stage": f"SFT ({sft['sft_steps']} steps)", "questions": questions,
                 "metrics": agent.evaluate_splits(), "train_seconds": trained})  # fmt: skip
    start = time.perf_counter()
    agent.learn(rl_updates)
    rows.append({"hops": 1, "stage": f"SFT + GRPO ({rl_updates} updates)", "questions": questions,
                 "metrics": agent.evaluate_splits(), "train_seconds": time.perf_counter() - start})  # fmt: skip
    return rows


def sft_run(hops: int, seed: int, questions: int, max_new_tokens: int, sft: dict[str, Any]) -> dict[str, Any]:
    """One seed's SFT on ``hops``-hop oracle episodes, evaluated greedily on dev and hot."""
    from palaestra.agents.llm.trainer import MultiTurnAgent

    agent = MultiTurnAgent("ToolSearch-v0", env_kwargs={"hops": hops}, model=MODEL, seed=seed,
                           max_new_tokens=max_new_tokens, eval_questions=questions, **sft)  # fmt: skip
    start = time.perf_counter()
    agent.sft()
    trained = time.perf_counter() - start
    return {"hops": hops, "seed": seed, "metrics": agent.evaluate_splits(), "train_seconds": trained}


def run_key(run: dict[str, Any]) -> tuple[int, int]:
    return run["hops"], run["seed"]


def hot_world_table(runs: list[dict[str, Any]]) -> str:
    """Per hop count: dev and hot EM over seeds (95% bootstrap CIs) and whether hot EM >= 0.8 x dev EM."""
    lines = ["| hops | seeds | dev EM | hot EM | hot / dev | hot gold-doc recall | SFT s | hot EM >= 0.8 x dev EM |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for hops in sorted({run["hops"] for run in runs}):
        mine = [run for run in runs if run["hops"] == hops]
        dev, hot = ([run["metrics"][f"eval/{split}_em"] for run in mine] for split in ("dev", "hot"))
        ratio = statistics.mean(hot) / statistics.mean(dev) if statistics.mean(dev) > 0 else float("nan")
        recall = statistics.mean(run["metrics"]["eval/hot_gold_doc_recall"] for run in mine)
        seconds = statistics.mean(run["train_seconds"] for run in mine)
        lines.append(f"| {hops} | {len(mine)} | {mean_ci(dev)} | {mean_ci(hot)} | {ratio:.2f} | {recall:.2f} | "
                     f"{seconds:.0f} | {'yes' if ratio >= 0.8 else 'no'} |")  # fmt: skip
    return "\n".join(lines)


def report(payload: dict[str, Any]) -> str:
    """The README section: the speed table with its ceilings, and the EM table."""
    args, parts = payload["args"], []
    speed = payload.get("speed")
    if speed:
        lines = ["| batch | prompt tokens (mean) | trainer's sampler tok/s | `model.generate` tok/s | ratio | "
                 "sampler: tokens processed/s |", "|---|---|---|---|---|---|"]  # fmt: skip
        for row in speed["rows"]:
            prompt = sum(row["prompt_tokens"]) / len(row["prompt_tokens"])
            processed = row["sampler_tokens_per_s"] * (1 + prompt / row["new_tokens"])  # prompt and new tokens
            lines.append(f"| {row['batch']} | {prompt:.0f} | {row['sampler_tokens_per_s']:.1f} | "
                         f"{row['generate_tokens_per_s']:.1f} | {row['ratio']:.2f}x | {processed:.0f} |")  # fmt: skip
        parts.append(
            f"Generation, greedy, {args['new_tokens']} new tokens per row, median of {args['repeats']} alternating "
            f"calls, {speed['dtype']} weights ({speed['parameters'] / 1e6:.1f}M parameters, "
            f"{speed['weight_bytes'] / 1e6:.0f} MB), {args['threads']} torch thread(s):\n\n" + "\n".join(lines) + "\n\n"
            f"Ceilings measured in the same run: float32 GEMM {speed['matmul_flops'] / 1e9:.1f} GFLOP/s, so a matmul "
            f"limit of {speed['matmul_limit_tokens_per_s']:.0f} tokens/s (2 FLOP per parameter per token); memory "
            f"copy {speed['copy_bandwidth'] / 1e9:.1f} GB/s, so at batch 1, where each token reads every weight once, "
            f'a memory limit of {speed["memory_limit_tokens_per_s_batch_1"]:.0f} tokens/s. "Tokens processed" counts '
            "the prompt's tokens too (each call first runs the prompt through the model), the number to hold against "
            "the matmul limit."
        )
    stages = [*payload.get("em", []), *payload.get("train", [])]
    if stages:
        lines = ["| hops | stage | dev EM | hot EM | dev searches | dev invalid turns |", "|---|---|---|---|---|---|"]
        for row in stages:
            m = row["metrics"]
            lines.append(f"| {row['hops']} | {row['stage']} | {m['eval/dev_em']:.2f} | {m['eval/hot_em']:.2f} | "
                         f"{m['eval/dev_searches']:.2f} | {m['eval/dev_invalid_rate']:.2f} |")  # fmt: skip
        parts.append(
            f"Exact match, greedy, {args['questions']} questions per split, chat template, at most "
            f"{args['max_new_tokens']} tokens per turn. SFT: {args['sft']}; GRPO from the SFT model: {args['rl']}; "
            "one seed, 1-hop only: a step of a 135M model on a CPU core takes seconds, not milliseconds.\n\n"
            + "\n".join(lines)
        )
    if payload.get("runs"):
        parts.append(
            f"The hot world: SFT alone ({args['sft']}), one run per seed, {args['questions']} greedy questions per "
            "split; a hot question names only people and places no training question names, so answering it means "
            "copying names out of the retrieved documents:\n\n" + hot_world_table(payload["runs"])
        )
    source = NAMED_MODELS[MODEL]
    return (
        f"{source.description} from the `{source.distribution}` wheel, converted once to a float32 model "
        f"directory (`--model {MODEL}`). Rerun: `python -m benchmarks.llm_pretrained`.\n\n" + "\n\n".join(parts) + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Measure the parts not saved yet, save each, and render the README section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--hops", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rl-updates", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sft-hops", type=int, nargs="+", default=[1, 2])
    parts = ["speed", "em", "train", "hot-world"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--fresh", action="store_true", help="discard saved results")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets, results not saved")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.new_tokens, args.repeats, args.questions, args.hops, args.rl_updates = [2], 4, 1, 2, [1], 1
        args.seeds, args.sft_hops = [0], [1]

    torch.set_num_threads(args.threads)
    settings = {key: getattr(args, key) for key in ("batches", "new_tokens", "repeats", "questions", "hops",
                                                     "max_new_tokens", "threads", "rl_updates", "seeds",
                                                     "sft_hops")}  # fmt: skip
    settings["sft"], settings["rl"] = dict(SFT_SETTINGS), dict(RL_SETTINGS)
    if args.quick:
        settings["sft"].update(sft_steps=1, sft_episodes=2, sft_batch_size=2)
        settings["rl"].update(group_size=2, n_prompts=1)
    payload: dict[str, Any] = {} if args.quick else load_resumable(NAME, settings, args.fresh, selection=SELECTION)
    payload["args"] = settings

    def save() -> None:
        if not args.quick:
            payload["machine"] = machine_info(args.threads)
            write_results(NAME, payload)

    directory = resolve_model(MODEL)
    if "speed" in args.parts and "speed" not in payload:
        model, tokenizer = load_model(directory)
        payload["speed"] = speed_part(model, tokenizer, args.batches, args.new_tokens, args.repeats)
        save()
    if "em" in args.parts and "em" not in payload:
        payload["em"] = em_part(args.questions, args.hops, args.max_new_tokens)
        save()
    if "hot-world" in args.parts:
        payload.setdefault("runs", [])
        for hops in args.sft_hops:
            for seed in args.seeds:
                if (hops, seed) in {run_key(run) for run in payload["runs"]}:
                    continue
                run = sft_run(hops, seed, args.questions, args.max_new_tokens, settings["sft"])
                print(f"{hops}-hop seed {seed}: dev EM {run['metrics']['eval/dev_em']:.2f}, hot EM "
                      f"{run['metrics']['eval/hot_em']:.2f} ({run['train_seconds']:.0f} s SFT)", flush=True)  # fmt: skip
                payload["runs"].append(run)
                if not args.quick:  # another invocation (other seeds) may have saved runs meanwhile: keep them
                    add_runs_saved_meanwhile(payload, RESULTS_DIR / f"{NAME}.json", run_key, SELECTION)
                save()
    if "train" in args.parts and "train" not in payload:
        payload["train"] = training_part(args.questions, args.max_new_tokens, settings["sft"], args.rl_updates, settings["rl"])
        save()
    publish(NAME, SECTION, report(payload), saved=not args.quick)


if __name__ == "__main__":
    main()
