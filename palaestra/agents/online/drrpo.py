"""DR-RPO: Distributionally Robust Regularized Policy Optimization with linear function approximation.

Paper: Gu, He, Liu & Xu, "Policy Regularized Distributionally Robust Markov Decision Processes with
Linear Function Approximation", https://arxiv.org/abs/2510.14246. No public code was found; the pieces the
abstract names are rebuilt from the same group's published algorithms (Liu & Xu, AISTATS 2024, online
DR-LSVI with a bonus; Tang, Liu & Xu's TV-dual solver in panxulab/Robust-Regularized-Pessimistic-Value-Iteration):

* d-rectangular linear robust MDP, TV uncertainty of radius ``rho`` on each factor distribution ``mu_{h,i}``;
* robust Bellman backup through the TV dual (per factor ``i``)::

      inf_{TV(mu, mu0) <= rho} E_mu[V] = max_{alpha} E_mu0[min(V, alpha)] - rho (alpha - min V)          (dual)

  estimated by ridge regression: ``nu_i = max_alpha [Lambda^{-1} sum_tau phi_tau min(V(s'_tau), alpha)]_i - rho alpha``;
* optimism: the d-rectangular bonus ``Gamma(s, a) = beta_b sum_i phi_i(s, a) sqrt([Lambda^{-1}]_ii)`` is added;
* policy optimisation of a softmax policy per step ``h`` by KL-regularised mirror descent towards a
  (uniform) reference policy::

      pi^{k+1}_h  propto  (pi^k_h)^{1/(1 + eta/beta)} pi_ref^{(eta/beta)/(1 + eta/beta)} exp(eta Q^k_h / (1 + eta/beta))   (MD)

  evaluated on the robust, optimistic Q of the current policy, whose value includes the regulariser
  ``V_h(s) = sum_a pi_h(a|s) Q_h(s, a) - (1/beta) KL(pi_h(.|s) || pi_ref)``.

Reconstruction choices (listed because the paper's exact algorithm is not public):
    * The optimistic value is truncated per factor, ``w_{h,i} = clip(theta_i + nu_i + Gamma_i, 0, V_max,h)``, so that
      ``Q_h = <phi, w_h>`` stays linear and the mirror-descent policy stays log-linear: ``pi_h(a|s) propto
      exp(<phi(s, a), Theta_h>)`` with ``Theta_h <- (Theta_h + eta w_h) / (1 + eta / beta)`` (uniform ``pi_ref``).
    * ``min V`` in the dual is 0 (the value of a terminal/fail state); ``alpha`` ranges over the observed
      next-state values (the breakpoints of the piecewise-linear objective), thinned to ``n_alpha`` quantiles.
    * The reward ``theta_h`` is fitted by ridge regression on the observed rewards (the papers assume it known).
    * ``rho = 0`` uses the plain regression backup ``Lambda^{-1} sum phi V(s')`` (the uncertainty set is ``{mu0}``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from palaestra.agents.online.common import EpisodicAgent, env_horizon

__all__ = ["DRRPO", "mirror_descent_logits", "robust_factor_values", "tv_robust_expectation"]


# --- Pure functions --------------------------------------------------------------------------------
def check_radius(rho: float) -> float:
    """Validate the TV radius: a number in [0, 1]."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float, np.floating)) or not 0.0 <= rho <= 1.0:
        raise ValueError(f"the uncertainty radius rho must be a number in [0, 1], got {rho!r}")
    return float(rho)


def tv_robust_expectation(values: np.ndarray, distribution: np.ndarray, rho: float, v_min: float | None = None) -> float:
    """``inf_{TV(mu, mu0) <= rho} E_mu[V]`` through its dual (Eq. (dual) in the module docstring).

    Args:
        values: ``V(s')`` over the next states, shape ``(S,)``.
        distribution: The nominal ``mu0``, shape ``(S,)``.
        rho: TV radius in [0, 1].
        v_min: ``min_s V(s)`` over the whole state space (default: ``values.min()``).

    Returns:
        The worst-case expectation. The maximum over ``alpha`` is attained at a value of ``V``, so the
        breakpoints are enumerated exactly.
    """
    rho = check_radius(rho)
    values, distribution = np.asarray(values, dtype=np.float64), np.asarray(distribution, dtype=np.float64)
    v_min = float(values.min()) if v_min is None else float(v_min)
    alphas = np.unique(np.append(values, v_min))
    objective = np.minimum(values[:, None], alphas[None]).T @ distribution - rho * (alphas - v_min)
    return float(objective.max())


