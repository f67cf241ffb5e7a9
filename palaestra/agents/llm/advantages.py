"""Advantage estimators and reward transforms for multi-turn LLM agents, as small pure functions.

Every function works on ONE group: the G rollouts sampled for the same question from the same initial state.
Turn-level quantities are padded ``(G, K)`` tensors with a boolean ``turn_mask`` (``True`` where rollout ``i``
has a turn ``k``); episode-level ones are ``(G,)`` tensors. :func:`broadcast_turn_values` spreads a per-turn
value onto the tokens of that turn.

Sources (equation numbers as in the papers' arXiv versions):

* GRPO: "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models", arXiv:2402.03300,
  Sec. 4.1.2 (outcome supervision); the std-free variant is Dr. GRPO ("Understanding R1-Zero-Like Training",
  arXiv:2503.20783) and verl's ``norm_adv_by_std_in_grpo=False``.
* IGPO: "Information Gain-based Policy Optimization: A Simple and Effective Approach for Multi-Turn LLM Agents",
  arXiv:2510.14967, code GuoqingWang1/IGPO.
* GiGPO: "Group-in-Group Policy Optimization for LLM Agent Training", arXiv:2505.10978, code
  langfengQ/verl-agent (``gigpo/core_gigpo.py``).
* OTC: "OTC: Optimal Tool Calls via Reinforcement Learning", arXiv:2504.14870.
* EMPG: "Harnessing Uncertainty: Entropy-Modulated Policy Gradients for Long-Horizon LLM Agents",
  arXiv:2509.09265.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch as th

__all__ = [
    "broadcast_turn_values",
    "discounted_turn_returns",
    "empg_modulate",
    "gigpo_advantages",
    "grpo_advantages",
    "igpo_advantages",
    "igpo_turn_rewards",
    "otc_optimal_calls",
    "otc_reward",
    "otc_tool_reward",
]


def _check_group(rewards: th.Tensor, name: str = "rewards") -> None:
    if not isinstance(rewards, th.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(rewards).__name__}")
    if rewards.dim() != 1:
        raise ValueError(f"{name} must have shape (G,) for one group, got shape {tuple(rewards.shape)}")
    if rewards.numel() < 2:
        raise ValueError(f"a group needs at least 2 rollouts for a group baseline, got G={rewards.numel()}")


def _check_turns(values: th.Tensor, turn_mask: th.Tensor, name: str) -> None:
    if values.dim() != 2 or values.shape != turn_mask.shape:
        raise ValueError(
            f"{name} and turn_mask must both have shape (G, K), got {tuple(values.shape)} and {tuple(turn_mask.shape)}"
        )
    if turn_mask.dtype != th.bool:
        raise TypeError(f"turn_mask must be a bool tensor, got {turn_mask.dtype}")
    if values.shape[0] < 2:
        raise ValueError(f"a group needs at least 2 rollouts for a group baseline, got G={values.shape[0]}")


def grpo_advantages(rewards: th.Tensor, norm_by_std: bool = True, eps: float = 1e-6) -> th.Tensor:
    """Group-relative outcome advantage of GRPO (DeepSeekMath, Sec. 4.1.2).

    ``A_i = (R_i - mean(R)) / (std(R) + eps)``, one scalar per rollout, later broadcast to all its action tokens.
    ``std`` is the unbiased (Bessel-corrected) standard deviation, as ``torch.std`` in verl's
    ``compute_grpo_outcome_advantage``. With ``norm_by_std=False`` the division is dropped (Dr. GRPO). A group whose
    rewards are all equal gets ``A = 0`` for every member: the "advantage collapse" that IGPO and GiGPO address.

    Args:
        rewards: Outcome rewards of one group, shape ``(G,)`` with ``G >= 2``.
        norm_by_std: Divide by the group's standard deviation.
        eps: Added to the standard deviation.

    Returns:
        Advantages, shape ``(G,)``.
    """
    _check_group(rewards)
    centred = rewards - rewards.mean()  # Sec. 4.1.2: r~_i = (r_i - mean(r)) / std(r)
    return centred / (rewards.std() + eps) if norm_by_std else centred


def discounted_turn_returns(turn_rewards: th.Tensor, turn_mask: th.Tensor, gamma: float) -> th.Tensor:
    """``sum_{l >= k} gamma^(l - k) r_l`` over the valid turns of each rollout (zero where ``turn_mask`` is False).

    Args:
        turn_rewards: Per-turn rewards, shape ``(G, K)``.
        turn_mask: Valid turns, shape ``(G, K)``; each row's valid turns must be a prefix.
        gamma: Discount in ``[0, 1]``.

    Returns:
        Discounted returns, shape ``(G, K)``.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma!r}")
    returns = th.zeros_like(turn_rewards)
    running = th.zeros_like(turn_rewards[:, 0])
    for k in reversed(range(turn_rewards.shape[1])):  # backward recursion R_k = r_k + gamma * R_{k+1}
        running = th.where(turn_mask[:, k], turn_rewards[:, k] + gamma * running, th.zeros_like(running))
        returns[:, k] = running
    return returns


