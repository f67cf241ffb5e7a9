"""D4RL-normalised scores of TD3+BC and IQL on palaestra's offline datasets.

    python -m benchmarks.offline_scores                      # this machine's budget (see --help defaults)
    python -m benchmarks.offline_scores --full               # the published protocol: 1M steps, 3 MuJoCo tasks

The data are palaestra's own (generated from palaestra's SAC behaviour policies), not D4RL's: scores are
comparable with each other, not with the D4RL tables, even though hopper/halfcheetah/walker2d use D4RL's
reference returns. Every run evaluates its deterministic policy every ``--eval-freq`` gradient steps
(``--eval-episodes`` episodes); the table reports the last evaluation, mean over seeds with a 95% bootstrap CI.
Results are written after every run, and a rerun with the same settings skips the runs already in the file
(``--fresh`` starts over), so the long MuJoCo table can be built over several sittings; ``--tasks``, ``--kinds``,
``--algos`` and ``--seeds`` only choose runs, so ``--seeds 3 4`` adds two seeds to the same file. ``--jobs N`` trains N
runs at a time as Ray Tune trials, one CPU and one torch thread each (on a 16-core machine, ``--full --jobs 16``),
and ``--address`` sends the runs to a Ray cluster; both go through :func:`benchmarks.harness.run_each`, the engine
of ``palaestra sweep``. The table and the
curves are rewritten after every run from the runs finished so far (the seed count is in the table);
``--report-only`` rewrites them without training. "data" is the mean normalised return of the dataset's own
episodes. IQL runs use CORL's per-dataset settings (:data:`~palaestra.agents.offline.iql.IQL_PRESETS`), as
``palaestra train --algo iql`` does. Each run records its agent's hyperparameters and revision
(:data:`AGENT_REVISIONS`): rows that an earlier revision trained are kept and named under the table, a new seed is
never added to such a row, and ``--retrain-stale`` trains the selected ones again.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    README,
    RESULTS_DIR,
    add_runs_saved_meanwhile,
    load_resumable,
    machine_info,
    markdown_table,
    render_readme_section,
    run_each,
    write_results,
)
from benchmarks.plotting import plot_learning_curves

#: Evaluations averaged per seed in the table's steadier column (fewer when a run has fewer).
LATE_EVALUATIONS = 5
#: Options that only choose which runs to make: a rerun with other values resumes the same file.
RUN_SELECTION = ("tasks", "kinds", "algos", "seeds")
#: Each agent's revision and what changed in it. A run records the revision that trained it (runs without one are
#: revision 1); a run of an earlier revision is kept and marked in the table, and a cell never mixes revisions.
AGENT_REVISIONS = {
    "td3bc": (1, ""),
    "iql": (2, "CORL's per-dataset presets (IQL_PRESETS) and a reward scale that leaves out a cut last episode"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["pendulum"])
    parser.add_argument("--kinds", nargs="+", default=["medium", "medium-replay"])
    parser.add_argument("--algos", nargs="+", default=["td3bc", "iql"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000, help="gradient steps per run")
    parser.add_argument("--eval-freq", type=int, default=1000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--dataset-size", type=int, default=None, help="transitions (default: each id's standard size)")
    parser.add_argument("--full", action="store_true", help="hopper/halfcheetah/walker2d, 1M steps, eval every 5000 x 10")
    parser.add_argument("--name", default="offline_scores", help="results file stem (JSON and PNG)")
    parser.add_argument("--section", default="Offline agents: scores", help="section of benchmarks/README.md")
    parser.add_argument("--fresh", action="store_true", help="ignore runs already in the results file")
    parser.add_argument("--report-only", action="store_true", help="rewrite the table and plot from the results file")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at a time (more than 1: on a local Ray)")
    parser.add_argument("--address", default=None, help="train on the Ray cluster at this address (auto, host:port)")
    parser.add_argument("--retrain-stale", action="store_true", help="retrain the selected rows whose runs an earlier "
                        "agent revision trained (AGENT_REVISIONS)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.full:
        args.tasks, args.steps, args.eval_freq, args.eval_episodes = ["hopper", "halfcheetah", "walker2d"], 1_000_000, 5000, 10
    return args


def dataset_size(args: argparse.Namespace, kind: str) -> int | None:
    """The dataset size a run uses (medium-replay is always the whole recorded buffer)."""
    return None if kind == "medium-replay" else args.dataset_size


def train_run(args: argparse.Namespace, env_id: str, size: int | None, algo: str, seed: int) -> dict[str, Any]:
    """Train one agent and return its record (evaluation history, wall time)."""
    import gymnasium as gym

    from palaestra.agents.offline import IQL, TD3BC
    from palaestra.agents.offline.iql import iql_preset

    env = gym.make(env_id, dataset_size=size, progress=False)
    started = time.perf_counter()
    cls, preset = {"td3bc": (TD3BC, {}), "iql": (IQL, iql_preset(env_id))}[algo]
    agent = cls(env, seed=seed, eval_freq=args.eval_freq, n_eval_episodes=args.eval_episodes, **preset)
    agent.learn(args.steps)
    return {
        "env_id": env_id,
        "dataset_size": agent.dataset_size,
        "algo": algo,
        "seed": seed,
        "steps": args.steps,
        "revision": AGENT_REVISIONS[algo][0],
        "config": json.loads(json.dumps(agent.config, default=str)),
        "seconds": time.perf_counter() - started,
        "eval_history": agent.eval_history,
    }


def dataset_score(env_id: str, size: int | None) -> float:
    """Mean D4RL-normalised return (x100) of the dataset's own episodes (a cut last episode included)."""
    import gymnasium as gym

    from palaestra.envs.offline import episode_returns

    env = gym.make(env_id, dataset_size=size, progress=False)
    data = env.get_dataset()
    returns = episode_returns(data["rewards"], data["terminals"] | data["timeouts"])
    return 100.0 * float(np.mean(env.get_normalized_score(returns)))


