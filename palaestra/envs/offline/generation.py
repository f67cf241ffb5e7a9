"""Generate palaestra's offline datasets and write them as Minari datasets, atomically.

A dataset of kind ``random``, ``medium`` or ``expert`` is a rollout of the uniform random policy or of a
shipped SAC behaviour policy (actions sampled from its Gaussian, as D4RL's ``-v2`` data were);
``medium-expert`` is the ``medium`` data followed by the ``expert`` data of the same seed (D4RL's
concatenation, half of the transitions each); ``medium-replay`` is the replay buffer recorded while the
medium policy was trained. Episodes end on termination or on the env's time limit; the last episode is cut
so that a dataset holds exactly the requested number of transitions (its last step is then flagged as a
truncation, as D4RL flags time-outs). Everything random is drawn from one ``numpy`` generator seeded by
``seed``, and each episode's reset seed is recorded, so a seed always gives the same data.

Datasets are first written into a temporary folder inside the Minari root and moved into place with one
``rename``; if anything fails, the temporary folder is removed and no half-written dataset is left behind.

Minari metadata: ``requirements`` lists the packages that rebuild the env, pinned from the installed versions
(:func:`environment_requirements`), so Minari's ``recover_environment`` warns on an incompatible install.
Versions: a palaestra dataset keeps its ``-v0`` id when palaestra's behaviour policies change, departing from
Minari's convention of a new version per content change. A palaestra dataset is a local, deterministic
product of the installed policies (the id names the recipe: task, kind, size, seed), never a published file
that users of an older version still hold; its metadata records the SHA-256 of the policies it came from
(``palaestra_behaviour_sha256``), and the offline envs regenerate a dataset whose record differs from the
installed policies (``OfflineEnv._is_stale``). So an id always means the installed policies' data, and two
installs compare their data by that fingerprint, not by the version number.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from palaestra.envs.offline import specs
from palaestra.envs.offline.policies import (
    FINGERPRINT_KEY,
    UniformRandomPolicy,
    behaviour_fingerprint,
    load_behaviour_policy,
    policy_path,
)

__all__ = [
    "AUTHOR",
    "environment_requirements",
    "generate_dataset",
    "minari_root",
    "recorded_episodes",
    "refuse_existing",
    "replay_buffer_episodes",
    "rollout_episodes",
    "write_minari_dataset",
]

AUTHOR = "palaestra developers"
AUTHOR_EMAIL = "palaestra@users.noreply.github.com"
CODE_PERMALINK = "https://github.com/palaestra-rl/palaestra/tree/main/palaestra/envs/offline"
TMP_PREFIX = ".palaestra-tmp-"

Policy = Callable[[np.ndarray, np.random.Generator | None, bool], np.ndarray]


def minari_root() -> Path:
    """The Minari datasets folder: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets`` (not created here)."""
    path = os.environ.get("MINARI_DATASETS_PATH")
    return Path(path) if path is not None else Path.home() / ".minari" / "datasets"


def _ensure_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=TMP_PREFIX):
            pass
    except OSError as error:
        raise OSError(
            f"cannot write datasets to {root} ({error.strerror or error}); set MINARI_DATASETS_PATH to a writable folder"
        ) from error


@contextlib.contextmanager
def _minari_root_set_to(path: Path) -> Iterator[None]:
    """Point Minari at ``path`` for the duration of the block (Minari reads the root from the environment)."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _progress(total: int, description: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="step", disable=not enabled, leave=False)


def rollout_episodes(
    env_id: str,
    policy: Policy,
    n_transitions: int,
    seed: int,
    first_episode_id: int = 0,
    progress: bool = False,
    description: str = "collecting",
) -> list[Any]:
    """Run ``policy`` on ``env_id`` until exactly ``n_transitions`` steps are recorded.

    Args:
        env_id: Gymnasium id (its registered time limit ends episodes).
        policy: ``policy(observation, rng, deterministic) -> action``; called with ``deterministic=False``.
        n_transitions: Number of steps to record; the last episode is cut (and flagged truncated) to fit.
        seed: Seeds the generator of actions and episode reset seeds.
        first_episode_id: Id of the first :class:`minari.EpisodeBuffer` (ids are consecutive).
        progress: Show a progress bar.
        description: Label of the progress bar.

    Returns:
        A list of ``minari.data_collector.EpisodeBuffer`` with T+1 observations and T actions each.
    """
    from minari.data_collector import EpisodeBuffer

    if n_transitions < 1:
        raise ValueError(f"n_transitions must be >= 1, got {n_transitions}")
    rng = np.random.default_rng(seed)
    env = gym.make(env_id)
    buffers: list[Any] = []
    done_steps = 0
    with _progress(n_transitions, description, progress) as bar:
        while done_steps < n_transitions:
            episode_seed = int(rng.integers(2**31 - 1))
            observation, _ = env.reset(seed=episode_seed)
            observations, actions, rewards, terminations, truncations = [observation], [], [], [], []
            while True:
                action = policy(observation, rng, False)
                observation, reward, terminated, truncated, _ = env.step(action)
                observations.append(observation)
                actions.append(action)
                rewards.append(float(reward))
                terminations.append(bool(terminated))
                truncations.append(bool(truncated))
                done_steps += 1
                bar.update(1)
                if done_steps == n_transitions and not (terminated or truncated):
                    truncations[-1] = True  # cut to the requested size: a truncation, never a termination
                if terminated or truncations[-1]:
                    break
            buffers.append(
                EpisodeBuffer(
                    id=first_episode_id + len(buffers),
                    seed=episode_seed,
                    observations=np.asarray(observations, dtype=env.observation_space.dtype),
                    actions=np.asarray(actions, dtype=env.action_space.dtype),
                    rewards=np.asarray(rewards, dtype=np.float64),
                    terminations=np.asarray(terminations, dtype=bool),
                    truncations=np.asarray(truncations, dtype=bool),
                    infos={},
                )
            )
    env.close()
    return buffers


