"""The behaviour policies that generate palaestra's datasets.

Each shipped policy is the actor of a Stable-Baselines3 SAC agent, stored as plain float32 arrays
(``palaestra/envs/offline/data/<task>_<level>.npz``, written by ``scripts/train_behaviour_policies.py``)
and evaluated here in NumPy, so generating data needs neither the SAC checkpoint nor torch. The actor is
SAC's squashed Gaussian (Haarnoja et al. 2018, Appendix C): ``u ~ N(mu(s), sigma(s)^2)``, ``a = tanh(u)``,
rescaled from ``[-1, 1]`` to the action bounds; ``log sigma`` is clipped to ``[-20, 2]`` as in SB3.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "FINGERPRINT_KEY",
    "SquashedGaussianActor",
    "UniformRandomPolicy",
    "behaviour_fingerprint",
    "behaviour_manifest",
    "load_actor",
    "load_behaviour_policy",
    "policy_path",
]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
DATA_PACKAGE = "palaestra.envs.offline"
FINGERPRINT_KEY = "palaestra_behaviour_sha256"  # dataset metadata key of behaviour_fingerprint
SOURCE_FILES = {  # the shipped files each dataset kind is generated from
    "random": (),
    "medium": ("medium",),
    "expert": ("expert",),
    "medium-expert": ("medium", "expert"),
    "medium-replay": ("medium_replay",),
}


class SquashedGaussianActor:
    """SAC's tanh-squashed Gaussian actor on NumPy arrays.

    Args:
        hidden: ``(weight, bias)`` of each hidden ReLU layer, weights shaped ``(out, in)`` as in torch.
        mean: ``(weight, bias)`` of the mean head.
        log_std: ``(weight, bias)`` of the log-standard-deviation head.
        action_low: Lower action bounds.
        action_high: Upper action bounds.
    """

    def __init__(
        self,
        hidden: list[tuple[np.ndarray, np.ndarray]],
        mean: tuple[np.ndarray, np.ndarray],
        log_std: tuple[np.ndarray, np.ndarray],
        action_low: np.ndarray,
        action_high: np.ndarray,
    ) -> None:
        self.hidden = hidden
        self.mean = mean
        self.log_std = log_std
        self.action_low = np.asarray(action_low, dtype=np.float32)
        self.action_high = np.asarray(action_high, dtype=np.float32)
        self.observation_dim = hidden[0][0].shape[1] if hidden else mean[0].shape[1]
        self.action_dim = mean[0].shape[0]

    def __call__(self, observation: np.ndarray, rng: np.random.Generator | None, deterministic: bool = False) -> np.ndarray:
        """Return the action for one observation (sampled with ``rng`` unless ``deterministic``)."""
        h = np.asarray(observation, dtype=np.float32)
        for weight, bias in self.hidden:
            h = np.maximum(weight @ h + bias, 0.0)
        mu = self.mean[0] @ h + self.mean[1]
        if deterministic:
            u = mu
        else:
            if rng is None:
                raise ValueError("a stochastic action needs a seeded numpy Generator, got rng=None")
            log_std = np.clip(self.log_std[0] @ h + self.log_std[1], LOG_STD_MIN, LOG_STD_MAX)
            u = mu + np.exp(log_std) * np.asarray(rng.standard_normal(self.action_dim), dtype=np.float32)
        squashed = np.tanh(u)
        return np.asarray(self.action_low + 0.5 * (squashed + 1.0) * (self.action_high - self.action_low), dtype=np.float32)


class UniformRandomPolicy:
    """Uniformly random actions from a Box space, drawn from the caller's generator."""

    def __init__(self, action_space: gym.spaces.Box) -> None:
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)

    def __call__(self, observation: np.ndarray, rng: np.random.Generator | None, deterministic: bool = False) -> np.ndarray:
        """Return a uniform action (``observation`` and ``deterministic`` are ignored)."""
        if rng is None:
            raise ValueError("a random action needs a seeded numpy Generator, got rng=None")
        return rng.uniform(self.low, self.high).astype(np.float32)


def load_actor(path: str | Path) -> SquashedGaussianActor:
    """Read an actor written by ``scripts/train_behaviour_policies.py``.

    Raises:
        ValueError: If the file lacks the expected arrays.
    """
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    required = {"mean_weight", "mean_bias", "log_std_weight", "log_std_bias", "action_low", "action_high"}
    missing = required - arrays.keys()
    if missing:
        raise ValueError(f"{path} is not a behaviour-policy file: it lacks {sorted(missing)}")
    hidden = []
    i = 0
    while f"hidden_{i}_weight" in arrays:
        hidden.append((arrays[f"hidden_{i}_weight"], arrays[f"hidden_{i}_bias"]))
        i += 1
    return SquashedGaussianActor(
        hidden,
        (arrays["mean_weight"], arrays["mean_bias"]),
        (arrays["log_std_weight"], arrays["log_std_bias"]),
        arrays["action_low"],
        arrays["action_high"],
    )


def policy_path(task: str, level: str) -> Path:
    """Path of a shipped package-data file ``<task>_<level>.npz`` (``level``: expert, medium or medium_replay)."""
    return Path(str(resources.files(DATA_PACKAGE) / "data" / f"{task}_{level}.npz"))


def load_behaviour_policy(task: str, level: str) -> SquashedGaussianActor:
    """Load the shipped ``expert`` or ``medium`` policy of ``task``.

    Raises:
        ValueError: If ``level`` is not ``expert``/``medium``.
        FileNotFoundError: If no policy is shipped for ``task``.
    """
    if level not in ("expert", "medium"):
        raise ValueError(f"behaviour policy level must be 'expert' or 'medium', got {level!r}")
    path = policy_path(task, level)
    if not path.is_file():
        raise FileNotFoundError(
            f"no {level} behaviour policy is shipped for {task!r} (looked for {path}); "
            "train one with scripts/train_behaviour_policies.py"
        )
    return load_actor(path)


def behaviour_manifest() -> dict[str, Any]:
    """The manifest of the shipped policies: per task the training command, seed, steps and returns."""
    path = Path(str(resources.files(DATA_PACKAGE) / "data" / "manifest.json"))
    return json.loads(path.read_text()) if path.is_file() else {}


@functools.lru_cache
def behaviour_fingerprint(task: str, kind: str) -> str:
    """SHA-256 of the shipped files that ``task``'s ``kind`` dataset is generated from (none for ``random``).

    Recorded in every generated dataset, so that data generated from other behaviour policies (an older
    palaestra) are recognised instead of being mixed with the installed policies' data. Computed once per
    process: the shipped files do not change while it runs.

    Raises:
        ValueError: If ``kind`` is unknown.
    """
    if kind not in SOURCE_FILES:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {sorted(SOURCE_FILES)}")
    digest = hashlib.sha256()
    for level in SOURCE_FILES[kind]:
        path = policy_path(task, level)
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()
