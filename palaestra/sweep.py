"""Multi-seed, multi-config training on Ray Tune: what ``palaestra sweep`` runs.

Two layers. :func:`run_trials` is the engine: it runs one Python function per config as a Ray Tune trial
(``tune.Tuner`` over a grid of the configs, ``tune.with_resources`` per trial, results under
``RunConfig(storage_path=...)``) on a local Ray or on a cluster (``address``), prints one line per finished or
failed trial, and resumes an interrupted run of the same experiment with ``Tuner.restore`` (finished and failed
trials are kept, unfinished ones run again). The benchmarks that train many independent runs use it too.

:func:`sweep` builds on it: every (env, grid point, seed) is one trial that trains with ``palaestra train``'s own
path (:func:`palaestra.cli.train_model`, so any ``--algo`` the command line knows) into its own run directory,
reports every log dump of the algorithm to Tune as it trains, then evaluates the trained policy with
:func:`palaestra.evaluation.evaluate` and reports the mean return (and the D4RL-normalised score on offline ids).
It writes ``results.json`` and ``results.md`` (per config: the mean over seeds of the final evaluation with a 95%
bootstrap CI; with several envs, rliable's interquartile mean over envs and seeds with its stratified-bootstrap
CI) and ``learning_curves.png`` (:func:`palaestra.plotting.plot_runs` over the run directories).

Everything a user can get wrong (the algorithm, an env, a grid key or value, the output directory, the cluster
address, a missing Ray) raises :class:`SweepError` before the first trial starts. A rerun into the same output
directory with other settings stops and names them.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stable_baselines3.common.logger import KVWriter

__all__ = [
    "INSTALL_HINT",
    "SweepError",
    "SweepSpec",
    "TrialOutcome",
    "changed_settings",
    "parse_grid",
    "run_trials",
    "sweep",
]

INSTALL_HINT = 'pip install "palaestra[distributed]"'
SETTINGS_FILE = "sweep.json"
EXPERIMENT = "ray"  # the Tune experiment's folder inside the output directory


class SweepError(ValueError):
    """A sweep that cannot start as asked: one line saying what was wrong and what was expected."""


@dataclass(frozen=True)
class TrialOutcome:
    """One trial's end: its config, the last metrics it reported, and its error (``None`` if it finished)."""

    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None


# --------------------------------------------------------------------------------------------- the engine


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """The keys whose values differ between two settings dictionaries, leaving out ``ignore``."""
    skipped = set(ignore)
    return sorted(key for key in set(old) | set(new) if key not in skipped and old.get(key) != new.get(key))


def import_ray() -> Any:
    """The ``ray`` module with Tune, or a :class:`SweepError` naming the pip command."""
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise SweepError(f"palaestra sweep runs on Ray Tune, which is not installed; {INSTALL_HINT}") from None
    return ray


def check_address(address: str | None) -> None:
    """Refuse a cluster address nothing answers at (``auto`` and ``None`` are checked by ``ray.init``)."""
    if address in (None, "auto", "local"):
        return
    match = re.fullmatch(r"(?:ray://)?\[?([\w.:-]+?)\]?:(\d+)", address)
    if match is None:
        raise SweepError(f"--address must be auto, local, host:port or ray://host:port, got {address!r}")
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as error:
        raise SweepError(f"cannot reach a Ray cluster at {address}: {error.strerror or error}") from None


def start_ray(address: str | None, num_cpus: int | None, verbose: bool) -> Any:
    """``ray.init`` on a local Ray (``num_cpus`` of this machine, default all) or the cluster at ``address``."""
    ray = import_ray()
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's older reporter: silent at verbose=0
        # a failed trial's traceback is in its error file and the progress line names its exception
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    if ray.is_initialized():
        return ray
    check_address(address)
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose, "configure_logging": verbose}
    if address in (None, "local"):
        options["num_cpus"] = num_cpus
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except ConnectionError as error:
        raise SweepError(f"cannot connect to Ray at {address}: {' '.join(str(error).split())}") from None
    return ray


