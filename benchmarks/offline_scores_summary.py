"""One table of offline scores for the project README, built from ``offline_scores`` results files.

    python -m benchmarks.offline_scores_summary offline_scores_hopper offline_scores_halfcheetah offline_scores_walker2d

Rows are each file's tasks x ``--kinds`` (default medium, medium-replay). Each cell reads "last evaluation, mean
over seeds [95% bootstrap CI] / mean of each seed's last evaluations", with the seed count when it is not 3, and
"-" where no run has finished. The table replaces the text between ``<!-- offline-scores-mujoco:start -->`` and
``<!-- offline-scores-mujoco:end -->`` in README.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.harness import BENCH_DIR, RESULTS_DIR, markdown_table, render_readme_section
from benchmarks.offline_scores import seed_statistics

PROJECT_README = BENCH_DIR.parent / "README.md"
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
    return f"{stats['last']:.1f}{interval} / {stats['late']:.1f}{count}"


def summary_table(payloads: list[dict[str, Any]], kinds: list[str]) -> str:
    """One row per task of each file (in the files' order) and kind; columns: data score and each agent."""
    rows = []
    for payload in payloads:
        for task in payload["args"]["tasks"]:
            for kind in kinds:
                env_id = f"{task}-{kind}-v0"
                runs = [run for run in payload["runs"] if run["env_id"] == env_id]
                data = payload.get("data_scores", {}).get(env_id)
                cells = [score_cell([run for run in runs if run["algo"] == algo]) for algo in ALGOS]
                rows.append([env_id, "-" if data is None else f"{data:.1f}", *cells])
    return markdown_table(["dataset", "data", *ALGOS.values()], rows)


def main(argv: list[str] | None = None, results_dir: Path = RESULTS_DIR, readme: Path = PROJECT_README) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="results file stems, in table order")
    parser.add_argument("--kinds", nargs="+", default=["medium", "medium-replay"], help="dataset kinds, in row order")
    args = parser.parse_args(argv)
    paths = [results_dir / f"{name}.json" for name in args.names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no results file {', '.join(missing)}; run benchmarks.offline_scores with --name first")
    table = summary_table([json.loads(path.read_text()) for path in paths], args.kinds)
    render_readme_section(SECTION, table, readme)
    print(table)
    return table


if __name__ == "__main__":
    main()