def replay_buffer_episodes(task: str, n_transitions: int | None = None, first_episode_id: int = 0) -> list[Any]:
    """The shipped ``medium-replay`` episodes of ``task`` (the medium SAC run's replay buffer), in order.

    Args:
        task: Task name.
        n_transitions: Keep only the first ``n_transitions`` steps (the last kept episode is cut and flagged
            truncated); ``None`` keeps the whole buffer.
        first_episode_id: Id of the first episode.

    Raises:
        FileNotFoundError: If no replay buffer is shipped for ``task``.
        ValueError: If ``n_transitions`` exceeds the recorded buffer.
    """
    path = policy_path(task, "medium_replay")
    if not path.is_file():
        raise FileNotFoundError(f"no medium-replay buffer is shipped for {task!r} (looked for {path})")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    return recorded_episodes(arrays, n_transitions, first_episode_id, f"medium-replay of {task!r}")


def recorded_episodes(
    arrays: dict[str, np.ndarray], n_transitions: int | None, first_episode_id: int = 0, what: str = "the buffer"
) -> list[Any]:
    """Episodes in Minari's layout (``observations`` with T+1 rows per episode, ``episode_lengths``) as buffers.

    Keeps the first ``n_transitions`` steps (``None``: all); a cut last episode is flagged truncated.

    Raises:
        ValueError: If ``n_transitions`` exceeds the recorded steps.
    """
    from minari.data_collector import EpisodeBuffer

    total = int(arrays["episode_lengths"].sum())
    wanted = total if n_transitions is None else n_transitions
    if not 1 <= wanted <= total:
        raise ValueError(
            f"{what} holds {total} transitions; cannot take {n_transitions} (leave the size out to take them all)"
        )
    buffers: list[Any] = []
    step = 0
    for length in arrays["episode_lengths"]:
        keep = min(int(length), wanted - step)
        first_obs = step + len(buffers)  # observations hold one extra row per episode
        truncations = arrays["truncations"][step : step + keep].copy()
        terminations = arrays["terminations"][step : step + keep].copy()
        if keep < length:
            truncations[-1] = True
        observations = arrays["observations"][first_obs : first_obs + keep + 1]
        buffers.append(
            EpisodeBuffer(
                id=first_episode_id + len(buffers),
                seed=None,
                observations=observations,
                actions=arrays["actions"][step : step + keep],
                rewards=arrays["rewards"][step : step + keep].astype(np.float64),
                terminations=terminations,
                truncations=truncations,
                infos={},
            )
        )
        step += keep
        if step == wanted:
            break
    return buffers


def environment_requirements(env_id: str) -> list[str]:
    """Pip requirements that rebuild ``env_id``, pinned to the installed versions' major release (Minari's ``requirements``).

    Minari documents ``requirements`` as the pip-style requirements "to load the environment and reproduce the
    dataset" (e.g. ``mujoco>=3.1.0,<3.2.0``) and checks them in ``recover_environment``. Here: ``gymnasium``
    always; ``mujoco`` for a MuJoCo env; ``palaestra`` for an env palaestra registers. Each is pinned from the
    installed version ``X.Y.Z`` as ``>=X.Y,<X+1``: the release that made the data and later ones with the same
    major version.
    """
    spec = gym.spec(env_id)
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    packages = ["gymnasium"]
    if "mujoco" in entry:
        packages.append("mujoco")
    if entry.startswith("palaestra"):
        packages.append("palaestra")
    return [_pinned(name) for name in packages]


def _pinned(package: str) -> str:
    from packaging.version import Version

    version = Version(importlib.metadata.version(package))
    return f"{package}>={version.major}.{version.minor},<{version.major + 1}"


