"""A2PR: Adaptive Advantage-guided Policy Regularization.

Liu, Li, Lan, Gao, Pan & Xu, "Adaptive Advantage-guided Policy Regularization for Offline Reinforcement
Learning", ICML 2024 (authors' code: github.com/ltlhuuu/A2PR, ``A2PR.py``). A2PR is TD3+BC (Fujimoto & Gu
2021) whose behaviour-cloning term no longer imitates every dataset action:

1. a state value ``V(s)`` regresses onto the smaller of two one-step TD targets of the *dataset* transition,
   one bootstrapped with the target critic and one with the just-updated critic (plain MSE, no target net);
   the advantage of an action is ``A(s, a) = Q1(s, a) - V(s)`` (``A2PR.train`` in the authors' code);
2. a conditional VAE (BCQ's, Fujimoto et al. 2019) is trained to reconstruct only the dataset actions with
   positive advantage (the paper's advantage-guided generative model);
3. the actor's BC target is, per sample, whichever of the dataset action ``a`` and the VAE's reconstruction
   ``a~`` of the policy action has the larger advantage, and the BC term is weighted by
   ``mask * 1[A(s, a~) >= 0 or A(s, a) > 0]``, so it is ``mask`` where either candidate reaches ``V(s)`` and
   vanishes where neither does (the paper's adaptive policy constraint). The authors' code sums two boolean
   tensors, which torch evaluates as a logical OR: the weight is 0 or ``mask``, never ``2 * mask``, and this
   module takes the OR explicitly.

Equation numbers of the paper were not available when this module was written: the comments cite the
method's parts by name and follow the authors' code line by line.

What this module reproduces exactly from the authors' code (the paper states advantages with a threshold
``epsilon_A``; the code, and so this module, uses 0): the network sizes (actor 3x256, critics and V 4x256,
VAE 2x750 with latent ``2 * action_dim`` and ``log std`` clamped to [-4, 15]), the KL term's weight 0.5 on a
per-element mean, Q1 (not min) for advantages and the actor, V's pre-update value in the actor step, and the
non-detached VAE target (the BC gradient flows through the VAE into the policy action; ``detach_vae_target``
turns that off as an ablation). Per-dataset hyperparameters are :data:`A2PR_PRESETS`.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from palaestra.agents.offline.common import build_offline_agent, mlp, soft_update
from palaestra.agents.offline.td3_bc import TD3BC, _Critic, smoothed_target_action, td3bc_critic_loss, td3bc_target

__all__ = [
    "A2PR",
    "A2PR_PRESETS",
    "ConditionalVAE",
    "a2pr_actor_loss",
    "a2pr_bc_target_and_weight",
    "a2pr_vae_loss",
    "a2pr_value_loss",
    "build_a2pr",
]

#: Per-dataset hyperparameters from the authors' README run commands (``alpha``, ``vae_weight``, ``mask``,
#: ``gamma`` as ``--discount``; all other settings are the defaults). The final README (commit f92a2a4) lists
#: hopper/halfcheetah/walker2d-medium; the other six entries come from the README of commit a90b9d0, whose
#: "See result" block gives one command per D4RL dataset. That README also keeps in-progress sweeps
#: ("current running", "wait for running", some lines commented out) that contradict it; the preset is the
#: block's command, the first one listed for the dataset, never a sweep line:
#:
#: * hopper-medium: ``gamma`` 0.995 (the final README, the a90b9d0 block and ``run.sh``); a line marked
#:   "not" uses 0.99;
#: * halfcheetah-medium-expert: ``mask`` 10 (the block); the sweeps try ``mask`` 15, 1 and 10 with
#:   ``gamma`` 0.995;
#: * walker2d-medium: ``vae_weight`` 1.5, ``mask`` 1.0 (the block and the final README); commented sweeps try
#:   ``vae_weight`` 1.0, ``mask`` 1.5 with ``gamma`` 0.99 or 0.995;
#: * walker2d-medium-replay: ``mask`` 1.2, ``gamma`` 0.995 (the block); the sweeps try ``mask`` 1.5 and
#:   ``gamma`` 0.99;
#: * walker2d-medium-expert: ``gamma`` 0.99 (the block); a second uncommented line uses 0.995.
#:
#: The authors' repository has no scripts folder; its only script (``run.sh``, removed later) runs
#: hopper-medium and agrees with the preset. The paper's appendix table was not checked against these.
A2PR_PRESETS: dict[str, dict[str, float]] = {
    "hopper-random": {"alpha": 2.5, "vae_weight": 1.5, "mask": 1.5, "gamma": 0.995},
    "hopper-medium": {"alpha": 2.5, "vae_weight": 1.0, "mask": 0.4, "gamma": 0.995},
    "hopper-medium-replay": {"alpha": 2.5, "vae_weight": 1.5, "mask": 0.5, "gamma": 0.99},
    "hopper-medium-expert": {"alpha": 2.5, "vae_weight": 1.0, "mask": 4.0, "gamma": 0.99},
    "halfcheetah-medium": {"alpha": 40.0, "vae_weight": 1.0, "mask": 1.0, "gamma": 0.99},
    "halfcheetah-medium-replay": {"alpha": 40.0, "vae_weight": 1.5, "mask": 0.8, "gamma": 0.995},
    "halfcheetah-medium-expert": {"alpha": 40.0, "vae_weight": 1.0, "mask": 10.0, "gamma": 0.99},
    "walker2d-medium": {"alpha": 2.5, "vae_weight": 1.5, "mask": 1.0, "gamma": 0.99},
    "walker2d-medium-replay": {"alpha": 2.5, "vae_weight": 1.5, "mask": 1.2, "gamma": 0.995},
    "walker2d-medium-expert": {"alpha": 2.5, "vae_weight": 1.0, "mask": 0.8, "gamma": 0.99},
}


# --- losses (pure functions) -------------------------------------------------------------------------
def a2pr_value_loss(values: torch.Tensor, target_q: torch.Tensor, online_q: torch.Tensor) -> torch.Tensor:
    """``MSE(V(s), min(y, y'))`` with ``y``/``y'`` the TD targets through the target/online critic (A2PR's V update).

    Args:
        values: ``V(s)``.
        target_q: ``y = r + gamma (1 - d) min Q'_i(s', a')`` (target critic, the critic's own target).
        online_q: ``y' = r + gamma (1 - d) min Q_i(s', a')`` (critic after this step's update, same ``a'``).
    """
    return F.mse_loss(values, torch.minimum(target_q, online_q).detach())


def a2pr_vae_loss(
    reconstruction: torch.Tensor,
    actions: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    positive_advantage: torch.Tensor,
    vae_weight: float,
) -> torch.Tensor:
    """The advantage-gated VAE loss (A2PR's VAE update; per-element means as in the code).

    ``L = mean(vae_weight * 1[A(s, a) > 0] * (a_hat - a)^2) + 0.5 * mean KL(N(mu, sigma) || N(0, I))`` where
    the per-element KL is ``-0.5 * (1 + log sigma^2 - mu^2 - sigma^2)``. Samples with non-positive advantage
    contribute nothing to the reconstruction term.

    Args:
        reconstruction: ``a_hat``, the decoder's output for ``(s, a)``.
        actions: Dataset actions ``a``.
        mean: Posterior means ``mu``.
        std: Posterior standard deviations ``sigma``.
        positive_advantage: ``1[Q1(s, a) > V(s)]``, shape ``(batch, 1)`` (bool or 0/1).
        vae_weight: Weight of the reconstruction term.
    """
    gate = vae_weight * positive_advantage.to(reconstruction.dtype)
    reconstruction_loss = (gate * (reconstruction - actions).pow(2)).mean()
    kl = -0.5 * (1.0 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
    return reconstruction_loss + 0.5 * kl


def a2pr_bc_target_and_weight(
    dataset_actions: torch.Tensor,
    vae_actions: torch.Tensor,
    q_dataset: torch.Tensor,
    q_vae: torch.Tensor,
    values: torch.Tensor,
    mask: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-sample BC target and weight of A2PR's actor (A2PR's adaptive policy constraint).

    ``target = a~ if A(s, a~) >= A(s, a) else a`` and ``w = mask * 1[Q1(s, a~) >= V(s) or Q1(s, a) > V(s)]``,
    so ``w`` is 0 or ``mask``: the BC term is on, at full scale, wherever either candidate reaches ``V(s)``. The
    authors' ``A2PR.py`` writes ``self.mask * (adv_pi + adv_action)`` on two boolean tensors, and torch adds
    booleans as a logical OR, so their weight never reaches ``2 * mask``; this function takes the OR explicitly.
    The weight is not differentiated; the target keeps ``a~``'s graph.

    Args:
        dataset_actions: ``a``, shape ``(batch, action_dim)``.
        vae_actions: ``a~``, the VAE's reconstruction of the policy action.
        q_dataset: ``Q1(s, a)``, shape ``(batch, 1)``.
        q_vae: ``Q1(s, a~)``.
        values: ``V(s)``.
        mask: Scale of the BC term.

    Returns:
        The targets ``(batch, action_dim)`` and the weights ``(batch, 1)``.
    """
    advantage_dataset, advantage_vae = (q_dataset - values).detach(), (q_vae - values).detach()
    take_vae = advantage_vae >= advantage_dataset
    target = torch.where(take_vae, vae_actions, dataset_actions)
    weight = mask * ((advantage_vae >= 0) | (advantage_dataset > 0)).to(target.dtype)
    return target, weight


def a2pr_actor_loss(
    q_pi: torch.Tensor, policy_actions: torch.Tensor, bc_targets: torch.Tensor, bc_weights: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``-lambda * mean Q1(s, pi(s)) + mean(w * (pi(s) - target)^2)``, ``lambda = alpha / mean|Q1(s, pi(s))|``.

    The squared error is averaged over batch and action dimensions, as TD3+BC's; ``lambda`` is not differentiated.

    Returns:
        The loss and ``lambda``.
    """
    lmbda = alpha / q_pi.abs().mean().detach()
    return -lmbda * q_pi.mean() + (bc_weights * (policy_actions - bc_targets).pow(2)).mean(), lmbda


# --- networks ----------------------------------------------------------------------------------------
class ConditionalVAE(nn.Module):
    """BCQ's conditional VAE over actions: ``q(z | s, a)`` and ``p(a | s, z)``, ``a = max_action * tanh(.)``.

    Args:
        obs_dim: State size.
        action_dim: Action size.
        latent_dim: Size of ``z`` (A2PR: ``2 * action_dim``).
        max_action: Per-dimension action bound, shape ``(action_dim,)``.
        hidden: Hidden widths of encoder and decoder (A2PR: 750, 750).
    """

    LOG_STD_MIN, LOG_STD_MAX = -4.0, 15.0

    def __init__(
        self, obs_dim: int, action_dim: int, latent_dim: int, max_action: torch.Tensor, hidden: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.encoder = mlp(obs_dim + action_dim, hidden, 2 * latent_dim)
        self.decoder = mlp(obs_dim + latent_dim, hidden, action_dim, nn.Tanh)
        self.latent_dim = latent_dim
        self.register_buffer("max_action", max_action.clone())

    def forward(
        self, observations: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample ``z = mu + sigma * noise`` (reparameterised) and decode; returns ``(a_hat, mu, sigma)``."""
        mean, log_std = self.encoder(torch.cat([observations, actions], 1)).chunk(2, dim=1)
        std = log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).exp()
        return self.decode(observations, mean + std * noise), mean, std

    def decode(self, observations: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``p(a | s, z)``'s mean action."""
        return self.max_action * self.decoder(torch.cat([observations, latents], 1))


# --- agent -------------------------------------------------------------------------------------------
class A2PR(TD3BC):
    """A2PR on an offline dataset (TD3+BC's critic and target smoothing, advantage-guided BC).

    Hyperparameters (besides :class:`~palaestra.agents.offline.common.OfflineAgent`'s): TD3+BC's ``alpha`` (2.5),
    ``policy_noise`` (0.2), ``noise_clip`` (0.5), ``policy_freq`` (2), ``tau`` (0.005), ``actor_lr`` and
    ``critic_lr`` (3e-4), ``hidden_sizes`` (actor, (256, 256, 256)); and A2PR's ``mask`` (0.5, scale of the BC
    term), ``vae_weight`` (1.0, scale of the VAE reconstruction loss), ``value_lr`` (3e-4), ``vae_lr`` (1e-3),
    ``critic_hidden_sizes`` and ``value_hidden_sizes`` ((256,) * 4), ``vae_hidden_sizes`` ((750, 750)),
    ``detach_vae_target`` (False). :func:`build_a2pr` applies :data:`A2PR_PRESETS` for D4RL-named datasets.

    Example:
        >>> env = gym.make("pendulum-medium-replay-v0")              # doctest: +SKIP
        >>> agent = A2PR(env, seed=0).learn(50_000)                  # doctest: +SKIP
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        **TD3BC.DEFAULTS,
        "hidden_sizes": (256, 256, 256),
        "critic_hidden_sizes": (256, 256, 256, 256),
        "value_hidden_sizes": (256, 256, 256, 256),
        "vae_hidden_sizes": (750, 750),
        "mask": 0.5,
        "vae_weight": 1.0,
        "value_lr": 3e-4,
        "vae_lr": 1e-3,
        "detach_vae_target": False,
    }

    def _build(self) -> None:
        c = self.config
        for name in ("mask", "vae_weight"):
            if c[name] < 0:
                raise ValueError(f"{name} must be >= 0, got {c[name]}")
        super()._build()  # actor (hidden_sizes), TD3+BC critic, targets and optimisers
        self.critic = _Critic(self.obs_dim, self.action_dim, tuple(c["critic_hidden_sizes"])).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=c["critic_lr"])
        self.value = mlp(self.obs_dim, tuple(c["value_hidden_sizes"]), 1).to(self.device)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=c["value_lr"])
        self.vae = ConditionalVAE(
            self.obs_dim, self.action_dim, 2 * self.action_dim, self.max_action, tuple(c["vae_hidden_sizes"])
        ).to(self.device)
        self.vae_optimizer = torch.optim.Adam(self.vae.parameters(), lr=c["vae_lr"])

    def _modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {
            **super()._modules(),
            "value": self.value,
            "value_optimizer": self.value_optimizer,
            "vae": self.vae,
            "vae_optimizer": self.vae_optimizer,
        }

    def _noise(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One A2PR iteration: critic, value and VAE steps; every ``policy_freq``-th step the actor and targets."""
        c = self.config
        obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        rewards, not_dones = batch["rewards"], batch["not_dones"]
        # critic: TD3's clipped double-Q target with target policy smoothing (TD3+BC, unchanged)
        with torch.no_grad():
            noise = self._noise(actions.shape) * (c["policy_noise"] * self.max_action)
            next_actions = smoothed_target_action(
                self.max_action * self.actor_target(next_obs), noise, c["noise_clip"], self.max_action
            )
            next_q1, next_q2 = self.critic_target(next_obs, next_actions)
            target_q = td3bc_target(rewards, not_dones, next_q1, next_q2, self.gamma)
        q1, q2 = self.critic(obs, actions)
        critic_loss = td3bc_critic_loss(q1, q2, target_q)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # value: V(s) -> min(y, y'), y' through the updated critic (A2PR's V update)
        with torch.no_grad():
            online_q1, online_q2 = self.critic(next_obs, next_actions)
            online_q = td3bc_target(rewards, not_dones, online_q1, online_q2, self.gamma)
        values = self.value(obs)
        value_loss = a2pr_value_loss(values, target_q, online_q)
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()
        values = values.detach()  # the actor step uses V before this update, as the authors' code does

        # VAE on positive-advantage dataset actions only (A2PR's VAE update)
        with torch.no_grad():
            q_dataset = self.critic.q1(torch.cat([obs, actions], 1))
        positive = q_dataset > values
        reconstruction, mean, std = self.vae(obs, actions, self._noise(torch.Size((len(obs), self.vae.latent_dim))))
        vae_loss = a2pr_vae_loss(reconstruction, actions, mean, std, positive, c["vae_weight"])
        self.vae_optimizer.zero_grad(set_to_none=True)
        vae_loss.backward()
        self.vae_optimizer.step()

        self._updates += 1
        if self._updates % c["policy_freq"] == 0:
            policy_actions = self.max_action * self.actor(obs)
            q_pi = self.critic.q1(torch.cat([obs, policy_actions], 1))
            vae_actions, _, _ = self.vae(obs, policy_actions, self._noise(torch.Size((len(obs), self.vae.latent_dim))))
            if c["detach_vae_target"]:
                vae_actions = vae_actions.detach()
            q_vae = self.critic.q1(torch.cat([obs, vae_actions], 1))
            targets, weights = a2pr_bc_target_and_weight(actions, vae_actions, q_dataset, q_vae, values, c["mask"])
            actor_loss, lmbda = a2pr_actor_loss(q_pi, policy_actions, targets, weights, c["alpha"])
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()  # also leaves gradients on critic/VAE; their optimisers zero them before use
            self.actor_optimizer.step()
            soft_update(self.critic_target, self.critic, c["tau"])
            soft_update(self.actor_target, self.actor, c["tau"])
            with torch.no_grad():
                chose_vae = ((q_vae - values) >= (q_dataset - values)).float().mean()
            self._last_actor = {
                "actor_loss": actor_loss.detach(),
                "lambda": lmbda,
                "share_vae_target": chose_vae,
                "share_zero_bc_weight": (weights == 0).float().mean(),
            }
        return {
            "critic_loss": critic_loss.detach(),
            "value_loss": value_loss.detach(),
            "vae_loss": vae_loss.detach(),
            "share_positive_advantage": positive.float().mean(),
            "q1": q1.detach().mean(),
            **self._last_actor,
        }


def a2pr_preset(env_id: str) -> dict[str, float]:
    """The :data:`A2PR_PRESETS` entry for an offline env id such as ``hopper-medium-v0`` (empty if none)."""
    name, _, _ = env_id.rpartition("-v")
    return dict(A2PR_PRESETS.get(name, {}))


def build_a2pr(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> A2PR:
    """``palaestra train --algo a2pr`` builder: the dataset's preset (if any), overridden by ``hyperparams``."""
    return build_offline_agent(A2PR, env_id, env_kwargs, seed, {**a2pr_preset(env_id), **hyperparams})  # type: ignore[return-value]
