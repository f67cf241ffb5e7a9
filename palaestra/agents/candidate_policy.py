"""A policy that scores each candidate action with one shared network, for SB3's PPO and sb3-contrib's MaskablePPO.

:class:`~palaestra.wrappers.CandidateActions` lays its observation out as a transcript part followed by one
fixed-size slot per candidate message. SB3's ``MlpPolicy`` reads that vector whole, so what it learns about the
candidate in slot 3 teaches it nothing about the same candidate in slot 5, and the slot a good answer lands in
changes from one question to the next. The choice-based text-game agents score each candidate with one network
instead: the Deep Reinforcement Relevance Network (DRRN; He et al. 2016, "Deep Reinforcement Learning with a
Natural Language Action Space", Sec. 3) embeds the state and each action separately and scores their pair.

Here (departing from DRRN, which takes the inner product of the two embeddings and learns Q-values):

* the state embedding is an MLP of the transcript part; each slot's embedding is an MLP of the slot, the same
  weights for every slot;
* a slot's logit is an MLP of ``[state embedding, slot embedding]`` (so a score may depend on the slot alone, as
  the wrapper's overlap features need), the same weights for every slot; the logits are the policy's action
  distribution directly (SB3's ``action_net`` is the identity);
* only the offered candidates are scored, as in DRRN: an empty slot (all zeros) gets a logit of -1e8, as
  sb3-contrib's masks give, so plain PPO, which samples without masks, never picks one;
* the value is an MLP of the state embedding and the element-wise maximum of the filled slots' embeddings, as
  PPO needs a state value rather than DRRN's action values; the critic embeds with weights of its own, as SB3's
  ``MlpPolicy`` keeps the policy and value networks apart (with shared embeddings, one seed of three collapsed
  on ToolSearch-v0 to searching until the turns ran out).

``net_arch`` sets the hidden sizes of every MLP (default ``[64, 64]``, SB3's own default for PPO).
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import gymnasium as gym
import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from torch import nn

from palaestra.wrappers.candidate_actions import candidate_layout

#: The logit of an empty slot: as sb3-contrib's masking (-1e8), so PPO, which samples without masks, never picks one
#: and MaskablePPO's distribution is unchanged.
EMPTY_SLOT_LOGIT = -1e8

__all__ = [
    "EMPTY_SLOT_LOGIT",
    "CandidateScorer",
    "CandidateScorerPolicy",
    "MaskableCandidateScorerPolicy",
    "scorer_policy_for",
]


def _mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), activation()]
    return nn.Sequential(*layers)


class CandidateScorer(nn.Module):
    """SB3's ``mlp_extractor`` for candidate slots: ``forward_actor`` gives one logit per slot (``latent_dim_pi = n``).

    Args:
        head_size: Length of the transcript part of the observation.
        slots: Number of candidate slots (``n`` of the ``Discrete(n)`` action space).
        slot_size: Length of each slot.
        hidden: Hidden sizes of each MLP (the last one is the embedding size).
        activation: Activation class.
    """

    def __init__(self, head_size: int, slots: int, slot_size: int, hidden: list[int], activation: type[nn.Module]):
        super().__init__()
        self.head_size, self.slots, self.slot_size = head_size, slots, slot_size
        width = hidden[-1]
        self.state = _mlp([head_size, *hidden], activation)
        self.slot = _mlp([slot_size, *hidden], activation)
        self.score = nn.Sequential(_mlp([2 * width, *hidden], activation), nn.Linear(width, 1))
        # the critic embeds with its own weights, as SB3's MlpPolicy keeps separate pi and vf networks
        self.critic_state = _mlp([head_size, *hidden], activation)
        self.critic_slot = _mlp([slot_size, *hidden], activation)
        self.value = _mlp([2 * width, *hidden], activation)
        self.latent_dim_pi, self.latent_dim_vf = slots, width

    def _split(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The transcript part, the slots, and which slots hold a candidate (an empty slot is all zeros)."""
        head = observation[:, : self.head_size]
        slots = observation[:, self.head_size :].reshape(-1, self.slots, self.slot_size)
        return head, slots, slots.abs().sum(-1) > 0

    def forward_actor(self, observation: torch.Tensor) -> torch.Tensor:
        """One logit per slot, from the shared scorer; an empty slot gets ``EMPTY_SLOT_LOGIT``."""
        head, slots, filled = self._split(observation)
        state, embedded = self.state(head), self.slot(slots)
        pairs = torch.cat([state.unsqueeze(1).expand_as(embedded), embedded], dim=-1)
        return self.score(pairs).squeeze(-1).masked_fill(~filled, EMPTY_SLOT_LOGIT)

    def forward_critic(self, observation: torch.Tensor) -> torch.Tensor:
        """The value network's latent: the state embedding and the max-pooled embeddings of the filled slots."""
        head, slots, filled = self._split(observation)
        state, embedded = self.critic_state(head), self.critic_slot(slots)
        pooled = embedded.masked_fill(~filled.unsqueeze(-1), float("-inf")).amax(dim=1)
        pooled = torch.where(filled.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))
        return self.value(torch.cat([state, pooled], dim=-1))

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(actor latent, critic latent)``, as SB3's ``MlpExtractor`` returns them."""
        return self.forward_actor(observation), self.forward_critic(observation)