def igpo_turn_rewards(answer_probs: th.Tensor, outcome: th.Tensor, turn_mask: th.Tensor) -> th.Tensor:
    """IGPO's turn rewards: information gain for every turn but the last, the outcome reward for the last.

    ``answer_probs[i, k]`` is ``P_k``, the policy's probability of the gold answer (geometric mean of the gold
    tokens' teacher-forced probabilities) given the context after turn ``k``'s observation; column 0 is ``P_0``,
    measured on the prompt alone. For a rollout with ``K_i`` turns, ``r_k = P_k - P_{k-1}`` for ``k < K_i`` (IGPO's
    information-gain turn reward) and ``r_{K_i} = outcome_i`` (the answer turn carries the outcome).

    A rollout cut off before answering (the env's turn limit or the token budget) keeps its information gains, and
    its last turn (a search whose gain is never measured) carries the outcome (the env's reward, 0 without an
    answer). The authors' code does the same on the path of their training script (GuoqingWang1/IGPO,
    ``verl/utils/reward_score/info_gain.py`` ``compute_score`` with ``max_turns=10`` in ``policy_optimization.sh``):
    a cut-off rollout has more than 10 chat segments, its missing last gain is taken as 0 and the final score (-2
    without an answer block) sits on the last token, so the last turn's reward is ``0 + score``. With a turn limit
    under 10 (the ``max_turns: 6`` of their ``ppo_trainer.yaml``) their length check fails instead and a cut-off
    rollout gets the final score alone, its gains dropped; we keep the gains whatever the limit.

    Args:
        answer_probs: Shape ``(G, K + 1)``: ``P_0 .. P_K`` (entries past a rollout's last turn are ignored).
        outcome: Outcome rewards, shape ``(G,)``.
        turn_mask: Valid turns, shape ``(G, K)``, each row a non-empty prefix.

    Returns:
        Turn rewards, shape ``(G, K)``, zero where ``turn_mask`` is False.
    """
    n_turns = turn_mask.sum(dim=1)
    if answer_probs.shape != (turn_mask.shape[0], turn_mask.shape[1] + 1):
        expected = (turn_mask.shape[0], turn_mask.shape[1] + 1)
        raise ValueError(f"answer_probs must have shape (G, K + 1) = {expected}, got {tuple(answer_probs.shape)}")
    if bool((n_turns < 1).any()):
        raise ValueError("every rollout must have at least one turn")
    gain = answer_probs[:, 1:] - answer_probs[:, :-1]  # r_k = P_k - P_{k-1}
    last = th.arange(turn_mask.shape[1]).unsqueeze(0) == (n_turns - 1).unsqueeze(1)
    rewards = th.where(last, outcome.unsqueeze(1).to(gain.dtype), gain)
    return th.where(turn_mask, rewards, th.zeros_like(rewards))


