"""IQL: Implicit Q-Learning.

Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit Q-Learning", ICLR 2022. IQL never
queries Q on actions outside the dataset: a state value V is fitted by expectile regression onto the target
Q of dataset actions (paper eq. 5), Q regresses onto ``r + gamma * V(s')`` (eq. 6), and the policy is
extracted by advantage-weighted regression (eq. 7). Hyperparameters are the paper's locomotion settings as
in CORL (``algorithms/offline/iql.py`` and its MuJoCo configs): expectile 0.7, inverse temperature
beta 3.0, advantage weights clipped at 100, tau 0.005, Adam 3e-4 for all networks with a cosine schedule
on the actor, 256-256 ReLU networks, state normalisation on, rewards scaled by
``1000 / (max episode return - min episode return)``.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from palaestra.agents.offline.common import OfflineAgent, build_offline_agent, mlp, soft_update
from palaestra.agents.offline.td3_bc import _Critic
from palaestra.envs.offline.dataset import episode_returns

__all__ = ["IQL", "build_iql", "expectile_loss", "iql_actor_loss", "iql_q_target", "reward_scale"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2 loss ``mean |tau - 1(u < 0)| * u^2`` with ``u = Q(s, a) - V(s)`` (IQL eq. 5)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def iql_q_target(rewards: torch.Tensor, not_dones: torch.Tensor, next_values: torch.Tensor, gamma: float) -> torch.Tensor:
    """Q's regression target ``r + gamma * (1 - d) * V(s')`` (IQL eq. 6)."""
    return rewards + gamma * not_dones * next_values


def iql_actor_loss(advantages: torch.Tensor, log_probs: torch.Tensor, beta: float, max_weight: float = 100.0) -> torch.Tensor:
    """Advantage-weighted regression ``-mean exp(beta * A) * log pi(a|s)`` with weights clipped at ``max_weight`` (eq. 7)."""
    weights = torch.exp(beta * advantages.detach()).clamp(max=max_weight)
    return -(weights * log_probs).mean()


def reward_scale(rewards: np.ndarray, episode_ends: np.ndarray) -> float:
    """IQL's locomotion reward scale ``1000 / (max return - min return)`` over the dataset's episodes.

    Args:
        rewards: Per-step rewards, episodes concatenated.
        episode_ends: Boolean flags marking each episode's last step (terminal or time-out).
    """
    returns = episode_returns(rewards, episode_ends)
    spread = float(returns.max() - returns.min())
    if spread <= 0:
        raise ValueError("cannot scale rewards: every episode of the dataset has the same return")
    return 1000.0 / spread


class _GaussianPolicy(nn.Module):
    """CORL's IQL actor: mean ``tanh(MLP(s))`` and a state-independent log standard deviation."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, action_dim, nn.Tanh)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def distribution(self, observations: torch.Tensor) -> torch.distributions.Normal:
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return torch.distributions.Normal(self.net(observations), std)


class IQL(OfflineAgent):
    """Implicit Q-Learning on an offline dataset.

    The policy acts in the normalised action box ``[-1, 1]`` (dataset actions are divided by ``max_action``
    for the log-likelihood and policy outputs multiplied by it when acting).

    Hyperparameters (besides :class:`~palaestra.agents.offline.common.OfflineAgent`'s): ``expectile`` (0.7),
    ``beta`` (3.0), ``max_weight`` (100), ``tau`` (0.005), ``actor_lr``/``critic_lr``/``value_lr`` (3e-4),
    ``normalize_reward`` (True), ``hidden_sizes`` ((256, 256)).
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "expectile": 0.7,
        "beta": 3.0,
        "max_weight": 100.0,
        "tau": 0.005,
        "actor_lr": 3e-4,
        "critic_lr": 3e-4,
        "value_lr": 3e-4,
        "normalize_reward": True,
        "hidden_sizes": (256, 256),
    }

    def _build(self) -> None:
        c = self.config
        if not 0.0 < c["expectile"] < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {c['expectile']}")
        hidden = tuple(c["hidden_sizes"])
        self.actor = _GaussianPolicy(self.obs_dim, self.action_dim, hidden).to(self.device)
        self.critic = _Critic(self.obs_dim, self.action_dim, hidden).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = mlp(self.obs_dim, hidden, 1).to(self.device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=c["actor_lr"])
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=c["critic_lr"])
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=c["value_lr"])
        self.actor_schedule: torch.optim.lr_scheduler.LRScheduler | None = None

    def _transform_rewards(self, rewards: np.ndarray, raw: dict[str, np.ndarray]) -> np.ndarray:
        if not self.config["normalize_reward"]:
            return rewards
        ends = np.asarray(raw["terminals"], dtype=bool)
        if "timeouts" in raw:
            ends = ends | np.asarray(raw["timeouts"], dtype=bool)
        self.config["reward_scale"] = reward_scale(np.asarray(raw["rewards"]), ends)
        return rewards * self.config["reward_scale"]

    def _on_learn_start(self, total_timesteps: int) -> None:
        # cosine decay of the actor's learning rate over the run (CORL: CosineAnnealingLR(T_max=max_timesteps));
        # each learn() call is one run: a second call starts a new cosine cycle from actor_lr, so train in one
        # call (evaluate through eval_freq or a callback) to follow the paper's single schedule
        self.actor_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optimizer, total_timesteps)

    def _modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "value": self.value,
            "actor_optimizer": self.actor_optimizer,
            "critic_optimizer": self.critic_optimizer,
            "value_optimizer": self.value_optimizer,
        }

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One IQL iteration: V by expectile regression, Q by TD onto V(s'), then advantage-weighted policy."""
        c = self.config
        obs, actions = batch["observations"], batch["actions"]
        with torch.no_grad():
            next_values = self.value(batch["next_observations"])
            target_q = torch.minimum(*self.critic_target(obs, actions))
        # value: expectile regression onto min of the target critics (eq. 5)
        advantages = target_q - self.value(obs)
        value_loss = expectile_loss(advantages, c["expectile"])
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()
        # critics: TD onto V(s') (eq. 6), averaged over the twin critics as in CORL
        q_target = iql_q_target(batch["rewards"], batch["not_dones"], next_values, self.gamma)
        q1, q2 = self.critic(obs, actions)
        critic_loss = (F.mse_loss(q1, q_target) + F.mse_loss(q2, q_target)) / 2
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.critic_target, self.critic, c["tau"])
        # actor: advantage-weighted regression (eq. 7) on the advantages of the value step
        log_probs = self.actor.distribution(obs).log_prob(actions / self.max_action).sum(-1, keepdim=True)
        actor_loss = iql_actor_loss(advantages, log_probs, c["beta"], c["max_weight"])
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        if self.actor_schedule is not None:
            self.actor_schedule.step()
        return {
            "value_loss": value_loss.detach(),
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "advantage": advantages.detach().mean(),
        }

    def _act(self, observations: torch.Tensor, deterministic: bool) -> torch.Tensor:
        distribution = self.actor.distribution(observations)
        if deterministic:
            action = distribution.mean
        else:
            action = distribution.mean + distribution.stddev * torch.randn(
                distribution.mean.shape, generator=self.generator, device=self.device
            )
        return self.max_action * action.clamp(-1.0, 1.0)


def build_iql(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> IQL:
    """``palaestra train --algo iql`` builder (the env id names the dataset, e.g. ``hopper-medium-replay-v0``)."""
    return build_offline_agent(IQL, env_id, env_kwargs, seed, hyperparams)  # type: ignore[return-value]
