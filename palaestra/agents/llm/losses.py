"""Policy losses for multi-turn LLM agents, as small pure functions over ``(B, T)`` token tensors.

``mask`` is 1 on action (model-generated) tokens and 0 on prompt, observation and padding tokens; ``turn_index``
is the turn each token belongs to (``-1`` off the action tokens). Every loss is to be *minimised*.

Sources:

* PPO clipped surrogate: "Proximal Policy Optimization Algorithms", arXiv:1707.06347, Eq. (7); applied per token
  with a group advantage as in GRPO ("DeepSeekMath", arXiv:2402.03300, Eq. (3)).
* Clip-higher and token-mean aggregation: "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
  arXiv:2503.14476, Sec. 3.1 and 3.3.
* k3 KL estimator: J. Schulman, "Approximating KL Divergence" (2020); GRPO Eq. (4); verl's ``low_var_kl``.
* Turn-level importance sampling: "ST-PPO: Stabilized Off-Policy Proximal Policy Optimization for Multi-Turn
  Agents Training" (Turn-PPO / ST-PPO); the geometric-mean ratio is GSPO's sequence-level form applied per turn.
* EPO: "EPO: Entropy-regularized Policy Optimization for LLM Agents Reinforcement Learning", code
  WujiangXu/EPO (``dp_actor.py``).
* LLDS: "On GRPO Collapse in Search-R1: The Lazy Likelihood-Displacement Death Spiral" (likelihood-preserving
  regulariser).
"""

from __future__ import annotations

import math

import torch as th
import torch.nn.functional as F

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "clipped_surrogate_loss",
    "clipping_triggered_weights",
    "epo_entropy_loss",
    "epo_phase_weight",
    "k3_kl",
    "llds_loss",
    "token_entropy",
    "turn_log_ratio",
    "turn_mean",
]

#: Loss aggregation modes: DAPO's token mean over the batch, or GRPO's per-sequence token mean then batch mean.
AGGREGATIONS = ("token-mean", "seq-mean-token-mean")


def aggregate(values: th.Tensor, mask: th.Tensor, mode: str = "token-mean") -> th.Tensor:
    """Average ``values`` over the masked tokens.

    ``"token-mean"`` (DAPO Sec. 3.3): ``sum(m v) / sum(m)`` over the whole batch, so every action token weighs the
    same. ``"seq-mean-token-mean"`` (original GRPO, Eq. (3)): mean over each sequence's tokens, then over sequences
    (sequences without action tokens are skipped).
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}")
    if values.shape != mask.shape:
        raise ValueError(f"values and mask shapes differ: {tuple(values.shape)} vs {tuple(mask.shape)}")
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    per_seq = mask.sum(dim=1)
    has_tokens = per_seq > 0
    seq_means = (values * mask).sum(dim=1)[has_tokens] / per_seq[has_tokens]
    return seq_means.mean() if seq_means.numel() else values.sum() * 0.0


def turn_mean(values: th.Tensor, turn_index: th.Tensor, n_turns: int) -> th.Tensor:
    """Mean of ``values`` over each turn's tokens: shape ``(B, n_turns)`` (0 for a turn without tokens)."""
    valid = turn_index >= 0
    index = turn_index.clamp(min=0)
    zeros = th.zeros(values.shape[0], n_turns, dtype=values.dtype, device=values.device)
    sums = zeros.scatter_add(1, index, values * valid)
    counts = zeros.scatter_add(1, index, valid.to(values.dtype))
    return sums / counts.clamp(min=1.0)