def igpo_advantages(
    turn_rewards: th.Tensor, turn_mask: th.Tensor, gamma: float = 1.0, norm_by_std: bool = True, eps: float = 1e-6
) -> th.Tensor:
    """IGPO turn advantages: group-normalise the pooled turn rewards, then sum them discounted over later turns.

    IGPO (paper's method section): all turn rewards of the group's rollouts are z-normalised together (one mean and
    one std over the pooled valid turns), and turn ``k``'s advantage is ``A_{i,k} = sum_{l >= k} gamma^(l-k) r~_{i,l}``.
    Unlike GRPO, an all-fail group still gets non-zero advantages whenever the information gains differ.

    Differences from the released code: it uses token-level returns with ``gamma = 1`` and subtracts a
    position-wise group mean without std; we follow the paper's turn-level form.

    Args:
        turn_rewards: From :func:`igpo_turn_rewards`, shape ``(G, K)``.
        turn_mask: Valid turns, shape ``(G, K)``.
        gamma: Discount over turns (the paper's default is 1).
        norm_by_std: Divide by the pooled std (else only centre).
        eps: Added to the std.

    Returns:
        Turn advantages, shape ``(G, K)``, zero where ``turn_mask`` is False.
    """
    _check_turns(turn_rewards, turn_mask, "turn_rewards")
    pooled = turn_rewards[turn_mask]
    if pooled.numel() < 2:
        raise ValueError("IGPO needs at least 2 turns in the group to normalise")
    normed = turn_rewards - pooled.mean()
    if norm_by_std:
        normed = normed / (pooled.std() + eps)
    normed = th.where(turn_mask, normed, th.zeros_like(normed))
    return discounted_turn_returns(normed, turn_mask, gamma)


def gigpo_advantages(
    step_rewards: th.Tensor,
    turn_mask: th.Tensor,
    anchors: Sequence[Sequence[Hashable]],
    gamma: float = 0.95,
    omega: float = 1.0,
    norm_by_std: bool = True,
    eps: float = 1e-6,
    episode_cross_steps: bool = False,
) -> th.Tensor:
    """GiGPO: episode-level group advantage plus ``omega`` times the step-level anchor-group advantage.

    Episode level (GiGPO's episode relative advantage): ``A^E_i = (R_i - mean_j R_j) / F_norm`` with ``R_i`` the
    undiscounted episode return. Step level (anchor-state grouping): every (rollout, step) whose anchor state (the env
    state the action was taken in) is identical forms one group ``G^S(s)``; with the discounted return
    ``R^S_{i,t} = sum_{k >= t} gamma^(k-t) r_{i,k}`` the step advantage is
    ``A^S_{i,t} = (R^S_{i,t} - mean_{G^S(s)} R^S) / F_norm``. Singleton anchor groups get ``A^S = 0`` (as in
    ``core_gigpo.py``). Combined (Eq. 8): ``A_{i,t} = A^E_i + omega * A^S_{i,t}``. ``F_norm`` is the unbiased std of
    the (episode or anchor) group plus ``eps`` (``mean_std_norm``) or 1 (``mean_norm``).

    The episode mean and std are taken over the G trajectories, one value each (the paper's Eq. 3). verl-agent's
    ``compute_gigpo_outcome_advantage`` calls ``episode_norm_reward`` with its default
    ``compute_mean_std_cross_steps=True``, which pools over step rows instead: every step of trajectory ``i``
    contributes ``R_i``, so a longer trajectory weighs more in the baseline and the std (a group of one row gets
    mean 0 and std 1). ``episode_cross_steps=True`` gives that pooled form.

    Args:
        step_rewards: Per-step env rewards, shape ``(G, K)``.
        turn_mask: Valid steps, shape ``(G, K)``.
        anchors: ``anchors[i][t]`` is a hashable key of the state rollout ``i`` acted on at step ``t``
            (one key per valid step).
        gamma: Step-level discount (0.95 in verl-agent's scripts).
        omega: Weight of the step-level advantage (1.0 in the paper).
        norm_by_std: ``mean_std_norm`` if True, ``mean_norm`` if False.
        eps: Added to the std.
        episode_cross_steps: Pool the episode mean and std over the group's steps (verl-agent's default) instead
            of its trajectories (the paper).

    Returns:
        Per-step advantages, shape ``(G, K)``, zero where ``turn_mask`` is False.
    """
    _check_turns(step_rewards, turn_mask, "step_rewards")
    n_steps = turn_mask.sum(dim=1).tolist()
    if len(anchors) != len(n_steps) or any(len(a) != n for a, n in zip(anchors, n_steps, strict=False)):
        raise ValueError(f"anchors must hold one key per valid step: lengths {[len(a) for a in anchors]}, steps {n_steps}")
    masked = th.where(turn_mask, step_rewards, th.zeros_like(step_rewards))
    returns = masked.sum(dim=1)
    if episode_cross_steps:  # verl-agent's compute_mean_std_cross_steps=True: one value per step row
        per_step = returns.repeat_interleave(turn_mask.sum(dim=1))
        one_row = per_step.numel() < 2
        mean, std = (returns.new_tensor(0.0), returns.new_tensor(1.0)) if one_row else (per_step.mean(), per_step.std())
        episode = (returns - mean) / (std + eps) if norm_by_std else returns - mean
    else:
        episode = grpo_advantages(returns, norm_by_std=norm_by_std, eps=eps)  # episode relative advantage (Eq. 3)
    step_returns = discounted_turn_returns(masked, turn_mask, gamma)  # discounted step return, backward recursion
    groups: dict[Hashable, list[tuple[int, int]]] = {}
    for i, keys in enumerate(anchors):
        for t, key in enumerate(keys):
            groups.setdefault(key, []).append((i, t))
    step_adv = th.zeros_like(step_returns)
    for members in groups.values():
        if len(members) < 2:
            continue  # singleton anchor group: A^S = 0
        rows, cols = zip(*members, strict=True)
        values = step_returns[list(rows), list(cols)]
        centred = values - values.mean()  # step relative advantage within G^S(s)
        step_adv[list(rows), list(cols)] = centred / (values.std() + eps) if norm_by_std else centred
    combined = episode.unsqueeze(1) + omega * step_adv  # Eq. 8
    return th.where(turn_mask, combined, th.zeros_like(combined))


