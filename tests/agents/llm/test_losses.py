import math

import pytest
import torch as th

from palaestra.agents.llm.losses import (
    aggregate,
    clipped_surrogate_loss,
    clipping_triggered_weights,
    epo_entropy_loss,
    epo_phase_weight,
    k3_kl,
    llds_loss,
    token_entropy,
    turn_log_ratio,
)


def t(values):
    return th.tensor(values, dtype=th.float64)


def test_aggregation_modes():
    values = t([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = t([[1, 1, 1], [1, 0, 0]])
    assert float(aggregate(values, mask, "token-mean")) == pytest.approx(10 / 4)
    assert float(aggregate(values, mask, "seq-mean-token-mean")) == pytest.approx((2 + 4) / 2)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(values, mask, "sum")


def test_clipped_surrogate_hand_computed_with_clip_higher():
    ratios = t([[1.5, 0.5, 1.25, 0.7]])
    adv = t([[1.0, 1.0, -1.0, -1.0]])
    mask = t([[1, 1, 1, 1]])
    loss, stats = clipped_surrogate_loss(ratios.log(), adv, mask, clip_range=0.2, clip_range_high=0.28)
    # token 0: min(1.5, 1.28) = 1.28; token 1: min(0.5, 0.8) = 0.5; token 2: min(-1.25, -1.25) = -1.25;
    # token 3: min(-0.7, -0.8) = -0.8  -> loss = -(1.28 + 0.5 - 1.25 - 0.8) / 4
    assert float(loss) == pytest.approx(-(1.28 + 0.5 - 1.25 - 0.8) / 4)
    assert stats["clip_frac"] == pytest.approx(2 / 4)
    symmetric, _ = clipped_surrogate_loss(ratios.log(), adv, mask, clip_range=0.2)
    assert float(symmetric) == pytest.approx(-(1.2 + 0.5 - 1.25 - 0.8) / 4)


def test_clipped_surrogate_ignores_masked_tokens_and_gradient_is_advantage_at_ratio_one():
    logp = th.zeros(1, 3, dtype=th.float64, requires_grad=True)
    adv = t([[2.0, 5.0, -1.0]])
    mask = t([[1, 0, 1]])
    loss, _ = clipped_surrogate_loss(logp - logp.detach(), adv, mask)
    loss.backward()
    # d/dlogp of -rho*A / 2 at rho = 1 is -A/2 on masked-in tokens, 0 on the masked-out one
    assert th.allclose(logp.grad, t([[-1.0, 0.0, 0.5]]))


def test_turn_log_ratio_is_geometric_mean_per_turn():
    logp = t([[0.0, -1.0, -2.0, 0.0, -3.0]])
    old = t([[0.0, -1.5, -1.0, 0.0, -2.0]])
    turn = th.tensor([[-1, 0, 0, -1, 1]])
    # turn 0: mean(0.5, -1.0) = -0.25; turn 1: -1.0
    assert th.allclose(turn_log_ratio(logp, old, turn), t([[0.0, -0.25, -0.25, 0.0, -1.0]]))


def test_clipping_triggered_weights():
    log_ratio = t([[0.0, math.log(1.4), math.log(0.6)]])
    mask = t([[1, 1, 0]])
    w = clipping_triggered_weights(log_ratio, mask, clip_range=0.2)
    # raw: 1, 0.2/0.4 = 0.5, 0.2/0.4 = 0.5; mean over masked (1 + 0.5)/2 = 0.75
    assert th.allclose(w, t([[1 / 0.75, 0.5 / 0.75, 0.5 / 0.75]]))


def test_k3_kl_values():
    logp = t([math.log(0.5), math.log(0.25)])
    ref = t([math.log(0.25), math.log(0.25)])
    # r = 0.5: 0.5 - log 0.5 - 1 = 0.19315; r = 1: 0
    assert th.allclose(k3_kl(logp, ref), t([0.5 - math.log(0.5) - 1.0, 0.0]))
    assert bool((k3_kl(th.randn(100, dtype=th.float64), th.randn(100, dtype=th.float64)) >= 0).all())


def verl_low_var_kl(logp: th.Tensor, ref_logp: th.Tensor) -> th.Tensor:
    """verl's ``kl_penalty_forward`` for ``low_var_kl``/``k3``, transcribed from volcengine/verl at commit
    b178a3cd56f58b2d502255daba591e92833930a7, verl/trainer/ppo/core_algos.py: the log-ratio ``ref - logp`` is
    clamped to [-20, 20], then ``exp(kl) - kl - 1`` is clamped to [-10, 10]."""
    kl = (ref_logp - logp).clamp(-20.0, 20.0)
    return (kl.exp() - kl - 1.0).clamp(-10.0, 10.0)


def test_k3_kl_matches_verl_and_keeps_a_finite_gradient_at_huge_log_ratios():
    logp = th.tensor([-100.0, -30.0, -1.0, 0.0, -5.0], requires_grad=True)  # float32, as in training
    ref = th.tensor([0.0, 0.0, -1.5, -95.0, -5.0])
    kl = k3_kl(logp, ref)
    assert th.allclose(kl, verl_low_var_kl(logp.detach(), ref))
    kl.sum().backward()
    assert logp.grad is not None and bool(th.isfinite(logp.grad).all()), logp.grad


def test_token_entropy_uniform():
    assert th.allclose(token_entropy(th.zeros(2, 4)), th.full((2,), math.log(4.0)))


def test_epo_phase_weight_schedule():
    assert epo_phase_weight(0, 150) == pytest.approx(1.0)
    assert epo_phase_weight(75, 150) == pytest.approx(0.8)
    assert epo_phase_weight(150, 150) == pytest.approx(0.8 * math.exp(-3.0))
    assert epo_phase_weight(37, 150) == pytest.approx(1 - 0.2 * (1 - math.exp(-2 * 37 / 75)))


def test_epo_entropy_loss_band_hand_computed():
    entropy = t([[1.0, 3.0, 0.2, 9.0]]).requires_grad_(True)
    mask = t([[1, 1, 1, 0]])
    turn = th.tensor([[0, 0, 1, -1]])
    history = t([1.0, 1.0])  # H_bar per turn
    loss, stats = epo_entropy_loss(entropy, mask, turn, history, ent_coef=0.1, smooth_coef=1.0,
                                   kappa_low=0.5, kappa_high=2.0, phase_weight=0.5)  # fmt: skip
    # penalties: 0, 3 - 2 = 1, 0.5 - 0.2 = 0.3 -> mean 1.3/3; H mean 4.2/3
    expected = -0.1 * (4.2 / 3 - 0.5 * 1.3 / 3)
    assert float(loss.detach()) == pytest.approx(expected)
    assert stats["smooth_penalty"] == pytest.approx(1.3 / 3)
    loss.backward()
    # token 1 is above the band: gradient of -c_H*(H/3 - w*(H-2)/3) = -0.1*(1/3 - 0.5/3)
    assert float(entropy.grad[0, 1]) == pytest.approx(-0.1 * (1 / 3 - 0.5 / 3))
    assert float(entropy.grad[0, 3]) == 0.0


def test_epo_no_history_no_penalty():
    entropy = t([[5.0]])
    loss, stats = epo_entropy_loss(entropy, t([[1]]), th.tensor([[0]]), t([float("nan")]), ent_coef=1.0)
    assert stats["smooth_penalty"] == 0.0
    assert float(loss) == pytest.approx(-5.0)


def test_llds_penalises_only_decreased_tokens_of_rollouts_whose_likelihood_fell():
    old = t([[-1.0, -1.0, -1.0, 0.0], [-1.0, -1.0, -1.0, -1.0]])
    # rollout 0: changes -0.5, +0.2, -0.1 on its 3 action tokens (net -0.4 < 0: active);
    # rollout 1: changes -0.3, +0.5 (net +0.2: inactive); the last token of each is masked out
    new = old + t([[-0.5, 0.2, -0.1, -9.0], [-0.3, 0.5, 0.0, -9.0]])
    mask = t([[1, 1, 1, 0], [1, 1, 0, 0]])
    new.requires_grad_(True)
    loss = llds_loss(new, old, mask)
    # active rollout 0: (0.5 + 0 + 0.1) / 3 tokens; mean over the 2 rollouts
    assert float(loss.detach()) == pytest.approx((0.6 / 3) / 2)
    loss.backward()
    # gradient only on rollout 0's decreased, unmasked tokens: d/dlogp of -logp / 3 / 2
    expected = t([[-1 / 6, 0.0, -1 / 6, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert th.allclose(new.grad, expected)


def test_llds_is_zero_on_policy_and_can_be_gated_on_advantage():
    old = t([[-1.0, -2.0]])
    mask = t([[1, 1]])
    same = old.clone().requires_grad_(True)
    loss = llds_loss(same, old, mask)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(same.grad.abs().sum()) == 0.0
    lower = old - 0.5
    assert float(llds_loss(lower, old, mask)) == pytest.approx(0.5)
    assert float(llds_loss(lower, old, mask, advantages=t([[1.0, 1.0]]))) == pytest.approx(0.5)
    assert float(llds_loss(lower, old, mask, advantages=t([[-1.0, -1.0]]))) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        llds_loss(old, old, t([[1, 1, 1]]))


def verl_dual_clip_loss(log_ratio: th.Tensor, advantages: th.Tensor, eps: float = 0.2, clip_ratio_c: float = 3.0):
    """verl's per-token ``compute_policy_loss_vanilla``, transcribed from volcengine/verl at commit
    b178a3cd56f58b2d502255daba591e92833930a7, verl/trainer/ppo/core_algos.py: the log-ratio is clamped to
    [-20, 20]; ``l1 = -A rho``, ``l2 = -A clip(rho, 1 - eps, 1 + eps)``, ``c = max(l1, l2)``; for ``A < 0`` the
    loss is ``min(-A clip_ratio_c, c)`` (dual clip), else ``c``."""
    ratio = log_ratio.clamp(-20.0, 20.0).exp()
    clipped = th.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - eps, 1 + eps))
    return th.where(advantages < 0, th.minimum(-advantages * clip_ratio_c, clipped), clipped)


def trl_grpo_loss(log_ratio: th.Tensor, advantages: th.Tensor, eps: float = 0.2):
    """TRL's per-token GRPO loss (``loss_type`` with the PPO clip, ``delta=None``), transcribed from
    huggingface/trl at commit f2cd57710ae345ea6428ae95363267fcf38a3dc8, trl/trainer/grpo_trainer.py
    (``_compute_loss``): ``-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)``, no dual clip."""
    ratio = log_ratio.exp()
    return -th.minimum(ratio * advantages, ratio.clamp(1 - eps, 1 + eps) * advantages)


def test_clipped_surrogate_has_no_dual_clip_it_follows_trl_and_departs_from_verl_only_past_clip_ratio_c():
    # One token each: rho = 0.5, 1.1, 2.0, 5.0 with A = -1 (dual clip applies past rho = 3), and rho = 5.0 with A = 1.
    log_ratio = t([[math.log(0.5)], [math.log(1.1)], [math.log(2.0)], [math.log(5.0)], [math.log(5.0)]])
    adv = t([[-1.0], [-1.0], [-1.0], [-1.0], [1.0]])
    mask = th.ones_like(adv)
    ours = th.stack([clipped_surrogate_loss(log_ratio[i : i + 1], adv[i : i + 1], mask[i : i + 1])[0] for i in range(5)])
    assert th.allclose(ours, trl_grpo_loss(log_ratio, adv).squeeze(1))
    assert math.isclose(float(ours[3]), 5.0)  # PPO: rho |A|, unbounded for A < 0
    verl = verl_dual_clip_loss(log_ratio, adv).squeeze(1)
    assert math.isclose(float(verl[3]), 3.0)  # verl caps it at clip_ratio_c |A|
    keep = [0, 1, 2, 4]  # below clip_ratio_c, or A > 0: the two agree
    assert th.allclose(ours[keep], verl[keep])
