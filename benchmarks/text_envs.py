"""Benchmark of the text environments: ToolSearch-v0 build and search latency, env throughput, TextWorld-v0.

Measures, on the default world (``WorldConfig()``):
  * world generation + bm25s index build time (uncached),
  * the latency of ``env.step("<search> q </search>")`` (in episodes of three searches, a third of a reset
    included) against a bare ``bm25s`` retrieve of the same query
    (tokenise + ``BM25.retrieve(k=3)`` as bm25s documents it) and against bm25s' raw scoring
    (``get_scores_from_ids``, a lower bound), timed interleaved in the same run; the queries are the oracle
    queries of the dev questions,
  * whole-episode throughput (steps/s, resets included) of the oracle and random policies,
  * TextWorld-v0 game generation time (uncached), and its steps/s against raw ``textworld`` stepping of the
    same game with the same requested infos and the same commands (random admissible ones, recorded once),
    timed interleaved in the same run: no extra infos, ``admissible_commands``, and the GiGPO ``anchor``
    (raw: description and inventory).

Run: ``python benchmarks/text_envs.py`` (a few minutes; ``--textworld-only`` reruns the TextWorld numbers and
keeps the saved ToolSearch ones). Writes ``benchmarks/results/text_envs.json``, ``benchmarks/results/text_envs.png``
and the table in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

import palaestra  # noqa: F401  (registers the env ids)
from benchmarks.harness import (
    RESULTS_DIR,
    Timing,
    machine_info,
    markdown_table,
    render_readme_section,
    time_callables,
    write_results,
)
from palaestra.agents.text_baselines import OracleSearchPolicy, RandomTextPolicy
from palaestra.envs.text.search import SearchIndex
from palaestra.envs.text.world import WorldConfig, _build_world, build_world

SECTION = "Text and tool-agent environments"


def world_build_times(repeats: int) -> dict[str, float]:
    world_s, index_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        world = _build_world.__wrapped__(WorldConfig(), False)  # bypass the cache: a cold build
        middle = time.perf_counter()
        SearchIndex(tuple(d.id for d in world.documents), tuple(f"{d.title} {d.text}" for d in world.documents))
        end = time.perf_counter()
        world_s.append(middle - start)
        index_s.append(end - middle)
    total = [w + i for w, i in zip(world_s, index_s, strict=True)]
    return {
        "world_median_s": statistics.median(world_s),
        "index_median_s": statistics.median(index_s),
        "total_median_s": statistics.median(total),
        "n_documents": len(world.documents),
        "n_questions": len(world.questions),
        "repeats": repeats,
    }


def search_latency(number: int, repeats: int) -> dict[str, object]:
    import bm25s

    env = gym.make("ToolSearch-v0", max_turns=10**9).unwrapped  # episodes are ended by the timed callable
    env.reset(seed=0)
    queries = [q for question in build_world(WorldConfig()).select("dev") for q in question.oracle_queries]
    retriever = env.index.retriever
    tokenizer = env.index.tokenizer
    cursor = {"env": 0, "bm25s": 0, "raw": 0}
    steps = {"n": 0}

    def next_query(name: str) -> str:
        cursor[name] = (cursor[name] + 1) % len(queries)
        return queries[cursor[name]]

    def env_step() -> None:
        steps["n"] += 1
        if steps["n"] % 3 == 0:  # episodes of 3 searches, as the default max_turns=4 allows (1/3 reset included)
            env.reset()
        env.step(f"<search> {next_query('env')} </search>")

    def bm25s_retrieve() -> None:
        tokens = bm25s.tokenize([next_query("bm25s")], stopwords="en", show_progress=False)
        retriever.retrieve(tokens, k=3, show_progress=False)

    def bm25s_raw_scores() -> None:
        ids = tokenizer.tokenize([next_query("raw")], update_vocab=False, show_progress=False, return_as="ids")[0]
        retriever.get_scores_from_ids(ids)

    timings = time_callables(
        {
            "env.step(search)": env_step,
            "bm25s tokenize+retrieve": bm25s_retrieve,
            "bm25s Tokenizer+get_scores": bm25s_raw_scores,
        },
        number=number,
        repeats=repeats,
    )
    step, bare, raw = (
        timings[k].median_s for k in ("env.step(search)", "bm25s tokenize+retrieve", "bm25s Tokenizer+get_scores")
    )
    return {
        "timings": {name: t.to_dict() for name, t in timings.items()},
        "n_queries": len(queries),
        "ratio_step_to_bm25s_retrieve": step / bare,
        "ratio_step_to_bm25s_get_scores": step / raw,
    }


def episode_throughput(policy_name: str, n_episodes: int, split: str, seed: int = 0) -> dict[str, float]:
    env = gym.make("ToolSearch-v0", split=split)
    policy = OracleSearchPolicy(env) if policy_name == "oracle" else RandomTextPolicy(env.action_space, seed=seed)
    steps, successes = 0, 0
    start = time.perf_counter()
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        done = False
        while not done:
            action, _ = policy.predict(obs)
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            done = terminated or truncated
        successes += bool(info["is_success"])
    elapsed = time.perf_counter() - start
    return {
        "episodes": n_episodes,
        "steps": steps,
        "steps_per_s": steps / elapsed,
        "episodes_per_s": n_episodes / elapsed,
        "success_rate": successes / n_episodes,
    }


#: Requested infos of each TextWorld speed case: the adapter's names and raw ``textworld.EnvInfos`` fields.
TEXTWORLD_CASES: dict[str, tuple[tuple[str, ...], dict[str, bool]]] = {
    "no extra infos": ((), {}),
    "admissible_commands": (("admissible_commands",), {"admissible_commands": True}),
    "anchor": (("anchor",), {"description": True, "inventory": True}),
}


def _textworld_steppers(path: str, commands: list[str], case: str, max_steps: int) -> dict[str, Callable[[], None]]:
    """One-step callables of the adapter and of raw ``textworld``: the same commands, a reset at each episode end."""
    import textworld

    names, fields = TEXTWORLD_CASES[case]
    env = gym.make("TextWorld-v0", game_files=path, max_steps=max_steps, request_infos=names)
    raw = textworld.start(path, request_infos=textworld.EnvInfos(**fields))
    env.reset(seed=0)
    raw.reset()
    cursor = {"env": 0, "raw": 0, "raw_steps": 0}

    def env_step() -> None:
        command = commands[cursor["env"] % len(commands)]
        cursor["env"] += 1
        _, _, terminated, truncated, _ = env.step(command)
        if terminated or truncated:
            env.reset()

    def raw_step() -> None:
        command = commands[cursor["raw"] % len(commands)]
        cursor["raw"] += 1
        cursor["raw_steps"] += 1
        _, _, done = raw.step(command)
        if done or cursor["raw_steps"] >= max_steps:
            raw.reset()
            cursor["raw_steps"] = 0

    return {f"TextWorld-v0 ({case})": env_step, f"raw textworld ({case})": raw_step}


def cpu_and_wall_rounds(callables: dict[str, Callable[[], None]], number: int, repeats: int) -> dict[str, dict[str, Timing]]:
    """Per-call CPU and wall seconds of each callable over interleaved rounds (one untimed warm-up round).

    The order of the callables is reversed every other round. CPU time (``time.process_time``) leaves out the
    time this process waits for a core, the main noise on a shared machine, which wall time keeps.
    """
    cpu: dict[str, list[float]] = {name: [] for name in callables}
    wall: dict[str, list[float]] = {name: [] for name in callables}
    for round_index in range(repeats + 1):
        names = list(callables) if round_index % 2 == 0 else list(reversed(callables))
        for name in names:
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            for _ in range(number):
                callables[name]()
            if round_index > 0:
                cpu[name].append((time.process_time() - cpu_start) / number)
                wall[name].append((time.perf_counter() - wall_start) / number)
    return {
        clock: {name: Timing(name, number, tuple(values)) for name, values in per_name.items()}
        for clock, per_name in (("cpu", cpu), ("wall", wall))
    }


def textworld_numbers(n_games: int, number: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    try:
        import textworld  # noqa: F401
    except ImportError:
        return {"skipped": "textworld is not installed"}
    from palaestra.envs.text.textworld_env import _quiet_jericho, generate_game

    max_steps = 50
    generation_s = []
    with tempfile.TemporaryDirectory() as cache, _quiet_jericho():
        for game_seed in range(n_games):
            start = time.perf_counter()
            generate_game(1000 + game_seed, cache_dir=cache)
            generation_s.append(time.perf_counter() - start)
        path = str(generate_game(1000, cache_dir=cache))
        recorder = gym.make("TextWorld-v0", game_files=path, max_steps=max_steps, request_infos=["admissible_commands"])
        rng = np.random.default_rng(seed)
        _, info = recorder.reset(seed=seed)
        commands: list[str] = []
        for _ in range(number * (repeats + 1)):  # every timed call (warm-up round included) takes a fresh command
            choices = info["admissible_commands"]
            commands.append(choices[int(rng.integers(len(choices)))])
            _, _, terminated, truncated, info = recorder.step(commands[-1])
            if terminated or truncated:
                _, info = recorder.reset()
        recorder.close()
        steppers: dict[str, Callable[[], None]] = {}
        for case in TEXTWORLD_CASES:
            steppers.update(_textworld_steppers(path, commands, case, max_steps))
        timings = cpu_and_wall_rounds(steppers, number=number, repeats=repeats)
    speed = {}
    for case in TEXTWORLD_CASES:
        ratios = {}
        for clock, clock_timings in timings.items():
            env_t, raw_t = (clock_timings[f"{who} ({case})"] for who in ("TextWorld-v0", "raw textworld"))
            # both played the same commands in a round: the per-round ratio cancels what the commands cost
            ratios[clock] = statistics.median(r / e for r, e in zip(raw_t.per_call_s, env_t.per_call_s, strict=True))
        env_s, raw_s = (timings["cpu"][f"{who} ({case})"].median_s for who in ("TextWorld-v0", "raw textworld"))
        speed[case] = {
            "adapter_steps_per_s": 1.0 / env_s,  # per CPU second, median round
            "raw_steps_per_s": 1.0 / raw_s,
            "ratio_steps_per_s": ratios["cpu"],  # median over rounds of raw / adapter seconds per step
            "ratio_steps_per_wall_s": ratios["wall"],
            "request_infos": list(TEXTWORLD_CASES[case][0]),
            "raw_env_infos": TEXTWORLD_CASES[case][1],
        }
    return {
        "game": {"nb_rooms": 3, "nb_objects": 5, "quest_length": 3, "max_steps": max_steps},
        "generation_s": generation_s,
        "generation_median_s": statistics.median(generation_s),
        "speed": speed,
        "speed_timings": {clock: {name: t.to_dict() for name, t in ts.items()} for clock, ts in timings.items()},
        "speed_commands": len(commands),
        "date": machine_info()["date"],
    }


def plot(latency: dict[str, object], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timings = latency["timings"]
    names = list(timings)
    medians = [timings[n]["median_s"] * 1e6 for n in names]
    spreads = [[(timings[n]["median_s"] - timings[n]["min_s"]) * 1e6 for n in names],
               [(timings[n]["max_s"] - timings[n]["median_s"]) * 1e6 for n in names]]  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(names, medians, xerr=spreads, color=["tab:blue", "tab:gray", "tab:gray"])
    ax.set_xlabel("microseconds per search (median, min-max over rounds)")
    ax.set_title("ToolSearch-v0: search step vs bare bm25s")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument(
        "--textworld-only", action="store_true", help="rerun only the TextWorld-v0 numbers, keep the saved ToolSearch-v0 ones"
    )
    args = parser.parse_args()
    quick = args.quick
    if args.textworld_only:
        payload = json.loads((RESULTS_DIR / "text_envs.json").read_text())
    else:
        latency = search_latency(number=50 if quick else 500, repeats=3 if quick else 7)
        payload = {
            "machine": machine_info(torch_threads=None),  # no torch in any timed loop
            "config": {"world": "WorldConfig() defaults", "top_k": 3, "max_turns": 4, "seeds": [0], "quick": quick},
            "world_build": world_build_times(repeats=2 if quick else 5),
            "search_latency": latency,
            "throughput": {
                f"{policy}/{split}": episode_throughput(policy, 50 if quick else 1000, split)
                for policy in ("oracle", "random")
                for split in ("dev", "hot")
            },
        }
        plot(latency, str(RESULTS_DIR / "text_envs.png"))
    payload["textworld"] = tw = textworld_numbers(n_games=1 if quick else 2, number=20, repeats=3 if quick else 101)
    write_results("text_envs", payload)
    build, latency, throughput = payload["world_build"], payload["search_latency"], payload["throughput"]

    t = latency["timings"]
    rows = [
        ["world generation + bm25s index (cold)", f"{build['total_median_s'] * 1e3:.0f} ms",
         f"{build['n_documents']} docs, {build['n_questions']} questions; target < 1 s"],
        ["env.step(search), median", f"{t['env.step(search)']['median_s'] * 1e6:.0f} us", "target < 1 ms"],
        ["bare bm25s tokenize + retrieve(k=3), median", f"{t['bm25s tokenize+retrieve']['median_s'] * 1e6:.0f} us",
         "same queries, same run"],
        ["ratio env.step(search) / bare bm25s retrieve", f"{latency['ratio_step_to_bm25s_retrieve']:.2f}", "target <= 1.5"],
        ["ratio env.step(search) / bm25s get_scores only", f"{latency['ratio_step_to_bm25s_get_scores']:.2f}",
         "lower bound: scoring alone"],
    ]  # fmt: skip
    for key, value in throughput.items():
        rows.append([f"ToolSearch-v0 {key} throughput", f"{value['steps_per_s']:.0f} steps/s",
                     f"{value['episodes']} episodes, success {value['success_rate']:.1%}"])  # fmt: skip
    if "skipped" not in tw:
        rows.append(["TextWorld-v0 game generation (3 rooms, 5 objects, quest 3)", f"{tw['generation_median_s']:.1f} s",
                     f"median of {len(tw['generation_s'])} games, cached on disk afterwards"])  # fmt: skip
        for case, speed in tw["speed"].items():
            rates = f"{speed['adapter_steps_per_s']:.0f} vs {speed['raw_steps_per_s']:.0f} steps/s"
            rows.append([f"TextWorld-v0 / raw textworld steps/s, {case}", f"{speed['ratio_steps_per_s']:.2f}",
                         f"{rates}; target >= 0.9"])  # fmt: skip
    body = (
        "`python benchmarks/text_envs.py` on "
        f"{payload['machine']['cpu']} ({payload['machine']['cores']} cores, shared), one process, seed 0. "
        "Latencies are medians over interleaved rounds (`benchmarks.harness.time_callables`); "
        "raw numbers in `results/text_envs.json`, plot in `results/text_envs.png`. "
        "TextWorld-v0 rows: steps per CPU second (resets included) against raw `textworld.start(...).step` on the "
        "same game, with the same requested infos (for the anchor: description and inventory) and the same recorded "
        "random admissible commands; the ratio is the median over interleaved rounds (order reversed every other "
        "round) of the per-round ratio, wall-clock ratios are in the JSON; no torch in the loop.\n\n"
        + markdown_table(["measure", "value", "notes"], rows)
    )
    render_readme_section(SECTION, body)
    print(body)


if __name__ == "__main__":
    main()