def broadcast_turn_values(turn_values: th.Tensor, token_turn: th.Tensor) -> th.Tensor:
    """Spread per-turn values onto tokens: ``out[b, t] = turn_values[b, token_turn[b, t]]`` (0 where index is -1).

    Args:
        turn_values: Shape ``(B, K)``, or ``(B,)`` for one value per rollout.
        token_turn: Turn index of each token, shape ``(B, T)``, ``-1`` for prompt/observation/padding tokens.

    Returns:
        Shape ``(B, T)``.
    """
    if turn_values.dim() == 1:
        turn_values = turn_values.unsqueeze(1)
        token_turn = th.where(token_turn >= 0, th.zeros_like(token_turn), token_turn)
    if int(token_turn.max()) >= turn_values.shape[1]:
        raise ValueError(f"token_turn refers to turn {int(token_turn.max())} but turn_values has {turn_values.shape[1]} turns")
    gathered = th.gather(turn_values, 1, token_turn.clamp(min=0))
    return th.where(token_turn >= 0, gathered, th.zeros_like(gathered))


# --- OTC: tool-efficiency reward ------------------------------------------------------------------------------
def otc_optimal_calls(tool_calls: Sequence[int], correct: Sequence[bool]) -> int | None:
    """OTC-GRPO's ``n``: the fewest tool calls among the group's correct rollouts (``None`` if none is correct)."""
    if len(tool_calls) != len(correct):
        raise ValueError(f"tool_calls and correct must have the same length, got {len(tool_calls)} and {len(correct)}")
    calls = [m for m, ok in zip(tool_calls, correct, strict=True) if ok]
    return min(calls) if calls else None


