"""The effective horizon of a tabular MDP (Laidlaw, Russell and Dragan, NeurIPS 2023; Laidlaw et al., ICLR 2024).

"Bridging RL Theory and Practice with the Effective Horizon" (https://arxiv.org/abs/2304.09853) and
"The Effective Horizon Explains Deep RL Performance in Stochastic Environments"
(https://arxiv.org/abs/2312.08369). Reference code: cassidylaidlaw/effective-horizon,
``EffectiveHorizon.jl/src/gorp_bounds.jl`` (``compute_simple_effective_horizon``) at commit b2ce1b1 (unchanged at
1a83eb7fe922b5911d7606728455d65f1953a785).

Definitions (time-indexed, finite horizon T, A actions, undiscounted):

* ``Q^1 = Q^{pi_rand}``, the Q-function of the uniformly random policy (Sec. 3 of the NeurIPS paper);
  ``Q^{i+1}_t(s, a) = R_t(s, a) + E_{s'} max_a' Q^i_{t+1}(s', a')`` (one step of Q-value iteration).
* ``k`` is admissible when at every state reachable by acting greedily on ``Q^k`` the best ``Q^k``
  action is strictly better than every suboptimal action (suboptimal: ``Q*_t(s, a) < V*_t(s)``).
* For an admissible ``k``, ``m_k = max_{t,s} max(1, ceil(16 var_t(s) / gap_k(t, s)^2 ln(2 T A^k)))`` where
  ``gap_k`` is the gap between the best ``Q^k`` value and the best suboptimal one and ``var`` bounds the
  variance of a random-rollout return by ``(Q^rand - Q^worst)(Q* - Q^worst)``, the reference's bound. It is looser
  than Bhatia-Davis (``(Q* - Q^rand)(Q^rand - Q^worst)``, which the reference keeps for its Bernstein and normal
  failure-probability bounds): a return in ``[Q^worst, Q*]`` with mean ``Q^rand`` has variance at most
  ``(Q^rand - Q^worst)(Q* - Q^worst)`` because ``(X - Q^worst)^2 <= (Q* - Q^worst)(X - Q^worst)``.
* ``H_k = k + log_A m_k`` and the effective horizon is ``H = min_k H_k`` (Def. 5.3), never above ``T``.
* Like the reference (``while k < results.effective_horizon``), ``k`` runs from 1 until ``k >= H``, so at most up
  to ``T - 1``; an optional ``max_k`` cap stops earlier and is reported (a warning and ``k_cap_hit``).

For stochastic MDPs (the ICLR paper's sticky-action setting) the same quantities are computed on the
stochastic table: expectations over next states in every backup, and the variance bound carried to a
state from the worst next state reachable with positive probability (as the code does along the
deterministic successor). Differences from the reference code: an initial-state *distribution* is
allowed (every state in its support is a start state).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from palaestra.envs.control.gridworlds import TabularMDP, policy_return

__all__ = ["EffectiveHorizonResult", "effective_horizon", "value_iteration"]

_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ValueIterationResult:
    """Time-indexed Q-functions of the random, optimal and worst policies, shape ``(T, S, A)`` each."""

    random_q: np.ndarray = field(repr=False)
    optimal_q: np.ndarray = field(repr=False)
    worst_q: np.ndarray = field(repr=False)

    @property
    def optimal_values(self) -> np.ndarray:
        """``V*_t(s)``, shape ``(T, S)``."""
        return self.optimal_q.max(axis=2)


@dataclass(frozen=True)
class EffectiveHorizonResult:
    """The effective horizon and the per-``k`` quantities it is the minimum of.

    Attributes:
        effective_horizon: ``H = min_k H_k`` (``T`` when no ``k < T`` is admissible).
        min_k: Smallest admissible ``k`` (the MDP is ``min_k``-QVI-solvable), or ``None`` if none was found among
            the ``k`` searched.
        horizons: ``{k: H_k}`` for each admissible ``k`` tried.
        ms: ``{k: m_k}``.
        gaps: ``{k: gap}`` at the state achieving ``m_k``.
        optimal_return: ``V*`` from the initial distribution.
        random_return: Return of the uniformly random policy.
        greedy_returns: ``{k: J_k}``, exact return of the policy greedy on ``Q^k`` (ties broken to the lowest action).
        max_k_searched: Largest ``k`` tried.
        k_cap_hit: ``True`` when a ``max_k`` cap stopped the search before ``k >= H``: a larger ``k`` could still be
            admissible and lower ``H`` (and set ``min_k``), so ``effective_horizon`` is then only an upper bound.
    """

    effective_horizon: float
    min_k: int | None
    horizons: dict[int, float]
    ms: dict[int, int]
    gaps: dict[int, float]
    optimal_return: float
    random_return: float
    greedy_returns: dict[int, float]
    max_k_searched: int = 0
    k_cap_hit: bool = False


def value_iteration(mdp: TabularMDP) -> ValueIterationResult:
    """Backward induction for ``Q^rand``, ``Q*`` and ``Q^worst`` (the worst policy's Q)."""
    horizon, n_states, n_actions = mdp.horizon, mdp.n_states, mdp.n_actions
    random_q = np.zeros((horizon, n_states, n_actions))
    optimal_q = np.zeros_like(random_q)
    worst_q = np.zeros_like(random_q)
    next_random = next_optimal = next_worst = np.zeros(n_states)
    for t in reversed(range(horizon)):
        random_q[t] = mdp.rewards[t] + mdp.transitions @ next_random
        optimal_q[t] = mdp.rewards[t] + mdp.transitions @ next_optimal
        worst_q[t] = mdp.rewards[t] + mdp.transitions @ next_worst
        next_random, next_optimal, next_worst = random_q[t].mean(axis=1), optimal_q[t].max(axis=1), worst_q[t].min(axis=1)
    return ValueIterationResult(random_q, optimal_q, worst_q)


def effective_horizon(mdp: TabularMDP, max_k: int | None = None) -> EffectiveHorizonResult:
    """Compute the effective horizon of ``mdp`` exactly from its table.

    Args:
        mdp: A finite-horizon tabular MDP (stochastic transitions allowed; sticky actions folded in).
        max_k: Optional cap on the number of Q-value-iteration steps to try. ``None`` (default) searches as the
            reference does, until ``k >= H`` (so at most ``T - 1`` steps, each one backup of the table). A cap that
            stops the search before ``k >= H`` warns and sets ``k_cap_hit``.

    Returns:
        The effective horizon, the smallest admissible ``k`` and the per-``k`` bounds.

    Raises:
        ValueError: If ``max_k`` is given and is not an integer ``>= 1``.
    """
    if max_k is not None and (isinstance(max_k, bool) or not isinstance(max_k, (int, np.integer)) or max_k < 1):
        raise ValueError(f"max_k must be None or an integer >= 1, got {max_k!r}")
    k_limit = mdp.horizon if max_k is None else int(max_k)
    vi = value_iteration(mdp)
    horizon, n_actions = mdp.horizon, mdp.n_actions
    optimal_values = vi.optimal_values
    suboptimal = vi.optimal_q < optimal_values[:, :, None] - _TOLERANCE  # (T, S, A)
    # The reference's bound on the variance of a random rollout's return after (t, s, a) (looser than Bhatia-Davis).
    var_bounds = (vi.random_q - vi.worst_q) * (vi.optimal_q - vi.worst_q)
    support = mdp.transitions > 0  # (S, A, S)
    current_q = vi.random_q.copy()
    result_h: float = float(horizon)
    horizons: dict[int, float] = {}
    ms: dict[int, int] = {}
    gaps: dict[int, float] = {}
    greedy_returns: dict[int, float] = {}
    min_k: int | None = None
    k = 1
    while k <= k_limit and k < result_h:
        greedy_returns[k] = _greedy_return(mdp, current_q)
        admissible, m_k, gap_k = _check_k(mdp, current_q, suboptimal, var_bounds, support, k)
        if admissible:
            min_k = k if min_k is None else min_k
            horizons[k] = k + math.log(m_k, n_actions) if n_actions > 1 else float(k)
            ms[k], gaps[k] = m_k, gap_k
            result_h = min(result_h, horizons[k])
        # One Bellman optimality backup: Q^{k+1} from Q^k; the variance bound follows the worst successor.
        next_max = np.vstack([current_q[1:].max(axis=2), np.zeros((1, mdp.n_states))])
        next_var = np.vstack([var_bounds[1:].max(axis=2), np.zeros((1, mdp.n_states))])
        flat = mdp.transitions.reshape(-1, mdp.n_states)
        current_q = mdp.rewards + (flat @ next_max.T).T.reshape(current_q.shape)
        var_bounds = np.stack([np.where(support, next_var[t][None, None, :], 0.0).max(axis=2) for t in range(mdp.horizon)])
        k += 1
    k_cap_hit = k < result_h
    if k_cap_hit:
        warnings.warn(
            f"effective_horizon stopped at max_k={max_k} before k >= H = {result_h:.3g} (T = {horizon}): "
            f"a larger k may be admissible and give a smaller H{'' if min_k is not None else ' and a min_k'}; "
            "pass max_k=None to search as the reference does",
            stacklevel=2,
        )
    return EffectiveHorizonResult(
        effective_horizon=float(result_h),
        min_k=min_k,
        horizons=horizons,
        ms=ms,
        gaps=gaps,
        optimal_return=float(mdp.initial @ optimal_values[0]),
        random_return=float(mdp.initial @ vi.random_q[0].mean(axis=1)),
        greedy_returns=greedy_returns,
        max_k_searched=k - 1,
        k_cap_hit=k_cap_hit,
    )


def _check_k(
    mdp: TabularMDP, q: np.ndarray, suboptimal: np.ndarray, var_bounds: np.ndarray, support: np.ndarray, k: int
) -> tuple[bool, int, float]:
    """Whether greedy-on-``Q^k`` is optimal at every reachable state, and ``m_k`` with its gap."""
    horizon, n_actions = mdp.horizon, mdp.n_actions
    visited = mdp.initial > 0
    worst_m, worst_gap = 1, math.inf
    log_term = math.log(2 * horizon * float(n_actions) ** k)
    for t in range(horizon):
        states = np.flatnonzero(visited)
        if states.size == 0:
            break
        q_t = q[t, states]
        max_q = q_t.max(axis=1)
        max_sub = np.where(suboptimal[t, states], q_t, -np.inf).max(axis=1)
        if np.any(max_sub >= max_q - _TOLERANCE):
            return False, 0, math.nan
        gap = max_q - max_sub  # +inf where every action is optimal
        variance = var_bounds[t, states].max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(np.isinf(gap), 0.0, 16.0 * variance / gap**2 * log_term)
        m = np.maximum(1, np.ceil(ratio - 1e-12)).astype(np.int64)
        i = int(np.argmax(m))
        if m[i] > worst_m or (m[i] == worst_m and worst_gap == math.inf):
            worst_m, worst_gap = int(m[i]), float(gap[i])
        # States reachable next through actions that can tie for the greedy choice (better than every suboptimal one).
        chosen = q_t > max_sub[:, None]
        visited = (support[states] & chosen[:, :, None]).any(axis=(0, 1))
    return True, worst_m, worst_gap


def _greedy_return(mdp: TabularMDP, q: np.ndarray) -> float:
    return policy_return(mdp, q.argmax(axis=2))
