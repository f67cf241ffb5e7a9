import math

import numpy as np
import pytest

from palaestra.envs.control.effective_horizon import effective_horizon, value_iteration
from palaestra.envs.control.gridworlds import TabularMDP


def deterministic_mdp(next_state: np.ndarray, rewards: np.ndarray, horizon: int) -> TabularMDP:
    """Build a table from successor and reward arrays of shape (S, A) (rewards time-independent)."""
    n_states, n_actions = next_state.shape
    transitions = np.zeros((n_states, n_actions, n_states))
    transitions[np.arange(n_states)[:, None], np.arange(n_actions)[None], next_state] = 1.0
    initial = np.eye(n_states)[0]
    return TabularMDP(transitions, np.repeat(rewards[None], horizon, axis=0), initial, np.zeros(n_states, bool), horizon)


def combination_lock(length: int) -> TabularMDP:
    # States 0..L-1 on the lock, L = dead. Action 1 is correct; reward 1 for the last correct action.
    dead = length
    next_state = np.full((length + 1, 2), dead)
    next_state[: length - 1, 1] = np.arange(1, length)
    rewards = np.zeros((length + 1, 2))
    rewards[length - 1, 1] = 1.0
    return deterministic_mdp(next_state, rewards, length)


def test_bandit_then_nothing_has_horizon_one():
    # The first action decides everything (reward 1 or 0) and the episode then sits in a zero-reward state.
    next_state = np.array([[1, 1], [1, 1]])
    mdp = deterministic_mdp(next_state, np.array([[0.0, 1.0], [0.0, 0.0]]), horizon=2)
    result = effective_horizon(mdp)
    assert result.effective_horizon == 1.0 and result.min_k == 1 and result.ms[1] == 1 and result.gaps[1] == 1.0
    assert result.optimal_return == 1.0 and result.random_return == 0.5


def test_combination_lock_matches_the_closed_form_and_has_horizon_T():
    length = 6
    result = effective_horizon(combination_lock(length))
    # Greedy on Q^1 is optimal (the correct action has positive random value, the wrong one 0), but the gap at the
    # start is p = 2^-(L-1) and the reference's variance bound (Q^rand - Q^worst)(Q* - Q^worst) is p (1 - 0):
    # m_1 = ceil(16 / p ln(2 T A)).
    m_1 = math.ceil(16 * 2 ** (length - 1) * math.log(2 * length * 2))
    assert result.ms[1] == m_1
    assert result.horizons[1] == pytest.approx(1 + math.log2(m_1))
    # One greedy step first halves the gap and the variance: m_2 = ceil(16 * 2^(L-2) ln(2 T A^2)).
    assert result.ms[2] == math.ceil(16 * 2 ** (length - 2) * math.log(2 * length * 4))
    # Every H_k exceeds T here, so the effective horizon is the horizon itself.
    assert result.effective_horizon == length
    assert result.min_k == 1


def test_trap_needs_two_steps_of_q_iteration():
    # t=0: action 0 pays 0.6 and dies; action 1 pays 0 and leads to a state where action 0 pays 1.
    next_state = np.array([[2, 1], [2, 2], [2, 2]])
    rewards = np.array([[0.6, 0.0], [1.0, 0.0], [0.0, 0.0]])
    mdp = deterministic_mdp(next_state, rewards, horizon=3)
    result = effective_horizon(mdp)
    assert result.min_k == 2  # greedy on the random policy's Q (0.6 vs 0.5) takes the trap
    assert result.effective_horizon == 2.0  # gap 0.4 with zero variance bound: m_2 = 1, H_2 = 2 + log_2 1
    assert result.greedy_returns[1] == pytest.approx(0.6) and result.greedy_returns[2] == pytest.approx(1.0)


def test_value_iteration_on_a_stochastic_table():
    transitions = np.zeros((2, 2, 2))
    transitions[0, 0] = [0.5, 0.5]
    transitions[0, 1] = [1.0, 0.0]
    transitions[1, :, 1] = 1.0
    rewards = np.zeros((2, 2, 2))
    rewards[:, 1, :] = 1.0  # state 1 pays 1 per step
    mdp = TabularMDP(transitions, rewards, np.array([1.0, 0.0]), np.zeros(2, bool), 2)
    vi = value_iteration(mdp)
    np.testing.assert_allclose(vi.optimal_q[0, 0], [0.5, 0.0])
    np.testing.assert_allclose(vi.random_q[0, 0], [0.5, 0.0])


def test_max_k_is_checked():
    with pytest.raises(ValueError, match="max_k must be None or an integer >= 1, got 0"):
        effective_horizon(combination_lock(3), max_k=0)


def tempting_exit_chain(length: int, exit_reward: float, horizon: int) -> TabularMDP:
    # Chain states 0..L-1, dead state L. At state 0 action 0 pays `exit_reward` and dies; at the other chain states
    # action 0 pays 0 and dies. Action 1 walks the chain and, at the last state, pays 1 and dies.
    dead = length
    next_state = np.full((length + 1, 2), dead)
    next_state[: length - 1, 1] = np.arange(1, length)
    rewards = np.zeros((length + 1, 2))
    rewards[0, 0] = exit_reward
    rewards[length - 1, 1] = 1.0
    return deterministic_mdp(next_state, rewards, horizon)