def otc_tool_reward(m: int, n: int | None, c: float = 1.0) -> float:
    """OTC's tool-use reward ``r_tool(m, n)`` for ``m`` calls when ``n`` is optimal (OTC-GRPO).

    With the mapping ``f(m, n) = 0`` if ``m = n = 0``, ``m`` if ``n = 0``, else ``2nm / (m + n)``:
    ``r_tool = 1`` if ``f = n = 0``; ``cos(m pi / (2m + c))`` if ``n = 0``; ``sin(f pi / (2n))`` otherwise, which
    is 1 exactly at ``m = n`` and smaller for fewer or more calls. ``n = None`` (no optimum known: OTC-PPO)
    uses the group-free form ``cos(m pi / (2m + c))``. The formulas follow a public reimplementation; the
    research notes could not check them against the paper text.

    Args:
        m: Tool calls of this rollout, ``>= 0``.
        n: Optimal number of calls, ``>= 0``, or ``None``.
        c: Smoothing constant of the cosine form, ``> 0``.
    """
    if m < 0 or (n is not None and n < 0):
        raise ValueError(f"tool-call counts must be >= 0, got m={m!r}, n={n!r}")
    if c <= 0:
        raise ValueError(f"c must be > 0, got {c!r}")
    if n is None or n == 0:
        if n == 0 and m == 0:
            return 1.0  # f(m, n) = n = 0
        return math.cos(m * math.pi / (2 * m + c))
    f = 2 * n * m / (m + n)
    return math.sin(f * math.pi / (2 * n))


def otc_reward(correct: bool | float, m: int, n: int | None, alpha: float = 1.0, c: float = 1.0) -> float:
    """OTC's final reward ``alpha * r_tool * r_correct``: multiplicative, so a wrong answer earns 0 whatever ``m``."""
    return float(alpha * otc_tool_reward(m, n, c) * float(correct))


# --- EMPG: entropy-modulated advantages ---------------------------------------------------------------------------
def empg_modulate(
    advantages: th.Tensor,
    step_entropy: th.Tensor,
    turn_mask: th.Tensor,
    kappa: float = 1.0,
    kappa_future: float = 1.0,
    zeta: float = 0.05,
    eps: float = 1e-8,
) -> th.Tensor:
    """EMPG: rescale step advantages by step confidence and add a future-clarity bonus (EMPG).

    ``Hn`` is the step entropy min-max normalised over the batch's valid steps; ``g(Hn) = exp(-kappa Hn) /
    mean(exp(-kappa Hn))`` (batch mean 1: confident steps amplified, uncertain ones damped);
    ``f = exp(-kappa_future Hn_{k+1})`` for the next step (0 for a rollout's last step);
    ``A_mod = g * A + zeta * f``, finally centred to zero batch mean. The exact formulas are from secondary
    summaries (no code was released); this is our reading.

    Args:
        advantages: Step advantages (e.g. GRPO's broadcast to steps, or GiGPO's), shape ``(B, K)``.
        step_entropy: Mean token entropy of each step's action, shape ``(B, K)``.
        turn_mask: Valid steps, shape ``(B, K)``.
        kappa: Confidence sharpness of ``g``.
        kappa_future: Sharpness of the future-clarity bonus.
        zeta: Weight of the bonus.
        eps: Guards the min-max range.

    Returns:
        Modulated advantages, shape ``(B, K)``, zero where ``turn_mask`` is False.
    """
    if advantages.shape != step_entropy.shape or advantages.shape != turn_mask.shape:
        shapes = [tuple(x.shape) for x in (advantages, step_entropy, turn_mask)]
        raise ValueError(f"advantages, step_entropy and turn_mask must share one shape (B, K), got {shapes}")
    valid = step_entropy[turn_mask]
    h_norm = (step_entropy - valid.min()) / (valid.max() - valid.min() + eps)
    confidence = th.exp(-kappa * h_norm)
    gain = confidence / confidence[turn_mask].mean()  # self-calibrating g, batch mean 1
    next_mask = th.zeros_like(turn_mask)
    next_mask[:, :-1] = turn_mask[:, 1:]
    next_h = th.zeros_like(h_norm)
    next_h[:, :-1] = h_norm[:, 1:]
    future = th.where(next_mask, th.exp(-kappa_future * next_h), th.zeros_like(next_h))
    modulated = gain * advantages + zeta * future
    modulated = modulated - modulated[turn_mask].mean()  # final batch-level centring
    return th.where(turn_mask, modulated, th.zeros_like(modulated))
