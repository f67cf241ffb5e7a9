import math

import pytest
import torch as th

from palaestra.agents.llm.advantages import (
    broadcast_turn_values,
    discounted_turn_returns,
    empg_modulate,
    gigpo_advantages,
    grpo_advantages,
    igpo_advantages,
    igpo_turn_rewards,
    otc_optimal_calls,
    otc_reward,
    otc_tool_reward,
)


def t(values):
    return th.tensor(values, dtype=th.float64)


# --- GRPO ---------------------------------------------------------------------------------------------------------
def test_grpo_hand_computed_group():
    # R = [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(1/3) = 0.57735 -> A = +-0.86603
    adv = grpo_advantages(t([1.0, 0.0, 0.0, 1.0]), eps=0.0)
    assert th.allclose(adv, t([1, -1, -1, 1]) * 0.5 / math.sqrt(1 / 3))


def test_grpo_without_std_only_centres():
    assert th.allclose(grpo_advantages(t([2.0, 0.0, 1.0]), norm_by_std=False), t([1.0, -1.0, 0.0]))


def test_grpo_all_fail_group_gives_zero():
    assert th.equal(grpo_advantages(t([0.0, 0.0, 0.0, 0.0])), th.zeros(4, dtype=th.float64))


def test_grpo_rejects_group_of_one_and_bad_shape():
    with pytest.raises(ValueError, match="at least 2"):
        grpo_advantages(t([1.0]))
    with pytest.raises(ValueError, match="shape"):
        grpo_advantages(t([[1.0, 0.0]]))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        grpo_advantages([1.0, 0.0])


# --- IGPO ---------------------------------------------------------------------------------------------------------
def test_discounted_turn_returns_stop_at_each_rollouts_end():
    rewards = t([[1.0, 2.0, 4.0], [1.0, 3.0, 0.0]])
    mask = th.tensor([[True, True, True], [True, True, False]])
    # row 0: 4; 2 + 0.5*4 = 4; 1 + 0.5*4 = 3. row 1: 3; 1 + 1.5 = 2.5
    assert th.allclose(discounted_turn_returns(rewards, mask, 0.5), t([[3.0, 4.0, 4.0], [2.5, 3.0, 0.0]]))


def test_igpo_turn_rewards_are_gains_then_outcome():
    probs = t([[0.1, 0.4, 0.3, 0.0], [0.2, 0.1, 0.0, 0.0]])  # P_0..P_3; trailing entries ignored
    mask = th.tensor([[True, True, True], [True, True, False]])
    rewards = igpo_turn_rewards(probs, t([1.0, 0.0]), mask)
    # row 0: 0.4-0.1, 0.3-0.4, outcome 1; row 1: 0.1-0.2, outcome 0, pad
    assert th.allclose(rewards, t([[0.3, -0.1, 1.0], [-0.1, 0.0, 0.0]]))


def test_igpo_all_fail_group_still_gets_signal():
    # Both rollouts fail (outcome 0) but the first one's search raised the gold answer's probability.
    probs = t([[0.1, 0.5, 0.0], [0.1, 0.1, 0.0]])
    mask = th.tensor([[True, True], [True, True]])
    rewards = igpo_turn_rewards(probs, t([0.0, 0.0]), mask)  # [[0.4, 0], [0, 0]]
    adv = igpo_advantages(rewards, mask, gamma=1.0, norm_by_std=False)
    # pooled mean 0.1 -> normalised [[0.3, -0.1], [-0.1, -0.1]] -> discounted sums
    assert th.allclose(adv, t([[0.2, -0.1], [-0.2, -0.1]]))
    assert not th.equal(adv, th.zeros_like(adv))
    assert th.equal(grpo_advantages(t([0.0, 0.0])), th.zeros(2, dtype=th.float64))


def test_igpo_std_normalisation_and_gamma():
    rewards = t([[1.0, 3.0], [2.0, 0.0]])
    mask = th.tensor([[True, True], [True, False]])
    # pooled [1, 3, 2]: mean 2, unbiased std 1 -> [[-1, 1], [0, pad]]; gamma 0.5 -> [[-0.5, 1], [0, 0]]
    adv = igpo_advantages(rewards, mask, gamma=0.5, eps=0.0)
    assert th.allclose(adv, t([[-0.5, 1.0], [0.0, 0.0]]))


