"""Common helpers of every benchmark: timing (``palaestra.throughput``), machine facts, JSON results, README tables.

A benchmark script measures its candidates and the baseline in the same run, interleaved, and reports
ratios against that baseline: absolute times on a shared 2-core machine are noisy, ratios much less so.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from palaestra.sweep import changed_settings as changed_settings  # re-exported for the benchmarks
from palaestra.tables import markdown_table as markdown_table  # re-exported for the benchmarks
from palaestra.throughput import Timing, time_callables

__all__ = [
    "README",
    "RESULTS_DIR",
    "Timing",
    "add_runs_saved_meanwhile",
    "changed_settings",
    "compare_means",
    "load_resumable",
    "machine_info",
    "markdown_table",
    "render_readme_section",
    "run_each",
    "time_callables",
    "train_with_evaluations",
    "write_results",
]

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
_PACKAGES = ("palaestra", "torch", "numpy", "gymnasium", "stable-baselines3", "minari", "mujoco")


def machine_info(torch_threads: int | None = None) -> dict[str, Any]:
    """CPU, core count, Python and package versions, and the torch thread count the benchmark used."""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "torch_threads": torch_threads,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` (plus machine facts under ``"machine"`` unless present) to ``results_dir/name.json``.

    The file is written to a temporary name and renamed, so an interrupted run never leaves half a file.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"result name must use letters, digits, '_', '.', '-' only, got {name!r}")
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), **payload} if "machine" not in payload else payload
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def load_resumable(
    name: str,
    args: dict[str, Any],
    fresh: bool = False,
    results_dir: Path = RESULTS_DIR,
    selection: Collection[str] = (),
) -> dict[str, Any]:
    """The saved payload of ``name`` to resume from, or ``{"args": args}`` when there is none or ``fresh``.

    A benchmark that writes its payload after every run and starts from this picks up where an interrupted
    invocation stopped. The ``selection`` keys of ``args`` only choose which runs to make (tasks, seeds): they may
    differ from the saved ones, so a table grows by a seed without starting over, and the saved value is updated.

    Raises:
        SystemExit: If the saved runs were made with other settings and ``fresh`` is not set (resuming would
            mix them; starting over would overwrite them).
    """
    path = results_dir / f"{name}.json"
    if fresh or not path.exists():
        return {"args": args}
    saved = json.loads(path.read_text())
    old = saved.get("args") or {}
    changed = changed_settings(old, args, selection)
    if changed:
        details = ", ".join(f"{key}: saved {old.get(key)!r}, now {args.get(key)!r}" for key in changed)
        raise SystemExit(
            f"{path} holds runs made with other settings ({details}); rerun with the saved settings to resume, "
            "or pass --fresh to replace them"
        )
    saved["args"] = {**old, **{key: args[key] for key in selection if key in args}}
    return saved


def add_runs_saved_meanwhile(
    payload: dict[str, Any],
    path: Path,
    key: Callable[[dict[str, Any]], Any],
    selection: Collection[str] = (),
    keep: Callable[[dict[str, Any]], bool] = lambda run: True,
) -> dict[str, Any] | None:
    """Add to ``payload["runs"]`` the runs another invocation saved to ``path`` since ``payload`` was loaded.

    So two invocations of a resumable benchmark (disjoint seeds, say) can fill one results file side by side.
    Runs are told apart by ``key``; saved runs that ``keep`` refuses stay out. Nothing is added when the file is
    missing or its settings differ from ``payload["args"]`` outside ``selection``.

    Returns:
        The saved payload whose runs were merged, or ``None``.
    """
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if changed_settings(saved.get("args", {}), payload["args"], selection):
        return None  # runs made with other settings are not mixed in
    have = {key(run) for run in payload["runs"]}
    payload["runs"].extend(run for run in saved["runs"] if key(run) not in have and keep(run))
    return saved


def train_with_evaluations(agent: Any, env: Any, steps: int, eval_every: int, n_episodes: int) -> dict[str, Any]:
    """Train an offline agent for ``steps`` gradient steps in one ``learn`` call, evaluating every ``eval_every``.

    One call keeps step-dependent schedules (IQL's cosine learning rate) spanning the whole run. Returns the
    curve of D4RL-normalised scores (x100, ``n_episodes`` deterministic episodes each), the final score (mean of
    the last two evaluations) and the gradient steps per second with evaluation time left out.
    """
    from palaestra.evaluation import evaluate

    curve: list[float] = []
    eval_seconds = 0.0

    def evaluate_now(model: Any) -> None:
        nonlocal eval_seconds
        if model.num_timesteps % eval_every == 0:
            started = time.perf_counter()
            result = evaluate(model, env, n_episodes=n_episodes, seed=10_000 + model.seed)
            curve.append(100.0 * float(env.get_normalized_score(result.mean)))
            eval_seconds += time.perf_counter() - started

    started = time.perf_counter()
    agent.learn(steps, callback=evaluate_now)
    seconds = time.perf_counter() - started - eval_seconds
    final_score = sum(curve[-2:]) / len(curve[-2:]) if curve else float("nan")  # nan: no evaluation ran
    return {"curve": curve, "final_score": final_score, "steps_per_second": steps / seconds}


def run_each(
    train: Callable[..., dict[str, Any]],
    runs: Mapping[str, dict[str, Any]],
    save: Callable[[dict[str, Any]], None],
    *,
    jobs: int = 1,
    address: str | None = None,
) -> None:
    """Call ``train(**kwargs)`` for every named run and ``save`` each returned record as that run finishes.

    With ``jobs=1`` and no ``address`` the runs are trained one after another in this process (Ray is not
    needed). Otherwise every run is a Ray Tune trial of :func:`palaestra.sweep.run_trials`, the engine of
    ``palaestra sweep``: ``jobs`` at a time on a local Ray, or as many as the cluster at ``address`` holds
    (each node needs the repository on its path, e.g. started from a checkout). A trial holds one CPU and trains
    with one torch thread; its record travels back as JSON and is saved here, in the driver, as it arrives.

    ``train`` must be importable by name (a module-level function) and its records JSON-serialisable. A run that
    raises does not stop the others under Ray; after they end, a :class:`RuntimeError` names every failed run.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 and address is None:
        for kwargs in runs.values():
            save(train(**kwargs))
        return
    from palaestra.sweep import TrialOutcome, import_ray, run_trials

    ray = import_ray()
    started_here = not ray.is_initialized()
    failures: list[str] = []

    def on_complete(outcome: TrialOutcome) -> None:
        if outcome.error is not None:
            failures.append(f"{outcome.name}: {outcome.error}")
        elif "record" in outcome.metrics:
            save(json.loads(outcome.metrics["record"]))

    configs = [{"name": name, "kwargs": kwargs} for name, kwargs in runs.items()]
    try:
        with tempfile.TemporaryDirectory(prefix="palaestra-runs-") as experiment:  # resuming is the caller's job
            outcomes = run_trials(
                functools.partial(_report_record, train),
                configs,
                Path(experiment),
                address=address,
                num_cpus=jobs if address is None else None,
                describe=lambda metrics: f"{metrics['seconds']:.0f} s" if "seconds" in metrics else "done",
                on_complete=on_complete,
            )
    finally:
        if started_here:
            ray.shutdown()
    unfinished = len(runs) - len(outcomes) + sum(not o.metrics and o.error is None for o in outcomes)
    if failures or unfinished:
        ended = f"{len(failures)} run(s) failed ({'; '.join(failures)})" if failures else ""
        stopped = f"{unfinished} run(s) did not finish" if unfinished else ""
        raise RuntimeError(f"{', '.join(filter(None, (ended, stopped)))}; the finished runs are saved")


def _report_record(train: Callable[..., dict[str, Any]], config: dict[str, Any]) -> None:
    """A trial of :func:`run_each`: one torch thread, ``train(**kwargs)``, its record reported to Tune as JSON."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    record = train(**config["kwargs"])
    seconds = {"seconds": float(record["seconds"])} if "seconds" in record else {}
    tune.report({"record": json.dumps(record), **seconds})


def compare_means(a: Sequence[float], b: Sequence[float]) -> str:
    """Whether ``a``'s mean over seeds is above, below or level with ``b``'s, by disjoint bootstrap 95% CIs."""
    import numpy as np

    from palaestra.evaluation import bootstrap_ci

    (a_low, a_high), (b_low, b_high) = bootstrap_ci(np.asarray(a)), bootstrap_ci(np.asarray(b))
    if a_low > b_high:
        return "above (CIs disjoint)"
    if a_high < b_low:
        return "below (CIs disjoint)"
    return "level with (CIs overlap)"


def mean_ci(values: Sequence[float]) -> str:
    """``"mean [low, high]"`` with the 95% bootstrap CI, two decimals (for a table cell)."""
    import numpy as np

    from palaestra.evaluation import bootstrap_ci

    low, high = bootstrap_ci(np.asarray(values))
    return f"{np.mean(values):.2f} [{low:.2f}, {high:.2f}]"


def render_readme_section(section: str, body: str, readme: Path = README) -> None:
    """Replace the text between ``<!-- section:start -->`` and ``<!-- section:end -->`` in ``readme``.

    A section that does not exist yet is appended under a ``## section`` heading.
    """
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.DOTALL)
    else:
        text = f"{text.rstrip()}\n\n## {section}\n\n{block}\n"
    readme.write_text(text)


def publish(name: str, section: str, body: str, saved: bool = True) -> None:
    """Print a benchmark's report; when its results were ``saved``, also render it into its README section."""
    print(body)
    if saved:
        render_readme_section(section, body)
        print(f"results: {RESULTS_DIR / (name + '.json')}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
