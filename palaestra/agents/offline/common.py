"""What TD3+BC and IQL share: dataset batches, state normalisation, the training loop, evaluation, save/load.

Conventions follow the offline-RL literature as CORL implements it (Tarasov et al. 2022): agents train on
:func:`~palaestra.envs.offline.qlearning_dataset` transitions, sample uniform minibatches, normalise states
with the dataset's mean and standard deviation (``s <- (s - mu) / (sigma + 1e-3)``, applied to ``s`` and
``s'`` in the batch and to the env's observation when acting), bootstrap through time-outs
(``not_done = 1 - terminal``) and report D4RL-normalised scores (x100) of periodic evaluations.
``learn(total_timesteps)`` counts gradient steps.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from palaestra.agents.sb3_logger import console_logger
from palaestra.envs.offline.dataset import qlearning_dataset

__all__ = ["STATE_NORM_EPS", "OfflineAgent", "dataset_spaces", "mlp", "soft_update"]

STATE_NORM_EPS = 1e-3


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, output_activation: type[nn.Module] | None = None) -> nn.Sequential:
    """A ReLU multilayer perceptron ``in_dim -> hidden... -> out_dim`` with an optional output activation."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``theta' <- tau * theta + (1 - tau) * theta'`` (Lillicrap et al. 2016)."""
    for target_param, param in zip(target.parameters(), source.parameters(), strict=True):
        target_param.mul_(1.0 - tau).add_(param, alpha=tau)


def dataset_spaces(env: gym.Env | None, data: dict[str, np.ndarray]) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """The observation and action spaces an offline model is built for: ``env``'s, checked against the data.

    Without an env they are inferred from the data (actions bounded by ``max |a|``).

    Raises:
        TypeError: If the env's spaces are not Box spaces.
        ValueError: If the data's shapes do not match the env's spaces, or the action box is not symmetric.
    """
    if env is not None:
        observation_space, action_space = env.observation_space, env.action_space
        if not isinstance(action_space, gym.spaces.Box) or not isinstance(observation_space, gym.spaces.Box):
            raise TypeError(f"offline agents need Box observation and action spaces, got {observation_space}, {action_space}")
        for name, space, array in (
            ("observation", observation_space, data["observations"]),
            ("action", action_space, data["actions"]),
        ):
            if array.shape[1:] != space.shape:
                raise ValueError(f"the dataset's {name}s have shape {array.shape[1:]}, but the env's {name} space is {space}")
    else:
        bound = float(np.abs(data["actions"]).max())
        observation_space = gym.spaces.Box(-np.inf, np.inf, data["observations"].shape[1:], np.float32)
        action_space = gym.spaces.Box(-bound, bound, data["actions"].shape[1:], np.float32)
    if not np.allclose(action_space.low, -action_space.high):
        raise ValueError(f"offline agents act in symmetric boxes [-max_action, max_action]; got {action_space}")
    return observation_space, action_space


