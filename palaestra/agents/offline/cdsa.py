"""CDSA: a score-based correction of a frozen offline policy's actions toward the dataset's density.

Liu, Yang & Li, "Conservative Denoising Score-based Algorithm for Offline Reinforcement Learning" (2024).
What the paper states: a denoising score model learns the gradient field ``grad log p`` of the dataset
distribution; at acting time it adjusts the action of a *pre-trained, frozen* offline policy (TD3+BC, IQL,
...) toward higher dataset density, which makes the policy more conservative and risk-averse (higher VaR
of returns); an inverse-dynamics model turns a gradient in state space into an action; deterministic,
continuous MDPs are assumed. No code was published, so **the concrete recipe below is a reconstruction**,
not the paper's exact algorithm:

* **Score models** (reconstruction): noise-conditional score networks ``s(x, sigma) = F(x, log sigma) / sigma``
  (the ``1 / sigma`` output scaling of Song & Ermon 2020, "Improved Techniques for Training Score-Based
  Generative Models", Section 4.2) on the joint ``x = (s, a)`` and on next states ``s'``, trained by
  denoising score matching (Vincent 2011) with Song & Ermon's (2019, eqs. 5-6) weighting ``lambda(sigma) =
  sigma^2``: ``L = 1/2 E ||sigma * s(x + sigma * eps, sigma) + eps||^2``, ``log sigma`` uniform on
  ``[log sigma_min, log sigma_max]``. States are normalised with the dataset statistics, actions divided by
  ``max_action``.
* **Dynamics models** (reconstruction): an inverse model ``I(s, s') -> a`` and a forward model
  ``f(s, a) -> s' - s``, MLPs fitted by MSE on the dataset transitions.
* **Acting-time correction** (reconstruction): from ``a0 = pi(s)``, ``n_steps`` noise-free annealed-Langevin
  steps on the action block of the joint score, ``a <- a + step_size * sigma_k^2 * grad_a log p_sigma_k(s, a)``
  with ``sigma_k`` geometric from ``sigma_start`` to ``sigma_end`` and each step's norm capped at
  ``max_step_norm``; optionally (``state_weight = beta > 0``) a state-space term: predict ``s' = s + f(s, a)``,
  move it up the next-state density ``s'* = s' + state_step_size * sigma_end^2 * grad log p(s')`` and
  blend ``a <- (1 - beta) a + beta I(s, s'*)``. Optionally only actions the score judges out of
  distribution (``||sigma_end * score|| > ood_threshold``) are corrected. The result is clipped to the
  action bounds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from palaestra.agents.offline.common import STATE_NORM_EPS, dataset_spaces, mlp
from palaestra.envs.offline.dataset import qlearning_dataset

__all__ = ["CDSA", "DatasetScoreModel", "ScoreNet", "build_cdsa_score_model", "denoising_score_matching_loss"]


def denoising_score_matching_loss(scores: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """``1/2 mean_batch || sigma * s(x + sigma * eps, sigma) + eps ||^2`` (Song & Ermon 2019, eqs. 5-6, lambda = sigma^2).

    Args:
        scores: ``s(x~, sigma)`` at the noisy points, shape ``(batch, dim)``.
        noise: The standard normal ``eps`` that made ``x~ = x + sigma * eps``.
        sigmas: Noise levels, shape ``(batch, 1)``.
    """
    return 0.5 * (sigmas * scores + noise).pow(2).sum(dim=1).mean()


class ScoreNet(nn.Module):
    """Noise-conditional score network ``s(x, sigma) = F([x, log sigma]) / sigma`` (SiLU MLP).

    Args:
        dim: Size of ``x``.
        hidden: Hidden widths.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = dim + 1
        for size in hidden:
            layers += [nn.Linear(width, size), nn.SiLU()]
            width = size
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """The score ``grad_x log p_sigma(x)`` estimate, shape like ``x``; ``sigmas`` has shape ``(batch, 1)``."""
        return self.net(torch.cat([x, sigmas.log()], dim=1)) / sigmas