def turn_log_ratio(logp: th.Tensor, old_logp: th.Tensor, turn_index: th.Tensor) -> th.Tensor:
    """Turn-level log importance ratio, broadcast back to the turn's tokens (Turn-PPO / ST-PPO).

    ``log rho_k = (1/|y_k|) sum_{t in turn k} (log pi_theta(y_t) - log pi_old(y_t))``: one ratio per turn, the
    geometric mean of its token ratios, shared by all of the turn's tokens. The length normalisation is GSPO's
    form; the research notes could not confirm that ST-PPO normalises by the turn length (an unnormalised sum
    explodes for long turns, so we keep the mean). The gradient flows through every token of the turn.

    Returns:
        Shape ``(B, T)``: the turn's log ratio on its tokens, 0 elsewhere.
    """
    n_turns = int(turn_index.max()) + 1 if bool((turn_index >= 0).any()) else 1
    per_turn = turn_mean(logp - old_logp, turn_index, n_turns)
    gathered = th.gather(per_turn, 1, turn_index.clamp(min=0))
    return th.where(turn_index >= 0, gathered, th.zeros_like(gathered))


def clipping_triggered_weights(log_ratio: th.Tensor, mask: th.Tensor, clip_range: float) -> th.Tensor:
    """A stop-gradient weight per token that shrinks the contribution of far off-policy samples (S-PPO / ST-PPO).

    ST-PPO rescales the clipped objective by a factor that decreases as the off-policy (clipped) share grows; its
    exact normaliser is not confirmed in our notes. We use the conservative form
    ``w = 1 / max(1, |rho - 1| / eps)`` (1 inside the trust region, ``eps / |rho - 1|`` outside), renormalised so
    that its mean over the masked tokens is 1, and detached. This departs from the paper's exact factor.
    """
    ratio = th.exp(log_ratio.detach())
    weight = 1.0 / th.clamp((ratio - 1.0).abs() / clip_range, min=1.0)
    mask_f = mask.to(weight.dtype)
    mean = (weight * mask_f).sum() / mask_f.sum().clamp(min=1.0)
    return weight / mean.clamp(min=1e-8)


def clipped_surrogate_loss(
    log_ratio: th.Tensor,
    advantages: th.Tensor,
    mask: th.Tensor,
    clip_range: float = 0.2,
    clip_range_high: float | None = None,
    aggregation: str = "token-mean",
    weights: th.Tensor | None = None,
) -> tuple[th.Tensor, dict[str, float]]:
    """Token-level PPO clipped surrogate, ``-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)`` (PPO Eq. (7)).

    No dual clip: verl's ``compute_policy_loss_vanilla`` also caps the loss of a token with ``A < 0`` at
    ``-clip_ratio_c * A`` (``clip_ratio_c = 3``, dual-clip PPO, arXiv:1912.09729), so a ratio above 3 stops adding
    loss there; we keep PPO's form, as TRL's ``GRPOTrainer`` does by default (its ``delta`` two-sided clip is off),
    and a negative-advantage token's loss keeps growing as ``rho |A|``.

    Args:
        log_ratio: ``log pi_theta - log pi_old`` per token, shape ``(B, T)`` (token-level), or the output of
            :func:`turn_log_ratio` (turn-level importance sampling).
        advantages: Per-token advantages, shape ``(B, T)``.
        mask: Action-token mask, shape ``(B, T)``.
        clip_range: ``eps_low`` (and ``eps_high`` unless given).
        clip_range_high: ``eps_high`` for DAPO's clip-higher (0.28 in DAPO); ``None`` means ``clip_range``.
        aggregation: One of :data:`AGGREGATIONS`.
        weights: Optional per-token stop-gradient weights (e.g. :func:`clipping_triggered_weights`).

    Returns:
        The loss and detached statistics: ``clip_frac`` (share of masked tokens whose ratio was clipped in the
        active branch), ``approx_kl`` (k3 of old vs new on the masked tokens) and ``ratio_dev`` (mean ``|rho - 1|``).
    """
    if not clip_range > 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range!r}")
    high = clip_range if clip_range_high is None else clip_range_high
    if not high > 0:
        raise ValueError(f"clip_range_high must be > 0, got {clip_range_high!r}")
    if log_ratio.shape != advantages.shape:
        raise ValueError(f"log_ratio and advantages shapes differ: {tuple(log_ratio.shape)} vs {tuple(advantages.shape)}")
    ratio = th.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = (
        th.clamp(ratio, 1.0 - clip_range, 1.0 + high) * advantages
    )  # DAPO Sec. 3.1 (clip-higher): decoupled eps_low/eps_high
    per_token = -th.minimum(unclipped, clipped)
    if weights is not None:
        per_token = per_token * weights.detach()
    loss = aggregate(per_token, mask, aggregation)
    with th.no_grad():
        mask_b = mask.bool()
        was_clipped = (clipped < unclipped) & mask_b
        n = max(int(mask_b.sum()), 1)
        stats = {
            "clip_frac": float(was_clipped.sum()) / n,
            "approx_kl": float(((ratio - 1.0) - log_ratio)[mask_b].sum()) / n,
            "ratio_dev": float((ratio - 1.0).abs()[mask_b].sum()) / n,
        }
    return loss, stats


