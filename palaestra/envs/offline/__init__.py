"""D4RL-style offline RL on Gymnasium's current envs, with datasets stored as Minari datasets.

``gym.make("hopper-medium-v0")`` (any of hopper, halfcheetah, walker2d, pendulum x random, medium, expert,
medium-replay, medium-expert) returns an env with D4RL's ``get_dataset()`` and ``get_normalized_score()``;
its data are palaestra's own, generated locally from shipped SAC behaviour policies, or Minari's files when
``source="minari"``. See :func:`generate_dataset` (and ``palaestra collect``), :func:`qlearning_dataset` and
:func:`from_d4rl_hdf5`.
"""

from palaestra.envs.offline.dataset import (
    DatasetError,
    dataset_arrays,
    episode_bounds,
    episode_returns,
    from_d4rl_hdf5,
    load_minari_dataset,
    qlearning_dataset,
)
from palaestra.envs.offline.env import OfflineEnv, make_offline_env
from palaestra.envs.offline.generation import generate_dataset, minari_root
from palaestra.envs.offline.specs import KINDS, TASKS, dataset_id, offline_env_id, parse_offline_env_id

__all__ = [
    "KINDS",
    "TASKS",
    "DatasetError",
    "OfflineEnv",
    "dataset_arrays",
    "dataset_id",
    "episode_bounds",
    "episode_returns",
    "from_d4rl_hdf5",
    "generate_dataset",
    "load_minari_dataset",
    "make_offline_env",
    "minari_root",
    "offline_env_id",
    "parse_offline_env_id",
    "qlearning_dataset",
]
