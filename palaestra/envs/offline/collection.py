"""D4RL-style datasets for any Gymnasium env: ``palaestra collect --env ENV_ID --kind KIND``.

palaestra's built-in offline tasks ship their behaviour policies; for any other env with flat ``Box``
observations and ``Box`` or ``Discrete`` actions, :func:`collect_dataset` makes the five D4RL kinds itself:

* ``random``: a uniform random policy;
* ``expert`` and ``medium``: the behaviour policies of :mod:`palaestra.envs.offline.behaviour_training`
  (trained once per env and kept, resumably), or a policy the user gives (``policy=``); their actions are
  sampled as each algorithm acts while it learns (SAC's squashed Gaussian, DQN's epsilon-greedy with its final
  epsilon; any other policy's ``predict(deterministic=False)``), as D4RL's data were;
* ``medium-expert``: the medium data followed by the expert data of the same seed, half each;
* ``medium-replay``: the medium run's replay buffer up to its medium policy.

Reference scores (D4RL's ``REF_MIN_SCORE``/``REF_MAX_SCORE``) are measured once per env and stored with the
behaviour policies: the mean return of a uniform random policy and of the expert acting deterministically,
over ``reference_episodes`` episodes (reset seeds ``0 .. N-1``). Every dataset of the env records them, so
``get_normalized_score`` reads 0 for random and 100 for expert on every kind.

The behaviour policies of an env live in ``<Minari root>/.palaestra-behaviour/<namespace>/<env>/`` (a hidden
folder, which Minari's listing skips) with a ``manifest.json`` of commands, steps and returns. The dataset of
a kind is the Minari dataset ``<namespace>/<env>/<kind>-v0`` (``<kind>-n<size>-s<seed>-v0`` for another size
or seed); ``gym.make("Offline-v0", env_id=ENV_ID, kind=KIND)`` returns the env with D4RL's API over it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from palaestra.envs.offline import specs
from palaestra.envs.offline.generation import (
    Policy,
    UniformRandomPolicy,
    minari_root,
    recorded_episodes,
    refuse_existing,
    rollout_episodes,
    write_minari_dataset,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SIZE",
    "REFERENCE_EPISODES",
    "BehaviourStore",
    "check_collectable",
    "collect_dataset",
    "collected_dataset_id",
    "dataset_name",
    "sampling_policy",
]

DEFAULT_NAMESPACE = "local"
DEFAULT_SIZE = 100_000  # transitions of random, medium and expert (medium-expert: twice as many)
REFERENCE_EPISODES = 100
COLLECTION_KEY = "palaestra_collection"  # dataset metadata: JSON of the behaviour policies and references


def check_collectable(env_id: str, **env_kwargs: Any) -> gym.Env:
    """Make ``env_id`` and check that palaestra can collect a dataset on it.

    Raises:
        ValueError: If the id does not exist, or the env's spaces are not flat ``Box`` observations and ``Box``
            (1-D) or ``Discrete`` actions (Dict, Text and image observations are refused).
    """
    try:
        env = gym.make(env_id, **env_kwargs)
    except gym.error.Error as error:
        raise ValueError(f"cannot make env {env_id!r}: {error}") from None
    observation, action = env.observation_space, env.action_space
    if not isinstance(observation, gym.spaces.Box) or len(observation.shape) != 1:
        env.close()
        raise ValueError(
            f"{env_id} observes {_describe(observation)}; palaestra collects datasets for flat Box observations (one vector), "
            "not Dict, Text or image observations"
        )
    if not (isinstance(action, gym.spaces.Discrete) or (isinstance(action, gym.spaces.Box) and len(action.shape) == 1)):
        env.close()
        raise ValueError(
            f"{env_id} acts in {_describe(action)}; palaestra collects datasets for Box (1-D) or Discrete actions"
        )
    return env


def _describe(space: gym.Space) -> str:
    """A space in a few words: ``Box of shape (64, 64, 3)``, ``Text``, ``Dict``."""
    shape = getattr(space, "shape", None)
    return f"{type(space).__name__} of shape {shape}" if isinstance(space, gym.spaces.Box) else type(space).__name__


def dataset_name(env_id: str) -> str:
    """The Minari name of an env's datasets: ``"MountainCarContinuous-v0"`` -> ``"mountaincarcontinuous-v0"``.

    A module prefix (``"my_package:MyEnv-v0"``) is dropped and a Gymnasium namespace joined with ``-``.
    """
    bare = env_id.split(":", 1)[-1].replace("/", "-").lower()
    return re.sub(r"[^-_\w]", "_", bare)


def collected_dataset_id(
    env_id: str, kind: str, namespace: str = DEFAULT_NAMESPACE, size: int | None = None, seed: int = specs.DEFAULT_SEED
) -> str:
    """The Minari id of a collected dataset, ``<namespace>/<env>/<kind>-v0`` (``<kind>-n<size>-s<seed>-v0`` otherwise).

    Raises:
        ValueError: For an unknown kind, a malformed namespace, a non-positive size or a negative seed.
    """
    if kind not in specs.KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {list(specs.KINDS)}")
    if not re.fullmatch(r"[-_\w]+(/[-_\w]+)*", namespace):
        raise ValueError(f"namespace must be words joined by '/', e.g. 'local' or 'my-lab/robots'; got {namespace!r}")
    if size is not None and size < 1:
        raise ValueError(f"dataset size must be a positive number of transitions, got {size}")
    if seed < 0:
        raise ValueError(f"dataset seed must be >= 0, got {seed}")
    base = f"{namespace}/{dataset_name(env_id)}/{kind}"
    standard = default_size(kind)
    if (size is None or size == standard) and seed == specs.DEFAULT_SEED:
        return f"{base}-v0"
    return f"{base}-n{size if size is not None else standard}-s{seed}-v0"


def default_size(kind: str) -> int:
    """Default transitions of a kind (``medium-replay``: 0, the whole recorded buffer)."""
    return {"medium-expert": 2 * DEFAULT_SIZE, "medium-replay": 0}.get(kind, DEFAULT_SIZE)


# --- behaviour policies ---------------------------------------------------------------------------------
def sampling_policy(model: Any, action_space: gym.Space) -> Policy:
    """``model`` as a data-collecting policy ``(observation, rng, deterministic) -> action``.

    SAC samples its squashed Gaussian and DQN acts epsilon-greedily (its final epsilon), both from the caller's
    generator, so a dataset seed gives the same data; any other policy calls ``predict`` (its sampling draws on
    torch's generator, which :func:`collect_dataset` seeds).
    """
    from stable_baselines3 import DQN, SAC

    if isinstance(model, SAC):
        return _sac_sampler(model)
    if isinstance(model, DQN):
        epsilon, n = float(model.exploration_final_eps), int(action_space.n)  # type: ignore[attr-defined]

        def epsilon_greedy(observation: np.ndarray, rng: np.random.Generator | None, deterministic: bool) -> Any:
            assert rng is not None  # rollout_episodes always passes its generator
            if not deterministic and rng.random() < epsilon:
                return np.int64(rng.integers(n))
            return np.int64(model.predict(observation, deterministic=True)[0])

        return epsilon_greedy

    def predict(observation: np.ndarray, rng: np.random.Generator | None, deterministic: bool) -> Any:
        return model.predict(observation, deterministic=deterministic)[0]

    return predict


def _sac_sampler(model: Any) -> Policy:
    import torch

    def sample(observation: np.ndarray, rng: np.random.Generator | None, deterministic: bool) -> np.ndarray:
        assert rng is not None  # rollout_episodes always passes its generator
        with torch.no_grad():
            tensor, _ = model.policy.obs_to_tensor(observation)
            mean, log_std, _ = model.actor.get_action_dist_params(tensor)  # log_std clipped to [-20, 2] by SB3
        mean, std = mean.numpy()[0], np.exp(log_std.numpy()[0])
        u = mean if deterministic else mean + std * rng.standard_normal(mean.shape)
        return np.asarray(model.policy.unscale_action(np.tanh(u)), dtype=np.float32)

    return sample


class BehaviourStore:
    """An env's behaviour policies and reference returns, in ``folder`` with a ``manifest.json``.

    The manifest holds ``env_id``; ``random_return`` and ``reference_episodes``; per level (``expert``,
    ``medium``) where its policy comes from (``trained``: this folder's run; ``given``: a user's checkpoint,
    loaded again from its path), its class, step and return; ``expert_return`` (the reference); the medium
    ``target``; and every command that changed it.
    """

    def __init__(self, env_id: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.env_id = env_id
        self.folder = minari_root() / ".palaestra-behaviour" / namespace / dataset_name(env_id)
        path = self.folder / "manifest.json"
        self.manifest: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"env_id": env_id, "commands": []}

    def save(self, command: str | None = None) -> None:
        """Write the manifest, adding ``command`` to the commands that made it."""
        if command and command not in self.manifest["commands"]:
            self.manifest["commands"].append(command)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "manifest.json"
        partial = path.with_name("manifest.json.partial")
        partial.write_text(json.dumps(self.manifest, indent=2))
        os.replace(partial, path)

    def load(self, level: str) -> Any:
        """The ``expert`` or ``medium`` policy's model."""
        record = self.manifest[level]
        module, _, name = record["class"].partition(":")
        path = self.folder / record["path"]  # a trained policy's path is relative to the folder
        if not path.exists():
            raise FileNotFoundError(f"the {level} policy of {self.env_id} was {path}, which no longer exists")
        return getattr(importlib.import_module(module), name).load(path)


def _class_path(model: Any) -> str:
    return f"{type(model).__module__}:{type(model).__qualname__}"


def _ensure_random_return(store: BehaviourStore, episodes: int) -> float:
    from palaestra.envs.offline.behaviour_training import evaluate_return

    if "random_return" not in store.manifest:
        store.manifest["random_return"] = evaluate_return(None, store.env_id, episodes, seed=0)
        store.manifest["reference_episodes"] = episodes
    return float(store.manifest["random_return"])


def _set_level(store: BehaviourStore, level: str, model: Any, path: Path, source: str, episodes: int, **extra: Any) -> None:
    from palaestra.envs.offline.behaviour_training import evaluate_return

    inside = path.is_relative_to(store.folder)
    record: dict[str, Any] = {
        "source": source,
        "class": _class_path(model),
        "path": str(path.relative_to(store.folder) if inside else path),
    }
    record.update(extra)
    if level == "expert":
        record["reference_return"] = evaluate_return(model, store.env_id, episodes, seed=0)
        if record["reference_return"] <= store.manifest["random_return"]:
            warnings.warn(
                f"the expert of {store.env_id} returns {record['reference_return']:.1f}, no more than a random policy "
                f"({store.manifest['random_return']:.1f}); its datasets' normalised scores will be meaningless. "
                "Train it longer (palaestra collect --train-steps) or give a better --policy",
                stacklevel=3,
            )
    store.manifest[level] = record


def ensure_expert(
    store: BehaviourStore,
    settings: Any,
    episodes: int,
    given: tuple[Any, Path] | None,
    overwrite: bool,
    command: str,
    report: Callable[[str], None] | None = None,
) -> Any:
    """The env's expert: ``given`` (a model and its file) recorded as it, else the stored one, else trained now."""
    from palaestra.envs.offline.behaviour_training import algorithm_for, load_behaviour_model, train_expert

    record = store.manifest.get("expert")
    if given is not None:
        model, path = given
        if record is not None and record["path"] != str(path) and not overwrite:  # a given path is absolute
            raise FileExistsError(
                f"{store.env_id} already has an expert ({record['source']}: {record['path']}), whose return sets the "
                "reference scores of its datasets; pass --overwrite to make this policy the expert instead"
            )
        if record is None or record["path"] != str(path):
            _set_level(store, "expert", model, path, "given", episodes)
            store.save(command)
        return model
    if record is not None:
        return store.load("expert")
    run = train_expert(store.folder / "expert-run", store.env_id, settings, report)
    best = run["snapshots"]["best"]
    model = load_behaviour_model(store.folder / "expert-run" / "best.zip", algorithm_for(gym.make(store.env_id).action_space))
    _set_level(store, "expert", model, store.folder / "expert-run" / "best.zip", "trained", episodes,
               step=best["step"], eval_return=best["return"], run_steps=run["steps"],
               train_seconds=round(run["seconds"], 1), algorithm=run["algorithm"], seed=run["seed"])  # fmt: skip
    store.save(command)
    return model


def ensure_medium(
    store: BehaviourStore,
    settings: Any,
    episodes: int,
    given: tuple[Any, Path] | None,
    command: str,
    report: Callable[[str], None] | None = None,
) -> Any:
    """The env's medium policy: ``given``, else the stored one, else a medium run trained now (needs the expert)."""
    from palaestra.envs.offline.behaviour_training import algorithm_for, load_behaviour_model, train_medium

    if given is not None:
        return given[0]  # this dataset only: a given medium policy has no replay buffer to record
    if "medium" in store.manifest:
        return store.load("medium")
    random_return = _ensure_random_return(store, episodes)
    expert_return = float(store.manifest["expert"]["reference_return"])
    target = random_return + (expert_return - random_return) / 3.0
    run = train_medium(store.folder / "medium-run", store.env_id, settings, target, report)
    closest = run["snapshots"]["closest"]
    path = store.folder / "medium-run" / "closest.zip"
    model = load_behaviour_model(path, algorithm_for(gym.make(store.env_id).action_space))
    _set_level(store, "medium", model, path, "trained", episodes, step=closest["step"], eval_return=closest["return"],
               target=target, reached=any(r >= target for _, r in run["curve"]),
               run_steps=run["steps"], train_seconds=round(run["seconds"], 1), algorithm=run["algorithm"],
               seed=run["seed"])  # fmt: skip
    store.save(command)
    return model


# --- datasets -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _torch_seeded(seed: int) -> Iterator[None]:
    """Seed torch's generator for the block and restore it after (other policies sample with ``predict``)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def collect_dataset(
    env_id: str,
    kind: str,
    namespace: str = DEFAULT_NAMESPACE,
    size: int | None = None,
    seed: int = specs.DEFAULT_SEED,
    policy: tuple[Any, Path] | None = None,
    settings: Any = None,
    reference_episodes: int = REFERENCE_EPISODES,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    on_training: Callable[[str], None] | None = None,
) -> Any:
    """Make one D4RL-style dataset of ``env_id`` and write it to the Minari root (see the module docstring).

    Args:
        env_id: A registered Gymnasium id with flat Box observations and Box or Discrete actions.
        kind: One of :data:`~palaestra.envs.offline.specs.KINDS`.
        namespace: Minari namespace of the dataset and of the env's behaviour policies.
        size: Transitions (``None``: 100,000 transitions, twice that for ``medium-expert``, the whole buffer for
            ``medium-replay``).
        seed: Seed of the data (actions and episode resets).
        policy: ``(model, path)`` of the behaviour policy for an ``expert`` or ``medium`` dataset; a given expert
            becomes the env's expert (and reference), a given medium policy serves this dataset only.
        settings: :class:`~palaestra.envs.offline.behaviour_training.TrainingSettings` of any run trained here.
        reference_episodes: Episodes of the reference returns (measured once per env).
        overwrite: Replace an existing dataset (and, with ``policy``, the env's expert).
        progress: Show a progress bar while collecting.
        command: The command line, recorded in the behaviour manifest.
        on_training: Called with a line before a behaviour run trains and after each of its evaluations (the CLI
            prints them).

    Returns:
        The written :class:`minari.MinariDataset`.

    Raises:
        ValueError: Unsupported env or spaces, unknown kind, bad size or seed, a policy whose spaces do not fit,
            ``policy`` with a kind that takes none.
        FileExistsError: If the dataset exists and ``overwrite`` is false.
    """
    from palaestra.envs.offline.behaviour_training import TrainingSettings

    env = check_collectable(env_id)
    identifier = collected_dataset_id(env_id, kind, namespace, size, seed)
    if policy is not None:
        if kind not in ("expert", "medium"):
            raise ValueError(f"a --policy is the behaviour policy of an expert or medium dataset, not of {kind!r}")
        _check_policy_spaces(policy[0], env, env_id)
    n = default_size(kind) if size is None else size
    if kind == "medium-expert" and n < 2:
        raise ValueError(f"a medium-expert dataset needs at least 2 transitions, got {n}")
    refuse_existing(identifier, overwrite)  # before any training or collection, not after
    settings = settings or TrainingSettings()
    store = BehaviourStore(env_id, namespace)
    announce = on_training or (lambda line: None)
    random_return = _ensure_random_return(store, reference_episodes)
    store.save()
    if "expert" not in store.manifest and not (kind == "expert" and policy is not None):  # the reference needs one
        announce(f"training the expert policy of {env_id} ({settings.steps} steps; rerun to resume if interrupted)")
    expert = ensure_expert(
        store, settings, reference_episodes, policy if kind == "expert" else None, overwrite, command, on_training
    )
    medium = None
    if kind in ("medium", "medium-expert", "medium-replay"):
        if "medium" not in store.manifest and not (kind == "medium" and policy is not None):
            announce(f"training the medium policy of {env_id} (to a third of the way from random to expert)")
        medium = ensure_medium(store, settings, reference_episodes, policy if kind == "medium" else None, command, on_training)
    buffers, algorithm = _episodes(store, env, kind, n, seed, expert, medium, policy is not None, progress)
    references = (random_return, float(store.manifest["expert"]["reference_return"]))
    record = {key: store.manifest.get(key) for key in ("env_id", "random_return", "reference_episodes", "expert", "medium")}
    description = (
        f"palaestra's D4RL-style '{kind}' dataset for {env_id}, collected locally (seed {seed}). Reference scores: "
        f"mean return of a uniform random policy and of the expert (deterministic), {store.manifest['reference_episodes']} "
        "episodes each."
    )
    return write_minari_dataset(identifier, buffers, env_id, *references, description, algorithm, overwrite,
                                {COLLECTION_KEY: json.dumps(record)})  # fmt: skip


def _check_policy_spaces(model: Any, env: gym.Env, env_id: str) -> None:
    for what, expected in (("observation", env.observation_space), ("action", env.action_space)):
        found = getattr(model, f"{what}_space", None)
        if found is None:
            continue
        same = (type(found) is type(expected) and getattr(found, "shape", None) == getattr(expected, "shape", None)
                and getattr(found, "n", None) == getattr(expected, "n", None))  # fmt: skip
        if not same:
            raise ValueError(f"the policy's {what} space is {found}, but {env_id} has {expected}")


def _episodes(
    store: BehaviourStore,
    env: gym.Env,
    kind: str,
    n: int,
    seed: int,
    expert: Any,
    medium: Any,
    given: bool,
    progress: bool,
) -> tuple[list[Any], str]:
    """The episodes of a ``kind`` dataset and the Minari ``algorithm_name`` describing them."""
    env_id, space, label = store.env_id, env.action_space, f"{dataset_name(store.env_id)}-{kind}"
    source = "given policy" if given else "palaestra-trained " + store.manifest.get("expert", {}).get("algorithm", "SB3")
    with _torch_seeded(seed):
        if kind == "random":
            policy: Policy = _uniform_policy(space)
            return rollout_episodes(env_id, policy, n, seed, progress=progress, description=label), "uniform random policy"
        if kind in ("expert", "medium"):
            model = expert if kind == "expert" else medium
            episodes = rollout_episodes(env_id, sampling_policy(model, space), n, seed, progress=progress, description=label)
            return episodes, f"{kind} {source} ({type(model).__name__}), sampled actions"
        if kind == "medium-expert":
            half = n // 2
            first = rollout_episodes(env_id, sampling_policy(medium, space), half, seed, progress=progress, description=label)
            second = rollout_episodes(env_id, sampling_policy(expert, space), n - half, seed, first_episode_id=len(first),
                                      progress=progress, description=label)  # fmt: skip
            return first + second, "medium then expert policy, sampled actions"
    return _medium_replay(store, space, n), "replay buffer of the medium run up to its medium policy"


def _uniform_policy(space: gym.Space) -> Policy:
    if isinstance(space, gym.spaces.Box):
        return UniformRandomPolicy(space)
    n = int(space.n)  # type: ignore[attr-defined]

    def uniform(observation: np.ndarray, rng: np.random.Generator | None, deterministic: bool) -> Any:
        assert rng is not None  # rollout_episodes always passes its generator
        return np.int64(rng.integers(n))

    return uniform


def _medium_replay(store: BehaviourStore, space: gym.Space, n: int) -> list[Any]:
    from palaestra.envs.offline.behaviour_training import replay_episodes

    record = store.manifest["medium"]
    if record["source"] != "trained":
        raise ValueError(f"the medium policy of {store.env_id} was given, not trained here, so it has no replay buffer")
    arrays = replay_episodes(store.folder / "medium-run" / "replay_buffer.pkl", record["step"], space, record["algorithm"])
    return recorded_episodes(arrays, n or None, 0, "the medium run's replay buffer up to its medium policy")