def _scorer_for(policy: Any) -> CandidateScorer:
    """The :class:`CandidateScorer` that fits ``policy``'s spaces and ``net_arch``."""
    observation_space, action_space = policy.observation_space, policy.action_space
    if not isinstance(action_space, gym.spaces.Discrete) or not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(
            "the candidate scorer policies need CandidateActions' spaces (a Box observation, Discrete actions), "
            f"got {observation_space} and {action_space}"
        )
    slots = int(action_space.n)
    features = candidate_layout(int(observation_space.shape[0]), slots)
    hidden = list(policy.net_arch) if isinstance(policy.net_arch, list) and policy.net_arch else [64, 64]
    if not all(isinstance(size, int) for size in hidden):
        raise ValueError(f"the candidate scorer takes net_arch as a list of hidden sizes, got {policy.net_arch!r}")
    return CandidateScorer(features + 1, slots, 2 * features + 4, hidden, policy.activation_fn)


def _use_scores_as_logits(policy: Any, lr_schedule: Any) -> None:
    """After SB3's ``_build``: the scores are the logits (no ``action_net``), the last scoring layer starts small."""
    policy.action_net = nn.Identity()
    if policy.ortho_init:
        policy.mlp_extractor.score[-1].apply(partial(policy.init_weights, gain=0.01))  # SB3's gain for action_net
    policy.optimizer = policy.optimizer_class(policy.parameters(), lr=lr_schedule(1), **policy.optimizer_kwargs)


class _ScoresCandidates:
    """What both policies add to their SB3 base: the scorer as ``mlp_extractor``, its scores as the logits."""

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor: Any = _scorer_for(self)  # SB3 types it as its MlpExtractor, whose interface it has

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        _use_scores_as_logits(self, lr_schedule)


class CandidateScorerPolicy(_ScoresCandidates, ActorCriticPolicy):
    """SB3 ``PPO``'s policy over :class:`~palaestra.wrappers.CandidateActions` (see the module docstring)."""


class MaskableCandidateScorerPolicy(_ScoresCandidates, MaskableActorCriticPolicy):
    """sb3-contrib ``MaskablePPO``'s policy over :class:`~palaestra.wrappers.CandidateActions` (see the module docstring)."""


def scorer_policy_for(algorithm: type) -> type[BasePolicy] | None:
    """The candidate scorer policy of an SB3 algorithm class (``PPO``, ``MaskablePPO``), or None for the others."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    if issubclass(algorithm, MaskablePPO):
        return MaskableCandidateScorerPolicy
    if issubclass(algorithm, PPO):
        return CandidateScorerPolicy
    return None