class DatasetScoreModel(nn.Module):
    """The dataset's score and dynamics models that :class:`CDSA` uses (all in normalised units).

    Args:
        observation_space: The dataset's (and policy's) observation space.
        action_space: A symmetric ``Box`` ``[-max_action, max_action]``.
        obs_mean: Dataset state mean.
        obs_std: Dataset state standard deviation plus ``1e-3``, as the offline agents normalise.
        hidden_sizes: Hidden widths of every network (the notes' reconstruction: 256 x 3).
        sigma_min: Smallest training noise level.
        sigma_max: Largest training noise level.
    """

    # buffers (saved with the weights)
    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    max_action: torch.Tensor

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        hidden_sizes: tuple[int, ...] = (256, 256, 256),
        sigma_min: float = 0.01,
        sigma_max: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        _check_box(action_space, "action")
        if not np.allclose(action_space.low, -action_space.high):
            raise ValueError(f"CDSA needs a symmetric action box [-max_action, max_action], got {action_space}")
        self.observation_space, self.action_space = observation_space, action_space
        self.obs_dim, self.action_dim = int(np.prod(observation_space.shape)), int(np.prod(action_space.shape))
        self.hidden_sizes, self.sigma_min, self.sigma_max = tuple(hidden_sizes), float(sigma_min), float(sigma_max)
        self.register_buffer("obs_mean", torch.as_tensor(np.asarray(obs_mean, dtype=np.float32)))
        self.register_buffer("obs_std", torch.as_tensor(np.asarray(obs_std, dtype=np.float32)))
        self.register_buffer("max_action", torch.as_tensor(action_space.high, dtype=torch.float32))
        self.joint_score = ScoreNet(self.obs_dim + self.action_dim, self.hidden_sizes)
        self.state_score = ScoreNet(self.obs_dim, self.hidden_sizes)
        self.inverse_dynamics = mlp(2 * self.obs_dim, self.hidden_sizes, self.action_dim, nn.Tanh)
        self.forward_dynamics = mlp(self.obs_dim + self.action_dim, self.hidden_sizes, self.obs_dim)
        self._data: dict[str, np.ndarray] | None = None  # the transitions from_dataset() was given
        self.fit_kwargs: dict[str, Any] = {}  # fit() settings chosen on the command line (build_cdsa)

    @classmethod
    def from_dataset(cls, dataset: dict[str, np.ndarray], env: gym.Env | None = None, **kwargs: Any) -> DatasetScoreModel:
        """A model whose normalisation matches the offline agents' on ``dataset`` (a D4RL-style dictionary).

        Args:
            dataset: ``get_dataset()`` or ``qlearning_dataset()`` arrays.
            env: Gives the spaces; without it they are inferred from the data (actions bounded by ``max |a|``).
            **kwargs: ``hidden_sizes``, ``sigma_min``, ``sigma_max``.

        Raises:
            ValueError: If the data's shapes do not match the env's spaces.
        """
        data = qlearning_dataset(dataset)
        observations = data["observations"]
        observation_space, action_space = dataset_spaces(env, data)
        model = cls(observation_space, action_space, observations.mean(0), observations.std(0) + STATE_NORM_EPS, **kwargs)
        model._data = data
        return model

    # --- normalisation ---------------------------------------------------------------------------------
    def normalize_observations(self, observations: torch.Tensor) -> torch.Tensor:
        """``(s - mean) / std``."""
        return (observations - self.obs_mean) / self.obs_std

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """``a / max_action`` (in ``[-1, 1]``)."""
        return actions / self.max_action

    # --- training --------------------------------------------------------------------------------------
    def fit(
        self,
        steps: int = 20_000,
        batch_size: int = 512,
        lr: float = 1e-3,
        seed: int = 0,
        dataset: dict[str, np.ndarray] | None = None,
        progress_bar: bool = False,
    ) -> list[dict[str, float]]:
        """Train the two score networks (DSM) and the two dynamics models (MSE) on the dataset.

        Args:
            steps: Gradient steps (one Adam step on the sum of the four independent losses).
            batch_size: Transitions per step.
            lr: Adam learning rate.
            seed: Seeds minibatches and noise.
            dataset: The transitions; default: the ones given to :meth:`from_dataset`.
            progress_bar: Show a progress bar.

        Returns:
            Losses every 100 steps.
        """
        if steps < 1 or batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
        data = qlearning_dataset(dataset) if dataset is not None else self._data
        if data is None:
            raise ValueError("no dataset to fit: build the model with from_dataset() or pass dataset=")
        from tqdm.auto import tqdm

        device = self.obs_mean.device
        rows = real_next_state_rows(data)
        obs = self.normalize_observations(torch.as_tensor(data["observations"][rows], dtype=torch.float32, device=device))
        next_obs = self.normalize_observations(
            torch.as_tensor(data["next_observations"][rows], dtype=torch.float32, device=device)
        )
        actions = self.normalize_actions(torch.as_tensor(data["actions"][rows], dtype=torch.float32, device=device))
        generator = torch.Generator(device=device).manual_seed(seed)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        log_low, log_high = math.log(self.sigma_min), math.log(self.sigma_max)
        history = []
        for step in tqdm(range(1, steps + 1), disable=not progress_bar, desc="CDSA score model"):
            index = torch.randint(len(obs), (batch_size,), generator=generator, device=device)
            s, a, s2 = obs[index], actions[index], next_obs[index]
            losses = {}
            for name, net, x in (("joint_dsm", self.joint_score, torch.cat([s, a], 1)), ("state_dsm", self.state_score, s2)):
                sigmas = torch.exp(log_low + (log_high - log_low) * torch.rand(len(x), 1, generator=generator, device=device))
                noise = torch.randn(x.shape, generator=generator, device=device)
                losses[name] = denoising_score_matching_loss(net(x + sigmas * noise, sigmas), noise, sigmas)
            losses["inverse_dynamics"] = (self.inverse_dynamics(torch.cat([s, s2], 1)) - a).pow(2).mean()
            losses["forward_dynamics"] = (self.forward_dynamics(torch.cat([s, a], 1)) - (s2 - s)).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()  # type: ignore[union-attr]
            optimizer.step()
            if step % 100 == 0 or step == steps:
                history.append({"step": float(step), **{k: float(v.detach()) for k, v in losses.items()}})
        return history

    # --- the Agent-style interface used by ``palaestra train --algo cdsa-score`` ---------------------------
    def set_logger(self, logger: Any) -> None:
        """Record the fitting losses with an SB3 logger."""
        self._logger = logger

    def learn(self, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> DatasetScoreModel:
        """:meth:`fit` for ``total_timesteps`` gradient steps with the settings in ``self.fit_kwargs``."""
        history = self.fit(steps=total_timesteps, progress_bar=progress_bar, **self.fit_kwargs)
        logger = getattr(self, "_logger", None)
        if logger is not None:
            for entry in history:
                for key, value in entry.items():
                    if key != "step":
                        logger.record(f"train/{key}", value)
                logger.dump(int(entry["step"]))
        return self

    # --- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the networks, normalisation and spaces (``.pt`` added if no suffix)."""
        torch.save(
            {
                "algorithm": "CDSA-score-model",
                "obs_low": torch.as_tensor(self.observation_space.low),
                "obs_high": torch.as_tensor(self.observation_space.high),
                "action_high": torch.as_tensor(self.action_space.high),
                "hidden_sizes": list(self.hidden_sizes),
                "sigma_min": self.sigma_min,
                "sigma_max": self.sigma_max,
                "state_dict": self.state_dict(),
            },
            _with_suffix(path),
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> DatasetScoreModel:
        """Rebuild a model written by :meth:`save`.

        Raises:
            ValueError: If the file is not a CDSA score model.
        """
        checkpoint = torch.load(_with_suffix(path), map_location=device, weights_only=True)
        if checkpoint.get("algorithm") != "CDSA-score-model":
            raise ValueError(f"{path} holds a {checkpoint.get('algorithm')!r} checkpoint, not a CDSA score model")
        high = checkpoint["action_high"].numpy()
        low, high_obs = (checkpoint[key].numpy().astype(np.float32) for key in ("obs_low", "obs_high"))
        observation_space = gym.spaces.Box(low, high_obs, dtype=np.float32)
        state = checkpoint["state_dict"]
        model = cls(
            observation_space,
            gym.spaces.Box(-high, high, dtype=np.float32),
            state["obs_mean"].numpy(),
            state["obs_std"].numpy(),
            tuple(checkpoint["hidden_sizes"]),
            checkpoint["sigma_min"],
            checkpoint["sigma_max"],
        )
        model.load_state_dict(state)
        return model.to(device)


class CDSA:
    """A frozen policy whose actions are moved toward the dataset's density at acting time (a :class:`Policy`).

    Args:
        policy: Any policy with SB3's ``predict`` and ``observation_space``/``action_space`` attributes
            (palaestra's offline agents, SB3 models); it is never trained.
        score_model: A fitted :class:`DatasetScoreModel` of the policy's training data.
        step_size: ``eta_a``, step of the action update in units of ``sigma_k^2 * score``.
        n_steps: Number of annealed steps ``K`` (0 returns the policy's actions unchanged).
        sigma_start: Noise level of the first step.
        sigma_end: Noise level of the last step (and of the state term and OOD gate).
        max_step_norm: Cap on each step's norm, in normalised action units.
        state_weight: ``beta``, weight of the inverse-dynamics action in the blend (0: action term only).
        state_step_size: ``eta_s``, step of the next-state update.
        ood_threshold: Correct only actions with ``||sigma_end * score_a|| >`` this (0: correct all).

    Raises:
        TypeError: If the policy has no Box ``action_space``.
        ValueError: If the policy's spaces differ from the score model's, or a knob is out of range.
    """

    def __init__(
        self,
        policy: Any,
        score_model: DatasetScoreModel,
        *,
        step_size: float = 0.5,
        n_steps: int = 5,
        sigma_start: float = 0.3,
        sigma_end: float = 0.05,
        max_step_norm: float = 0.1,
        state_weight: float = 0.0,
        state_step_size: float = 0.5,
        ood_threshold: float = 0.0,
    ) -> None:
        action_space = getattr(policy, "action_space", None)
        if not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"CDSA wraps policies with a Box action_space; {type(policy).__name__} has {action_space!r}")
        if action_space.shape != score_model.action_space.shape or not np.allclose(
            action_space.high, score_model.action_space.high
        ):
            raise ValueError(
                f"the policy acts in {action_space}, but the score model was fitted on actions in {score_model.action_space}"
            )
        observation_space = getattr(policy, "observation_space", None)
        if observation_space is not None and observation_space.shape != score_model.observation_space.shape:
            raise ValueError(
                f"the policy observes {observation_space}, but the score model was fitted on states in "
                f"{score_model.observation_space}"
            )
        for name, value in (("step_size", step_size), ("state_step_size", state_step_size), ("ood_threshold", ood_threshold)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        if not 0 < sigma_end <= sigma_start:
            raise ValueError(f"need 0 < sigma_end <= sigma_start, got sigma_start={sigma_start}, sigma_end={sigma_end}")
        if max_step_norm <= 0:
            raise ValueError(f"max_step_norm must be > 0, got {max_step_norm}")
        if not 0.0 <= state_weight <= 1.0:
            raise ValueError(f"state_weight must be in [0, 1], got {state_weight}")
        self.policy, self.score_model = policy, score_model.eval().requires_grad_(False)
        self.observation_space = observation_space if observation_space is not None else score_model.observation_space
        self.action_space = action_space
        self.step_size, self.n_steps, self.max_step_norm = float(step_size), int(n_steps), float(max_step_norm)
        self.sigma_start, self.sigma_end = float(sigma_start), float(sigma_end)
        self.state_weight, self.state_step_size, self.ood_threshold = (
            float(state_weight),
            float(state_step_size),
            float(ood_threshold),
        )

    def sigmas(self) -> np.ndarray:
        """The annealing schedule ``sigma_k``, geometric from ``sigma_start`` to ``sigma_end`` (``n_steps`` values)."""
        if self.n_steps == 1:
            return np.array([self.sigma_end])
        return np.geomspace(self.sigma_start, self.sigma_end, self.n_steps)

    @torch.no_grad()
    def adjust(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Move a batch of actions toward higher dataset density in their states (see the module docstring).

        Args:
            observations: Raw env observations, shape ``(batch, *obs_shape)``.
            actions: The policy's actions, shape ``(batch, *action_shape)``.

        Returns:
            The corrected actions, clipped to the action bounds.
        """
        model = self.score_model
        device = model.obs_mean.device
        s = model.normalize_observations(
            torch.as_tensor(np.asarray(observations, np.float32), device=device).reshape(len(observations), -1)
        )
        a = model.normalize_actions(torch.as_tensor(np.asarray(actions, np.float32), device=device).reshape(len(actions), -1))
        n = len(s)
        end = torch.full((n, 1), self.sigma_end, device=device)
        if self.ood_threshold > 0:
            score = model.joint_score(torch.cat([s, a], 1), end)[:, model.obs_dim :]
            gate = ((self.sigma_end * score).norm(dim=1, keepdim=True) > self.ood_threshold).float()
        else:
            gate = torch.ones(n, 1, device=device)
        for sigma in self.sigmas():
            level = torch.full((n, 1), float(sigma), device=device)
            score = model.joint_score(torch.cat([s, a], 1), level)[:, model.obs_dim :]  # grad_a log p(s, a)
            step = self.step_size * float(sigma) ** 2 * score
            norm = step.norm(dim=1, keepdim=True).clamp(min=1e-12)
            a = a + gate * step * torch.clamp(self.max_step_norm / norm, max=1.0)
        if self.state_weight > 0:
            predicted = s + model.forward_dynamics(torch.cat([s, a], 1))
            improved = predicted + self.state_step_size * self.sigma_end**2 * model.state_score(predicted, end)
            a = a + gate * self.state_weight * (model.inverse_dynamics(torch.cat([s, improved], 1)) - a)
        a = a.clamp(-1.0, 1.0) * model.max_action  # back to the env's units, inside the bounds
        return a.reshape(np.asarray(actions).shape).cpu().numpy()

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``: the wrapped policy's action for one observation or a batch, corrected."""
        actions, state = self.policy.predict(observation, state, episode_start, deterministic)
        observation, actions = np.asarray(observation, np.float32), np.asarray(actions, np.float32)
        single = observation.shape == self.observation_space.shape
        if self.n_steps == 0 and self.state_weight == 0:
            return actions, state
        corrected = self.adjust(observation[None] if single else observation, actions[None] if single else actions)
        return (corrected[0] if single else corrected), state


def build_cdsa_score_model(
    env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]
) -> DatasetScoreModel:
    """``palaestra train --algo cdsa-score`` builder: a score model of the offline env's dataset.

    ``hyperparams`` may set the model's ``hidden_sizes``, ``sigma_min``, ``sigma_max`` and the fitting's
    ``batch_size`` (512) and ``lr`` (1e-3); ``--timesteps`` counts gradient steps.
    """
    hyperparams = dict(hyperparams)
    fit_kwargs = {"batch_size": hyperparams.pop("batch_size", 512), "lr": hyperparams.pop("lr", 1e-3), "seed": seed}
    env = gym.make(env_id, **env_kwargs)
    get_dataset = getattr(env, "get_dataset", None)
    if get_dataset is None:
        raise ValueError(f"{env_id} has no dataset (get_dataset()); use an offline env id such as pendulum-medium-v0")
    model = DatasetScoreModel.from_dataset(get_dataset(), env, **hyperparams)
    model.fit_kwargs = fit_kwargs
    return model


def real_next_state_rows(data: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the rows whose next state is real: all but those ``has_next_observation`` marks false.

    A D4RL file imported with ``from_d4rl_hdf5`` stores a terminal row's next state as the state itself; the
    state score and both dynamics models learn from next states, so such rows are left out of the fit.
    """
    n = len(data["observations"])
    flags = np.asarray(data.get("has_next_observation", np.ones(n, dtype=bool)), dtype=bool)
    return np.flatnonzero(flags)


def _check_box(space: Any, name: str) -> None:
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"CDSA needs a Box {name} space, got {space}")


def _with_suffix(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix else path.with_suffix(".pt")
