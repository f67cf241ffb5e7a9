"""D4RL's array API over Minari datasets: ``get_dataset`` arrays, ``qlearning_dataset``, and HDF5 import.

Minari stores episodes with T+1 observations (the last one is the state after the final action), so the
adapter recovers ``next_observations`` exactly, including at time-outs, where D4RL's flat files had to drop a
row. :func:`qlearning_dataset` keeps every row by default and reproduces D4RL's dropping rule with
``d4rl_compatible=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "D4RL_KEYS",
    "TERMINAL_NEXT_STATE_UNKNOWN_KEY",
    "DatasetError",
    "dataset_arrays",
    "episode_bounds",
    "episode_returns",
    "from_d4rl_hdf5",
    "load_minari_dataset",
    "qlearning_dataset",
]

#: Keys of :func:`dataset_arrays` (D4RL's ``get_dataset`` keys plus the exact next observations).
D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
#: Metadata flag of a dataset whose terminal rows' next state is unknown (stored as a copy of the state).
TERMINAL_NEXT_STATE_UNKNOWN_KEY = "palaestra_terminal_next_observation_unknown"


class DatasetError(ValueError):
    """A dataset on disk that cannot be read (truncated, scrambled or half-deleted files).

    Attributes:
        dataset_id: The Minari id of the dataset.
        path: The file that could not be read.
    """

    def __init__(self, dataset_id: str, path: Path, reason: str) -> None:
        super().__init__(f"dataset {dataset_id!r} is unreadable: {path} {reason}")
        self.dataset_id, self.path, self.reason = dataset_id, path, reason


def load_minari_dataset(dataset_id: str) -> Any:
    """Load a local Minari dataset (never downloads).

    Raises:
        FileNotFoundError: If ``dataset_id`` is not in the local Minari root.
        DatasetError: If its metadata cannot be read.
    """
    import minari

    from palaestra.envs.offline.generation import minari_root

    folder = minari_root() / dataset_id
    if not folder.is_dir():
        raise FileNotFoundError(f"Minari dataset {dataset_id!r} is not in {minari_root()}")
    metadata = folder / "data" / "metadata.json"
    try:
        return minari.load_dataset(dataset_id, download=False)
    except (ValueError, KeyError, TypeError, OSError) as error:  # JSONDecodeError is a ValueError
        suspect = metadata if metadata.is_file() else folder / "data"
        raise DatasetError(dataset_id, suspect, f"cannot be read ({_reason(error)})") from error


def dataset_arrays(dataset: Any) -> dict[str, np.ndarray]:
    """Flatten a Minari dataset into D4RL's ``get_dataset()`` dictionary.

    Args:
        dataset: A :class:`minari.MinariDataset` with flat Box observations and flat Box or Discrete actions.

    Returns:
        ``observations`` (N, obs_dim) float32, ``actions`` (N, act_dim) float32 (Discrete: (N,) int64, the action
        indices), ``rewards`` (N,) float32,
        ``terminals`` (N,) bool (true MDP terminations), ``timeouts`` (N,) bool (time-limit or size cuts) and
        ``next_observations`` (N, obs_dim) float32, episodes concatenated in order. A dataset imported by
        :func:`from_d4rl_hdf5` from a file without next states also gets ``has_next_observation`` (N,) bool,
        false on its terminal rows, whose ``next_observations`` is a copy of the state and no target for a
        dynamics model (Q-learning ignores it: the row is terminal).

    Raises:
        TypeError: If the observations are not a flat Box, or the actions neither a flat Box nor Discrete.
    """
    observation_space, action_space = dataset.observation_space, dataset.action_space
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise TypeError(f"D4RL arrays need a flat Box observation space; this dataset has {observation_space}")
    discrete = isinstance(action_space, gym.spaces.Discrete)
    if not discrete and (not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1):
        raise TypeError(f"D4RL arrays need a flat Box or Discrete action space; this dataset has {action_space}")
    episodes = _read_episodes(dataset)
    n = sum(len(e["rewards"]) for e in episodes)
    obs_dim = observation_space.shape[0]
    out: dict[str, np.ndarray] = {
        "observations": np.empty((n, obs_dim), dtype=np.float32),
        "actions": np.empty(n, dtype=np.int64) if discrete else np.empty((n, action_space.shape[0]), dtype=np.float32),
        "rewards": np.empty(n, dtype=np.float32),
        "terminals": np.empty(n, dtype=bool),
        "timeouts": np.empty(n, dtype=bool),
        "next_observations": np.empty((n, obs_dim), dtype=np.float32),
    }
    start = 0
    for episode in episodes:  # fill preallocated arrays: one copy (and cast) per value
        end = start + len(episode["rewards"])
        out["observations"][start:end] = episode["observations"][:-1]
        out["next_observations"][start:end] = episode["observations"][1:]
        out["actions"][start:end] = episode["actions"]
        out["rewards"][start:end] = episode["rewards"]
        out["terminals"][start:end] = episode["terminations"]
        out["timeouts"][start:end] = episode["truncations"]
        start = end
    if dataset.storage.metadata.get(TERMINAL_NEXT_STATE_UNKNOWN_KEY):
        out["has_next_observation"] = ~out["terminals"]
    return out


def _read_episodes(dataset: Any) -> list[dict[str, np.ndarray]]:
    """Read every episode's arrays; straight from the HDF5 file when Minari stored one (several times faster)."""
    storage = dataset.storage
    keys = ("observations", "actions", "rewards", "terminations", "truncations")
    path = Path(storage.data_path) / "main_data.hdf5"
    try:
        if storage.metadata.get("data_format", "hdf5") == "hdf5" and path.is_file():
            import h5py

            with h5py.File(path, "r") as file:
                indices = dataset.episode_indices if dataset.episode_indices is not None else range(storage.total_episodes)
                return [{key: file[f"episode_{i}"][key][()] for key in keys} for i in indices]
        return [{key: np.asarray(getattr(episode, key)) for key in keys} for episode in dataset.iterate_episodes()]
    except (OSError, KeyError, ValueError, TypeError) as error:  # h5py's errors for truncated or scrambled bytes
        raise DatasetError(dataset.spec.dataset_id, path, f"cannot be read ({_reason(error)})") from error