def write_minari_dataset(
    dataset_id: str,
    buffers: list[Any],
    env_id: str,
    ref_min_score: float | None,
    ref_max_score: float | None,
    description: str,
    algorithm_name: str,
    overwrite: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> Any:
    """Write ``buffers`` as the Minari dataset ``dataset_id``, all or nothing.

    The dataset is built in a temporary folder inside the Minari root and renamed into place, so an error or
    an interruption never leaves a partial dataset. ``extra_metadata`` is added to Minari's metadata; Minari's
    ``requirements`` are :func:`environment_requirements` of ``env_id``. The id is written as given: palaestra
    replaces a dataset under the same version rather than bumping it (see the module docstring).

    Raises:
        FileExistsError: If the dataset exists and ``overwrite`` is false.
        OSError: If the Minari root is not writable.
    """
    import minari

    root = minari_root()
    _ensure_writable(root)
    final = root / dataset_id
    refuse_existing(dataset_id, overwrite)
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=root))
    try:
        with _minari_root_set_to(staging), _quiet_minari_warnings():
            staged = minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=env_id,
                eval_env=env_id,
                algorithm_name=algorithm_name,
                author=AUTHOR,
                author_email=AUTHOR_EMAIL,
                code_permalink=CODE_PERMALINK,
                ref_min_score=ref_min_score,
                ref_max_score=ref_max_score,
                description=description,
                requirements=environment_requirements(env_id),
            )
            if extra_metadata:
                staged.storage.update_metadata(extra_metadata)
        namespace = dataset_id.rsplit("/", 1)[0] if "/" in dataset_id else None
        if namespace is not None:
            _copy_namespace_metadata(staging, root, namespace)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging / dataset_id, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return minari.load_dataset(dataset_id, download=False)


def refuse_existing(dataset_id: str, overwrite: bool) -> None:
    """Raise :class:`FileExistsError` if ``dataset_id`` is in the Minari root and ``overwrite`` is false."""
    if not overwrite and (minari_root() / dataset_id).exists():
        raise FileExistsError(
            f"dataset {dataset_id!r} already exists in {minari_root()}; "
            "pass overwrite=True (palaestra collect --overwrite) to replace it"
        )


def _copy_namespace_metadata(staging: Path, root: Path, namespace: str) -> None:
    """Copy Minari's namespace metadata files that the real root lacks (each namespace level has one)."""
    parts = namespace.split("/")
    for depth in range(1, len(parts) + 1):
        relative = Path(*parts[:depth])
        for source in (staging / relative).glob("namespace_metadata.json"):
            target = root / relative / source.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


@contextlib.contextmanager
def _quiet_minari_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is set to None.*", category=UserWarning)
        yield


def generate_dataset(
    task: str,
    kind: str,
    size: int | None = None,
    seed: int = specs.DEFAULT_SEED,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """Generate one palaestra dataset and write it to the Minari root.

    Args:
        task: Task name (``"hopper"``, ``"pendulum"``, ...).
        kind: One of :data:`~palaestra.envs.offline.specs.KINDS`.
        size: Number of transitions (``None``: the kind's default; ``medium-expert`` takes half from each part;
            ``medium-replay`` keeps the first ``size`` steps of the recorded buffer).
        seed: Generation seed; the default gives the canonical dataset ``palaestra/<task>/<kind>-v0``.
        overwrite: Replace an existing dataset of the same id.
        progress: Show a progress bar.

    Returns:
        The :class:`minari.MinariDataset` written.

    Raises:
        ValueError: For an unknown task or kind or a bad size or seed.
        FileExistsError: If the dataset exists and ``overwrite`` is false.
    """
    spec = specs.get_task(task)
    identifier = specs.dataset_id(task, kind, size, seed)
    n = specs.default_size(spec, kind) if size is None else size
    refuse_existing(identifier, overwrite)  # before minutes of generation, not after
    label = f"{task}-{kind}"
    if kind == "random":
        random_policy = UniformRandomPolicy(gym.make(spec.env_id).action_space)  # type: ignore[arg-type]
        buffers = rollout_episodes(spec.env_id, random_policy, n, seed, progress=progress, description=label)
        algorithm = "uniform random policy"
    elif kind in ("medium", "expert"):
        policy = load_behaviour_policy(task, kind)
        buffers = rollout_episodes(spec.env_id, policy, n, seed, progress=progress, description=label)
        algorithm = f"SB3 SAC ({kind} checkpoint), stochastic actions"
    elif kind == "medium-expert":
        if n < 2:
            raise ValueError(f"a medium-expert dataset needs at least 2 transitions, got {n}")
        half = n // 2
        medium = rollout_episodes(
            spec.env_id, load_behaviour_policy(task, "medium"), half, seed, progress=progress, description=label
        )
        expert = rollout_episodes(
            spec.env_id,
            load_behaviour_policy(task, "expert"),
            n - half,
            seed,
            first_episode_id=len(medium),
            progress=progress,
            description=label,
        )
        buffers = medium + expert
        algorithm = "SB3 SAC (medium then expert checkpoint), stochastic actions"
    else:  # medium-replay
        buffers = replay_buffer_episodes(task, n or None)
        algorithm = "SB3 SAC replay buffer up to the medium checkpoint"
    description = (
        f"palaestra's D4RL-style '{kind}' dataset for {spec.env_id}, generated locally (seed {seed}); "
        f"not D4RL's data. Reference scores: {spec.ref_source}."
    )
    return write_minari_dataset(
        identifier,
        buffers,
        spec.env_id,
        spec.ref_min_score,
        spec.ref_max_score,
        description,
        algorithm,
        overwrite,
        {FINGERPRINT_KEY: behaviour_fingerprint(task, kind)},
    )