def robust_factor_values(
    features: np.ndarray,
    next_values: np.ndarray,
    gram_inverse: np.ndarray,
    rho: float,
    v_min: float = 0.0,
    n_alpha: int | None = None,
) -> np.ndarray:
    """Ridge-regression estimate of ``nu_i = inf_{TV(mu, mu0_i) <= rho} E_mu[V]`` for every factor ``i``.

    ``z(alpha) = Lambda^{-1} sum_tau phi_tau min(V(s'_tau), alpha)`` and ``nu_i = max_alpha z_i(alpha) - rho (alpha - v_min)``
    (Sec. 2.2 of the module docstring). With ``rho = 0`` the plain regression ``Lambda^{-1} sum_tau phi_tau V(s'_tau)``.

    Args:
        features: ``phi(s_tau, a_tau)`` of the stored transitions, shape ``(N, d)``.
        next_values: ``V_{h+1}(s'_tau)``, shape ``(N,)``.
        gram_inverse: ``Lambda^{-1}``, shape ``(d, d)``.
        rho: TV radius in [0, 1].
        v_min: The smallest value any state can have (0 with a terminal state).
        n_alpha: Evaluate at most this many ``alpha`` (quantiles of the breakpoints); ``None``: all of them.

    Returns:
        ``nu``, shape ``(d,)``.
    """
    rho = check_radius(rho)
    next_values = np.asarray(next_values, dtype=np.float64)
    if rho == 0.0 or len(next_values) == 0:
        return gram_inverse @ (features.T @ next_values)
    alphas = np.unique(np.append(next_values, v_min))
    if n_alpha is not None and len(alphas) > n_alpha:
        alphas = np.unique(np.quantile(alphas, np.linspace(0.0, 1.0, n_alpha), method="nearest"))
    clipped = np.minimum(next_values[:, None], alphas[None])  # (N, M): [V]_alpha at every stored next state
    z = gram_inverse @ (features.T @ clipped)  # (d, M)
    return (z - rho * (alphas - v_min)[None]).max(axis=1)


def mirror_descent_logits(logits: np.ndarray, q_weights: np.ndarray, eta: float, beta: float) -> np.ndarray:
    """One KL-regularised mirror-descent step on log-linear logits with a uniform reference (Eq. (MD)).

    ``Theta <- (Theta + eta w) / (1 + eta / beta)``; ``beta = inf`` is unregularised mirror descent (NPG).
    """
    return (logits + eta * q_weights) / (1.0 + eta / beta)


def feature_map(env: gym.Env) -> Callable[[Any, int], np.ndarray]:
    """The env's linear-MDP feature map ``phi(observation, action)``.

    Raises:
        TypeError: If the (unwrapped) env has no callable ``phi``.
    """
    phi = getattr(env.unwrapped, "phi", None)
    if not callable(phi):
        raise TypeError(
            f"DR-RPO needs the env's feature map, but {type(env.unwrapped).__name__} has no phi(observation, action) method"
        )
    return phi


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=axis, keepdims=True)


def regularised_values(q: np.ndarray, logits: np.ndarray, beta: float) -> np.ndarray:
    """``sum_a pi(a|s) Q(s, a) - (1/beta) KL(pi(.|s) || uniform)`` per row, for ``pi = softmax(logits)``."""
    pi = softmax(logits)
    expected = (pi * q).sum(axis=-1)
    if math.isinf(beta):
        return expected
    kl = (pi * (np.log(np.clip(pi, 1e-300, None)) + math.log(q.shape[-1]))).sum(axis=-1)
    return expected - kl / beta


