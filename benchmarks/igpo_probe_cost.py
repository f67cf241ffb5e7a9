"""IGPO's information-gain probe: its cost per RL step against GRPO's step, and against one forward pass per context.

IGPO needs ``P_k``, the probability of the gold answer after each turn's context ``k``
(:func:`~palaestra.agents.llm.rollout.answer_probabilities`). The probe used to teacher-force the answer after each
context in a separate forward pass, so an episode of ``T`` turns ran through the model about ``T / 2`` more times;
it now runs each episode once and reads every context's prefix from that pass's KV cache.

Setting: the tiny model and ToolSearch-v0 settings of ``benchmarks/llm_agents.py`` (top_k 1, 300 characters per
document, ``hops + 2`` turns, G = 8, 2 questions per update) after ``--sft-steps`` SFT updates, so that episodes
search and answer as in the RL benchmarks. Per hop count, ``--steps`` RL steps of each method alternate (GRPO,
IGPO) at learning rate 1e-12, so every step samples from the same model; step time is the median. On the same
groups, the probe alone is timed both ways (the cached probe and the pass-per-context rule it replaced, whose
values it matches). 1 torch thread. Run: ``python -m benchmarks.igpo_probe_cost``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch as th

from benchmarks.harness import load_resumable, machine_info, publish, write_results
from palaestra.agents.llm.rollout import Episode, encode_text, pad_episodes, sequence_logprobs
from palaestra.agents.llm.trainer import GRPO

NAME = "igpo_probe_cost"
SECTION = "Multi-turn LLM agents: IGPO's probe cost"


def probe_per_context(agent: Any, group: list[Episode]) -> list[th.Tensor]:
    """The rule the cached probe replaced: ``ctx_k + <answer> + answer`` through the model once per context."""
    prefix = encode_text(agent.tokenizer, "<answer>")
    answer = encode_text(agent.tokenizer, f" {group[0].infos[0]['answers'][0]}")
    out = []
    with th.no_grad():
        for episode in group:
            contexts = [episode.ids[:end] + prefix + answer for end in episode.context_ends]
            probes = [Episode(ids=ids, turn_index=[-1] * len(ids)) for ids in contexts]
            ids, attention, _ = pad_episodes(probes, agent.pad_id)
            logp, _ = sequence_logprobs(agent.model, ids, attention, temperature=agent.temperature)
            first = [end + len(prefix) for end in episode.context_ends]
            out.append(th.stack([logp[row, f : f + len(answer)].mean().exp() for row, f in enumerate(first)]))
    return out


def measure(hops: int, sft_steps: int, steps: int) -> dict[str, Any]:
    """Step times of GRPO and IGPO, and the probe both ways, on one SFT start."""
    env_kwargs = {"hops": hops, "top_k": 1, "max_doc_chars": 300, "max_turns": hops + 2}
    agent = GRPO("ToolSearch-v0", env_kwargs, sft_steps=sft_steps, sft_episodes=1024, seed=0, group_size=8, n_prompts=2,
                 max_new_tokens=10, max_length=384 * hops, learning_rate=1e-12,  # so every step samples the same model
                 tiny_model_kwargs={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2})  # fmt: skip
    agent.sft()
    step_s: dict[str, list[float]] = {"grpo": [], "igpo": []}
    probe_s: dict[str, list[float]] = {"cached": [], "per context": []}
    turns = []
    for _ in range(steps):
        for advantage in ("grpo", "igpo"):
            agent.advantage = advantage
            step_s[advantage].append(agent.train_step()["time/step_s"])
        groups, _ = agent.collect()
        turns += [e.n_turns for g in groups for e in g]
        for name, probe in (("cached", None), ("per context", probe_per_context)):
            start = time.perf_counter()
            for group in groups:
                if probe is None:
                    agent._answer_probs(group, max(e.n_turns for e in group))
                else:
                    probe(agent, group)
            probe_s[name].append(time.perf_counter() - start)
    grpo, igpo = statistics.median(step_s["grpo"]), statistics.median(step_s["igpo"])
    cached, per_context = statistics.median(probe_s["cached"]), statistics.median(probe_s["per context"])
    return {"hops": hops, "mean_turns": sum(turns) / len(turns), "grpo_step_s": grpo, "igpo_step_s": igpo,
            "ratio": igpo / grpo, "probe_cached_s": cached, "probe_per_context_s": per_context,
            "probe_speedup": per_context / cached, "step_s": step_s, "probe_s": probe_s}  # fmt: skip


def report(payload: dict[str, Any]) -> str:
    """The README section."""
    args = payload["args"]
    lines = ["| hops | turns per episode | GRPO step s | IGPO step s | IGPO / GRPO | probe s (cached) | "
             "probe s (a pass per context) | probe speed-up |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in payload["rows"]:
        lines.append(f"| {row['hops']} | {row['mean_turns']:.2f} | {row['grpo_step_s']:.3f} | {row['igpo_step_s']:.3f} | "
                     f"{row['ratio']:.2f}x | {row['probe_cached_s']:.3f} | {row['probe_per_context_s']:.3f} | "
                     f"{row['probe_speedup']:.2f}x |")  # fmt: skip
    return (
        f"Tiny model, ToolSearch-v0 as in the LLM benchmarks below, {args['sft_steps']} SFT updates, then "
        f"{args['steps']} alternating RL steps per method at learning rate 1e-12 (medians), 16 episodes per step, 1 torch "
        "thread. The probe columns time IGPO's probe alone on the same groups. Target: IGPO's step at most 1.2x "
        "GRPO's (it was 1.34-1.55x with a pass per context). Rerun: `python -m benchmarks.igpo_probe_cost`.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Measure each hop count not saved yet and render the README section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--fresh", action="store_true", help="discard saved results")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets, results not saved")
    args = parser.parse_args(argv)
    if args.quick:
        args.hops, args.sft_steps, args.steps = [1], 2, 1
    th.set_num_threads(1)
    settings = {"sft_steps": args.sft_steps, "steps": args.steps, "hops": args.hops}
    payload = {"args": settings} if args.quick else load_resumable(NAME, settings, args.fresh, selection=("hops",))
    payload.setdefault("rows", [])
    for hops in args.hops:
        if any(row["hops"] == hops for row in payload["rows"]):
            continue
        row = measure(hops, args.sft_steps, args.steps)
        print(f"{hops}-hop: IGPO step {row['ratio']:.2f}x GRPO's, probe {row['probe_speedup']:.2f}x faster", flush=True)
        payload["rows"] = sorted([*payload["rows"], row], key=lambda r: r["hops"])
        if not args.quick:
            payload["machine"] = machine_info(1)
            write_results(NAME, payload)
    publish(NAME, SECTION, report(payload), saved=not args.quick)


if __name__ == "__main__":
    main()
