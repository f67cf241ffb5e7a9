"""One table of offline scores for the offline agents' docs page, built from ``offline_scores`` results files.

    python -m benchmarks.offline_scores_summary offline_scores_hopper offline_scores_halfcheetah offline_scores_walker2d

Rows are each file's tasks x ``--kinds`` (default medium, medium-replay). Each cell reads "last evaluation, mean
over seeds [95% bootstrap CI] / mean of each seed's last evaluations", with the seed count when it is not 3, and
"-" where no run has finished, and a † where an earlier revision of the agent trained the runs. A last row
aggregates each agent over every dataset with rliable: the interquartile mean of the runs' last evaluations and its
95% stratified-bootstrap CI (Agarwal et al., 2021). The table replaces
the text between ``<!-- offline-scores-mujoco:start -->`` and
``<!-- offline-scores-mujoco:end -->`` in docs/agents/td3bc-iql.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import BENCH_DIR, RESULTS_DIR, markdown_table, render_readme_section
from benchmarks.offline_scores import AGENT_REVISIONS, is_stale, seed_statistics
from palaestra.evaluation import iqm_with_ci

PROJECT_README = BENCH_DIR.parent / "docs" / "agents" / "td3bc-iql.md"  # the page that shows the table
SECTION = "offline-scores-mujoco"
ALGOS = {"td3bc": "TD3+BC", "iql": "IQL"}


def score_cell(runs: list[dict[str, Any]], full_seeds: int = 3) -> str:
    """``last [CI] / late`` over the runs' seeds; one seed has no CI; a seed count other than ``full_seeds`` is named."""
    if not runs:
        return "-"
    stats = seed_statistics(runs)
    low, high = stats["ci"]
    interval = f" [{low:.1f}, {high:.1f}]" if stats["seeds"] > 1 else ""
    count = "" if stats["seeds"] == full_seeds else f" ({stats['seeds']} seed{'s' if stats['seeds'] > 1 else ''})"
    stale = " †" if any(map(is_stale, runs)) else ""
    return f"{stats['last']:.1f}{interval} / {stats['late']:.1f}{count}{stale}"


def final_scores(per_dataset: list[list[dict[str, Any]]]) -> np.ndarray | None:
    """One agent's last evaluations as a ``(runs, datasets)`` matrix; None unless every dataset has equally many runs.

    ``per_dataset`` holds the agent's runs on each dataset. Row ``i`` holds each dataset's ``i``-th run in file order,
    whatever its seed: the stratified bootstrap resamples runs within each dataset, so rows need not pair seeds.
    """
    if not per_dataset[0] or any(len(runs) != len(per_dataset[0]) for runs in per_dataset):
        return None
    return np.asarray([[run["eval_history"][-1]["normalized_score"] for run in runs] for runs in per_dataset]).T


def iqm_cell(scores: np.ndarray | None, reps: int = 10_000) -> str:
    """Interquartile mean over all runs with rliable's stratified-bootstrap 95% CI (resampling seeds per dataset)."""
    if scores is None:
        return "-"
    point, low, high = iqm_with_ci(scores, reps=reps)
    return f"{point:.1f} [{low:.1f}, {high:.1f}]"


def summary_table(payloads: list[dict[str, Any]], kinds: list[str]) -> str:
    """One row per task of each file (in the files' order) and kind, then the IQM; columns: data score, each agent."""
    rows = []
    runs_by_algo: dict[str, list[list[dict[str, Any]]]] = {algo: [] for algo in ALGOS}  # per dataset, in row order
    for payload in payloads:
        for task in payload["args"]["tasks"]:
            for kind in kinds:
                env_id = f"{task}-{kind}-v0"
                for algo, per_dataset in runs_by_algo.items():
                    per_dataset.append([run for run in payload["runs"] if run["env_id"] == env_id and run["algo"] == algo])
                data = payload.get("data_scores", {}).get(env_id)
                cells = [score_cell(per_dataset[-1]) for per_dataset in runs_by_algo.values()]
                rows.append([env_id, "-" if data is None else f"{data:.1f}", *cells])
    iqms = [iqm_cell(final_scores(per_dataset)) for per_dataset in runs_by_algo.values()]
    rows.append([f"IQM over the {len(rows)} datasets", "", *iqms])
    table = markdown_table(["dataset", "data", *ALGOS.values()], rows)
    stale = sorted({algo for runs in runs_by_algo.values() for cell in runs for algo in stale_algos(cell)})
    if stale:
        changes = "; ".join(f"{ALGOS[algo]}: {AGENT_REVISIONS[algo][1]}" for algo in stale)
        table += f"\n\n† trained before the agent's latest revision ({changes}); not retrained yet."
    return table


def stale_algos(runs: list[dict[str, Any]]) -> set[str]:
    """The algorithms of ``runs`` that an earlier revision of the agent trained."""
    return {run["algo"] for run in runs if is_stale(run)}


def main(argv: list[str] | None = None, results_dir: Path = RESULTS_DIR, readme: Path = PROJECT_README) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="results file stems, in table order")
    parser.add_argument("--kinds", nargs="+", default=["medium", "medium-replay"], help="dataset kinds, in row order")
    args = parser.parse_args(argv)
    paths = [results_dir / f"{name}.json" for name in args.names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no results file {', '.join(missing)}; run benchmarks.offline_scores with --name first")
    payloads = [json.loads(path.read_text()) for path in paths]
    tasks = [task for payload in payloads for task in payload["args"]["tasks"]]
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:
        parser.error(f"tasks {repeated} appear in more than one results file; give each task's file once")
    table = summary_table(payloads, args.kinds)
    render_readme_section(SECTION, table, readme)
    print(table)
    return table


if __name__ == "__main__":
    main()