# --- GiGPO --------------------------------------------------------------------------------------------------------
def test_gigpo_hand_computed_with_anchor_collision():
    # Two rollouts start in the same state "s0"; rollout 0 then reaches "a", rollout 1 reaches "b".
    rewards = t([[0.0, 1.0], [0.0, 0.0]])
    mask = th.ones(2, 2, dtype=th.bool)
    anchors = [["s0", "a"], ["s0", "b"]]
    adv = gigpo_advantages(rewards, mask, anchors, gamma=0.5, omega=1.0, norm_by_std=False)
    # episode: R = [1, 0] -> A^E = [0.5, -0.5]
    # step returns: row 0 [0.5, 1], row 1 [0, 0]; group s0 = {0.5, 0} -> [0.25, -0.25]; "a", "b" singletons -> 0
    assert th.allclose(adv, t([[0.75, 0.5], [-0.75, -0.5]]))


def test_gigpo_anchor_collision_within_one_rollout_and_omega():
    # A loop: rollout 0 visits "s0" twice; rollout 1 never leaves "s0" and ends after one step.
    rewards = t([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    mask = th.tensor([[True, True, True], [True, False, False]])
    anchors = [["s0", "x", "s0"], ["s0"]]
    adv = gigpo_advantages(rewards, mask, anchors, gamma=1.0, omega=2.0, norm_by_std=False)
    # A^E = [0.5, -0.5]; returns row 0 [1, 1, 1], row 1 [0]; group s0 = {(0,0):1, (0,2):1, (1,0):0}, mean 2/3
    expected = t([[0.5 + 2 / 3, 0.5, 0.5 + 2 / 3], [-0.5 - 4 / 3, 0.0, 0.0]])
    assert th.allclose(adv, expected)


def test_gigpo_all_singletons_reduces_to_grpo():
    rewards = t([[1.0], [0.0], [0.0]])
    mask = th.ones(3, 1, dtype=th.bool)
    adv = gigpo_advantages(rewards, mask, [["a"], ["b"], ["c"]])
    assert th.allclose(adv[:, 0], grpo_advantages(t([1.0, 0.0, 0.0])))


def test_gigpo_rejects_wrong_number_of_anchors():
    with pytest.raises(ValueError, match="one key per valid step"):
        gigpo_advantages(t([[0.0, 0.0], [0.0, 0.0]]), th.ones(2, 2, dtype=th.bool), [["a"], ["b", "c"]])


def test_broadcast_turn_values():
    values = t([[1.0, 2.0], [3.0, 4.0]])
    token_turn = th.tensor([[-1, 0, 0, -1, 1], [-1, -1, 0, 1, -1]])
    out = broadcast_turn_values(values, token_turn)
    assert th.equal(out, t([[0, 1, 1, 0, 2], [0, 0, 3, 4, 0]]))
    per_rollout = broadcast_turn_values(t([5.0, 6.0]), token_turn)
    assert th.equal(per_rollout, t([[0, 5, 5, 0, 5], [0, 0, 6, 6, 0]]))


# --- OTC ----------------------------------------------------------------------------------------------------------
def test_otc_tool_reward_edge_cases():
    assert otc_tool_reward(0, 0) == 1.0  # no call needed and none made
    assert otc_tool_reward(2, 2) == pytest.approx(1.0)  # optimal number of calls
    assert otc_tool_reward(1, 0) == pytest.approx(math.cos(math.pi / 3))  # n = 0, m = 1, c = 1: cos(pi/3) = 0.5
    # m = 1, n = 2: f = 4/3, sin(4/3 * pi / 4) = sin(pi/3)
    assert otc_tool_reward(1, 2) == pytest.approx(math.sin(math.pi / 3))
    # m = 4, n = 2: f = 8/3, sin(8/3 * pi / 4) = sin(2pi/3): more calls penalised symmetrically to fewer here
    assert otc_tool_reward(4, 2) == pytest.approx(math.sin(2 * math.pi / 3))
    assert otc_tool_reward(0, 2) == pytest.approx(0.0)  # f = 0
    assert otc_tool_reward(3, None) == pytest.approx(math.cos(3 * math.pi / 7))  # OTC-PPO form
    with pytest.raises(ValueError, match=">= 0"):
        otc_tool_reward(-1, 2)


def test_otc_reward_is_zero_for_wrong_answers_and_optimum_from_correct_rollouts():
    assert otc_reward(False, 1, 1) == 0.0
    assert otc_reward(True, 1, 1, alpha=2.0) == pytest.approx(2.0)
    assert otc_optimal_calls([3, 1, 2], [True, False, True]) == 2
    assert otc_optimal_calls([3, 1], [False, False]) is None


# --- EMPG ---------------------------------------------------------------------------------------------------------
def test_empg_modulate_hand_computed():
    adv = t([[1.0, 1.0], [-1.0, 0.0]])
    entropy = t([[0.0, 2.0], [1.0, 0.0]])
    mask = th.tensor([[True, True], [True, False]])
    out = empg_modulate(adv, entropy, mask, kappa=1.0, kappa_future=1.0, zeta=0.1, eps=0.0)
    h = t([[0.0, 1.0], [0.5, 0.0]])  # min-max over valid steps (0, 2, 1)
    conf = th.exp(-h)
    g = conf / ((conf[0, 0] + conf[0, 1] + conf[1, 0]) / 3)
    raw = t([[g[0, 0] * 1 + 0.1 * math.exp(-1.0), g[0, 1] * 1], [g[1, 0] * -1, 0.0]])
    mean = (raw[0, 0] + raw[0, 1] + raw[1, 0]) / 3
    expected = t([[raw[0, 0] - mean, raw[0, 1] - mean], [raw[1, 0] - mean, 0.0]])
    assert th.allclose(out, expected)
    assert float(out[mask].sum()) == pytest.approx(0.0, abs=1e-12)
    # confident step (H = 0) of a success is amplified more than the uncertain one
    assert g[0, 0] > 1.0 > g[0, 1]


# --- fidelity to the reference code (rules transcribed, not copied) ------------------------------------------------
VERL_AGENT = (
    "langfengQ/verl-agent gigpo/core_gigpo.py (read from the fork xlan156/verl-agent at commit "
    "8ca3a467ba4fc21eb4969a2e2b1097323ca09a53; the file's last upstream change is "
    "29e3e8b3e3412aff53b1e4a461dac77a8eec19bd)"
)


def verl_agent_episode_norm(scores, traj, cross_steps, remove_std, eps=1e-6):
    """verl-agent's ``episode_norm_reward`` for ONE group (one ``index``), transcribed from {VERL_AGENT}.

    ``scores[r]`` is the episode score of step row ``r`` and ``traj[r]`` its trajectory. With ``cross_steps``
    every row enters the group's list of scores; without it each trajectory enters once (its first row). A list of
    one score gets mean 0 and std 1, else the mean and ``torch.std`` (unbiased). Each row's advantage is
    ``score - mean`` (``remove_std``, GiGPO's ``mean_norm``) or ``(score - mean) / (std + eps)``.
    """
    seen, pooled = set(), []
    for score, uid in zip(scores, traj, strict=True):
        if uid in seen:
            continue
        pooled.append(score)
        if not cross_steps:
            seen.add(uid)
    if len(pooled) == 1:
        mean, std = 0.0, 1.0
    else:
        scores_t = th.tensor(pooled, dtype=th.float64)
        mean, std = float(scores_t.mean()), float(scores_t.std())
    return [s - mean if remove_std else (s - mean) / (std + eps) for s in scores]


verl_agent_episode_norm.__doc__ = verl_agent_episode_norm.__doc__.format(VERL_AGENT=VERL_AGENT)


@pytest.mark.parametrize("norm_by_std", [True, False])
@pytest.mark.parametrize("cross_steps", [False, True])
def test_gigpo_episode_advantage_matches_verl_agent_rule(norm_by_std, cross_steps):
    # Trajectories of 1, 3 and 2 steps with distinct anchors (step advantages 0): the advantage is A^E alone.
    rewards = t([[1.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    mask = th.tensor([[True, False, False], [True, True, True], [True, True, False]])
    anchors = [["a0"], ["b0", "b1", "b2"], ["c0", "c1"]]
    adv = gigpo_advantages(rewards, mask, anchors, gamma=1.0, norm_by_std=norm_by_std, episode_cross_steps=cross_steps)
    # verl-agent has one row per step, each carrying its trajectory's episode score
    returns = [1.0, 0.5, 0.0]
    rows = [(i, k) for i in range(3) for k in range(3) if mask[i, k]]
    expected = verl_agent_episode_norm([returns[i] for i, _ in rows], [i for i, _ in rows], cross_steps, not norm_by_std)
    for (i, k), value in zip(rows, expected, strict=True):
        assert math.isclose(float(adv[i, k]), value, rel_tol=1e-9, abs_tol=1e-9), (i, k)
    assert float(adv[~mask].abs().sum()) == 0.0


def test_gigpo_default_is_the_papers_one_value_per_trajectory():
    # With unequal lengths the pooled (verl-agent default) and per-trajectory (paper Eq. 3) baselines differ.
    rewards, mask = t([[1.0, 0.0], [0.0, 0.0]]), th.tensor([[True, False], [True, True]])
    anchors = [["a"], ["b", "c"]]
    paper = gigpo_advantages(rewards, mask, anchors, norm_by_std=False)
    pooled = gigpo_advantages(rewards, mask, anchors, norm_by_std=False, episode_cross_steps=True)
    assert math.isclose(float(paper[0, 0]), 0.5)  # R = [1, 0], mean 1/2
    assert math.isclose(float(pooled[0, 0]), 2 / 3)  # rows [1, 0, 0], mean 1/3


IGPO = "GuoqingWang1/IGPO at commit bff163b72718a8b8f9175ce019ec7114ad6bd59a"


def igpo_authors_turn_rewards(gains, score, n_turns, finished):
    """Per-turn rewards of one rollout by the authors' ``compute_score``, transcribed from {IGPO},
    ``verl/utils/reward_score/info_gain.py`` (with ``scrl/llm_agent/generation.py`` for what it receives).

    ``gains`` are the measured information gains, one per turn whose observation came back before the loop ended;
    the response splits into ``chats`` at each assistant turn, plus one empty segment after the last turn when the
    rollout was cut off at ``max_turns`` (the trailing generation prompt). If ``len(gains) != chats - 1``: with more
    than 10 chats a 0.0 gain is appended, else only the final score is kept. Chat ``i < chats - 1`` gets
    ``gains[i]`` on its last token, and the final score goes on the response's last token: per turn, the last turn
    collects it. (The score itself, F1 or -2 without an answer, is the caller's.)
    """
    chats = n_turns + (0 if finished else 1)
    gains = list(gains)
    if not gains or chats == 1:
        return [0.0] * (n_turns - 1) + [score]
    if len(gains) != chats - 1:
        if chats > 10:
            gains.append(0.0)
        else:
            return [0.0] * (n_turns - 1) + [score]
    per_turn = [gains[i] for i in range(min(chats - 1, n_turns))] + [0.0] * max(0, n_turns - (chats - 1))
    per_turn[-1] += score
    return per_turn


igpo_authors_turn_rewards.__doc__ = igpo_authors_turn_rewards.__doc__.format(IGPO=IGPO)


def _palaestra_igpo_rewards(probs, outcome):
    k = len(probs) - 1  # P_0 .. P_{K-1} measured, P_K never (no probe after the last turn)
    answer_probs = t([[*probs, 0.0], [*probs, 0.0]])
    mask = th.ones(2, k + 1, dtype=th.bool)
    return igpo_turn_rewards(answer_probs, t([outcome, outcome]), mask)[0].tolist()


def test_igpo_finished_rollout_matches_the_authors_rule():
    probs = [0.1, 0.3, 0.25]  # P_0 (prompt), P_1, P_2: the contexts before each of 3 turns
    gains = [probs[i + 1] - probs[i] for i in range(len(probs) - 1)]
    # finished after 3 turns (2 searches then an answer): gains of the 2 searches, the score on the answer turn
    expected = igpo_authors_turn_rewards(gains, 0.8, n_turns=3, finished=True)
    assert _palaestra_igpo_rewards(probs, 0.8) == pytest.approx(expected)


def test_igpo_rollout_cut_off_at_the_turn_limit_keeps_its_gains_as_the_authors_script_does():
    # Cut off after 10 searches (the authors' policy_optimization.sh: max_turns=10): 9 gains were measured, the
    # 10th turn's observation never probed; no answer, so the outcome (palaestra: the env's 0; authors: -2).
    probs = [0.1 * (1 + (i % 3)) for i in range(10)]
    gains = [probs[i + 1] - probs[i] for i in range(9)]
    for score in (0.0, -2.0):
        expected = igpo_authors_turn_rewards(gains, score, n_turns=10, finished=False)
        assert expected[:9] == pytest.approx(gains) and expected[9] == score
        assert _palaestra_igpo_rewards(probs, score) == pytest.approx(expected)
    # Under a turn limit below 10 the authors' length check drops the gains; palaestra keeps them (documented).
    probs = [0.1, 0.4, 0.2, 0.3]
    gains = [probs[i + 1] - probs[i] for i in range(3)]
    authors = igpo_authors_turn_rewards(gains, 0.0, n_turns=4, finished=False)
    assert authors == [0.0, 0.0, 0.0, 0.0]
    assert _palaestra_igpo_rewards(probs, 0.0) == pytest.approx([*gains, 0.0])