def _reason(error: BaseException) -> str:
    """A library error's message, on one line, quoted keys unwrapped (``KeyError('x')`` -> ``missing 'x'``)."""
    if isinstance(error, KeyError) and error.args and " " not in str(error.args[0]):
        return f"missing {error.args[0]!r}"  # a key name; h5py also raises KeyError with a sentence
    return " ".join(str(error).split()) or type(error).__name__


def episode_bounds(episode_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last row of each episode in concatenated data, from flags marking each episode's last row.

    ``episode_ends`` is ``terminals | timeouts`` of :func:`dataset_arrays`; rows after the last flag form a final,
    cut episode of their own.

    Raises:
        ValueError: If there are no rows.
    """
    n = len(episode_ends)
    if n == 0:
        raise ValueError("the dataset has no transitions")
    ends = np.flatnonzero(episode_ends)
    if len(ends) == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)
    return np.concatenate([[0], ends[:-1] + 1]), ends


def episode_returns(rewards: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """Undiscounted return of each episode (float64), the episodes split as :func:`episode_bounds` splits them.

    Raises:
        ValueError: If there are no rows, or ``rewards`` and ``episode_ends`` differ in length.
    """
    if len(rewards) != len(episode_ends):
        raise ValueError(f"rewards has {len(rewards)} rows but episode_ends has {len(episode_ends)}; expected as many")
    starts, _ = episode_bounds(episode_ends)
    return np.add.reduceat(np.asarray(rewards, dtype=np.float64), starts)


def qlearning_dataset(
    env_or_dataset: Any,
    terminate_on_end: bool = False,
    d4rl_compatible: bool = False,
    *,
    dataset: dict[str, np.ndarray] | None = None,
    max_episode_steps: int | None = None,
) -> dict[str, np.ndarray]:
    """D4RL's ``qlearning_dataset``: (s, a, r, s', done) arrays for off-policy learning.

    Args:
        env_or_dataset: An offline env (its ``get_dataset()`` is used), a ``get_dataset()`` dictionary or a
            :class:`minari.MinariDataset`.
        terminate_on_end: Keep the last step of time-limited episodes when the next state is the following row
            (D4RL's flag; its ``done`` stays the ``terminals`` flag).
        d4rl_compatible: Reproduce D4RL's rule for flat files whose next state is the following row: drop the
            last step of every time-limited episode (its successor row belongs to the next episode) and the very
            last row. Off by default, because palaestra's arrays hold the exact ``next_observations``.
        dataset: The arrays to use instead of the env's ``get_dataset()`` (D4RL's ``dataset=``), with
            ``env_or_dataset`` an env that supplies the time limit.
        max_episode_steps: The time limit of episodes, for arrays without ``timeouts`` (D4RL ``-v0`` files);
            default: the env's (``_max_episode_steps`` or ``spec.max_episode_steps``), as D4RL takes it.

    Without ``timeouts``, the rows that end on the time limit are found by counting steps, as D4RL's
    ``qlearning_dataset`` does with ``env._max_episode_steps`` (d4rl/__init__.py). D4RL's counter restarts at
    1, not 0, after a terminal (its increment runs after the reset), so after a terminated episode it drops the
    step before the time-out and keeps the time-out step, whose following row is the next episode's first
    state: ``d4rl_compatible=True`` reproduces that count; the default counts every episode from 0.

    Returns:
        ``observations``, ``actions``, ``next_observations``, ``rewards`` (float32) and ``terminals`` (bool).
        ``terminals`` are true MDP terminations only: time-outs are never terminals, so agents bootstrap through
        them (``not_done = 1 - terminals``). ``has_next_observation`` (bool) is passed through when the arrays
        have it (:func:`dataset_arrays` of an imported D4RL file): false where ``next_observations`` is not a real
        next state.

    Raises:
        TypeError: If ``env_or_dataset`` is none of the accepted types.
        ValueError: If a dictionary lacks a required key or its arrays' lengths differ, or if the arrays have no
            ``timeouts``, their next states are the following rows, and no time limit is known.
    """
    data = _as_arrays(env_or_dataset) if dataset is None else dataset
    required = ("observations", "actions", "rewards", "terminals")
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"dataset dictionary lacks {missing}; expected the keys of get_dataset(): {list(D4RL_KEYS)}")
    n = len(data["rewards"])
    if any(len(data[key]) != n for key in required):
        raise ValueError(f"dataset arrays differ in length: { {key: len(data[key]) for key in required} }")
    observations = np.asarray(data["observations"], dtype=np.float32)
    terminals = np.asarray(data["terminals"], dtype=bool)
    if "next_observations" in data and not d4rl_compatible:
        keep = np.ones(n, dtype=bool)
        next_observations = np.asarray(data["next_observations"], dtype=np.float32)
    else:
        # D4RL: s' is the next row; the row before a time-out reset and the last row have no valid successor.
        next_observations = np.concatenate([observations[1:], observations[-1:]])
        if "timeouts" in data:
            keep = np.ones(n, dtype=bool)
            if not terminate_on_end:
                keep &= ~np.asarray(data["timeouts"], dtype=bool)
        else:
            limit = max_episode_steps if max_episode_steps is not None else _time_limit(env_or_dataset)
            if limit is None:
                raise ValueError(
                    "the dataset has no 'timeouts' (a D4RL -v0 file?) and its next states are the following rows, "
                    "so the time limit is needed to find the episodes cut by it: pass max_episode_steps=N, or an env "
                    "with a time limit as qlearning_dataset(env, dataset=data) (D4RL reads env._max_episode_steps)"
                )
            if limit < 1:
                raise ValueError(f"max_episode_steps must be >= 1, got {limit}")
            keep = ~_time_limit_rows(terminals, limit, d4rl_compatible) | terminate_on_end
        keep[-1] = False
    out: dict[str, np.ndarray] = {
        "observations": observations[keep],
        "actions": np.asarray(data["actions"], dtype=np.float32)[keep],
        "next_observations": next_observations[keep],
        "rewards": np.asarray(data["rewards"], dtype=np.float32)[keep],
        "terminals": terminals[keep],
    }
    if "has_next_observation" in data:
        out["has_next_observation"] = np.asarray(data["has_next_observation"], dtype=bool)[keep]
    return out


def _time_limit_rows(terminals: np.ndarray, limit: int, d4rl_count: bool) -> np.ndarray:
    """The rows that are the ``limit``-th step of an episode (episodes end on terminals and on these rows).

    With ``d4rl_count``, D4RL's count: the step after a terminal is counted as the episode's second step.
    """
    flags = np.zeros(len(terminals), dtype=bool)
    step = 0  # steps already taken in the current episode
    for i, terminal in enumerate(terminals):
        if step == limit - 1:
            flags[i], step = True, 0
        elif terminal:
            step = 1 if d4rl_count else 0
        else:
            step += 1
    return flags


def _time_limit(env: Any) -> int | None:
    """An env's time limit: a ``_max_episode_steps`` attribute (Gym's and Gymnasium's ``TimeLimit``) or its spec's."""
    if isinstance(env, dict) or env is None:
        return None
    layer = env
    while layer is not None:
        limit = getattr(layer, "_max_episode_steps", None)
        if isinstance(limit, int):
            return limit
        layer = getattr(layer, "env", None)
    spec = getattr(env, "spec", None)
    limit = getattr(spec, "max_episode_steps", None)
    return limit if isinstance(limit, int) else None


def _as_arrays(source: Any) -> dict[str, np.ndarray]:
    if isinstance(source, dict):
        return source
    if hasattr(source, "iterate_episodes") and hasattr(source, "storage"):
        return dataset_arrays(source)
    get_dataset = _find_get_dataset(source)
    if get_dataset is not None:
        return get_dataset()
    raise TypeError(
        f"qlearning_dataset expects an offline env, a get_dataset() dict or a MinariDataset, got {type(source).__name__}"
    )


def _find_get_dataset(env: Any) -> Any:
    while env is not None:
        method = getattr(env, "get_dataset", None)
        if callable(method):
            return method
        env = getattr(env, "env", None)
    return None


def from_d4rl_hdf5(
    path: str | Path,
    dataset_id: str,
    env_id: str,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    overwrite: bool = False,
) -> Any:
    """Convert a D4RL ``.hdf5`` file (``observations``, ``actions``, ``rewards``, ``terminals``[, ``timeouts``]) to Minari.

    Episodes are split after every terminal or time-out. D4RL's files have no next-state column, so each
    episode's final next state is taken from ``next_observations`` when the file has it. Otherwise the last row
    of a time-limited episode is dropped (its successor is unknown), exactly as D4RL's ``qlearning_dataset``
    does, and a terminated episode keeps its terminal row with **the terminal state itself stored as its next
    state** (Minari needs one; Q-learning never reads it, since the row is terminal). Such a dataset records
    it (``palaestra_terminal_next_observation_unknown`` in its metadata), and :func:`dataset_arrays` then gives a
    ``has_next_observation`` column, false on those rows, which dynamics models (PGD's
    :class:`~palaestra.agents.offline.pgd.EnsembleWorldModel`) leave out of their next-state targets. Files
    without ``timeouts`` (D4RL ``-v0``) are split on terminals and on ``env_id``'s time limit.

    Args:
        path: The ``.hdf5`` file.
        dataset_id: Minari id to write, e.g. ``"d4rl/hopper/medium-v2"``.
        env_id: Gymnasium env whose spaces the data must match (e.g. ``"Hopper-v5"``).
        ref_min_score: Reference return of score 0 (default: D4RL's constant for a known task).
        ref_max_score: Reference return of score 1.
        overwrite: Replace an existing dataset with this id.

    Returns:
        The written :class:`minari.MinariDataset`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not readable HDF5 (corrupt or truncated), lacks D4RL's keys, has arrays of
            different lengths, or does not match ``env_id``'s observation or action space.
    """
    import h5py
    from minari.data_collector import EpisodeBuffer

    from palaestra.envs.offline.generation import write_minari_dataset

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no D4RL file at {path}")
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in ("observations", "actions", "rewards", "terminals") if key not in file]
            if missing:
                raise ValueError(f"{path} is not a D4RL dataset: it lacks {missing} (has {sorted(file.keys())})")
            data = {
                key: file[key][()]
                for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
                if key in file
            }
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file (corrupt or truncated?): {error}") from error
    n = len(data["rewards"])
    lengths = {key: len(value) for key, value in data.items()}
    if any(length != n for length in lengths.values()):
        raise ValueError(f"{path}: arrays differ in length: {lengths}")
    env = gym.make(env_id)
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    if data["observations"].shape[1:] != obs_shape or data["actions"].shape[1:] != act_shape:
        raise ValueError(
            f"{path} holds observations of shape {data['observations'].shape[1:]} and actions of shape "
            f"{data['actions'].shape[1:]}, but {env_id} has {obs_shape} and {act_shape}"
        )
    terminals = data["terminals"].astype(bool)
    if "timeouts" in data:
        timeouts = data["timeouts"].astype(bool)
    else:
        limit = env.spec.max_episode_steps if env.spec is not None else None
        timeouts = _time_limit_rows(terminals, limit, False) & ~terminals if limit is not None else np.zeros(n, bool)
    _, ends = episode_bounds(terminals | timeouts)
    buffers: list[Any] = []
    start = 0
    obs_dtype, act_dtype = env.observation_space.dtype, env.action_space.dtype
    for end in ends:
        rows = slice(start, end + 1)
        if "next_observations" in data:
            observations = np.concatenate([data["observations"][rows], data["next_observations"][end : end + 1]])
            actions, rewards = data["actions"][rows], data["rewards"][rows]
            term, trunc = terminals[rows], timeouts[rows]
        else:
            # the next state of the last row is unknown: keep it only if the episode terminated (s' unused)
            last = end + 1 if terminals[end] else end
            if last - start < 1:
                start = end + 1
                continue
            successor = data["observations"][end : end + 1] if terminals[end] else data["observations"][last : last + 1]
            observations = np.concatenate([data["observations"][start:last], successor])
            actions, rewards = data["actions"][start:last], data["rewards"][start:last]
            term, trunc = terminals[start:last].copy(), timeouts[start:last].copy()
            if not terminals[end]:
                trunc[-1] = True
        buffers.append(
            EpisodeBuffer(
                id=len(buffers),
                observations=observations.astype(obs_dtype),
                actions=actions.astype(act_dtype),
                rewards=rewards.astype(np.float64),
                terminations=term,
                truncations=trunc,
                infos={},
            )
        )
        start = end + 1
    if not buffers:
        raise ValueError(f"{path} holds no complete transition")
    if ref_min_score is None or ref_max_score is None:
        from palaestra.envs.offline.specs import TASKS

        task = next((t for t in TASKS.values() if t.env_id.split("-")[0] == env_id.split("-")[0]), None)
        if task is not None:
            ref_min_score = task.ref_min_score if ref_min_score is None else ref_min_score
            ref_max_score = task.ref_max_score if ref_max_score is None else ref_max_score
    description = f"Converted from the D4RL file {path.name} by palaestra.envs.offline.from_d4rl_hdf5."
    copied = "next_observations" not in data and any(bool(buffer.terminations[-1]) for buffer in buffers)
    return write_minari_dataset(
        dataset_id,
        buffers,
        env_id,
        ref_min_score,
        ref_max_score,
        description,
        "D4RL (imported)",
        overwrite,
        {TERMINAL_NEXT_STATE_UNKNOWN_KEY: True} if copied else None,
    )