def _line_printer(
    total: int, describe: Callable[[dict[str, Any]], str], on_complete: Callable[[TrialOutcome], None] | None
) -> Any:
    """A Tune ``Callback`` that prints ``[k/total] finished NAME: ...`` or ``[k/total] failed NAME: error``.

    It hands each ended trial's :class:`TrialOutcome` to ``on_complete`` (in the driver, as the trial ends).
    """
    from ray.tune import Callback

    class OneLinePerTrial(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.ended = 0

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.ended += 1
            config, metrics = trial.config["config"], dict(trial.last_result or {})
            print(f"[{self.ended}/{total}] finished {config['name']}: {describe(metrics)}", flush=True)
            if on_complete is not None:
                on_complete(TrialOutcome(config["name"], config, metrics, None))

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.ended += 1
            config, error = trial.config["config"], _error_line(trial)
            print(f"[{self.ended}/{total}] failed {config['name']}: {error}", flush=True)
            if on_complete is not None:
                on_complete(TrialOutcome(config["name"], config, dict(trial.last_result or {}), error))

    return OneLinePerTrial()


def _error_line(trial: Any) -> str:
    """The last line of a failed trial's traceback (the exception and its message)."""
    return _last_line(Path(getattr(trial, "error_file", None) or ""))


def _last_line(path: Path) -> str:
    """The last non-empty line of an error file, without the exception's module path."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return "raised an error (no error file)"
    return re.sub(r"^(?:\w+\.)+(\w+:)", r"\1", lines[-1]) if lines else "raised an error"


def run_trials(
    function: Callable[[dict[str, Any]], None],
    configs: Sequence[dict[str, Any]],
    out: Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: float = 1,
    verbose: bool = False,
    describe: Callable[[dict[str, Any]], str] = lambda metrics: "done",
    on_complete: Callable[[TrialOutcome], None] | None = None,
) -> list[TrialOutcome]:
    """Run ``function(config)`` for every config as a Ray Tune trial; resume the experiment in ``out`` if there is one.

    Args:
        function: The trial, run in a Ray worker; it reports with ``ray.tune.report`` (its last report is the
            outcome's ``metrics``) and signals failure by raising.
        configs: One dict per trial, each with a unique ``"name"`` (shown in the progress lines).
        out: Folder of the Tune experiment (``out/ray``); an experiment already there is resumed: its finished and
            failed trials are not run again, so the caller passes the same configs.
        address: ``None`` or ``"local"`` for a Ray on this machine, ``"auto"`` or ``host:port`` or
            ``ray://host:port`` for a running cluster.
        num_cpus: CPUs of the local Ray (default: all); ignored on a cluster.
        cpus_per_trial: CPUs Tune reserves per trial (``tune.with_resources``).
        verbose: Show Ray's own logs and Tune's status tables instead of one line per trial.
        describe: Turns a finished trial's last metrics into the text after its name.
        on_complete: Called in this process with each trial's outcome as the trial ends (to save results as they
            come); not called again for the trials a resumed experiment had already ended.

    Returns:
        Each trial's outcome, in the order of ``configs``.
    """
    names = [config["name"] for config in configs]
    if len(set(names)) != len(names):
        raise SweepError("every trial needs its own name")
    start_ray(address, num_cpus, verbose)
    from ray import tune

    trainable = tune.with_resources(functools.partial(_call_with_config, function), {"cpu": cpus_per_trial})
    experiment = out.resolve() / EXPERIMENT
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(
            str(experiment), trainable, resume_unfinished=True, resume_errored=False, restart_errored=False
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"config": tune.grid_search(list(configs))},
            tune_config=tune.TuneConfig(
                trial_name_creator=lambda trial: trial.config["config"]["name"],
                trial_dirname_creator=lambda trial: _safe_name(trial.config["config"]["name"]),
            ),
            run_config=tune.RunConfig(
                storage_path=str(out.resolve()),
                name=EXPERIMENT,
                verbose=2 if verbose else 0,
                callbacks=[_line_printer(len(configs), describe, on_complete)],
            ),
        )
    grid = tuner.fit()
    by_folder = {_safe_name(config["name"]): config for config in configs}
    outcomes = {}
    for result in (grid[index] for index in range(len(grid))):
        # a trial that failed in an earlier invocation comes back from a restore without its config
        config = result.config["config"] if result.config else by_folder[Path(result.path).name]
        error = None if result.error is None else _exception_line(result.error)
        if error is None and not result.metrics and (Path(result.path) / "error.txt").is_file():
            error = _last_line(Path(result.path) / "error.txt")
        outcomes[config["name"]] = TrialOutcome(config["name"], config, dict(result.metrics or {}), error)
    return [outcomes[name] for name in names if name in outcomes]


def _call_with_config(function: Callable[[dict[str, Any]], None], tune_config: dict[str, Any]) -> None:
    """A trial: ``function`` on its config (Tune hands each trial ``{"config": config}``, the grid's one key)."""
    function(tune_config["config"])


def _exception_line(error: BaseException) -> str:
    """``Type: message`` of the exception a trial raised (Ray wraps it in a ``RayTaskError``)."""
    cause = getattr(error, "cause", None) or error
    message = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


def _safe_name(name: str) -> str:
    """A file name made of ``name`` (characters other than letters, digits, ``.=,_-`` become ``_``)."""
    return re.sub(r"[^\w.=,-]", "_", name)


# ---------------------------------------------------------------------------------------- palaestra sweep


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains: ``algo`` on each env, for every grid point, with seeds ``0 .. seeds - 1``."""

    algo: str
    envs: tuple[str, ...]
    seeds: int
    timesteps: int
    grid: dict[str, list[Any]] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 10

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values (one empty point without a grid), in the grid's order."""
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]

    def settings(self) -> dict[str, Any]:
        """The JSON form of the spec, saved beside the results to check a rerun against."""
        return json.loads(json.dumps(asdict(self), default=repr))


def parse_grid(items: Sequence[str] | None) -> dict[str, list[Any]]:
    """``["learning_rate=1e-3,3e-4", "batch_size=64"]`` -> ``{"learning_rate": [0.001, 0.0003], "batch_size": [64]}``.

    Each value is a Python literal (else a string); a tuple or list value is written in brackets, whose commas
    do not split values (``net_arch=[64,64],[256,256]``).
    """
    from palaestra.cli import parse_literal

    grid: dict[str, list[Any]] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise SweepError(f"--grid takes key=value1,value2,..., got {item!r}")
        if key in grid:
            raise SweepError(f"--grid names {key!r} twice; give all its values in one key=v1,v2,...")
        grid[key] = [parse_literal(value) for value in _split_top_level(raw)]
    return grid


def _split_top_level(raw: str) -> list[str]:
    """Split at the commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    for char in raw:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def trial_configs(spec: SweepSpec, out: Path, threads: int) -> list[dict[str, Any]]:
    """One trial config per (env, grid point, seed), each with its name and run directory."""
    configs = []
    for env_id in spec.envs:
        for point in spec.points():
            label = point_label(point)
            for seed in range(spec.seeds):
                name = f"{env_id} {label} seed {seed}" if label else f"{env_id} seed {seed}"
                folder = _safe_name(label) if label else "default"
                configs.append(
                    {
                        "name": name,
                        "algo": spec.algo,
                        "env": env_id,
                        "env_kwargs": spec.env_kwargs,
                        "point": point,
                        "hyperparams": {**spec.hyperparams, **point},
                        "seed": seed,
                        "timesteps": spec.timesteps,
                        "eval_episodes": spec.eval_episodes,
                        "threads": threads,
                        "run_dir": str((out / "runs" / _safe_name(env_id) / folder / f"seed{seed}").resolve()),
                    }
                )
    return configs


def point_label(point: Mapping[str, Any]) -> str:
    """``learning_rate=0.001 batch_size=64`` (empty for the point of a sweep without a grid)."""
    return " ".join(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in point.items())


def train_trial(config: dict[str, Any]) -> None:
    """One sweep trial: :func:`train_and_evaluate`, reporting every log dump and the evaluation to Tune."""
    from ray import tune

    metrics = train_and_evaluate(config, log_writers=[_tune_writer()])
    tune.report({**metrics, "evaluated": True})


def train_and_evaluate(config: dict[str, Any], log_writers: Sequence[KVWriter] = ()) -> dict[str, Any]:
    """``palaestra train`` with a trial's config into its run directory, then an evaluation of the trained policy.

    Returns:
        ``mean_return`` with its 95% bootstrap CI (``ci_low``, ``ci_high``), the normalised scores on offline ids,
        and ``train_seconds``.
    """
    from palaestra import cli
    from palaestra.evaluation import evaluate

    def assignments(values: Mapping[str, Any]) -> list[str]:
        return [f"{key}={value!r}" for key, value in values.items()]

    argv = ["train", "--algo", config["algo"], "--env", config["env"], "--timesteps", str(config["timesteps"])]
    argv += ["--seed", str(config["seed"]), "--out", config["run_dir"], "--threads", str(config["threads"])]
    argv += ["--overwrite", "--no-progress-bar"]  # a trial run again after an interruption starts over
    if config["env_kwargs"]:
        argv += ["--env-kwargs", *assignments(config["env_kwargs"])]
    if config["hyperparams"]:
        argv += ["--hyperparams", *assignments(config["hyperparams"])]
    started = time.perf_counter()
    model, _ = cli.train_model(cli.build_parser().parse_args(argv), log_writers=list(log_writers))
    train_seconds = time.perf_counter() - started
    env = cli.make_policy_env(cli.get_algorithm(config["algo"]), config["env"], config["env_kwargs"])
    result = evaluate(model, env, n_episodes=config["eval_episodes"], seed=0, deterministic=True)
    metrics = {"mean_return": result.mean, "ci_low": result.ci_low, "ci_high": result.ci_high}
    metrics |= cli.normalized_scores(env, result)
    env.close()
    return {**metrics, "train_seconds": train_seconds}


def _tune_writer() -> KVWriter:
    """An SB3 logger output that reports each dump's numbers to Tune (``time/total_timesteps`` and the like)."""
    from ray import tune
    from stable_baselines3.common.logger import KVWriter

    class TuneWriter(KVWriter):  # type: ignore[misc]
        def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
            numbers = {
                key: float(value)
                for key, value in key_values.items()
                if isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            }
            if numbers:
                tune.report(numbers)

        def close(self) -> None:
            """Nothing to close."""

    return TuneWriter()


def check_spec(spec: SweepSpec) -> None:
    """Raise :class:`SweepError` for the first thing a sweep cannot train: algorithm, env, grid, counts."""
    from palaestra import cli

    for name, value, least in (("--seeds", spec.seeds, 1), ("--timesteps", spec.timesteps, 1), ("--eval-episodes",
                               spec.eval_episodes, 1)):  # fmt: skip
        if value < least:
            raise SweepError(f"{name} must be >= {least}, got {value}")
    if not spec.envs:
        raise SweepError("give at least one --env")
    overlap = sorted(set(spec.grid) & set(spec.hyperparams))
    if overlap:
        raise SweepError(f"{', '.join(overlap)} is both swept (--grid) and fixed (--hyperparams); give it in one")
    try:
        algorithm = cli.get_algorithm(spec.algo)
        for env_id in spec.envs:
            cli.check_env(algorithm, env_id, spec.env_kwargs)
        for point in spec.points():
            cli.check_hyperparameters(algorithm, {**spec.hyperparams, **point})
    except (cli.UsageError, ValueError) as error:
        raise SweepError(str(error)) from None


def check_out(out: Path, settings: dict[str, Any]) -> None:
    """Refuse an output directory that holds something other than this sweep (another sweep, other files)."""
    saved = out / SETTINGS_FILE
    if saved.is_file():
        old = json.loads(saved.read_text())
        changed = changed_settings(old, settings)
        if changed:
            details = "; ".join(f"{key}: saved {old.get(key)!r}, now {settings.get(key)!r}" for key in changed)
            raise SweepError(
                f"{out} holds a sweep made with other settings ({details}); rerun with the saved settings to resume "
                "it, or choose another --out"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SweepError(f"{out} exists and is not a palaestra sweep (no {SETTINGS_FILE}); choose another --out")


def sweep(
    spec: SweepSpec,
    out: str | os.PathLike[str],
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: int = 1,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train every (env, grid point, seed) of ``spec`` as a Ray Tune trial and write the results into ``out``.

    A trial uses ``cpus_per_trial`` CPUs and as many torch threads. Rerunning the same sweep into the same ``out``
    resumes it: finished (and failed) trials are not trained again.

    Returns:
        The ``results.json`` payload: the settings, one record per trial and one summary per config.

    Raises:
        SweepError: For anything that would stop the sweep before its first trial (see the module docstring).
    """
    if cpus_per_trial < 1:
        raise SweepError(f"--cpus-per-trial must be >= 1, got {cpus_per_trial}")
    if num_cpus is not None and num_cpus < cpus_per_trial:
        raise SweepError(f"--num-cpus ({num_cpus}) must be at least --cpus-per-trial ({cpus_per_trial})")
    folder = Path(out)
    check_spec(spec)
    settings = spec.settings()
    check_out(folder, settings)
    start_ray(address, num_cpus, verbose)  # before anything is written: Ray missing or the cluster unreachable
    configs = trial_configs(spec, folder, threads=cpus_per_trial)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    outcomes = run_trials(
        train_trial,
        configs,
        folder,
        address=address,
        num_cpus=num_cpus,
        cpus_per_trial=cpus_per_trial,
        verbose=verbose,
        describe=_describe_evaluation,
    )
    payload = summarize(spec, outcomes)
    write_results(folder, payload)
    return payload


def _describe_evaluation(metrics: dict[str, Any]) -> str:
    if "normalized_score" in metrics:
        return f"normalised score {metrics['normalized_score']:.1f} (mean return {metrics['mean_return']:.1f})"
    if "mean_return" in metrics:
        return f"mean return {metrics['mean_return']:.2f} ({metrics.get('train_seconds', math.nan):.0f} s)"
    return "finished without an evaluation"


def summarize(spec: SweepSpec, outcomes: Sequence[TrialOutcome]) -> dict[str, Any]:
    """The results payload: every trial's record, and per config the mean and 95% bootstrap CI over seeds."""
    from palaestra.evaluation import bootstrap_ci

    trials = []
    for outcome in outcomes:
        c, m = outcome.config, outcome.metrics
        finished = outcome.error is None and bool(m.get("evaluated"))
        record = {"env": c["env"], "point": c["point"], "seed": c["seed"], "run_dir": c["run_dir"]}
        record["status"] = "finished" if finished else ("failed" if outcome.error is not None else "unfinished")
        record["error"] = outcome.error
        for key in ("mean_return", "normalized_score", "train_seconds"):
            if finished and key in m:
                record[key] = float(m[key])
        trials.append(record)
    finished_runs = [t for t in trials if t["status"] == "finished"]
    scored = bool(finished_runs) and all("normalized_score" in t for t in finished_runs)
    metric = "normalized_score" if scored else "mean_return"
    configs = []
    for env_id in spec.envs:
        for point in spec.points():
            runs = [t for t in trials if t["env"] == env_id and t["point"] == point]
            values = np.array([t[metric] for t in runs if t["status"] == "finished" and metric in t])
            summary: dict[str, Any] = {"env": env_id, "point": point, "seeds": spec.seeds, "finished": int(values.size)}
            summary["errors"] = [f"seed {t['seed']}: {t['error']}" for t in runs if t["status"] == "failed"]
            if values.size:
                summary["mean"] = float(values.mean())
                summary["ci"] = list(bootstrap_ci(values))
            configs.append(summary)
    payload: dict[str, Any] = {"settings": spec.settings(), "metric": metric, "configs": configs, "trials": trials}
    if len(spec.envs) > 1:
        payload["iqm"] = [iqm_over_envs(spec, trials, metric, point) for point in spec.points()]
    return payload


def iqm_over_envs(spec: SweepSpec, trials: list[dict[str, Any]], metric: str, point: dict[str, Any]) -> dict[str, Any]:
    """Rliable's IQM of one grid point over every env and seed, with its 95% stratified-bootstrap CI.

    Needs every seed of every env finished (rliable's score matrix is runs x tasks); else the IQM is missing.
    """
    from palaestra.evaluation import iqm_with_ci

    columns = []
    for env_id in spec.envs:
        runs = [t for t in trials if t["env"] == env_id and t["point"] == point and t["status"] == "finished"]
        columns.append([t[metric] for t in sorted(runs, key=lambda t: t["seed"])])
    entry: dict[str, Any] = {"point": point}
    if all(len(column) == spec.seeds for column in columns):
        entry["iqm"], low, high = iqm_with_ci(np.asarray(columns, dtype=np.float64).T)
        entry["ci"] = [low, high]
    return entry


def render_markdown(payload: dict[str, Any]) -> str:
    """``results.md``: one row per config (and the IQM rows when the sweep spans several envs)."""
    from palaestra.tables import markdown_table

    s, metric = payload["settings"], payload["metric"]
    what = "D4RL-normalised score" if metric == "normalized_score" else "mean return"
    rows = []
    for summary in payload["configs"]:
        label = point_label(summary["point"]) or "(defaults)"
        if "mean" in summary:
            low, high = summary["ci"]
            cells = [f"{summary['mean']:.2f}", f"[{low:.2f}, {high:.2f}]"]
        else:
            cells = ["-", "-"]
        errors = "; ".join(summary["errors"]) or ""
        rows.append([summary["env"], label, f"{summary['finished']}/{summary['seeds']}", *cells, errors])
    text = markdown_table(["env", "config", "seeds finished", what, "95% CI", "errors"], rows)
    if "iqm" in payload:
        iqm_rows = []
        for entry in payload["iqm"]:
            label = point_label(entry["point"]) or "(defaults)"
            cells = [f"{entry['iqm']:.2f}", f"[{entry['ci'][0]:.2f}, {entry['ci'][1]:.2f}]"] if "iqm" in entry else ["-", "-"]
            iqm_rows.append([label, *cells])
        text += "\n\nIQM over envs and seeds (rliable, 95% stratified-bootstrap CI):\n\n"
        text += markdown_table(["config", f"IQM of the {what}", "95% CI"], iqm_rows)
    intro = (
        f"{s['algo']} on {', '.join(s['envs'])}, {s['timesteps']} timesteps per run, seeds 0-{s['seeds'] - 1}. "
        f"Each run's {what} over {s['eval_episodes']} evaluation episodes (deterministic actions, seed 0) after "
        "training; mean over seeds with a 95% percentile-bootstrap CI."
    )
    return f"{intro}\n\n{text}\n"


def write_results(folder: Path, payload: dict[str, Any]) -> None:
    """``results.json``, ``results.md`` and ``learning_curves.png`` (of the runs that wrote logs)."""
    from palaestra.plotting import PlotError, plot_runs

    (folder / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    (folder / "results.md").write_text(render_markdown(payload))
    runs = [t["run_dir"] for t in payload["trials"] if t["status"] == "finished"]
    if runs:
        try:
            plot_runs(runs, out=folder / "learning_curves.png", title=f"{payload['settings']['algo']} sweep")
        except PlotError as error:  # e.g. runs too short to log a row: the tables stand without the plot
            (folder / "learning_curves.txt").write_text(f"no learning curves: {error}\n")
