"""Learning curves of ``palaestra train`` runs, grouped by config, with 95% bootstrap bands across seeds.

:func:`plot_runs` is what ``palaestra plot RUN_DIR [RUN_DIR ...]`` calls. Each run directory is one written by
``palaestra train --out DIR``: its ``palaestra.json`` (algo, env, hyperparameters, seed, ...) and the
``progress.csv`` of SB3's CSV logger. Runs whose metadata agree on everything but ``seed`` (and how far they
got: ``timesteps_trained``, ``interrupted``) form one group, drawn as the mean over its runs with the 95%
percentile-bootstrap band of that mean (``scipy.stats.bootstrap``, 10 000 resamples, as
:func:`palaestra.evaluation.bootstrap_ci`); a group of one run is drawn as its line alone, without a band, and its
legend entry says so.

The y value (``key``) is one column of ``progress.csv``; by default the first of: the evaluation score or return
(``eval/normalized_score``, ``eval/mean_return``, ``eval/mean_reward``, ``eval/dev_em``, any other ``eval/``
reward-like column), ``rollout/ep_rew_mean``, the first reward-like column (a name with ``rew``, ``return``,
``score``, ``success`` or ``em``), chosen per group among the columns all of its runs log. Rows where the key is
blank (SB3's CSV logger leaves a blank for a key not logged at that dump) are dropped.

The x value is the first step column a run logs: ``time/total_timesteps`` (SB3 and palaestra's online agents),
``time/gradient_steps`` (offline agents), ``time/iterations``, ``time/episodes``. A run with none of these
(the LLM agents log one row per RL update without a step count) is indexed by its rows, counted from 1: the
rows of the RL phase for most keys, which is the RL update count, and the rows of the SFT warm start for the
``sft/`` keys. Runs of one group are aligned on the union of their x values inside the range all of them
cover, each run linearly interpolated there (exact where a run logged that x; never extrapolated past the
shortest run); more than 1000 such points are thinned to 1000 evenly spaced ones.

Matplotlib (the ``bench`` extra) draws through its Agg canvas, without touching pyplot's global backend; the
PNG is written to a temporary file in the destination folder and renamed into place, so a failure leaves no
partial file. This module imports neither torch nor matplotlib when imported.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CONFIDENCE_LEVEL",
    "METADATA_FILE",
    "PROGRESS_FILE",
    "STEP_COLUMNS",
    "Curve",
    "PlotError",
    "PlotResult",
    "bootstrap_band",
    "default_out",
    "plot_learning_curves",
    "plot_runs",
]

METADATA_FILE = "palaestra.json"
PROGRESS_FILE = "progress.csv"
CONFIDENCE_LEVEL = 0.95
N_RESAMPLES = 10_000
MAX_POINTS = 1000
# Step columns in order of preference, with their axis labels.
STEP_COLUMNS = {
    "time/total_timesteps": "env steps",
    "time/gradient_steps": "gradient steps",
    "time/iterations": "iterations",
    "time/episodes": "episodes",
}
LOG_ROWS = "updates (log rows)"  # the x of a run without a step column
SFT_LOG_ROWS = "SFT log rows"
SINGLE_RUN_OUT = "learning_curve.png"
MULTI_RUN_OUT = "learning_curves.png"
# Metadata that differs between runs of one config: the seed, and how far a run got (an interrupted run's steps).
NOT_CONFIG = ("seed", "timesteps_trained", "interrupted")
PREFERRED_EVAL_KEYS = ("eval/normalized_score", "eval/mean_return", "eval/mean_reward", "eval/dev_em")
ROLLOUT_KEY = "rollout/ep_rew_mean"
_REWARD_LIKE = re.compile(r"rew|return|score|success|(^|_)em$")
_TRAIN_COMMAND = "a `palaestra train --out` directory"


class PlotError(ValueError):
    """A run directory, key or output path that cannot be plotted: a user error, reported in one line."""


@dataclass(frozen=True)
class Curve:
    """One drawn curve: a group of runs sharing a config, averaged over its runs (seeds).

    Attributes:
        label: Legend label (without the seed count).
        key: The ``progress.csv`` column on the y axis.
        x_column: The column on the x axis (or :data:`LOG_ROWS` / :data:`SFT_LOG_ROWS`).
        runs: The run directories of the group, in the order given.
        x: The common x values, shape ``(T,)``.
        mean: Mean over runs at each x, shape ``(T,)``.
        ci_low: Lower end of the bootstrap band, shape ``(T,)``; ``None`` for a single run.
        ci_high: Upper end of the bootstrap band, shape ``(T,)``; ``None`` for a single run.
    """

    label: str
    key: str
    x_column: str
    runs: tuple[Path, ...]
    x: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None

    @property
    def n_runs(self) -> int:
        """Number of runs (seeds) averaged."""
        return len(self.runs)


@dataclass(frozen=True)
class PlotResult:
    """What :func:`plot_runs` drew and where.

    Attributes:
        path: The PNG written.
        curves: One :class:`Curve` per config group, in the order the groups' first runs were given.
        default_key: ``True`` when the key was chosen by default rather than passed.
    """

    path: Path
    curves: tuple[Curve, ...]
    default_key: bool

    @property
    def keys(self) -> tuple[str, ...]:
        """The distinct keys plotted, in curve order."""
        return tuple(dict.fromkeys(curve.key for curve in self.curves))

    @property
    def n_runs(self) -> int:
        """Number of runs drawn, over all curves."""
        return sum(curve.n_runs for curve in self.curves)

    def summary(self) -> str:
        """``"wrote 2 curves (4 runs) of rollout/ep_rew_mean to PATH"``, noting a default key."""
        curves = f"{len(self.curves)} curve{'s' if len(self.curves) != 1 else ''}"
        runs = f"{self.n_runs} run{'s' if self.n_runs != 1 else ''}"
        chosen = " (the default key; pass --key to plot another)" if self.default_key else ""
        return f"wrote {curves} ({runs}) of {', '.join(self.keys)}{chosen} to {self.path}"


@dataclass(frozen=True)
class _Run:
    directory: Path
    metadata: dict[str, Any]
    columns: dict[str, np.ndarray]  # in the CSV's order; blanks are NaN

    def has(self, key: str) -> bool:
        return key in self.columns and bool(np.isfinite(self.columns[key]).any())

    def logged_keys(self) -> list[str]:
        return [key for key in self.columns if self.has(key)]


def default_out(run_dirs: Sequence[str | os.PathLike[str]]) -> Path:
    """``<run>/learning_curve.png`` for a single run directory, else ``learning_curves.png`` in the current directory."""
    return Path(run_dirs[0]) / SINGLE_RUN_OUT if len(run_dirs) == 1 else Path(MULTI_RUN_OUT)


def plot_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    key: str | None = None,
    out: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> PlotResult:
    """Plot the learning curves of ``palaestra train`` runs into a PNG, one curve per config (seeds averaged).

    Args:
        run_dirs: Directories written by ``palaestra train --out``; a directory given twice counts once.
        key: The ``progress.csv`` column to plot; ``None`` chooses one per group (see the module docstring).
        out: The PNG to write (its folder must exist); ``None``: :func:`default_out`. An existing file is replaced.
        title: Figure title; ``None``: the env ids.

    Returns:
        The path written and the curves drawn.

    Raises:
        PlotError: For a missing run directory or one without ``palaestra.json`` or ``progress.csv``, an empty
            ``progress.csv``, a ``key`` that not every run logs, groups that share no x range, an ``out`` that is
            not a ``.png`` in an existing folder, or a missing matplotlib.
    """
    if not run_dirs:
        raise PlotError("give at least one run directory (written by `palaestra train --out DIR`)")
    directories = [Path(directory) for directory in dict.fromkeys(os.fspath(d) for d in run_dirs)]
    runs = [_load_run(directory) for directory in directories]
    path = _check_out(default_out(directories) if out is None else Path(out))
    if key is not None:
        _check_key(runs, key)
    groups = _group(runs)
    labels = _labels([group[0].metadata for group in groups])
    curves = []
    for label, group in zip(labels, groups, strict=True):
        group_key = key if key is not None else _default_key(group)
        curves.append(_curve(label, group_key, group))
    if len({curve.key for curve in curves}) > 1:  # default keys that differ between groups: say which is which
        curves = [_relabel(curve, f"{curve.label} [{curve.key}]") for curve in curves]
    figure = _figure(curves, title=_title(groups) if title is None else title)
    _save_png(figure, path)
    return PlotResult(path=path, curves=tuple(curves), default_key=key is None)


def bootstrap_band(
    y: np.ndarray, confidence_level: float = CONFIDENCE_LEVEL, seed: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-column percentile-bootstrap interval of the mean over rows (runs): ``(low, high)``, or ``None`` for one row.

    The same interval as :func:`palaestra.evaluation.bootstrap_ci` applied to each column (``scipy.stats.bootstrap``,
    10 000 resamples, ``rng=seed``), computed for all columns at once.

    Args:
        y: Shape ``(n_runs, T)``.
        confidence_level: Coverage of the band.
        seed: Seed of the resampling.
    """
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if y.shape[0] < 2:
        return None
    from scipy import stats  # imported here: importing this module stays cheap

    result = stats.bootstrap(
        (y,),
        np.mean,
        axis=0,
        confidence_level=confidence_level,
        n_resamples=N_RESAMPLES,
        method="percentile",
        rng=seed,
        batch=max(1, 2_000_000 // max(1, y.size)),  # bounds the memory of the resamples
    )
    return np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)


