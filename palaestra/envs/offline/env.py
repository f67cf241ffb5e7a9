"""The offline env ids: a Gymnasium env plus D4RL's ``get_dataset`` and ``get_normalized_score``.

``gym.make("hopper-medium-v0")`` returns :class:`OfflineEnv`, a wrapper around ``gym.make("Hopper-v5")``
(time limit and checks included) that knows its dataset. Nothing is read or generated until
:meth:`OfflineEnv.get_dataset` is called; then a missing palaestra dataset is generated into the Minari root
with a progress bar, unless generation is disabled (``generate=False`` or ``PALAESTRA_OFFLINE_GENERATE=0``),
in which case the error names the ``palaestra collect`` command that makes it.

``gym.make("Offline-v0", env_id="MountainCarContinuous-v0", kind="medium")`` returns :class:`CollectedEnv`, the
same API over a dataset that ``palaestra collect --env MountainCarContinuous-v0 --kind medium`` made for any
Gymnasium env (:mod:`palaestra.envs.offline.collection`); its reference scores are read from the dataset.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np

from palaestra.envs.offline import specs
from palaestra.envs.offline.dataset import DatasetError, dataset_arrays, load_minari_dataset
from palaestra.envs.offline.policies import FINGERPRINT_KEY, behaviour_fingerprint

__all__ = ["SOURCES", "CollectedEnv", "DatasetEnv", "OfflineEnv", "make_collected_env", "make_offline_env"]

SOURCES = ("palaestra", "minari")
GENERATE_ENV_VAR = "PALAESTRA_OFFLINE_GENERATE"


class DatasetEnv(gym.Wrapper):
    """A Gymnasium env with a Minari dataset attached (D4RL's ``OfflineEnv`` API).

    Subclasses say how a missing dataset is made (:meth:`_load`) and how to rebuild a broken one
    (:meth:`_repair`).

    Args:
        env: The env agents are evaluated on.
        dataset_id: The Minari id of the dataset.
        ref_scores: ``(ref_min, ref_max)``; ``None`` reads them from the dataset's metadata on first use.
    """

    def __init__(self, env: gym.Env, dataset_id: str, ref_scores: tuple[float, float] | None = None) -> None:
        super().__init__(env)
        self.dataset_id = dataset_id
        self._ref_scores = ref_scores

    # --- the dataset ---------------------------------------------------------------------------------
    def get_minari_dataset(self) -> Any:
        """The :class:`minari.MinariDataset` behind this env.

        Raises:
            FileNotFoundError: If the dataset is missing and cannot be made here.
            DatasetError: If the dataset's files cannot be read; the message says how to rebuild it.
            ValueError: If the dataset's spaces do not match the env's.
        """
        dataset = self._load()
        self._check_spaces(dataset)
        if self._ref_scores is None:
            metadata = dataset.storage.metadata
            if metadata.get("ref_min_score") is not None and metadata.get("ref_max_score") is not None:
                self._ref_scores = (float(metadata["ref_min_score"]), float(metadata["ref_max_score"]))
        return dataset

    def _load(self) -> Any:
        with self._repair_hint():
            return load_minari_dataset(self.dataset_id)

    def _repair(self) -> str:
        """How a user rebuilds a dataset whose files cannot be read."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _repair_hint(self) -> Iterator[None]:
        """Add to a :class:`DatasetError` the command that rebuilds the dataset."""
        try:
            yield
        except DatasetError as error:
            raise DatasetError(error.dataset_id, error.path, f"{error.reason}; {self._repair()}") from error

    def _check_spaces(self, dataset: Any) -> None:
        for name, expected, found in (
            ("observation", self.env.observation_space, dataset.observation_space),
            ("action", self.env.action_space, dataset.action_space),
        ):
            if getattr(expected, "shape", None) != getattr(found, "shape", None) or type(expected) is not type(found):
                env_id = self.env.spec.id if self.env.spec is not None else type(self.env.unwrapped).__name__
                raise ValueError(f"dataset {self.dataset_id!r} has {name} space {found}, but {env_id} has {expected}")

    def get_dataset(self) -> dict[str, np.ndarray]:
        """D4RL's dataset dictionary of flat arrays (see :func:`palaestra.envs.offline.dataset.dataset_arrays`).

        Keys: ``observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts``, ``next_observations``.
        """
        dataset = self.get_minari_dataset()
        with self._repair_hint():
            return dataset_arrays(dataset)

    # --- scores --------------------------------------------------------------------------------------
    @property
    def ref_min_score(self) -> float:
        """Return mapped to a normalised score of 0."""
        return self._references()[0]

    @property
    def ref_max_score(self) -> float:
        """Return mapped to a normalised score of 1."""
        return self._references()[1]

    def _references(self) -> tuple[float, float]:
        if self._ref_scores is None:
            self.get_minari_dataset()  # reads the references from the Minari dataset's metadata
        if self._ref_scores is None:
            raise ValueError(f"dataset {self.dataset_id!r} records no reference scores")
        return self._ref_scores

    def get_normalized_score(self, returns: float | np.ndarray) -> float | np.ndarray:
        """D4RL's normalised score, ``(R - ref_min) / (ref_max - ref_min)``: 0 is random, 1 is expert (x100 for tables)."""
        ref_min, ref_max = self._references()
        return (
            (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)
            if np.ndim(returns)
            else (float(returns) - ref_min) / (ref_max - ref_min)
        )


class OfflineEnv(DatasetEnv):
    """A built-in offline task's env and dataset (D4RL's ``OfflineEnv`` API), generated on first use.

    Args:
        env: The env agents are evaluated on.
        task: The offline task.
        kind: Dataset kind (see :data:`~palaestra.envs.offline.specs.KINDS`).
        source: ``"palaestra"`` (locally generated data) or ``"minari"`` (Minari's ``mujoco/<task>/<kind>-v0``
            already present in the local Minari root).
        dataset_size: Transitions of a palaestra dataset (``None``: the default size).
        dataset_seed: Generation seed of a palaestra dataset.
        generate: Generate a missing palaestra dataset on first use (``None``: yes unless the
            ``PALAESTRA_OFFLINE_GENERATE`` environment variable is ``0``).
        progress: Show a progress bar while generating.
    """

    def __init__(
        self,
        env: gym.Env,
        task: specs.OfflineTask,
        kind: str,
        source: str = "palaestra",
        dataset_size: int | None = None,
        dataset_seed: int = specs.DEFAULT_SEED,
        generate: bool | None = None,
        progress: bool = True,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown dataset source {source!r}; expected one of {list(SOURCES)}")
        if source == "minari":
            if task.minari_name is None or kind not in ("medium", "expert"):
                raise ValueError(
                    f"Minari's mujoco/ namespace has no {task.name!r} {kind!r} dataset; source='minari' supports "
                    f"medium and expert of {sorted(t.name for t in specs.TASKS.values() if t.minari_name)}"
                )
            identifier, references = f"mujoco/{task.minari_name}/{kind}-v0", None
        else:
            identifier = specs.dataset_id(task.name, kind, dataset_size, dataset_seed)
            references = (task.ref_min_score, task.ref_max_score)
        super().__init__(env, identifier, references)
        self.task, self.kind, self.source = task, kind, source
        self.dataset_size, self.dataset_seed, self.progress = dataset_size, dataset_seed, progress
        self.generate = os.environ.get(GENERATE_ENV_VAR, "1") != "0" if generate is None else generate

    def _load(self) -> Any:
        """Load the dataset; generate it if missing or made from other behaviour policies, when allowed.

        Raises:
            FileNotFoundError: If the dataset is missing and cannot be generated here.
            RuntimeError: If the dataset is stale (other behaviour policies) and cannot be regenerated here.
        """
        try:
            dataset = super()._load()
        except FileNotFoundError:
            if self.source == "minari":
                raise FileNotFoundError(
                    f"Minari dataset {self.dataset_id!r} is not in the local Minari root; download it with "
                    f"`minari download {self.dataset_id}` on a machine with network access, or use source='palaestra'"
                ) from None
            if not self.generate:
                raise FileNotFoundError(
                    f"dataset {self.dataset_id!r} has not been generated and generation is disabled; "
                    f"run `{self._collect_command()}`"
                ) from None
            return self._generate(overwrite=False)
        if self.source == "palaestra" and self._is_stale(dataset):
            self._check_spaces(dataset)
            if not self.generate:
                raise RuntimeError(
                    f"dataset {self.dataset_id!r} was generated from other behaviour policies than the installed "
                    f"ones, and generation is disabled; regenerate it with `{self._collect_command()} --overwrite`"
                )
            warnings.warn(
                f"dataset {self.dataset_id!r} was generated from other behaviour policies than the installed ones "
                "(an older palaestra); regenerating it",
                stacklevel=3,
            )
            dataset = self._generate(overwrite=True)
        return dataset

    def _repair(self) -> str:
        if self.source == "minari":
            return f"download it again with `minari download {self.dataset_id}`"
        return f"regenerate it with `{self._collect_command()} --overwrite`"

    def _generate(self, overwrite: bool) -> Any:
        from palaestra.envs.offline.generation import generate_dataset

        return generate_dataset(
            self.task.name, self.kind, self.dataset_size, self.dataset_seed, overwrite=overwrite, progress=self.progress
        )

    def _is_stale(self, dataset: Any) -> bool:
        """Whether ``dataset`` records other behaviour policies than the installed ones (or none)."""
        recorded = dataset.storage.metadata.get(FINGERPRINT_KEY)
        return recorded != behaviour_fingerprint(self.task.name, self.kind)

    def _collect_command(self) -> str:
        size = f" --size {self.dataset_size}" if self.dataset_size is not None else ""
        seed = f" --seed {self.dataset_seed}" if self.dataset_seed != specs.DEFAULT_SEED else ""
        return f"palaestra collect --env {specs.offline_env_id(self.task.name, self.kind)}{size}{seed}"


class CollectedEnv(DatasetEnv):
    """Any Gymnasium env with a dataset ``palaestra collect --env ENV_ID --kind KIND`` made for it.

    The dataset is never made here (that may mean training behaviour policies); a missing one names the
    command that makes it. Reference scores come from the dataset's metadata.

    Args:
        env: The env agents are evaluated on.
        env_id: Its Gymnasium id.
        kind: Dataset kind (see :data:`~palaestra.envs.offline.specs.KINDS`).
        namespace: Minari namespace of the collected datasets.
        dataset_size: Transitions of the dataset (``None``: the default size).
        dataset_seed: Generation seed.
    """

    def __init__(
        self,
        env: gym.Env,
        env_id: str,
        kind: str,
        namespace: str,
        dataset_size: int | None = None,
        dataset_seed: int = specs.DEFAULT_SEED,
    ) -> None:
        from palaestra.envs.offline.collection import collected_dataset_id

        super().__init__(env, collected_dataset_id(env_id, kind, namespace, dataset_size, dataset_seed))
        self.env_id, self.kind, self.namespace = env_id, kind, namespace
        self.dataset_size, self.dataset_seed = dataset_size, dataset_seed

    def _load(self) -> Any:
        try:
            return super()._load()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"dataset {self.dataset_id!r} has not been collected; run `{self._collect_command()}`"
            ) from None

    def _repair(self) -> str:
        return f"collect it again with `{self._collect_command()} --overwrite`"

    def _collect_command(self) -> str:
        from palaestra.envs.offline.collection import DEFAULT_NAMESPACE

        size = f" --size {self.dataset_size}" if self.dataset_size is not None else ""
        seed = f" --seed {self.dataset_seed}" if self.dataset_seed != specs.DEFAULT_SEED else ""
        namespace = f" --namespace {self.namespace}" if self.namespace != DEFAULT_NAMESPACE else ""
        return f"palaestra collect --env {self.env_id} --kind {self.kind}{size}{seed}{namespace}"


def make_offline_env(
    task: str,
    kind: str,
    source: str = "palaestra",
    dataset_size: int | None = None,
    dataset_seed: int = specs.DEFAULT_SEED,
    generate: bool | None = None,
    progress: bool = True,
    **env_kwargs: Any,
) -> OfflineEnv:
    """Entry point of the offline ids (``gym.make("hopper-medium-v0", source=..., dataset_size=...)``).

    ``env_kwargs`` go to the underlying env (e.g. ``render_mode``).

    Raises:
        ValueError: For an unknown task, kind or source.
    """
    spec = specs.get_task(task)
    specs.offline_env_id(task, kind)  # validates the kind
    return OfflineEnv(gym.make(spec.env_id, **env_kwargs), spec, kind, source, dataset_size, dataset_seed, generate, progress)


def make_collected_env(
    env_id: str | None = None,
    kind: str | None = None,
    namespace: str | None = None,
    dataset_size: int | None = None,
    dataset_seed: int = specs.DEFAULT_SEED,
    **env_kwargs: Any,
) -> CollectedEnv:
    """Entry point of ``Offline-v0``: ``gym.make("Offline-v0", env_id="MountainCarContinuous-v0", kind="medium")``.

    ``env_kwargs`` go to the underlying env.

    Raises:
        ValueError: If ``env_id`` or ``kind`` is missing or unknown.
    """
    from palaestra.envs.offline.collection import DEFAULT_NAMESPACE, check_collectable

    if env_id is None or kind is None:
        raise ValueError(
            "Offline-v0 needs the env and the dataset kind, e.g. "
            "gym.make('Offline-v0', env_id='MountainCarContinuous-v0', kind='medium')"
        )
    if kind not in specs.KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {list(specs.KINDS)}")
    env = check_collectable(env_id, **env_kwargs)
    return CollectedEnv(env, env_id, kind, namespace or DEFAULT_NAMESPACE, dataset_size, dataset_seed)
