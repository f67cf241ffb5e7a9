"""The simulated d-rectangular linear MDP of the distributionally robust linear-RL papers, with a perturbable kernel.

Used by Liu & Xu ("Distributionally robust off-dynamics RL: provable efficiency with linear function
approximation", AISTATS 2024) and Tang, Liu & Xu (robust offline RL with linear f-divergence
regularisation; environment read in panxulab/Robust-Regularized-Pessimistic-Value-Iteration) to show
that a robust policy degrades less than a non-robust one when the transition kernel shifts.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["LinearRobustMDPEnv"]

N_STATES, N_FEATURES, N_ACTIONS, HORIZON = 5, 4, 16, 3
FAIL, GOAL = 3, 4  # x4 and x5


class LinearRobustMDPEnv(gym.Env[np.int64, np.int64]):
    """Five-state, three-step d-rectangular linear MDP (d = 4) whose goal transition can be shifted to a fail state.

    ## Description
    States ``x1 .. x5`` (indices 0-4): the agent starts in ``x1`` and walks ``x1 -> x2 -> x3`` unless it
    jumps to the absorbing goal ``x5`` (reward 1 per step from step 2 on) or falls into the absorbing fail
    state ``x4`` (reward 0). Each of the 16 actions is a vector ``a in {-1, +1}^4`` (bit ``i`` of the action
    index set means ``a_i = +1``); it sets ``c(a) = delta + <xi, a>`` with ``xi = (xi_norm / 4) (1, 1, 1, 1)``.
    Features ``phi(s, a)`` (``env.phi``) are probability vectors::

        phi(x1, a) = (1 - c, 0, 0, c)   phi(x2, a) = (0, 1 - c, 0, c)   phi(x3, a) = (0, 0, 1 - c, c)
        phi(x4, .) = (0, 0, 1, 0)       phi(x5, .) = (0, 0, 0, 1)

    and the nominal kernel is ``P_h(s' | s, a) = sum_i phi_i(s, a) mu_{h,i}(s')`` with factor distributions
    ``mu_1 = (1 - eps) x2 + eps x4``, ``mu_2 = (1 - eps) x3 + eps x4``, ``mu_3 = x4``, ``mu_4 = x5`` (``eps = 0.001``):
    from ``x1``/``x2``/``x3`` the agent reaches the goal with probability ``c(a)``. The perturbed kernel
    (``perturbation = q``) moves a fraction ``q`` of the first step's goal factor to the fail state,
    ``mu_{1,4} = (1 - q) x5 + q x4``: a total-variation shift of ``q`` of one factor, which a robust policy with
    radius ``rho >= q`` is protected against. The best nominal action is ``a = (1, 1, 1, 1)`` (index 15).

    ## Action Space
    ``Discrete(16)``: the index of ``a in {-1, +1}^4``.

    ## Observation Space
    ``Discrete(5)``: the state index (``x1 .. x5``). The step index ``h`` follows from the state except in ``x4``/``x5``.

    ## Rewards
    ``r_h(s, a) = <phi(s, a), theta_h>`` with ``theta_1 = 0`` and ``theta_2 = theta_3 = (0, 0, 0, 1)``: ``c(a)`` in
    ``x2``/``x3``, 1 in the goal, 0 in the fail state and at the first step.

    ## Starting State
    ``x1``.

    ## Episode End
    Terminates after ``H = 3`` decisions (the finite horizon of the MDP; the value after it is 0).

    ## Arguments
    | Argument         | Default | Meaning                                                                |
    |------------------|---------|------------------------------------------------------------------------|
    | delta            | 0.3     | base goal probability                                                  |
    | xi_norm          | 0.2     | ``||xi||_1``: how much the action moves the goal probability           |
    | perturbation     | 0.0     | ``q`` in [0, 1]: fraction of the step-1 goal factor moved to the fail state |
    | fail_probability | 0.001   | ``eps``                                                                |

    ## Version History
    * v0: Initial version.
    """

    metadata = {"render_modes": []}  # noqa: RUF012  (gymnasium.Env declares it as a plain attribute)
    horizon: int = HORIZON
    max_reward: float = 1.0
    max_return: float = float(HORIZON)

    def __init__(self, delta: float = 0.3, xi_norm: float = 0.2, perturbation: float = 0.0, fail_probability: float = 0.001):
        for name, value in (
            ("delta", delta),
            ("xi_norm", xi_norm),
            ("perturbation", perturbation),
            ("fail_probability", fail_probability),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if delta - xi_norm < 0.0 or delta + xi_norm > 1.0:
            raise ValueError(
                "delta +- xi_norm must stay in [0, 1] so that phi is a probability vector, "
                f"got delta={delta!r}, xi_norm={xi_norm!r}"
            )
        self.delta, self.xi_norm = float(delta), float(xi_norm)
        self.perturbation, self.fail_probability = float(perturbation), float(fail_probability)
        self.observation_space = spaces.Discrete(N_STATES)
        self.action_space = spaces.Discrete(N_ACTIONS)
        signs = ((np.arange(N_ACTIONS)[:, None] >> np.arange(N_FEATURES)[None]) & 1) * 2.0 - 1.0  # (A, 4) in {-1, +1}
        self.goal_probability = self.delta + signs @ np.full(N_FEATURES, self.xi_norm / N_FEATURES)  # c(a), shape (A,)
        self.features = self._feature_table()  # (S, A, d)
        self._state, self._step = 0, 0

    def _feature_table(self) -> np.ndarray:
        c = self.goal_probability
        table = np.zeros((N_STATES, N_ACTIONS, N_FEATURES))
        for s in range(3):
            table[s, :, s] = 1.0 - c
            table[s, :, 3] = c
        table[FAIL, :, 2] = 1.0
        table[GOAL, :, 3] = 1.0
        return table

    def phi(self, observation: Any, action: Any) -> np.ndarray:
        """The feature vector ``phi(s, a)`` (nonnegative, sums to 1), shape ``(4,)``."""
        return self.features[int(observation), int(action)].copy()

    def factors(self, step: int, perturbed: bool = True) -> np.ndarray:
        """Factor distributions ``mu_{h,i}`` over next states at 0-based step ``step``, shape ``(4, 5)``."""
        eps = self.fail_probability
        mu = np.zeros((N_FEATURES, N_STATES))
        mu[0, [1, FAIL]] = 1.0 - eps, eps
        mu[1, [2, FAIL]] = 1.0 - eps, eps
        mu[2, FAIL] = 1.0
        mu[3, GOAL] = 1.0
        if perturbed and step == 0:
            mu[3] = 0.0
            mu[3, [GOAL, FAIL]] = 1.0 - self.perturbation, self.perturbation
        return mu

    def reward_weights(self, step: int) -> np.ndarray:
        """``theta_h`` at 0-based step ``step``, shape ``(4,)``."""
        return np.zeros(N_FEATURES) if step == 0 else np.eye(N_FEATURES)[3]

    def transition_table(self, step: int, perturbed: bool = True) -> np.ndarray:
        """``P_h[s, a, s'] = sum_i phi_i(s, a) mu_{h,i}(s')``, shape ``(5, 16, 5)``."""
        return self.features @ self.factors(step, perturbed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.int64, dict[str, Any]]:
        """Start in ``x1``."""
        super().reset(seed=seed)
        self._state, self._step = 0, 0
        return np.int64(0), {"step": 0}

    def step(self, action: Any) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        """Pay ``<phi, theta_h>`` and sample the next state from the (possibly perturbed) kernel."""
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"action must be an integer in [0, 16), got {action!r}")
        features = self.features[self._state, int(action)]
        reward = float(features @ self.reward_weights(self._step))
        probabilities = features @ self.factors(self._step)
        self._state = int(self.np_random.choice(N_STATES, p=probabilities))
        self._step += 1
        return np.int64(self._state), reward, self._step >= HORIZON, False, {"step": self._step}