class OfflineAgent(ABC):
    """Base of palaestra's offline agents (the :class:`palaestra.protocol.Agent` protocol).

    Args:
        env: The env to evaluate on; an offline env (``gym.make("hopper-medium-v0")``) also provides the data
            and the normalised score. May be ``None`` when ``dataset`` is given (no evaluation then).
        dataset: A ``get_dataset()``/``qlearning_dataset()`` dictionary or a Minari dataset; default:
            ``env.get_dataset()``.
        seed: Seeds network initialisation, minibatch sampling and exploration noise.
        batch_size: Transitions per gradient step.
        gamma: Discount factor.
        normalize_states: Normalise states with the dataset's mean and standard deviation.
        eval_freq: Evaluate every ``eval_freq`` gradient steps (0: never).
        n_eval_episodes: Episodes per evaluation.
        log_interval: Record training losses every ``log_interval`` steps.
        device: Torch device.
        verbose: 1 prints the log table to stdout when no logger was set.
        **hyperparameters: The algorithm's own hyperparameters (see the subclass).
    """

    #: Hyperparameters of the algorithm and their published defaults (set by subclasses).
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        env: gym.Env | None = None,
        dataset: Any = None,
        *,
        seed: int = 0,
        batch_size: int = 256,
        gamma: float = 0.99,
        normalize_states: bool = True,
        eval_freq: int = 5000,
        n_eval_episodes: int = 10,
        log_interval: int = 1000,
        device: str | torch.device = "cpu",
        verbose: int = 0,
        **hyperparameters: Any,
    ) -> None:
        if env is None and dataset is None:
            raise ValueError("an offline agent needs an env with get_dataset() or a dataset; got neither")
        unknown = set(hyperparameters) - set(self.DEFAULTS)
        if unknown:
            raise TypeError(
                f"unknown hyperparameters {sorted(unknown)} for {type(self).__name__}; expected {sorted(self.DEFAULTS)}"
            )
        for name, value in (("batch_size", batch_size), ("n_eval_episodes", n_eval_episodes), ("log_interval", log_interval)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if eval_freq < 0:
            raise ValueError(f"eval_freq must be >= 0, got {eval_freq}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        raw = qlearning_source = dataset if dataset is not None else env
        if not isinstance(raw, dict):
            raw = _dataset_dict(raw)
            qlearning_source = raw
        data = qlearning_dataset(qlearning_source)
        observation_space, action_space = dataset_spaces(env, data)
        config = {
            "seed": seed,
            "batch_size": batch_size,
            "gamma": gamma,
            "normalize_states": normalize_states,
            "eval_freq": eval_freq,
            "n_eval_episodes": n_eval_episodes,
            "log_interval": log_interval,
            "verbose": verbose,
            **self.DEFAULTS,
            **hyperparameters,
        }
        if normalize_states:
            mean = data["observations"].mean(0)
            std = data["observations"].std(0) + STATE_NORM_EPS
        else:
            mean = np.zeros(observation_space.shape, dtype=np.float32)
            std = np.ones(observation_space.shape, dtype=np.float32)
        self._setup(env, observation_space, action_space, config, mean, std, torch.device(device))
        self._set_data(data, raw)

    # --- construction ------------------------------------------------------------------------------------
    def _setup(
        self,
        env: gym.Env | None,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        config: dict[str, Any],
        mean: np.ndarray,
        std: np.ndarray,
        device: torch.device,
    ) -> None:
        self.env = env
        self.observation_space, self.action_space = observation_space, action_space
        self.config = config
        self.seed = int(config["seed"])
        self.batch_size = int(config["batch_size"])
        self.gamma = float(config["gamma"])
        self.device = device
        self.obs_mean = np.asarray(mean, dtype=np.float32)
        self.obs_std = np.asarray(std, dtype=np.float32)
        self._obs_mean_t = torch.as_tensor(self.obs_mean, device=device)
        self._obs_std_t = torch.as_tensor(self.obs_std, device=device)
        self.max_action = torch.as_tensor(action_space.high, dtype=torch.float32, device=device)
        self.obs_dim, self.action_dim = int(np.prod(observation_space.shape)), int(np.prod(action_space.shape))
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._build()
        self.num_timesteps = 0
        self.eval_history: list[dict[str, float]] = []
        self._logger: Any = None
        self._data: dict[str, torch.Tensor] | None = None

    def _set_data(self, data: dict[str, np.ndarray], raw: dict[str, np.ndarray]) -> None:
        """Move the normalised transitions to the device (subclasses may transform rewards first)."""
        rewards = self._transform_rewards(data["rewards"], raw)
        tensors = {
            "observations": (data["observations"] - self.obs_mean) / self.obs_std,
            "actions": data["actions"],
            "rewards": rewards[:, None],
            "next_observations": (data["next_observations"] - self.obs_mean) / self.obs_std,
            "not_dones": 1.0 - data["terminals"].astype(np.float32)[:, None],
        }
        self._data = {
            key: torch.as_tensor(np.asarray(value, dtype=np.float32), device=self.device) for key, value in tensors.items()
        }
        self.dataset_size = len(data["rewards"])

    def _transform_rewards(self, rewards: np.ndarray, raw: dict[str, np.ndarray]) -> np.ndarray:
        return rewards

    @abstractmethod
    def _build(self) -> None:
        """Create networks and optimisers (called under the agent's seed)."""

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on ``batch``; returns detached loss tensors for logging."""

    @abstractmethod
    def _act(self, observations: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions for a batch of normalised observations."""

    @abstractmethod
    def _modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        """Everything with a ``state_dict`` to save."""

    # --- training --------------------------------------------------------------------------------------
    def sample(self) -> dict[str, torch.Tensor]:
        """A uniform minibatch of ``batch_size`` transitions (with replacement)."""
        if self._data is None:
            raise ValueError("this agent holds no dataset (it was loaded without an offline env); pass env= to load()")
        index = torch.randint(self.dataset_size, (self.batch_size,), generator=self.generator, device=self.device)
        return {key: value[index] for key, value in self._data.items()}

    def set_logger(self, logger: Any) -> None:
        """Use an SB3 :class:`~stable_baselines3.common.logger.Logger` (CSV/TensorBoard/stdout)."""
        self._logger = logger

    @property
    def logger(self) -> Any:
        """The SB3 logger (stdout when ``verbose``, else silent, unless one was set)."""
        if self._logger is None:
            self._logger = console_logger(bool(self.config["verbose"]))
        return self._logger

    def learn(
        self,
        total_timesteps: int,
        callback: Callable[[OfflineAgent], bool | None] | None = None,
        progress_bar: bool = False,
    ) -> OfflineAgent:
        """Train for ``total_timesteps`` gradient steps.

        Args:
            total_timesteps: Gradient steps.
            callback: Called as ``callback(agent)`` after every step; returning ``False`` stops training.
            progress_bar: Show a progress bar.

        Returns:
            ``self``.
        """
        if total_timesteps < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {total_timesteps}")
        from tqdm.auto import tqdm

        self._on_learn_start(total_timesteps)
        log_interval, eval_freq = self.config["log_interval"], self.config["eval_freq"]
        started = time.perf_counter()
        with tqdm(total=total_timesteps, disable=not progress_bar, unit="step", desc=type(self).__name__) as bar:
            for _ in range(total_timesteps):
                metrics = self.train_step(self.sample())
                self.num_timesteps += 1
                bar.update(1)
                if self.num_timesteps % log_interval == 0:
                    for key, value in metrics.items():
                        self.logger.record(f"train/{key}", float(value))
                    self.logger.record("time/gradient_steps", self.num_timesteps)
                    self.logger.record("time/steps_per_second", log_interval / (time.perf_counter() - started))
                    started = time.perf_counter()
                if eval_freq and self.env is not None and self.num_timesteps % eval_freq == 0:
                    self.evaluate_and_log()
                if self.num_timesteps % log_interval == 0:
                    self.logger.dump(self.num_timesteps)
                if callback is not None and callback(self) is False:
                    break
        return self

    def _on_learn_start(self, total_timesteps: int) -> None:  # noqa: B027 (an optional hook)
        """Hook run before training (IQL sets its learning-rate schedule here)."""

    def evaluate_and_log(self) -> dict[str, float]:
        """Evaluate on ``self.env`` (deterministic actions) and record the return and D4RL-normalised score."""
        from palaestra.evaluation import evaluate

        if self.env is None:
            raise ValueError("this agent has no env to evaluate on")
        result = evaluate(self, self.env, n_episodes=self.config["n_eval_episodes"], seed=self.seed + 100)
        entry = {"step": float(self.num_timesteps), "mean_return": result.mean}
        normalizer = _find_attribute(self.env, "get_normalized_score")
        if normalizer is not None:
            entry["normalized_score"] = 100.0 * float(normalizer(result.mean))
            self.logger.record("eval/normalized_score", entry["normalized_score"])
        self.logger.record("eval/mean_return", result.mean)
        self.eval_history.append(entry)
        return entry

    # --- acting ----------------------------------------------------------------------------------------
    def normalize_observation(self, observation: np.ndarray) -> torch.Tensor:
        """Apply the dataset's state normalisation to raw env observations."""
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32), device=self.device)
        return (obs - self._obs_mean_t) / self._obs_std_t

    @torch.no_grad()
    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """SB3's ``predict``: the action for one observation or a batch (no recurrent state)."""
        observation = np.asarray(observation, dtype=np.float32)
        single = observation.shape == self.observation_space.shape
        if not single and observation.shape[1:] != self.observation_space.shape:
            raise ValueError(f"observation of shape {observation.shape} does not match {self.observation_space}")
        obs = self.normalize_observation(observation[None] if single else observation)
        actions = self._act(obs, deterministic).cpu().numpy()
        return (actions[0] if single else actions), None

    # --- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write parameters, optimiser states, hyperparameters and normalisation statistics (``.pt`` added if no suffix)."""
        checkpoint = {
            "algorithm": type(self).__name__,
            "config": self.config,
            "obs_mean": torch.as_tensor(self.obs_mean),
            "obs_std": torch.as_tensor(self.obs_std),
            "obs_low": torch.as_tensor(self.observation_space.low),
            "obs_high": torch.as_tensor(self.observation_space.high),
            "action_high": torch.as_tensor(self.action_space.high),
            "num_timesteps": self.num_timesteps,
            "eval_history": self.eval_history,
            "state_dicts": {name: module.state_dict() for name, module in self._modules().items()},
        }
        torch.save(checkpoint, _with_suffix(path))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | None = None, device: str | torch.device = "cpu") -> OfflineAgent:
        """Rebuild an agent written by :meth:`save`; with an offline ``env`` it can also keep training.

        Raises:
            ValueError: If the file holds another algorithm.
        """
        checkpoint = torch.load(_with_suffix(path), map_location=device, weights_only=True)
        if checkpoint["algorithm"] != cls.__name__:
            raise ValueError(f"{path} holds a {checkpoint['algorithm']} agent, not {cls.__name__}")
        low, high = (checkpoint[key].numpy().astype(np.float32) for key in ("obs_low", "obs_high"))
        max_action = checkpoint["action_high"].numpy().astype(np.float32)
        observation_space = gym.spaces.Box(low, high, dtype=np.float32)  # float32 bounds: no precision warning
        action_space = gym.spaces.Box(-max_action, max_action, dtype=np.float32)
        if env is not None:
            observation_space, action_space = env.observation_space, env.action_space  # type: ignore[assignment]
        agent = cls.__new__(cls)
        agent._setup(
            env,
            observation_space,
            action_space,
            checkpoint["config"],
            checkpoint["obs_mean"].numpy(),
            checkpoint["obs_std"].numpy(),
            torch.device(device),
        )
        for name, module in agent._modules().items():
            module.load_state_dict(checkpoint["state_dicts"][name])
        agent.num_timesteps = checkpoint["num_timesteps"]
        agent.eval_history = checkpoint["eval_history"]
        if env is not None and _find_attribute(env, "get_dataset") is not None:
            raw = _dataset_dict(env)
            agent._set_data(qlearning_dataset(raw), raw)
        return agent


def _with_suffix(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix else path.with_suffix(".pt")


def _find_attribute(env: Any, name: str) -> Any:
    while env is not None:
        attribute = getattr(env, name, None)
        if attribute is not None:
            return attribute
        env = getattr(env, "env", None)
    return None


def _dataset_dict(source: Any) -> dict[str, np.ndarray]:
    if hasattr(source, "iterate_episodes"):
        from palaestra.envs.offline.dataset import dataset_arrays

        return dataset_arrays(source)
    get_dataset = _find_attribute(source, "get_dataset")
    if get_dataset is None:
        raise TypeError(f"{type(source).__name__} has no get_dataset(); pass dataset= explicitly")
    return get_dataset()


def build_offline_agent(
    cls: type[OfflineAgent], env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]
) -> OfflineAgent:
    """The ``palaestra train`` builder: ``cls(gym.make(env_id, **env_kwargs), seed=seed, **hyperparams)``."""
    return cls(gym.make(env_id, **env_kwargs), seed=seed, **hyperparams)
