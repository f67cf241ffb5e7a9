"""Pricing an American put option on a binomial price process whose drift can change at test time.

The optimal-stopping benchmark of Tamar, Mannor & Xu (2014) and Ma et al. / Tang, Liu & Xu (robust
linear RL; environment read in panxulab/Robust-Regularized-Pessimistic-Value-Iteration), used to test
whether a policy trained under one drift stays good under another.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["AmericanPutOptionEnv"]


class AmericanPutOptionEnv(gym.Env[np.ndarray, np.int64]):
    """Hold or exercise an American put while a binomial price drifts up or down.

    ## Description
    The price follows ``s_{h+1} = up * s_h`` with probability ``up_probability`` and ``down * s_h``
    otherwise (``up = 1.02``, ``down = 0.98``), from ``s_1 ~ Uniform[strike - 5, strike + 5]``. Exercising
    pays ``max(0, strike - s_h)`` and ends the episode; an option still held after ``horizon`` decisions
    expires worthless. A larger ``up_probability`` (upward drift) lowers the put's value, so a policy
    trained at the nominal ``0.5`` and evaluated at ``0.6 .. 0.8`` faces an adversarial dynamics shift.

    Features for linear RL (``env.phi``): ``n_anchors`` hat functions
    ``b_j(s) = max(0, 1 - |s - s_j| / width)`` on evenly spaced anchors ``s_j`` over ``[feature_low,
    feature_high]`` (a partition of unity there; prices outside are clamped), laid out in two blocks so
    that ``phi`` is a probability vector for the d-rectangular model: ``phi(s, hold) = (b(s), 0)`` and
    ``phi(s, exercise) = (0, b(s))``. With the default anchors (every 5 from 60 to 160) the strike is an
    anchor and the payoff is linear between anchors, so ``reward = <phi(s, exercise), theta>`` exactly.

    ## Action Space
    ``Discrete(2)``: 0 hold, 1 exercise.

    ## Observation Space
    ``Box(2,)`` float32:

    | Index | Observation              | Min | Max     |
    |-------|--------------------------|-----|---------|
    | 0     | price ``s_h``            | 0   | (strike + 5) 1.02^horizon |
    | 1     | decisions taken so far   | 0   | horizon |

    ## Rewards
    ``max(0, strike - s_h)`` on exercising, 0 otherwise.

    ## Starting State
    Price uniform in ``[strike - 5, strike + 5]``, 0 decisions taken.

    ## Episode End
    Terminates on exercise, or when the option expires after ``horizon`` decisions.

    ## Arguments
    | Argument       | Default | Meaning                                             |
    |----------------|---------|-----------------------------------------------------|
    | up_probability | 0.5     | probability of an up move (the drift)               |
    | strike         | 100.0   | strike price ``K``                                  |
    | horizon        | 20      | number of decisions before expiry                   |
    | n_anchors      | 21      | number of hat functions (``d = 2 n_anchors``)       |
    | feature_low    | 60.0    | first anchor                                        |
    | feature_high   | 160.0   | last anchor                                         |

    ## Version History
    * v0: Initial version.
    """

    metadata = {"render_modes": []}  # noqa: RUF012  (gymnasium.Env declares it as a plain attribute)
    up: float = 1.02
    down: float = 0.98

    def __init__(
        self,
        up_probability: float = 0.5,
        strike: float = 100.0,
        horizon: int = 20,
        n_anchors: int = 21,
        feature_low: float = 60.0,
        feature_high: float = 160.0,
    ):
        p = up_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"up_probability must be a number in [0, 1], got {p!r}")
        if not isinstance(strike, (int, float)) or not strike > 5.0:
            raise ValueError(f"strike must be a number > 5, got {strike!r}")
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        if isinstance(n_anchors, bool) or not isinstance(n_anchors, (int, np.integer)) or n_anchors < 2:
            raise ValueError(f"n_anchors must be an integer >= 2, got {n_anchors!r}")
        if not feature_low < feature_high:
            raise ValueError(f"feature_low must be < feature_high, got {feature_low!r} and {feature_high!r}")
        self.up_probability, self.strike, self.horizon = float(p), float(strike), int(horizon)
        self.anchors = np.linspace(feature_low, feature_high, int(n_anchors))
        self.width = self.anchors[1] - self.anchors[0]
        self.n_features = 2 * int(n_anchors)
        # Bounds used by value-based agents: the payoff never exceeds strike - lowest reachable price.
        self.max_reward = float(self.strike - (self.strike - 5.0) * self.down**self.horizon)
        self.max_return = self.max_reward
        highest_price = (self.strike + 5.0) * self.up**self.horizon
        self.observation_space = spaces.Box(
            np.array([0.0, 0.0], dtype=np.float32), np.array([highest_price, self.horizon], dtype=np.float32), dtype=np.float32
        )
        self.action_space = spaces.Discrete(2)
        self._price, self._step = self.strike, 0

    def hat_features(self, price: float) -> np.ndarray:
        """The hat-function vector ``b(s)`` (sums to 1), shape ``(n_anchors,)``."""
        clamped = float(np.clip(price, self.anchors[0], self.anchors[-1]))
        return np.maximum(0.0, 1.0 - np.abs(clamped - self.anchors) / self.width)

    def phi(self, observation: Any, action: Any) -> np.ndarray:
        """``phi(s, hold) = (b(s), 0)``, ``phi(s, exercise) = (0, b(s))``, shape ``(2 n_anchors,)``."""
        features = np.zeros(self.n_features)
        block = self.hat_features(float(np.asarray(observation)[0]))
        if int(action) == 0:
            features[: len(block)] = block
        else:
            features[len(block) :] = block
        return features

    def payoff(self, price: float) -> float:
        """``max(0, strike - price)``."""
        return max(0.0, self.strike - price)

    def _observation(self) -> np.ndarray:
        return np.array([self._price, self._step], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw the initial price uniformly within 5 of the strike."""
        super().reset(seed=seed)
        self._price = float(self.np_random.uniform(self.strike - 5.0, self.strike + 5.0))
        self._step = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Exercise (pay and stop) or hold (the price moves up or down)."""
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"action must be 0 (hold) or 1 (exercise), got {action!r}")
        self._step += 1
        if int(action) == 1:
            return self._observation(), self.payoff(self._price), True, False, {"exercised": True}
        self._price *= self.up if self.np_random.uniform() < self.up_probability else self.down
        return self._observation(), 0.0, self._step >= self.horizon, False, {"exercised": False}