def run_key(run: dict[str, Any]) -> tuple[str, str, int]:
    """A run's identity in a results file: ``(env id, algorithm, seed)``."""
    return run["env_id"], run["algo"], run["seed"]


def is_stale(run: dict[str, Any]) -> bool:
    """Whether an earlier revision of the run's agent trained it (see :data:`AGENT_REVISIONS`)."""
    return run.get("revision", 1) < AGENT_REVISIONS[run["algo"]][0]


def stale_cells(settings: dict[str, Any], payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``(env id, algorithm)`` rows of the table whose saved runs an earlier agent revision trained."""
    return [(env_id, algo) for env_id, algo, finished in finished_cells(settings, payload) if any(map(is_stale, finished))]


def seed_statistics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Normalised scores of one (dataset, agent) over its seeds' runs.

    The last evaluation (mean and 95% bootstrap CI), the mean of each seed's last ``LATE_EVALUATIONS`` evaluations
    (then over seeds), the best evaluation of any seed, and the ``(seeds, evaluations)`` histories.
    """
    from palaestra.evaluation import bootstrap_ci

    histories = np.asarray([[entry["normalized_score"] for entry in run["eval_history"]] for run in runs])
    finals = histories[:, -1]
    return {
        "seeds": len(runs),
        "last": float(finals.mean()),
        "ci": bootstrap_ci(finals),
        "late": float(histories[:, -LATE_EVALUATIONS:].mean(axis=1).mean()),
        "best": float(histories.max()),
        "histories": histories,
    }


def finished_cells(settings: dict[str, Any], payload: dict[str, Any]) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """``(env id, algorithm, finished runs)`` of each table row with at least one run, in table order."""
    runs = {run_key(run): run for run in payload["runs"]}
    for task in settings["tasks"]:
        for kind in settings["kinds"]:
            env_id = f"{task}-{kind}-v0"
            for algo in settings["algos"]:
                finished = [runs[key] for key in ((env_id, algo, seed) for seed in settings["seeds"]) if key in runs]
                if finished:
                    yield env_id, algo, finished


def report(args: argparse.Namespace, payload: dict[str, Any], results_dir: Path = RESULTS_DIR, readme: Path = README) -> str:
    """Write the table (README section) and the curves of the runs finished so far; return the section body."""
    from palaestra.envs.offline import parse_offline_env_id

    data_scores = payload.setdefault("data_scores", {})
    curves = {}
    for env_id, algo, finished in finished_cells(vars(args), payload):
        if env_id not in data_scores:
            data_scores[env_id] = dataset_score(env_id, dataset_size(args, parse_offline_env_id(env_id)[1]))
        steps = np.asarray([entry["step"] for entry in finished[0]["eval_history"]])
        curves[f"{env_id} {algo}"] = (steps, seed_statistics(finished)["histories"])
    png = results_dir / f"{args.name}.png"
    if curves:
        plot_learning_curves(curves, png, xlabel="gradient steps", ylabel="D4RL-normalised score", title="TD3+BC and IQL")
    body = render_markdown(vars(args), payload, args.name)
    render_readme_section(args.section, body, readme)
    return body


def render_markdown(settings: dict[str, Any], payload: dict[str, Any], name: str = "offline_scores") -> str:
    """The README section body of the runs finished so far in a results payload saved as ``name``.

    ``settings`` are the run settings (``payload["args"]`` or the command line's); a dataset whose "data" score is
    not in the payload shows "-".
    """
    data_scores = payload.get("data_scores", {})
    rows = []
    for env_id, algo, finished in finished_cells(settings, payload):
        stats = seed_statistics(finished)
        low, high = stats["ci"]
        data = f"{data_scores[env_id]:.1f}" if env_id in data_scores else "-"
        rows.append([env_id, data, algo, str(stats["seeds"]), f"{stats['last']:.1f}", f"[{low:.1f}, {high:.1f}]",
                     f"{stats['late']:.1f}", f"{stats['best']:.1f}"])  # fmt: skip
    size = settings["dataset_size"]
    sizes = "standard sizes" if size is None else f"{size:,} transitions; medium-replay: whole buffer"
    return (
        f"Datasets: {', '.join(settings['kinds'])} of {', '.join(settings['tasks'])} ({sizes}). "
        f"D4RL-normalised score (x100) of the last evaluation, mean over the seeds finished (of {settings['seeds']}) "
        f"with a 95% bootstrap CI; budget {settings['steps']:,} gradient steps per run, evaluation every "
        f"{settings['eval_freq']:,} steps x {settings['eval_episodes']} episodes, CORL hyperparameters, 1 torch thread "
        "on a shared 2-core CPU "
        '(`python -m benchmarks.offline_scores`; `--full` reruns the 1M-step MuJoCo protocol). "data" is the mean '
        "normalised return of the dataset's own episodes. The data are palaestra's own, generated from its SAC "
        "behaviour policies, not D4RL's: compare these numbers with each other, not with the D4RL tables. "
        f'"last {LATE_EVALUATIONS} mean" averages each seed\'s last {LATE_EVALUATIONS} evaluations (all of them when a run '
        "has fewer), then the seeds: "
        "steadier than one evaluation where the score jumps between checkpoints. "
        f"Curves: `benchmarks/results/{name}.png`.{stale_note(settings, payload)}\n\n"
        + markdown_table(
            [
                "dataset",
                "data",
                "agent",
                "seeds",
                "last score",
                "95% CI",
                f"last {LATE_EVALUATIONS} mean",
                "best eval (any seed)",
            ],
            rows,
        )
    )


def stale_note(settings: dict[str, Any], payload: dict[str, Any]) -> str:
    """A sentence naming the rows an earlier agent revision trained, with what changed since (empty if none)."""
    stale = stale_cells(settings, payload)
    if not stale:
        return ""
    rows = ", ".join(f"{algo} on {env_id}" for env_id, algo in stale)
    changes = "; ".join(f"{algo}: {AGENT_REVISIONS[algo][1]}" for algo in sorted({algo for _, algo in stale}))
    return f" Trained before the agent's latest revision ({changes}), not retrained yet: {rows}."


def missing_runs(args: argparse.Namespace, payload: dict[str, Any]) -> list[tuple[str, int | None, str, int]]:
    """The ``(env id, dataset size, algorithm, seed)`` runs not yet in ``payload``, in table order."""
    done = {run_key(run) for run in payload["runs"]}
    return [
        (f"{task}-{kind}-v0", dataset_size(args, kind), algo, seed)
        for task in args.tasks
        for kind in args.kinds
        for algo in args.algos
        for seed in args.seeds
        if (f"{task}-{kind}-v0", algo, seed) not in done
    ]


def refuse_mixed_revisions(args: argparse.Namespace, payload: dict[str, Any]) -> set[tuple[str, str]]:
    """Drop the stale runs of the selected rows (``--retrain-stale``), or stop before a row would mix revisions.

    Returns:
        The ``(env id, algorithm)`` rows whose stale runs were dropped (empty without ``--retrain-stale``).

    Raises:
        SystemExit: If a run is to be trained for a row whose saved runs an earlier agent revision trained.
    """
    stale = set(stale_cells(vars(args), payload))
    if args.retrain_stale:
        payload["runs"] = [run for run in payload["runs"] if not (run_key(run)[:2] in stale and is_stale(run))]
        return stale
    mixed = sorted({(env_id, algo) for env_id, _, algo, _ in missing_runs(args, payload)} & stale)
    if mixed:
        rows = ", ".join(f"{algo} on {env_id}" for env_id, algo in mixed)
        raise SystemExit(
            f"the saved runs of {rows} were trained by an earlier revision of the agent; a new seed would mix the two "
            "in one row: pass --retrain-stale to train those rows again, or leave them out of --algos/--kinds"
        )
    return set()


def prepare_process() -> None:
    """Register palaestra's offline ids and use one torch thread."""
    import torch

    import palaestra  # noqa: F401  (registers the offline ids)

    torch.set_num_threads(1)


def train_runs(
    args: argparse.Namespace, todo: list[tuple[str, int | None, str, int]], save: Callable[[dict[str, Any]], None]
) -> None:
    """Train ``todo`` and ``save`` each run's record as it finishes: in this process with ``--jobs 1``, else on Ray.

    On Ray (:func:`benchmarks.harness.run_each`, the engine of ``palaestra sweep``) ``--jobs`` runs train at a time
    on this machine, or ``--address`` sends them to a cluster.
    """
    if args.jobs > 1 or args.address is not None:
        import gymnasium as gym

        for env_id, size in dict.fromkeys((env_id, size) for env_id, size, _, _ in todo):
            gym.make(env_id, dataset_size=size).get_minari_dataset()  # generate missing data here, not in racing trials
    runs = {
        f"{env_id} {algo} seed {seed}": {"args": args, "env_id": env_id, "size": size, "algo": algo, "seed": seed}
        for env_id, size, algo, seed in todo
    }
    run_each(train_run, runs, save, jobs=args.jobs, address=args.address)


def merge_runs_saved_meanwhile(payload: dict[str, Any], path: Path, retrained: set[tuple[str, str]] = frozenset()) -> None:
    """Add to ``payload`` the runs (and data scores) another invocation saved to ``path`` with the same settings.

    So two invocations with disjoint ``--kinds`` or ``--seeds`` can fill one results file side by side. The stale
    runs of the ``retrained`` rows, which ``--retrain-stale`` dropped, stay out.
    """
    saved = add_runs_saved_meanwhile(
        payload, path, run_key, RUN_SELECTION, keep=lambda run: not (run_key(run)[:2] in retrained and is_stale(run))
    )
    if saved is not None:
        payload.setdefault("data_scores", {}).update(
            {env_id: score for env_id, score in saved.get("data_scores", {}).items() if env_id not in payload["data_scores"]}
        )


def train_missing_runs(
    args: argparse.Namespace,
    payload: dict[str, Any],
    results_dir: Path = RESULTS_DIR,
    readme: Path = README,
    retrained: set[tuple[str, str]] = frozenset(),
) -> None:
    """Train every (dataset, algorithm, seed) run not yet in ``payload``, saving and reporting after each."""

    def save(run: dict[str, Any]) -> None:
        payload["runs"].append(run)
        merge_runs_saved_meanwhile(payload, results_dir / f"{args.name}.json", retrained)
        report(args, payload, results_dir, readme)
        write_results(args.name, payload, results_dir)  # after every run: a rerun resumes from here
        last = run["eval_history"][-1]["normalized_score"]
        print(f"{run['env_id']} {run['algo']} seed {run['seed']}: last score {last:.1f} ({run['seconds']:.0f} s)", flush=True)

    train_runs(args, missing_runs(args, payload), save)


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options a results file records and a rerun must match (not output names, modes or parallelism)."""
    return {
        k: v
        for k, v in vars(args).items()
        if k not in ("name", "section", "fresh", "report_only", "jobs", "address", "retrain_stale")
    }


def main(argv: list[str] | None = None, results_dir: Path = RESULTS_DIR, readme: Path = README) -> None:
    args = parse_args(argv)
    prepare_process()
    payload = {"runs": [], **load_resumable(args.name, run_settings(args), args.fresh, results_dir, selection=RUN_SELECTION)}
    if args.report_only and not payload["runs"]:
        raise SystemExit(f"{results_dir / args.name}.json holds no finished runs made with these settings")
    if not args.report_only:  # a report leaves the record of the machine that trained the runs as it is
        retrained = refuse_mixed_revisions(args, payload)
        payload["machine"] = machine_info(torch_threads=1)
        train_missing_runs(args, payload, results_dir, readme, retrained)
    print(report(args, payload, results_dir, readme))
    write_results(args.name, payload, results_dir)


if __name__ == "__main__":
    main()
