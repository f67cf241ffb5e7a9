"""SQIRL: Shallow Q-Iteration via Reinforcement Learning (Laidlaw, Zhu, Russell and Dragan, ICLR 2024).

Paper: "The Effective Horizon Explains Deep RL Performance in Stochastic Environments",
https://arxiv.org/abs/2312.08369 (Sec. 5, Algorithm 1). Reference code (read, not copied):
cassidylaidlaw/effective-horizon, ``effective_horizon/sb3/algorithms/sqirl.py`` (added in 8ef4f4a, unchanged at
1a83eb7fe922b5911d7606728455d65f1953a785) and ``effective_horizon/sb3/train.py`` at 1a83eb7.

SQIRL learns a non-stationary policy one timestep at a time. At iteration ``i`` it collects ``m``
episodes that follow the already-learned greedy policies ``pi_1 .. pi_{i-1}`` for the first ``i - 1``
steps and act uniformly at random afterwards; it regresses the random-continuation returns ``G_t`` onto
``(s_t, a_t)`` (an estimate of ``Q^1 = Q^{pi_rand}``), runs ``k - 1`` steps of fitted-Q iteration on top
(``Q^j ~ r_t + gamma max_a' Q^{j-1}(s_{t+1}, a')``), and freezes ``pi_i = argmax_a Q^k(., a)`` for step ``i``.
Its sample complexity is exponential only in the effective horizon
(:func:`palaestra.envs.control.effective_horizon.effective_horizon`).

Regressors: ``"tabular"`` (least squares on one-hot ``(s, a)`` features, i.e. per-pair means, for
``Discrete`` observations) and ``"mlp"`` (a 64-64 ReLU network with ``k * A`` outputs trained by Adam on
the replay buffer, as in the reference code, for any Box or Discrete observation).

As in the reference code, the MLP takes ``ceil(collected * n_epochs / batch_size)`` gradient steps per iteration,
where ``collected`` counts *every* env step of the iteration's ``m`` episodes (``rollout.episode_timesteps``),
including the steps before the frontier that are not stored.

Differences from the paper's code:
    * ``episodes_per_timestep`` defaults to 32. The reference's ``SQIRL`` class and ``train.py`` default to 1, but
      the paper sweeps ``m`` (the README passes ``algo_args.episodes_per_timestep=$M``) and reports the best value;
      32 is the middle of the grid ``{8, 32, 128}`` that ``benchmarks/online_sqirl.py`` sweeps. Pass ``1`` for the
      reference default.
    * Plain MSE summed over the ``k`` heads (the code optionally rescales each head's loss by its running mean).
    * The replay buffer is sampled uniformly (the code's default priority decay of 1.0 is also uniform).
    * The tabular regressor, which the paper's theory allows (any in-distribution regression oracle), is
      solved in closed form; pairs never seen are excluded from the ``max`` and from the greedy choice.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from palaestra.agents.online.common import EpisodicAgent, env_horizon

__all__ = ["SQIRL", "returns_to_go", "tabular_fitted_q_iteration"]


# --- Pure functions --------------------------------------------------------------------------------
def returns_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Monte-Carlo returns ``G_t = sum_{t' >= t} gamma^(t' - t) r_t'`` of one episode (Alg. 1, line 6)."""
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = float(rewards[t]) + gamma * running
        returns[t] = running
    return returns