class DRRPO(EpisodicAgent):
    """Distributionally robust regularised policy optimisation on an env with a known feature map ``phi``.

    The policy is non-stationary over the horizon ``H``: ``pi_h(a|s) propto exp(<phi(s, a), Theta_h>)``; the
    step index ``h`` is the recurrent state of :meth:`predict`.

    Args:
        env: A Gymnasium env (or id) with a ``Discrete`` action space whose unwrapped env has
            ``phi(observation, action) -> np.ndarray`` (nonnegative features summing to 1) and a finite horizon.
        rho: TV radius of the uncertainty set, in [0, 1] (0: the non-robust algorithm).
        eta: Mirror-descent step size (> 0).
        beta: KL-regularisation strength towards the uniform reference policy (> 0; ``math.inf``: none).
        bonus_scale: ``beta_b`` of the optimistic bonus (>= 0).
        ridge: ``lambda`` of the ridge regressions (> 0).
        n_alpha: Most dual points ``alpha`` evaluated per backup (>= 2).
        horizon: ``H``; default the env's ``horizon`` attribute or ``max_episode_steps``.
        v_max: Upper bound on any return; default the env's ``max_return`` attribute, else ``H`` (rewards in [0, 1]).
        feature_env_id: Env id whose ``phi`` is rebuilt on :meth:`load` (default: the env's registered id).
        feature_env_kwargs: Its keyword arguments (default: the env's).
        seed: Seeds action sampling and the env's first reset.
        verbose: 1 prints SB3's log table after every ``log_interval`` episodes.
        log_interval: Episodes between log dumps.

    Raises:
        ValueError: For ``rho`` outside [0, 1] or another bad hyperparameter.
        TypeError: For an env without ``phi`` or a non-``Discrete`` action space.
    """

    algorithm: ClassVar[str] = "drrpo"

    def __init__(
        self,
        env: gym.Env | str | None,
        rho: float = 0.1,
        eta: float = 1.0,
        beta: float = 100.0,
        bonus_scale: float = 0.1,
        ridge: float = 1.0,
        n_alpha: int = 32,
        horizon: int | None = None,
        v_max: float | None = None,
        feature_env_id: str | None = None,
        feature_env_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        verbose: int = 0,
        log_interval: int = 10,
    ):
        self.rho = check_radius(rho)
        for name, value in (("eta", eta), ("beta", beta), ("ridge", ridge)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if isinstance(bonus_scale, bool) or not isinstance(bonus_scale, (int, float)) or not bonus_scale >= 0:
            raise ValueError(f"bonus_scale must be a number >= 0, got {bonus_scale!r}")
        if isinstance(n_alpha, bool) or not isinstance(n_alpha, (int, np.integer)) or n_alpha < 2:
            raise ValueError(f"n_alpha must be an integer >= 2, got {n_alpha!r}")
        if isinstance(log_interval, bool) or not isinstance(log_interval, int) or log_interval < 1:
            raise ValueError(f"log_interval must be an integer >= 1, got {log_interval!r}")
        super().__init__(env, seed=seed, verbose=verbose)
        self.eta, self.beta, self.bonus_scale, self.ridge = float(eta), float(beta), float(bonus_scale), float(ridge)
        self.n_alpha, self.log_interval = int(n_alpha), log_interval
        if self.env is not None:
            base = self.env.unwrapped
            self._phi = feature_map(self.env)
            if not isinstance(self.action_space, spaces.Discrete):
                raise TypeError(f"DR-RPO needs a Discrete action space, got {self.action_space}")
            self.horizon = env_horizon(self.env, horizon)
            self.v_max = float(v_max if v_max is not None else getattr(base, "max_return", self.horizon))
            self.feature_env_id = feature_env_id or (self.env.spec.id if self.env.spec is not None else None)
            self.feature_env_kwargs = dict(feature_env_kwargs or (self.env.spec.kwargs if self.env.spec is not None else {}))
            self.n_actions = int(self.action_space.n)
            self._setup_model(int(np.asarray(self._phi(self._reset_env(), 0)).shape[0]))
            self._needs_seeded_reset = True  # the probe reset above must not consume the seeded one
        else:  # rebuilt by load()
            self.horizon = int(horizon) if horizon is not None else 0
            self.v_max = float(v_max) if v_max is not None else float(self.horizon)
            self.feature_env_id, self.feature_env_kwargs = feature_env_id, dict(feature_env_kwargs or {})

    def _setup_model(self, n_features: int) -> None:
        self.n_features = n_features
        d, horizon = self.n_features, self.horizon
        self.logits = np.zeros((horizon, d))  # Theta_h: pi^1 = pi_ref (uniform)
        self.q_weights = np.zeros((horizon, d))  # w_h of the latest robust optimistic evaluation
        self.gram_inverse = np.stack([np.eye(d) / self.ridge for _ in range(horizon)])
        self._data: list[dict[str, list[Any]]] = [{"phi": [], "reward": [], "next_phi": []} for _ in range(horizon)]
        self.episodes = 0

    # --- acting ------------------------------------------------------------------------------------
    def _action_features(self, observation: Any) -> np.ndarray:
        return np.stack([np.asarray(self._phi(observation, a), dtype=np.float64) for a in range(self.n_actions)])

    def action_probabilities(self, observation: Any, step: int) -> np.ndarray:
        """``pi_h(.|s)`` at 0-based step ``step`` (steps past the horizon use the last step's policy)."""
        h = min(int(step), self.horizon - 1)
        return softmax(self._action_features(observation) @ self.logits[h])

    def _act(self, observations: np.ndarray, steps: np.ndarray, deterministic: bool) -> np.ndarray:
        actions = np.empty(len(observations), dtype=np.int64)
        for i, (observation, step) in enumerate(zip(observations, steps, strict=True)):
            probabilities = self.action_probabilities(observation, int(step))
            actions[i] = (
                int(probabilities.argmax()) if deterministic else int(self.rng.choice(self.n_actions, p=probabilities))
            )
        return actions

    # --- learning ----------------------------------------------------------------------------------
    def learn(
        self, total_timesteps: int, callback: Any = None, progress_bar: bool = False, reset_num_timesteps: bool = True
    ) -> DRRPO:
        """Alternate one episode of the current policy in the (nominal) env with a robust evaluation and an MD step.

        Args:
            total_timesteps: Env-step budget (episodes of up to ``H`` steps).
            callback: SB3 callback(s), called after every env step; returning ``False`` stops training.
            progress_bar: Show SB3's progress bar.
            reset_num_timesteps: Count the budget from 0 (``True``) or continue the count.

        Returns:
            ``self``.
        """
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, progress_bar, reset_num_timesteps)
        start_time, returns = time.time(), []
        while self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            episode_return, continue_training = self._rollout(callback)
            callback.on_rollout_end()
            returns.append(episode_return)
            update_start = time.perf_counter()
            robust_value = self._update()
            self.episodes += 1
            if self.episodes % self.log_interval == 0:
                self._log(returns[-self.log_interval :], robust_value, time.perf_counter() - update_start, start_time)
            if not continue_training:
                break
        callback.on_training_end()
        return self

    def _rollout(self, callback: Any) -> tuple[float, bool]:
        """One episode of ``pi^k`` in the nominal env; stores ``(phi(s_h, a_h), r_h, phi(s_{h+1}, .))`` per step ``h``."""
        assert self.env is not None
        observation = self._reset_env()
        total = 0.0
        for h in range(self.horizon):
            action = int(self._act(np.asarray(observation)[None], np.array([h]), deterministic=False)[0])
            next_observation, reward, terminated, truncated, _ = self.env.step(action)
            done = terminated or truncated or h == self.horizon - 1
            features = np.asarray(self._phi(observation, action), dtype=np.float64)
            self._data[h]["phi"].append(features)
            self._data[h]["reward"].append(float(reward))
            # A terminal next state has value 0 (absorbing): no features needed.
            self._data[h]["next_phi"].append(
                None if terminated or h == self.horizon - 1 else self._action_features(next_observation)
            )
            # Lambda_h^{-1} by Sherman-Morrison: (L + phi phi^T)^{-1}.
            g = self.gram_inverse[h] @ features
            self.gram_inverse[h] -= np.outer(g, g) / (1.0 + features @ g)
            total += float(reward)
            self.num_timesteps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                return total, False
            observation = next_observation
            if done:
                break
        return total, True

    def _update(self) -> float:
        """Optimistic robust evaluation of ``pi^k`` backwards in ``h``, then the mirror-descent step (Alg., lines 4-9)."""
        weights = np.zeros((self.horizon + 1, self.n_features))
        for h in reversed(range(self.horizon)):
            data = self._data[h]
            if not data["phi"]:
                weights[h] = 0.0
                continue
            features = np.asarray(data["phi"])
            gram_inverse = self.gram_inverse[h]
            theta = gram_inverse @ (features.T @ np.asarray(data["reward"]))  # ridge fit of r_h = <phi, theta_h>
            next_values = self._next_values(data["next_phi"], h + 1, weights[h + 1])
            nu = robust_factor_values(features, next_values, gram_inverse, self.rho, 0.0, self.n_alpha)
            bonus = self.bonus_scale * np.sqrt(np.diag(gram_inverse))  # Gamma_h = <phi, bonus> (d-rectangular bonus)
            cap = min(self.v_max, (self.horizon - h) * self._max_reward)
            weights[h] = np.clip(theta + nu + bonus, 0.0, cap)
        self.q_weights = weights[: self.horizon]
        self.logits = mirror_descent_logits(self.logits, self.q_weights, self.eta, self.beta)
        return float(weights[0].mean())

    @property
    def _max_reward(self) -> float:
        base = None if self.env is None else self.env.unwrapped
        return float(getattr(base, "max_reward", self.v_max))

    def _next_values(self, next_features: list[np.ndarray | None], h: int, weights: np.ndarray) -> np.ndarray:
        """Regularised ``V_h(s') = E_{pi^k_h} Q_h(s', .) - KL / beta`` at the stored next states (0 if terminal)."""
        values = np.zeros(len(next_features))
        if h >= self.horizon:
            return values
        live = [i for i, f in enumerate(next_features) if f is not None]
        if live:
            stacked = np.stack([f for f in next_features if f is not None])  # (n, A, d), in the order of live
            q = stacked @ weights
            cap = min(self.v_max, (self.horizon - h) * self._max_reward)
            values[live] = np.clip(regularised_values(q, stacked @ self.logits[h], self.beta), 0.0, cap)
        return values

    def _log(self, returns: list[float], robust_value: float, update_seconds: float, start_time: float) -> None:
        elapsed = max(time.time() - start_time, 1e-9)
        self.logger.record("rollout/ep_rew_mean", float(np.mean(returns)))
        self.logger.record("time/episodes", self.episodes)
        self.logger.record("time/fps", int(self.num_timesteps / elapsed))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.record("train/mean_factor_value_h1", robust_value)
        self.logger.record("train/update_seconds", update_seconds)
        self.logger.record(
            "train/bonus_mean", float(self.bonus_scale * np.sqrt(np.diagonal(self.gram_inverse, axis1=1, axis2=2)).mean())
        )
        self.logger.dump(step=self.num_timesteps)

    # --- persistence -------------------------------------------------------------------------------
    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "rho": self.rho,
            "eta": self.eta,
            "beta": self.beta,
            "bonus_scale": self.bonus_scale,
            "ridge": self.ridge,
            "n_alpha": self.n_alpha,
            "horizon": self.horizon,
            "v_max": self.v_max,
            "feature_env_id": self.feature_env_id,
            "feature_env_kwargs": self.feature_env_kwargs,
            "seed": self.seed,
            "verbose": self.verbose,
            "log_interval": self.log_interval,
        }

    def _state_dict(self) -> dict[str, Any]:
        import torch

        return {
            "logits": torch.as_tensor(self.logits),
            "q_weights": torch.as_tensor(self.q_weights),
            "gram_inverse": torch.as_tensor(self.gram_inverse),
            "episodes": self.episodes,
        }

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        if self.feature_env_id is None:
            raise ValueError("this checkpoint does not name the env whose phi it needs; pass env= to load()")
        self._phi = feature_map(gym.make(self.feature_env_id, **self.feature_env_kwargs))
        self.n_actions = int(self.action_space.n)  # type: ignore[attr-defined]
        self._setup_model(int(state["logits"].shape[1]))
        self.logits = state["logits"].numpy()
        self.q_weights = state["q_weights"].numpy()
        self.gram_inverse = state["gram_inverse"].numpy()
        self.episodes = int(state["episodes"])

    def set_env(self, env: gym.Env) -> None:
        """Attach an env (with ``phi`` and the same spaces) to act or continue training in."""
        super().set_env(env)
        self._phi = feature_map(env)


def build_drrpo(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> DRRPO:
    """``palaestra train --algo drrpo`` builder: DR-RPO on the bare (non-vectorised) env."""
    return DRRPO(gym.make(env_id, **env_kwargs), seed=seed, **hyperparams)