def k3_kl(logp: th.Tensor, ref_logp: th.Tensor, clamp: float = 10.0, log_ratio_clamp: float = 20.0) -> th.Tensor:
    """Per-token k3 estimator of ``KL(pi_theta || pi_ref)``: ``r - log r - 1`` with ``r = pi_ref / pi_theta``.

    Unbiased and never negative (Schulman 2020; GRPO Eq. (4)). As verl's ``low_var_kl`` does, the log-ratio is
    clamped to ``[-log_ratio_clamp, log_ratio_clamp]`` before the exponential (without it, a log-ratio above about
    88 overflows float32 and the gradient is NaN) and the estimate to ``[-clamp, clamp]``; both only bound rare
    huge values.
    """
    log_r = th.clamp(ref_logp - logp, min=-log_ratio_clamp, max=log_ratio_clamp)
    return th.clamp(th.exp(log_r) - log_r - 1.0, min=-clamp, max=clamp)


def token_entropy(logits: th.Tensor) -> th.Tensor:
    """Entropy of the softmax policy at each position, ``-sum_v p_v log p_v``; shape ``logits.shape[:-1]``."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def epo_phase_weight(epoch: int, total_epochs: int) -> float:
    """EPO's adaptive phase weight of the smoothing term (``_calculate_epoch_based_entropy_weight``).

    First half, ``p = e / (E/2)``: ``w = 1 - 0.2 (1 - exp(-2p))`` (slow decay from 1); second half,
    ``p' = (e - E/2) / (E/2)``: ``w = 0.8 exp(-3p')`` (fast decay from 0.8).
    """
    if total_epochs < 1 or epoch < 0:
        raise ValueError(f"need total_epochs >= 1 and epoch >= 0, got epoch={epoch!r}, total_epochs={total_epochs!r}")
    half = total_epochs / 2.0
    if epoch < half:
        return 1.0 - 0.2 * (1.0 - math.exp(-2.0 * epoch / half))
    return 0.8 * math.exp(-3.0 * (epoch - half) / half)


def epo_entropy_loss(
    entropy: th.Tensor,
    mask: th.Tensor,
    turn_index: th.Tensor,
    turn_entropy_history: th.Tensor,
    ent_coef: float = 0.001,
    smooth_coef: float = 1.0,
    kappa_low: float = 0.0,
    kappa_high: float = 2.0,
    phase_weight: float = 1.0,
    aggregation: str = "token-mean",
) -> tuple[th.Tensor, dict[str, float]]:
    """EPO's multi-turn entropy regulariser with the entropy-smoothing band, as a loss to add to the PG loss.

    ``loss = -c_H * (H_agg - c_s * w * P_smooth)`` where ``H_agg`` aggregates the token entropies of all action
    tokens of all turns like the PG loss, and the smoothing penalty keeps each token of turn ``k`` inside the band
    ``(kappa_low * H_bar_k, kappa_high * H_bar_k)`` around the historical mean entropy of that turn index:
    ``P_smooth = agg[relu(H_t - kappa_high H_bar_k) + relu(kappa_low H_bar_k - H_t)]``.

    Differences from the released code: there the out-of-band penalty is a detached constant per token (no
    gradient); we use the differentiable hinge above, which pushes entropy back into the band from both sides.
    Turns without history (``H_bar_k`` NaN) are not penalised.

    Args:
        entropy: Token entropies, shape ``(B, T)`` (with gradient).
        mask: Action-token mask, shape ``(B, T)``.
        turn_index: Turn of each token, ``-1`` off action tokens.
        turn_entropy_history: ``H_bar_k`` per turn index, shape ``(K,)``, NaN where unknown.
        ent_coef: ``c_H`` (EPO default 0.001).
        smooth_coef: ``c_s`` (EPO default 1.0).
        kappa_low: Lower band factor (EPO's README runs use 0).
        kappa_high: Upper band factor (EPO's README runs use 2.0).
        phase_weight: From :func:`epo_phase_weight`.
        aggregation: One of :data:`AGGREGATIONS`.

    Returns:
        The loss and detached statistics ``entropy`` and ``smooth_penalty``.
    """
    if not 0.0 <= kappa_low <= kappa_high:
        raise ValueError(f"need 0 <= kappa_low <= kappa_high, got {kappa_low!r}, {kappa_high!r}")
    n_hist = turn_entropy_history.shape[0]
    if int(turn_index.max()) >= n_hist:
        raise ValueError(f"turn_index reaches turn {int(turn_index.max())} but the history has {n_hist} turns")
    h_bar = turn_entropy_history[turn_index.clamp(min=0)]
    known = (turn_index >= 0) & ~th.isnan(h_bar)
    h_bar = th.nan_to_num(h_bar, nan=0.0)
    penalty = F.relu(entropy - kappa_high * h_bar) + F.relu(kappa_low * h_bar - entropy)
    penalty = th.where(known, penalty, th.zeros_like(penalty))
    h_agg = aggregate(entropy, mask, aggregation)
    p_smooth = aggregate(penalty, mask, aggregation)
    loss = -ent_coef * (h_agg - smooth_coef * phase_weight * p_smooth)
    return loss, {"entropy": float(h_agg.detach()), "smooth_penalty": float(p_smooth.detach())}


def llds_loss(logp: th.Tensor, old_logp: th.Tensor, mask: th.Tensor, advantages: th.Tensor | None = None) -> th.Tensor:
    """LLDS: a likelihood-preserving penalty against Lazy Likelihood Displacement (to add to the PG loss).

    A rollout ``i`` is active when its total action log-likelihood fell below the rollout policy's,
    ``sum_t m_t (log pi_theta - log pi_old) < 0``; within an active rollout only tokens whose log-prob decreased
    are penalised: ``L = mean_i active_i (1/|y_i|) sum_t m_t max(0, log pi_old(y_t) - log pi_theta(y_t))``.

    The research notes mark the exact form and weight unverified; this follows their reading (per-rollout token
    mean, mean over the batch). ``advantages`` (per token, constant within a rollout's turn) optionally restricts
    the penalty to rollouts whose tokens all have non-negative advantage, as a third-party reimplementation does.
    The penalty and its gradient are zero while ``pi_theta == pi_old``: it acts from the second minibatch or
    epoch of an update on.
    """
    if not logp.shape == old_logp.shape == mask.shape:
        shapes = ", ".join(str(tuple(x.shape)) for x in (logp, old_logp, mask))
        raise ValueError(f"logp, old_logp and mask shapes differ: {shapes}")
    m = mask.to(logp.dtype)
    change = ((logp - old_logp) * m).sum(dim=1)
    active = (change < 0).to(logp.dtype)
    if advantages is not None:
        active = active * ((advantages * m).min(dim=1).values >= 0).to(logp.dtype)
    decrease = (F.relu(old_logp - logp) * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    return (active * decrease).mean()