def plot_learning_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    xlabel: str = "env steps",
    ylabel: str = "return",
    title: str = "",
    confidence_level: float = CONFIDENCE_LEVEL,
    log_y: bool = False,
) -> Path:
    """Plot the mean over seeds of each curve with its bootstrap confidence band and save a PNG (used by the benchmarks).

    A curve of one seed is drawn without a band (its legend says ``no band``). The folder of ``path`` is created.

    Args:
        curves: ``{label: (x, y)}`` with ``x`` of shape ``(T,)`` and ``y`` of shape ``(n_seeds, T)``.
        path: Output PNG path.
        xlabel: Label of the x axis.
        ylabel: Label of the y axis.
        title: Figure title.
        confidence_level: Coverage of the band (a per-point bootstrap of the mean over seeds).
        log_y: Use a logarithmic y axis.

    Returns:
        ``path``.

    Raises:
        ValueError: If a curve's ``y`` has not as many points per seed as its ``x``.
    """
    drawn = []
    for label, (x, y) in curves.items():
        x, y = np.asarray(x), np.atleast_2d(np.asarray(y, dtype=np.float64))
        if y.shape[1] != x.shape[0]:
            raise ValueError(f"curve {label!r}: y has {y.shape[1]} points per seed but x has {x.shape[0]}")
        band = bootstrap_band(y, confidence_level)
        low, high = (None, None) if band is None else band
        runs = tuple(Path(f"seed {i}") for i in range(y.shape[0]))
        drawn.append(Curve(label, ylabel, xlabel, runs, x, y.mean(axis=0), low, high))
    figure = _figure(drawn, title=title, xlabel=xlabel, ylabel=ylabel, log_y=log_y, confidence_level=confidence_level)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_png(figure, path)
    return path