def tabular_fitted_q_iteration(
    observations: np.ndarray,
    actions: np.ndarray,
    returns: np.ndarray,
    rewards: np.ndarray,
    next_observations: np.ndarray,
    dones: np.ndarray,
    n_states: int,
    n_actions: int,
    planning_depth: int,
    gamma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Fitted-Q iteration with the least-squares regressor on one-hot ``(s, a)`` features.

    Head 1 regresses the random-continuation returns (``Q^1``); head ``j`` regresses
    ``r + gamma (1 - done) max_a' Q^{j-1}(s', a')`` (Alg. 1, lines 7-9). With one-hot features the
    least-squares fit is the mean target of each visited pair.

    Args:
        observations: State index of each transition, shape ``(N,)``.
        actions: Action of each transition, shape ``(N,)``.
        returns: Random-continuation return ``G_t`` from each transition, shape ``(N,)``.
        rewards: Reward of each transition, shape ``(N,)``.
        next_observations: Next state index, shape ``(N,)``.
        dones: Whether the episode ended at the transition (termination or the horizon), shape ``(N,)``.
        n_states: ``S``.
        n_actions: ``A``.
        planning_depth: ``k >= 1``.
        gamma: Discount.

    Returns:
        ``Q`` of shape ``(k, S, A)`` (0 for unvisited pairs) and the visited mask, shape ``(S, A)``.
    """
    if planning_depth < 1:
        raise ValueError(f"planning_depth k must be >= 1, got {planning_depth!r}")
    pairs = np.asarray(observations, dtype=np.int64) * n_actions + np.asarray(actions, dtype=np.int64)
    counts = np.bincount(pairs, minlength=n_states * n_actions)
    visited = (counts > 0).reshape(n_states, n_actions)

    def regress(targets: np.ndarray) -> np.ndarray:
        sums = np.bincount(pairs, weights=targets, minlength=n_states * n_actions)
        return (sums / np.maximum(counts, 1)).reshape(n_states, n_actions)

    heads = [regress(np.asarray(returns, dtype=np.float64))]
    not_done = 1.0 - np.asarray(dones, dtype=np.float64)
    for _ in range(planning_depth - 1):
        next_values = np.where(visited, heads[-1], -np.inf).max(axis=1)
        next_values = np.where(np.isfinite(next_values), next_values, 0.0)
        heads.append(regress(np.asarray(rewards) + gamma * not_done * next_values[np.asarray(next_observations)]))
    return np.stack(heads), visited


def greedy_actions(q_last: np.ndarray, visited: np.ndarray) -> np.ndarray:
    """``argmax_a Q^k(s, a)`` over visited pairs per state; ``-1`` (act at random) where none was visited."""
    masked = np.where(visited, q_last, -np.inf)
    actions = masked.argmax(axis=1)
    return np.where(visited.any(axis=1), actions, -1)


# --- The neural regressor --------------------------------------------------------------------------
class QNetwork(nn.Module):
    """MLP with ``k * A`` outputs: ``Q^1 .. Q^k`` for every action (the reference code's single-network form)."""

    def __init__(self, n_inputs: int, n_actions: int, planning_depth: int, net_arch: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for hidden in net_arch:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, planning_depth * n_actions))
        self.net = nn.Sequential(*layers)
        self.n_inputs, self.n_actions, self.planning_depth = n_inputs, n_actions, planning_depth

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Q-values of shape ``(batch, k, A)``."""
        return self.net(features).view(-1, self.planning_depth, self.n_actions)


def fqi_loss(q_net: QNetwork, batch: dict[str, torch.Tensor], gamma: float) -> torch.Tensor:
    """Sum over heads of the MSE of ``Q^1`` to ``G_t`` and of ``Q^j`` to ``r + gamma max Q^{j-1}(s')`` (Alg. 1)."""
    q = q_net(batch["features"])  # (B, k, A)
    q_taken = q.gather(2, batch["actions"].view(-1, 1, 1).expand(-1, q.shape[1], 1)).squeeze(2)  # (B, k)
    with torch.no_grad():
        next_max = q_net(batch["next_features"]).max(dim=2).values  # (B, k)
        bootstrapped = batch["rewards"][:, None] + gamma * (1.0 - batch["dones"][:, None]) * next_max[:, :-1]
        targets = torch.cat([batch["returns"][:, None], bootstrapped], dim=1)
    return ((q_taken - targets) ** 2).mean(dim=0).sum()


class SQIRL(EpisodicAgent):
    """Shallow Q-Iteration via Reinforcement Learning with a tabular or neural regressor.

    Args:
        env: A Gymnasium env (or id) with a ``Discrete`` action space and a finite horizon.
        planning_depth: ``k >= 1``, the number of Q-iteration steps (``k - 1`` fitted-Q backups after ``Q^1``).
        episodes_per_timestep: ``m >= 1``, exploration episodes per iteration (one iteration per timestep); the
            reference code's default is 1, the paper reports the best of a sweep (see the module docstring).
        regressor: ``"tabular"`` (needs ``Discrete`` observations) or ``"mlp"``.
        gamma: Discount of the regression targets (1.0: the undiscounted finite-horizon return).
        horizon: Episode length ``T``; default: the env's ``horizon`` attribute or ``max_episode_steps``.
        learning_rate: Adam step size of the MLP regressor (reference default 1e-4).
        batch_size: MLP minibatch size (reference default 128).
        n_epochs: MLP passes per iteration over the env steps it collected: ``ceil(collected * n_epochs /
            batch_size)`` gradient steps, counting every step of the ``m`` episodes as the reference does (default 10).
        net_arch: Hidden sizes of the MLP (reference default ``(64, 64)``).
        max_grad_norm: Gradient-norm clip of the MLP (reference default 10).
        buffer_size: Replay capacity in transitions (oldest dropped first).
        seed: Seeds the exploration, the network initialisation and the env's first reset.
        verbose: 1 prints SB3's log table after every iteration.

    Raises:
        ValueError: For ``k < 1``, ``m < 1``, an unknown regressor, ``gamma`` outside [0, 1] or a bad horizon.
        TypeError: For a non-``Discrete`` action space, or non-``Discrete`` observations with the tabular regressor.
    """

    algorithm: ClassVar[str] = "sqirl"

    def __init__(
        self,
        env: gym.Env | str | None,
        planning_depth: int = 1,
        episodes_per_timestep: int = 32,
        regressor: str = "tabular",
        gamma: float = 1.0,
        horizon: int | None = None,
        learning_rate: float = 1e-4,
        batch_size: int = 128,
        n_epochs: int = 10,
        net_arch: tuple[int, ...] | list[int] = (64, 64),
        max_grad_norm: float = 10.0,
        buffer_size: int = 1_000_000,
        seed: int | None = None,
        verbose: int = 0,
    ):
        for name, value in (
            ("planning_depth", planning_depth),
            ("episodes_per_timestep", episodes_per_timestep),
            ("batch_size", batch_size),
            ("n_epochs", n_epochs),
            ("buffer_size", buffer_size),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if regressor not in ("tabular", "mlp"):
            raise ValueError(f"regressor must be 'tabular' or 'mlp', got {regressor!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma!r}")
        if not learning_rate > 0 or not max_grad_norm > 0:
            raise ValueError(f"learning_rate and max_grad_norm must be > 0, got {learning_rate!r} and {max_grad_norm!r}")
        super().__init__(env, seed=seed, verbose=verbose)
        self.planning_depth, self.episodes_per_timestep = int(planning_depth), int(episodes_per_timestep)
        self.regressor, self.gamma = regressor, float(gamma)
        self.learning_rate, self.batch_size, self.n_epochs = float(learning_rate), int(batch_size), int(n_epochs)
        self.net_arch = tuple(int(h) for h in net_arch)
        self.max_grad_norm, self.buffer_size = float(max_grad_norm), int(buffer_size)
        self.horizon: int = 0 if horizon is None else int(horizon)
        if self.env is not None:
            self.horizon = env_horizon(self.env, horizon)
            self._check_spaces(self.observation_space, self.action_space)
            self._setup_model()
        elif isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1 when no env is given, got {horizon!r}")

    def _check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise TypeError(f"SQIRL needs a Discrete action space, got {action_space}")
        if self.regressor == "tabular" and not isinstance(observation_space, spaces.Discrete):
            raise TypeError(
                f"the tabular SQIRL regressor needs a Discrete observation space, got {observation_space}; "
                "use regressor='mlp' for other observations"
            )
        if self.regressor == "mlp" and not isinstance(observation_space, (spaces.Discrete, spaces.Box)):
            raise TypeError(f"the mlp SQIRL regressor needs a Box or Discrete observation space, got {observation_space}")

    def _setup_model(self) -> None:
        self.n_actions = int(self.action_space.n)  # type: ignore[attr-defined]
        self.timestep = 0  # the frontier i: policies for steps < i are frozen
        self._idle_iterations = 0
        keys = ("obs", "actions", "returns", "rewards", "next_obs", "dones")
        self._buffer: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        self._buffer_len = 0
        # Env steps collected since the last fit, stored or not (the reference's rollout.episode_timesteps): sets the
        # MLP's gradient steps.
        self._new_transitions = 0
        if self.regressor == "tabular":
            self.n_states = int(self.observation_space.n)  # type: ignore[attr-defined]
            self.q_table = np.zeros((self.planning_depth, self.n_states, self.n_actions))
            self.visited = np.zeros((self.n_states, self.n_actions), dtype=bool)
            self.frozen_actions = np.zeros((0, self.n_states), dtype=np.int64)
        else:
            if self.seed is not None:
                torch.manual_seed(self.seed)
            n_inputs = (
                int(self.observation_space.n)  # type: ignore[attr-defined]
                if isinstance(self.observation_space, spaces.Discrete)
                else int(np.prod(self.observation_space.shape))  # type: ignore[arg-type]
            )
            self.q_net = QNetwork(n_inputs, self.n_actions, self.planning_depth, self.net_arch)
            self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=self.learning_rate)
            self.frozen_nets: list[QNetwork] = []

    # --- acting ------------------------------------------------------------------------------------
    def _features(self, observations: np.ndarray) -> torch.Tensor:
        if isinstance(self.observation_space, spaces.Discrete):
            index = torch.as_tensor(np.asarray(observations, dtype=np.int64).reshape(-1) - self.observation_space.start)
            return nn.functional.one_hot(index, int(self.observation_space.n)).float()
        return torch.as_tensor(np.asarray(observations, dtype=np.float32).reshape(len(observations), -1))

    def _greedy(self, observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Frozen ``pi_t`` for ``t`` behind the frontier, the current greedy policy beyond it (-1: no data)."""
        n = len(observations)
        actions = np.empty(n, dtype=np.int64)
        if self.regressor == "tabular":
            states = np.asarray(observations, dtype=np.int64).reshape(n) - self.observation_space.start  # type: ignore[attr-defined]
            latest = greedy_actions(self.q_table[-1], self.visited)
            frozen = steps < len(self.frozen_actions)
            actions[frozen] = self.frozen_actions[steps[frozen], states[frozen]]
            actions[~frozen] = latest[states[~frozen]]
            return actions
        features = self._features(observations)
        with torch.no_grad():
            for i in range(n):
                net = self.frozen_nets[steps[i]] if steps[i] < len(self.frozen_nets) else self.q_net
                actions[i] = int(net(features[i : i + 1])[0, -1].argmax())
        return actions

    def _act(self, observations: np.ndarray, steps: np.ndarray, deterministic: bool) -> np.ndarray:
        """Greedy on the learned steps, random beyond the frontier and in unvisited states (as in training).

        Deterministic calls act greedily on the latest fit beyond the frontier and take action 0 in unvisited states.
        """
        actions = self._greedy(observations, steps)
        if deterministic:
            return np.maximum(actions, 0)
        frontier = len(self.frozen_actions) if self.regressor == "tabular" else len(self.frozen_nets)
        explore = (actions < 0) | (steps >= frontier)
        actions[explore] = self.rng.integers(self.n_actions, size=int(explore.sum()))
        return actions

    # --- learning ----------------------------------------------------------------------------------
    def learn(
        self, total_timesteps: int, callback: Any = None, progress_bar: bool = False, reset_num_timesteps: bool = True
    ) -> SQIRL:
        """Run SQIRL iterations (one per timestep of the horizon) until ``total_timesteps`` env steps are used.

        Args:
            total_timesteps: Env-step budget.
            callback: SB3 callback(s), called after every env step; returning ``False`` stops training.
            progress_bar: Show SB3's progress bar.
            reset_num_timesteps: Count the budget from 0 (``True``) or continue the count.

        Returns:
            ``self``.
        """
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, progress_bar, reset_num_timesteps)
        start_time, iterations = time.time(), 0
        continue_training = True
        while continue_training and self.num_timesteps < total_timesteps and self.timestep < self.horizon:
            callback.on_rollout_start()
            episode_returns, reached, continue_training = self._collect(total_timesteps, callback)
            callback.on_rollout_end()
            fit_start = time.perf_counter()
            loss = self._fit()
            fit_seconds = time.perf_counter() - fit_start
            self._freeze()
            iterations += 1
            # Stop once exploration no longer reaches the frontier (every episode ends before it), as the code does.
            self._idle_iterations = 0 if reached else self._idle_iterations + 1
            self._log(iterations, episode_returns, fit_seconds, loss, start_time)
            if self._idle_iterations >= 10:
                break
        callback.on_training_end()
        return self

    def _collect(self, total_timesteps: int, callback: Any) -> tuple[list[float], bool, bool]:
        """Roll out ``m`` episodes: frozen greedy policies before step ``i``, uniform random from ``i`` on (Alg. 1, line 4)."""
        assert self.env is not None
        episode_returns: list[float] = []
        reached = False
        for _ in range(self.episodes_per_timestep):
            if self.num_timesteps >= total_timesteps:
                break
            observation = self._reset_env()
            trajectory: dict[str, list[Any]] = {key: [] for key in ("obs", "actions", "rewards", "next_obs", "dones")}
            for t in range(self.horizon):
                steps = np.array([t])
                if t < self.timestep:
                    action = int(self._act(np.asarray(observation)[None], steps, deterministic=False)[0])
                else:
                    action = int(self.rng.integers(self.n_actions))
                next_observation, reward, terminated, truncated, _ = self.env.step(action)
                done = terminated or truncated or t == self.horizon - 1
                for key, value in zip(
                    trajectory, (observation, action, float(reward), next_observation, float(done)), strict=True
                ):
                    trajectory[key].append(value)
                self.num_timesteps += 1
                self._new_transitions += 1
                callback.update_locals(locals())
                if not callback.on_step():
                    return episode_returns, reached, False
                observation = next_observation
                if done:
                    break
            rewards = np.asarray(trajectory["rewards"])
            episode_returns.append(float(rewards.sum()))
            keep = slice(self.timestep, None)  # only t >= i enters the buffer (Alg. 1, line 6)
            if len(rewards) > self.timestep:
                reached = True
                self._store(trajectory, returns_to_go(rewards, self.gamma), keep)
        return episode_returns, reached, True

    def _store(self, trajectory: dict[str, list[Any]], returns: np.ndarray, keep: slice) -> None:
        arrays = {
            "obs": np.asarray(trajectory["obs"])[keep],
            "actions": np.asarray(trajectory["actions"], dtype=np.int64)[keep],
            "returns": returns[keep],
            "rewards": np.asarray(trajectory["rewards"])[keep],
            "next_obs": np.asarray(trajectory["next_obs"])[keep],
            "dones": np.asarray(trajectory["dones"])[keep],
        }
        for key, value in arrays.items():
            self._buffer[key].append(value)
        self._buffer_len += len(arrays["actions"])
        while self._buffer_len - len(self._buffer["actions"][0]) >= self.buffer_size:
            self._buffer_len -= len(self._buffer["actions"][0])
            for key in self._buffer:
                self._buffer[key].pop(0)

    def _buffer_arrays(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate(chunks) for key, chunks in self._buffer.items()}

    def _fit(self) -> float:
        """Regress ``Q^1 .. Q^k`` on the whole buffer (Alg. 1, lines 7-9); returns the last loss (tabular: MSE of head 1)."""
        collected, self._new_transitions = self._new_transitions, 0  # this iteration's env steps
        if self._buffer_len == 0:
            return math.nan
        data = self._buffer_arrays()
        if self.regressor == "tabular":
            start = self.observation_space.start  # type: ignore[attr-defined]
            self.q_table, self.visited = tabular_fitted_q_iteration(
                data["obs"].astype(np.int64) - start,
                data["actions"],
                data["returns"],
                data["rewards"],
                data["next_obs"].astype(np.int64) - start,
                data["dones"],
                self.n_states,
                self.n_actions,
                self.planning_depth,
                self.gamma,
            )
            fitted = self.q_table[0][data["obs"].astype(np.int64) - start, data["actions"]]
            return float(np.mean((fitted - data["returns"]) ** 2))
        tensors = {
            "features": self._features(data["obs"]),
            "next_features": self._features(data["next_obs"]),
            "actions": torch.as_tensor(data["actions"]),
            "returns": torch.as_tensor(data["returns"], dtype=torch.float32),
            "rewards": torch.as_tensor(data["rewards"], dtype=torch.float32),
            "dones": torch.as_tensor(data["dones"], dtype=torch.float32),
        }
        n = len(data["actions"])
        gradient_steps = math.ceil(collected * self.n_epochs / self.batch_size)
        generator = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        loss = torch.tensor(math.nan)
        for _ in range(gradient_steps):
            index = torch.randint(n, (min(self.batch_size, n),), generator=generator)
            loss = fqi_loss(self.q_net, {key: value[index] for key, value in tensors.items()}, self.gamma)
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.q_net.parameters(), self.max_grad_norm)
            self.optimizer.step()
        return float(loss.item())

    def _freeze(self) -> None:
        """Freeze ``pi_i`` = greedy on ``Q^k`` for step ``i`` and advance the frontier (Alg. 1, line 10)."""
        if self.regressor == "tabular":
            latest = greedy_actions(self.q_table[-1], self.visited)
            self.frozen_actions = np.vstack([self.frozen_actions, latest[None]])
        else:
            frozen = QNetwork(self.q_net.n_inputs, self.n_actions, self.planning_depth, self.net_arch)
            frozen.load_state_dict(self.q_net.state_dict())
            frozen.requires_grad_(False)
            self.frozen_nets.append(frozen)
        self.timestep += 1

    def _log(self, iterations: int, episode_returns: list[float], fit_seconds: float, loss: float, start_time: float) -> None:
        elapsed = max(time.time() - start_time, 1e-9)
        if episode_returns:
            self.logger.record("rollout/ep_rew_mean", float(np.mean(episode_returns)))
        self.logger.record("time/iterations", iterations)
        self.logger.record("time/fps", int(self.num_timesteps / elapsed))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.record("train/timestep_frontier", self.timestep)
        self.logger.record("train/fqi_seconds", fit_seconds)
        self.logger.record("train/loss", loss)
        self.logger.record("train/buffer_size", self._buffer_len)
        self.logger.dump(step=self.num_timesteps)

    # --- persistence -------------------------------------------------------------------------------
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "planning_depth": self.planning_depth,
            "episodes_per_timestep": self.episodes_per_timestep,
            "regressor": self.regressor,
            "gamma": self.gamma,
            "horizon": self.horizon,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "n_epochs": self.n_epochs,
            "net_arch": list(self.net_arch),
            "max_grad_norm": self.max_grad_norm,
            "buffer_size": self.buffer_size,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    def _state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"timestep": self.timestep}
        if self.regressor == "tabular":
            state.update(
                q_table=torch.as_tensor(self.q_table),
                visited=torch.as_tensor(self.visited),
                frozen_actions=torch.as_tensor(self.frozen_actions),
            )
        else:
            state.update(q_net=self.q_net.state_dict(), frozen=[net.state_dict() for net in self.frozen_nets])
        return state

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_spaces(self.observation_space, self.action_space)
        self._setup_model()
        self.timestep = int(state["timestep"])
        if self.regressor == "tabular":
            self.q_table = state["q_table"].numpy()
            self.visited = state["visited"].numpy()
            self.frozen_actions = state["frozen_actions"].numpy()
        else:
            self.q_net.load_state_dict(state["q_net"])
            for weights in state["frozen"]:
                frozen = QNetwork(self.q_net.n_inputs, self.n_actions, self.planning_depth, self.net_arch)
                frozen.load_state_dict(weights)
                frozen.requires_grad_(False)
                self.frozen_nets.append(frozen)


def build_sqirl(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> SQIRL:
    """``palaestra train --algo sqirl`` builder: SQIRL on the bare (non-vectorised) env."""
    return SQIRL(gym.make(env_id, **env_kwargs), seed=seed, **hyperparams)
