"""IQL: Implicit Q-Learning.

Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit Q-Learning", ICLR 2022. IQL never
queries Q on actions outside the dataset: a state value V is fitted by expectile regression onto the target
Q of dataset actions (paper eq. 5), Q regresses onto ``r + gamma * V(s')`` (eq. 6), and the policy is
extracted by advantage-weighted regression (eq. 7). The class defaults are the paper's locomotion settings as
CORL implements them (``algorithms/offline/iql.py``): expectile 0.7, inverse temperature beta 3.0, advantage
weights clipped at 100, tau 0.005, Adam 3e-4 for all networks with a cosine schedule on the actor, 256-256 ReLU
networks, a Gaussian actor with a state-independent standard deviation, state normalisation on, rewards scaled
by ``1000 / (max episode return - min episode return)`` (:func:`reward_scale`).

CORL's per-dataset configs (``configs/offline/iql/<task>/<dataset>_v2.yaml``) depart from these defaults, and
:func:`build_iql` (``palaestra train --algo iql``) applies them from the env id (:data:`IQL_PRESETS`): reward
scaling only on hopper-medium and hopper-medium-replay, which also use CORL's deterministic actor
(``deterministic_actor``: ``tanh(MLP(s))`` fitted by advantage-weighted squared error) and tau 0.001;
hopper-medium-expert uses beta 6.0 and expectile 0.5. Constructing :class:`IQL` directly keeps the defaults.
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
from palaestra.envs.offline.dataset import episode_bounds, episode_returns

__all__ = [
    "IQL",
    "IQL_PRESETS",
    "build_iql",
    "expectile_loss",
    "iql_actor_loss",
    "iql_preset",
    "iql_q_target",
    "reward_scale",
]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

#: CORL's per-dataset IQL settings, from ``configs/offline/iql/<task>/<dataset>_v2.yaml`` (tinkoff-ai/CORL at
#: commit 6afec90): ``normalize_reward``, ``iql_deterministic`` (here ``deterministic_actor``), ``tau``, ``beta``
#: and ``iql_tau`` (here ``expectile``). Every config has discount 0.99, batch 256 and learning rates 3e-4, the
#: class defaults. Each entry states all five settings, so a preset never depends on the class defaults.
IQL_PRESETS: dict[str, dict[str, Any]] = {
    f"{task}-{kind}": {"normalize_reward": False, "deterministic_actor": False, "tau": 0.005, "beta": 3.0, "expectile": 0.7}
    for task in ("hopper", "halfcheetah", "walker2d")
    for kind in ("random", "medium", "expert", "medium-replay", "medium-expert")
}
for _kind in ("medium", "medium-replay"):  # reward scaling, the deterministic actor and slow targets
    IQL_PRESETS[f"hopper-{_kind}"].update(normalize_reward=True, deterministic_actor=True, tau=0.001)
IQL_PRESETS["hopper-medium-expert"].update(beta=6.0, expectile=0.5)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2 loss ``mean |tau - 1(u < 0)| * u^2`` with ``u = Q(s, a) - V(s)`` (IQL eq. 5)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def iql_q_target(rewards: torch.Tensor, not_dones: torch.Tensor, next_values: torch.Tensor, gamma: float) -> torch.Tensor:
    """Q's regression target ``r + gamma * (1 - d) * V(s')`` (IQL eq. 6)."""
    return rewards + gamma * not_dones * next_values


def iql_actor_loss(advantages: torch.Tensor, log_probs: torch.Tensor, beta: float, max_weight: float = 100.0) -> torch.Tensor:
    """Advantage-weighted regression ``-mean exp(beta * A) * log pi(a|s)`` with weights clipped at ``max_weight`` (eq. 7).

    The deterministic actor passes ``-||pi(s) - a||^2`` (summed over action dimensions) as its ``log pi(a|s)``,
    which gives CORL's ``mean exp(beta * A) * ||pi(s) - a||^2`` for its ``DeterministicPolicy``.
    """
    weights = torch.exp(beta * advantages.detach()).clamp(max=max_weight)
    return -(weights * log_probs).mean()


def reward_scale(
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray | None = None,
    max_episode_steps: int | None = None,
) -> float:
    """IQL's locomotion reward scale ``1000 / (max return - min return)`` over the dataset's complete episodes.

    Episodes are split at ``terminals | timeouts``. An episode counts when it ends in a terminal or lasts
    ``max_episode_steps`` steps (a time-out at the env's limit); an episode that stops on a time-out flag before
    the limit was cut to make the dataset its size and is left out. This is CORL's ``return_reward_range``
    (``algorithms/offline/iql.py``), which closes an episode on a terminal or after ``max_episode_steps`` steps
    and drops the steps left over at the end of the data. Two departures: palaestra splits at its time-out
    flags rather than counting steps, so a cut episode inside concatenated data is also left out (CORL's
    counter would run on into the next episode), and with ``max_episode_steps`` unknown (``None``) every
    episode counts except a last one that does not end in a terminal. When fewer than two episodes are
    complete (data shorter than two time limits), every episode counts, where CORL's would fail.

    Args:
        rewards: Per-step rewards, episodes concatenated.
        terminals: Boolean flags of terminal steps.
        timeouts: Boolean flags of time-out steps (the env's limit or a dataset cut); ``None``: none.
        max_episode_steps: The env's time limit (CORL: 1000 for the MuJoCo tasks).

    Raises:
        ValueError: If the counted episodes all have the same return.
    """
    terminals = np.asarray(terminals, dtype=bool)
    ends = terminals if timeouts is None else terminals | np.asarray(timeouts, dtype=bool)
    returns = episode_returns(rewards, ends)
    starts, lasts = episode_bounds(ends)
    if max_episode_steps is None:
        complete = terminals[lasts] | (lasts != len(ends) - 1)
    else:
        complete = terminals[lasts] | (lasts - starts + 1 >= max_episode_steps)
    if complete.sum() >= 2:
        returns = returns[complete]
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


class _DeterministicPolicy(nn.Module):
    """CORL's ``DeterministicPolicy`` for IQL: the action ``tanh(MLP(s))``, fitted by weighted squared error."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, action_dim, nn.Tanh)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class IQL(OfflineAgent):
    """Implicit Q-Learning on an offline dataset.

    The policy acts in the normalised action box ``[-1, 1]`` (dataset actions are divided by ``max_action``
    for the log-likelihood and policy outputs multiplied by it when acting).

    Hyperparameters (besides :class:`~palaestra.agents.offline.common.OfflineAgent`'s): ``expectile`` (0.7),
    ``beta`` (3.0), ``max_weight`` (100), ``tau`` (0.005), ``actor_lr``/``critic_lr``/``value_lr`` (3e-4),
    ``normalize_reward`` (True), ``deterministic_actor`` (False: CORL's Gaussian actor; True: its deterministic
    one, which acts the same with or without ``deterministic``), ``hidden_sizes`` ((256, 256)).
    :func:`build_iql` applies CORL's per-dataset :data:`IQL_PRESETS`.
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
        "deterministic_actor": False,
        "hidden_sizes": (256, 256),
    }

    def _build(self) -> None:
        c = self.config
        if not 0.0 < c["expectile"] < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {c['expectile']}")
        hidden = tuple(c["hidden_sizes"])
        actor = _DeterministicPolicy if c["deterministic_actor"] else _GaussianPolicy
        self.actor: _GaussianPolicy | _DeterministicPolicy = actor(self.obs_dim, self.action_dim, hidden).to(self.device)
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
        time_limit = getattr(getattr(self.env, "spec", None), "max_episode_steps", None)
        self.config["reward_scale"] = reward_scale(
            np.asarray(raw["rewards"]), np.asarray(raw["terminals"]), raw.get("timeouts"), time_limit
        )
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
        if isinstance(self.actor, _DeterministicPolicy):  # CORL: mean exp(beta * A) * ||pi(s) - a||^2
            log_probs = -(self.actor(obs) - actions / self.max_action).pow(2).sum(-1, keepdim=True)
        else:
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
        if isinstance(self.actor, _DeterministicPolicy):
            return self.max_action * self.actor(observations).clamp(-1.0, 1.0)
        distribution = self.actor.distribution(observations)
        if deterministic:
            action = distribution.mean
        else:
            action = distribution.mean + distribution.stddev * torch.randn(
                distribution.mean.shape, generator=self.generator, device=self.device
            )
        return self.max_action * action.clamp(-1.0, 1.0)


def iql_preset(env_id: str) -> dict[str, Any]:
    """The :data:`IQL_PRESETS` entry for an offline env id such as ``hopper-medium-v0`` (empty if none)."""
    name, _, _ = env_id.rpartition("-v")
    return dict(IQL_PRESETS.get(name, {}))


def build_iql(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> IQL:
    """``palaestra train --algo iql`` builder: the dataset's CORL preset (if any), overridden by ``hyperparams``.

    The env id names the dataset, e.g. ``hopper-medium-replay-v0``.
    """
    return build_offline_agent(IQL, env_id, env_kwargs, seed, {**iql_preset(env_id), **hyperparams})  # type: ignore[return-value]