def reference_simple_effective_horizon(mdp: TabularMDP) -> tuple[float, list[int]]:
    """The rule of ``compute_simple_effective_horizon`` for a deterministic MDP, transcribed from
    cassidylaidlaw/effective-horizon @ 1a83eb7fe922b5911d7606728455d65f1953a785,
    ``EffectiveHorizon.jl/src/gorp_bounds.jl``:

    start with ``H = T``, ``Q = Q^rand`` and ``var = (Q^rand - Q^worst)(Q* - Q^worst)``; *while k < H*: walk the states
    reachable from state 1 through actions whose ``Q`` beats the best suboptimal one (``Q* < V* - eps``); ``k`` fails
    if at one of them ``max Q == max suboptimal Q``, else ``m = max(1, ceil(16 max_a var / gap^2 ln(2 T A^k)))`` and
    ``H = min(H, k + log_A max m)``; then ``Q_t(s,a) <- r(s,a) + max_a' Q_{t+1}(s',a')``,
    ``var_t(s,a) <- max_a' var_{t+1}(s',a')`` for ``t < T`` and ``k += 1``. No cap on ``k`` other than ``H``.
    Returns ``H`` and the admissible ``k``.
    """
    vi = value_iteration(mdp)
    horizon, n_actions = mdp.horizon, mdp.n_actions
    succ = mdp.transitions.argmax(axis=2)
    q, var = vi.random_q.copy(), (vi.random_q - vi.worst_q) * (vi.optimal_q - vi.worst_q)
    subopt = vi.optimal_q < vi.optimal_values[:, :, None] - 1e-6
    h, ks, k = float(horizon), [], 1
    while k < h:
        ok, worst_m, frontier = True, 1, {int(np.argmax(mdp.initial))}
        for t in range(horizon):
            nxt = set()
            for s in frontier:
                max_q = q[t, s].max()
                max_sub = max([q[t, s, a] for a in range(n_actions) if subopt[t, s, a]], default=-math.inf)
                if max_q == max_sub:
                    ok = False
                    break
                gap = max_q - max_sub
                m = max(1, math.ceil(16 * var[t, s].max() / gap**2 * math.log(2 * horizon * n_actions**k)))
                worst_m = max(worst_m, m)
                nxt |= {int(succ[s, a]) for a in range(n_actions) if q[t, s, a] > max_sub}
            if not ok:
                break
            frontier = nxt
        if ok:
            ks.append(k)
            h = min(h, k + math.log(worst_m, n_actions))
        for t in range(horizon - 1):
            q[t] = mdp.rewards[t] + q[t + 1].max(axis=1)[succ]
            var[t] = var[t + 1].max(axis=1)[succ]
        k += 1
    return h, ks


def test_chain_needing_seven_steps_of_q_iteration_is_not_cut_off():
    # Q^k_0(0, walk) = 2^(k-7) for k <= 7 (k - 1 greedy steps then random play down the rest of the 7-state chain)
    # against 0.75 for the exit: greedy on Q^k takes the exit for k <= 6 and walks for k = 7 (gap 1 - 0.75).
    # Along the walk every variance bound is 0 (the prize is deterministic and the dead state pays nothing), so
    # m_7 = 1 and H = 7 + log_2 1 = 7 < T = 10.
    mdp = tempting_exit_chain(length=7, exit_reward=0.75, horizon=10)
    ref_h, ref_ks = reference_simple_effective_horizon(mdp)
    assert (ref_h, ref_ks) == (7.0, [7])
    result = effective_horizon(mdp)
    assert result.effective_horizon == ref_h and result.min_k == 7 and sorted(result.horizons) == ref_ks
    assert result.ms[7] == 1 and result.gaps[7] == pytest.approx(0.25)
    assert result.greedy_returns[6] == pytest.approx(0.75) and result.greedy_returns[7] == pytest.approx(1.0)
    assert result.max_k_searched == 7 and not result.k_cap_hit


def test_a_k_cap_below_the_needed_k_warns_and_says_so():
    mdp = tempting_exit_chain(length=7, exit_reward=0.75, horizon=10)
    with pytest.warns(UserWarning, match=r"stopped at max_k=5 before k >= H = 10 .*and a min_k"):
        result = effective_horizon(mdp, max_k=5)
    assert result.k_cap_hit and result.max_k_searched == 5
    assert result.min_k is None and result.effective_horizon == 10.0  # only an upper bound: the reference gives 7


@pytest.mark.parametrize("build", [lambda: combination_lock(6), lambda: tempting_exit_chain(4, 0.3, 6)])
def test_matches_the_reference_rule_on_small_deterministic_mdps(build):
    mdp = build()
    ref_h, ref_ks = reference_simple_effective_horizon(mdp)
    result = effective_horizon(mdp)
    assert result.effective_horizon == pytest.approx(ref_h) and sorted(result.horizons) == ref_ks