# --- reading runs ----------------------------------------------------------------------------------------------------
def _load_run(directory: Path) -> _Run:
    if not directory.exists():
        raise PlotError(f"run directory {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise PlotError(f"{str(directory)!r} is not a directory; expected {_TRAIN_COMMAND}")
    metadata_path, progress_path = directory / METADATA_FILE, directory / PROGRESS_FILE
    for required in (metadata_path, progress_path):
        if not required.is_file():
            raise PlotError(f"{str(directory)!r} has no {required.name}; expected {_TRAIN_COMMAND}")
    try:
        metadata = json.loads(metadata_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PlotError(f"{str(metadata_path)!r} is not valid JSON ({error}); expected {_TRAIN_COMMAND}") from None
    if not isinstance(metadata, dict):
        raise PlotError(f"{str(metadata_path)!r} does not hold a JSON object; expected {_TRAIN_COMMAND}")
    columns = _read_progress(progress_path)
    return _Run(directory, metadata, columns)


def _read_progress(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows or not rows[0] or len(rows) < 2:
        raise PlotError(f"{str(path)!r} is empty: the run stopped before its first log entry; train it longer or leave it out")
    header, body = rows[0], rows[1:]
    values = np.full((len(body), len(header)), np.nan)
    for i, row in enumerate(body):
        for j, cell in enumerate(row[: len(header)]):
            values[i, j] = _number(cell)
    return {name: values[:, j] for j, name in enumerate(header)}


def _number(cell: str) -> float:
    try:
        return float(cell) if cell.strip() else math.nan
    except ValueError:  # a text value: not plottable
        return math.nan


# --- keys ------------------------------------------------------------------------------------------------------------
def _check_key(runs: Sequence[_Run], key: str) -> None:
    lacking = [run for run in runs if not run.has(key)]
    if len(lacking) == len(runs):
        available = list(dict.fromkeys(name for run in runs for name in run.logged_keys()))
        raise PlotError(f"no run logs {key!r}; available keys: {', '.join(available)}")
    if lacking:
        shared = [name for name in runs[0].logged_keys() if all(run.has(name) for run in runs)]
        names = ", ".join(repr(str(run.directory)) for run in lacking)
        raise PlotError(
            f"{names} {'does' if len(lacking) == 1 else 'do'} not log {key!r}; leave {'it' if len(lacking) == 1 else 'them'}"
            f" out or choose a key every run logs: {', '.join(shared) or '(none)'}"
        )


def _key_candidates(run: _Run) -> list[str]:
    """The keys :func:`plot_runs` would choose by default, best first (only those the run logs)."""
    logged = run.logged_keys()
    reward_like = [k for k in logged if not k.startswith("time/") and _REWARD_LIKE.search(k.rpartition("/")[2])]
    ordered = [
        *PREFERRED_EVAL_KEYS,
        *(k for k in reward_like if k.startswith("eval/")),
        ROLLOUT_KEY,
        *reward_like,
    ]
    return [k for k in dict.fromkeys(ordered) if run.has(k)]


def _default_key(group: Sequence[_Run]) -> str:
    for candidate in _key_candidates(group[0]):
        if all(run.has(candidate) for run in group):
            return candidate
    names = ", ".join(repr(str(run.directory)) for run in group)
    shared = [k for k in group[0].logged_keys() if all(run.has(k) for run in group)]
    raise PlotError(f"{names}: no reward-like key to plot by default; pass --key, one of: {', '.join(shared) or '(none)'}")


# --- grouping and aligning -------------------------------------------------------------------------------------------
def _config(metadata: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in metadata.items() if k not in NOT_CONFIG}, sort_keys=True, default=str)


def _group(runs: Iterable[_Run]) -> list[list[_Run]]:
    groups: dict[str, list[_Run]] = {}
    for run in runs:
        groups.setdefault(_config(run.metadata), []).append(run)
    return list(groups.values())


def _flat(metadata: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """``{(field, shown name): value}``: ``hyperparams`` and ``env_kwargs`` entries under their own names."""
    flat: dict[tuple[str, str], str] = {}
    for name, value in metadata.items():
        if name in NOT_CONFIG or name in ("algo", "env_id"):
            continue
        if isinstance(value, Mapping):
            flat.update({(name, str(k)): _format(v) for k, v in value.items()})
        else:
            flat[(name, name)] = _format(value)
    return flat


def _format(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _labels(metadatas: Sequence[Mapping[str, Any]]) -> list[str]:
    """``"ppo on CartPole-v1"``, plus the settings (``learning_rate=0.001``) that tell apart groups of one algo and env."""
    bases = [f"{metadata.get('algo', '?')} on {metadata.get('env_id', '?')}" for metadata in metadatas]
    flats = [_flat(m) for m in metadatas]
    labels = []
    for base, flat in zip(bases, flats, strict=True):
        kin = [other for other_base, other in zip(bases, flats, strict=True) if other_base == base]
        names = dict.fromkeys(name for other in kin for name in other)
        differing = [name for name in names if len({other.get(name) for other in kin}) > 1]
        settings = " ".join(f"{name[1]}={flat[name]}" for name in differing if name in flat)
        labels.append(f"{base} {settings}".strip())
    for i, label in enumerate(labels):  # settings that only one group sets can still leave twins
        if labels.count(label) > 1:
            labels[i] = f"{label} #{labels[:i].count(label) + 1}"
    return labels


def _title(groups: Sequence[Sequence[_Run]]) -> str:
    env_ids = list(dict.fromkeys(str(group[0].metadata.get("env_id", "?")) for group in groups))
    title = ", ".join(env_ids)
    return title if len(title) <= 60 else f"{len(env_ids)} envs"


def _xy(run: _Run, key: str) -> tuple[str, np.ndarray, np.ndarray]:
    """The run's x column name and its ``(x, y)`` rows where both are logged, sorted by x (the last of a repeated x)."""
    y = run.columns[key]
    x_column = next((name for name in STEP_COLUMNS if run.has(name)), None)
    if x_column is not None:
        x = run.columns[x_column]
    else:
        sft = key.startswith("sft/")
        names = [name for name in run.columns if name.startswith("sft/") == sft]
        phase = np.isfinite(np.column_stack([run.columns[name] for name in names])).any(axis=1)
        x = np.where(phase, np.cumsum(phase), np.nan)
        x_column = SFT_LOG_ROWS if sft else LOG_ROWS
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        raise PlotError(f"{str(run.directory)!r} logs {key!r} only on rows without a step ({x_column}); choose another --key")
    x, y = x[keep], y[keep]
    _, last = np.unique(x[::-1], return_index=True)
    order = len(x) - 1 - last  # unique x, ascending, each at its last row
    return x_column, x[order], y[order]


def _curve(label: str, key: str, group: Sequence[_Run]) -> Curve:
    series = [_xy(run, key) for run in group]
    columns = {column for column, _, _ in series}
    if len(columns) > 1:
        raise PlotError(f"runs of one config log different step columns ({', '.join(sorted(columns))}); plot them apart")
    low, high = max(x[0] for _, x, _ in series), min(x[-1] for _, x, _ in series)
    if low > high:
        names = ", ".join(repr(str(run.directory)) for run in group)
        raise PlotError(f"{names} share a config but log {key!r} over x ranges that do not overlap; plot them apart")
    grid = np.unique(np.concatenate([x[(x >= low) & (x <= high)] for _, x, _ in series]))
    if grid.size > MAX_POINTS:
        grid = grid[np.unique(np.linspace(0, grid.size - 1, MAX_POINTS).round().astype(int))]
    y = np.stack([np.interp(grid, x, values) for _, x, values in series])
    band = bootstrap_band(y)
    return Curve(
        label=label,
        key=key,
        x_column=columns.pop(),
        runs=tuple(run.directory for run in group),
        x=grid,
        mean=y.mean(axis=0),
        ci_low=None if band is None else band[0],
        ci_high=None if band is None else band[1],
    )


def _relabel(curve: Curve, label: str) -> Curve:
    return Curve(label, curve.key, curve.x_column, curve.runs, curve.x, curve.mean, curve.ci_low, curve.ci_high)


# --- drawing ---------------------------------------------------------------------------------------------------------
def _figure(
    curves: Sequence[Curve],
    title: str = "",
    xlabel: str | None = None,
    ylabel: str | None = None,
    log_y: bool = False,
    confidence_level: float = CONFIDENCE_LEVEL,
) -> Figure:
    """A matplotlib figure (Agg canvas, no pyplot) of the curves: mean lines, bands where there are several runs."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError("plotting needs matplotlib, a dependency of palaestra: pip install matplotlib") from None

    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    for curve in curves:
        if curve.ci_low is None or curve.ci_high is None:
            legend = f"{curve.label} (n=1, no band)"
        else:
            legend = f"{curve.label} (n={curve.n_runs}, {confidence_level:.0%} CI)"
        (line,) = axis.plot(curve.x, curve.mean, label=legend, marker="o" if curve.x.size == 1 else None)
        if curve.ci_low is not None and curve.ci_high is not None:
            axis.fill_between(curve.x, curve.ci_low, curve.ci_high, alpha=0.25, color=line.get_color(), linewidth=0)
    if log_y:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel if xlabel is not None else _axis_label(c.x_column for c in curves))
    keys = list(dict.fromkeys(c.key for c in curves))
    axis.set_ylabel(ylabel if ylabel is not None else keys[0] if len(keys) == 1 else "value of the key in brackets")
    axis.set_title(title)
    axis.legend(fontsize="small")
    with warnings.catch_warnings():  # long legends or labels: tight_layout does what it can
        warnings.simplefilter("ignore", UserWarning)
        figure.tight_layout()
    return figure


def _axis_label(columns: Iterable[str]) -> str:
    """``"env steps (time/total_timesteps)"`` for one step column; the short names joined for several."""
    unique = list(dict.fromkeys(columns))
    if len(unique) == 1:
        return f"{STEP_COLUMNS[unique[0]]} ({unique[0]})" if unique[0] in STEP_COLUMNS else unique[0]
    return " / ".join(STEP_COLUMNS.get(column, column) for column in unique)


def _check_out(path: Path) -> Path:
    if path.suffix.lower() != ".png":
        raise PlotError(f"--out must name a .png file, got {str(path)!r}")
    if path.is_dir():
        raise PlotError(f"--out {str(path)!r} is a directory; name a .png file")
    if not path.parent.is_dir():
        raise PlotError(f"the folder of --out {str(path)!r} does not exist: create {str(path.parent)!r} first")
    return path


def _save_png(figure: Figure, path: Path) -> None:
    """Write ``figure`` to ``path`` through a temporary file in the same folder, renamed into place."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        figure.savefig(temporary, format="png", dpi=120)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
