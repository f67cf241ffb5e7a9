"""What DR-RPO and SQIRL share: an episodic agent base with SB3's logger, callbacks, progress bar and persistence.

Both agents learn a *non-stationary* policy over a finite horizon, acting on one Gymnasium env an
episode at a time, so neither fits SB3's ``OnPolicyAlgorithm``/``OffPolicyAlgorithm`` rollout loops.
:class:`EpisodicAgent` gives them the parts of ``BaseAlgorithm`` users rely on: ``num_timesteps``,
``logger``/``set_logger``, ``get_env`` (a one-env ``DummyVecEnv`` view for callbacks), SB3 callbacks with
the ``ProgressBarCallback``, and ``save``/``load`` that refuse a checkpoint of another algorithm.
The step index within the episode is the recurrent ``state`` of ``predict``, as SB3's recurrent policies do.
"""

from __future__ import annotations

import pathlib
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback, ProgressBarCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from palaestra.agents.sb3_logger import console_logger

__all__ = ["EpisodicAgent", "env_horizon", "space_from_dict", "space_to_dict"]


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """A ``torch.load(weights_only=True)``-safe description of a Discrete or Box space."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": torch.as_tensor(space.low),
            "high": torch.as_tensor(space.high),
            "dtype": str(space.dtype),
        }
    raise TypeError(f"only Discrete and Box spaces can be saved, got {space}")


def space_from_dict(data: dict[str, Any]) -> spaces.Space:
    """Inverse of :func:`space_to_dict`."""
    if data["type"] == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    return spaces.Box(data["low"].numpy(), data["high"].numpy(), dtype=np.dtype(data["dtype"]))


def env_horizon(env: gym.Env, horizon: int | None) -> int:
    """The episode length ``T``: ``horizon`` if given, else the env's ``horizon`` attribute or its time limit.

    Raises:
        ValueError: If none is available or the value is not an integer >= 1.
    """
    if horizon is None:
        horizon = getattr(env.unwrapped, "horizon", None)
        if horizon is None and env.spec is not None:
            horizon = env.spec.max_episode_steps
    if horizon is None:
        raise ValueError("the env has no `horizon` attribute and no max_episode_steps; pass horizon=T explicitly")
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    return int(horizon)


class EpisodicAgent:
    """Base of palaestra's episodic online agents (SB3's ``BaseAlgorithm`` surface, without its rollout loop).

    Subclasses set :attr:`algorithm` and implement ``learn``, ``_act``, ``_hyperparameters``,
    ``_state_dict`` and ``_load_state_dict``.

    Attributes:
        env: The Gymnasium env the agent trains on (``None`` after ``load`` without an env).
        num_timesteps: Env steps taken so far.
        observation_space: The env's observation space.
        action_space: The env's action space.
    """

    algorithm: ClassVar[str] = ""

    def __init__(self, env: gym.Env | str | None, seed: int | None = None, verbose: int = 0):
        if isinstance(env, VecEnv):
            name = type(self).__name__
            raise TypeError(f"{name} acts on one Gymnasium env an episode at a time; pass a gymnasium.Env, not a VecEnv")
        if isinstance(env, str):
            env = gym.make(env)
        if env is not None and not isinstance(env, gym.Env):
            raise TypeError(f"env must be a gymnasium.Env or an env id, got {type(env).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an integer or None, got {seed!r}")
        self.env = env
        self.seed = seed
        self.verbose = int(verbose)
        self.num_timesteps = 0
        self.rng = np.random.default_rng(seed)
        self._needs_seeded_reset = True
        self._logger: Logger | None = None
        self._vec_view: DummyVecEnv | None = None
        if env is not None:
            self.observation_space = env.observation_space
            self.action_space = env.action_space

    # --- SB3's BaseAlgorithm surface --------------------------------------------------------------
    @property
    def logger(self) -> Logger:
        """SB3 logger (stdout when ``verbose >= 1``, silent otherwise, until :meth:`set_logger`)."""
        if self._logger is None:
            self._logger = console_logger(self.verbose >= 1)
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Use ``logger`` (e.g. from ``stable_baselines3.common.logger.configure``) for training logs."""
        self._logger = logger

    def get_env(self) -> DummyVecEnv | None:
        """A one-env ``DummyVecEnv`` view of :attr:`env` (what SB3 callbacks expect), or ``None``."""
        if self.env is None:
            return None
        if self._vec_view is None:
            env = self.env
            self._vec_view = DummyVecEnv([lambda: env])
        return self._vec_view

    def set_env(self, env: gym.Env) -> None:
        """Attach a new env with the same spaces (to continue training after ``load``)."""
        if env.observation_space != self.observation_space or env.action_space != self.action_space:
            raise ValueError(
                f"env spaces {env.observation_space}, {env.action_space} differ from the agent's "
                f"{self.observation_space}, {self.action_space}"
            )
        self.env, self._vec_view, self._needs_seeded_reset = env, None, True

    def _setup_learn(
        self, total_timesteps: int, callback: Any, progress_bar: bool, reset_num_timesteps: bool
    ) -> tuple[int, BaseCallback]:
        """Validate the budget, reset or continue the step count, and start the callbacks (as SB3's ``_setup_learn``).

        Returns:
            The step count at which training stops, and the started callback.

        Raises:
            ValueError: If ``total_timesteps`` is not an integer >= 1, or the agent has no env.
        """
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, np.integer)) or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be an integer >= 1, got {total_timesteps!r}")
        if reset_num_timesteps:
            self.num_timesteps = 0
        total_timesteps = int(total_timesteps) + (0 if reset_num_timesteps else self.num_timesteps)
        started = self._setup_callback(callback, progress_bar)
        started.on_training_start(locals(), globals())
        return total_timesteps, started

    def _setup_callback(self, callback: Any, progress_bar: bool) -> BaseCallback:
        if self.env is None:
            raise ValueError(f"{type(self).__name__} has no env to learn on; pass env= to load() or call set_env()")
        if isinstance(callback, list):
            callback = CallbackList(callback)
        elif callback is not None and not isinstance(callback, BaseCallback):
            callback = ConvertCallback(callback)
        callbacks = [] if callback is None else [callback]
        if progress_bar:
            callbacks.append(ProgressBarCallback())
        result = CallbackList(callbacks)
        result.init_callback(self)  # type: ignore[arg-type]
        return result

    def _reset_env(self) -> Any:
        assert self.env is not None
        observation, _ = self.env.reset(seed=self.seed if self._needs_seeded_reset else None)
        self._needs_seeded_reset = False
        return observation

    # --- acting ---------------------------------------------------------------------------------
    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Choose actions with SB3's signature; ``state`` carries each env's step index within its episode.

        Args:
            observation: One observation, or a batch ``(n_envs, ...)``.
            state: ``(step_index,)`` returned by the previous call; ``None`` at the start.
            episode_start: Per-env flags that reset the step index to 0.
            deterministic: Act greedily instead of sampling (see the subclass for what sampling means).

        Returns:
            The action(s) and the next state ``(step_index + 1,)``.
        """
        obs = np.asarray(observation)
        single = obs.shape == self.observation_space.shape
        batch = obs[None] if single else obs
        n = batch.shape[0]
        steps = np.zeros(n, dtype=np.int64) if state is None else np.asarray(state[0], dtype=np.int64).reshape(n)
        if episode_start is not None:
            steps = np.where(np.asarray(episode_start, dtype=bool).reshape(n), 0, steps)
        actions = self._act(batch, steps, deterministic)
        return (actions[0] if single else actions), (steps + 1,)

    def _act(self, observations: np.ndarray, steps: np.ndarray, deterministic: bool) -> np.ndarray:
        raise NotImplementedError

    # --- persistence ----------------------------------------------------------------------------
    def _hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def _state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, path: str | pathlib.Path) -> None:
        """Write hyperparameters, spaces and learned parameters to ``path`` (``.zip`` added when it has no suffix)."""
        path = pathlib.Path(path)
        if path.suffix == "":
            path = path.with_suffix(".zip")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "algorithm": self.algorithm,
            "hyperparameters": self._hyperparameters(),
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "num_timesteps": self.num_timesteps,
            "state": self._state_dict(),
        }
        torch.save(payload, path)

    @classmethod
    def load(cls, path: str | pathlib.Path, env: gym.Env | None = None) -> Any:
        """Rebuild an agent written by :meth:`save`.

        Args:
            path: The file (``.zip`` is tried when ``path`` does not exist as given).
            env: Optional env to attach (needed to continue training).

        Raises:
            FileNotFoundError: If neither ``path`` nor ``path.zip`` exists.
            ValueError: If the file is not a checkpoint of this algorithm.
        """
        path = pathlib.Path(path)
        if not path.exists() and path.with_suffix(path.suffix + ".zip").exists():
            path = path.with_suffix(path.suffix + ".zip")
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a SB3 .zip or any other file is not a torch archive of this layout
            raise ValueError(f"{str(path)!r} is not a {cls.algorithm} checkpoint ({type(error).__name__}: {error})") from None
        found = payload.get("algorithm") if isinstance(payload, dict) else None
        if found != cls.algorithm:
            raise ValueError(f"{str(path)!r} holds a {found!r} checkpoint, not a {cls.algorithm!r} one")
        agent = cls(env=None, **payload["hyperparameters"])
        agent.observation_space = space_from_dict(payload["observation_space"])
        agent.action_space = space_from_dict(payload["action_space"])
        agent.num_timesteps = int(payload["num_timesteps"])
        agent._load_state_dict(payload["state"])
        if env is not None:
            agent.set_env(env)
        return agent
