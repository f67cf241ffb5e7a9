"""The table of trainable algorithms the CLI and the conformance tests know, by short name.

Entries are import strings, so ``import palaestra`` never imports an agent's dependencies. A new
agent adds one :func:`register_algorithm` call below, in its family's group.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["ALGORITHMS", "AlgorithmSpec", "get_algorithm", "register_algorithm"]


@dataclass(frozen=True)
class AlgorithmSpec:
    """How to build and load one algorithm.

    Attributes:
        name: Short name used by ``palaestra train --algo NAME``.
        entry_point: ``"module:Class"``; the class has SB3's ``learn``/``save``/``load``/``predict``.
        description: One line shown by ``palaestra train --help``.
        policy: First positional constructor argument (SB3's policy alias), or ``None`` when the class takes none.
        action_spaces: Gymnasium space class names the algorithm accepts (empty: any).
        builder: Optional ``"module:function"`` building the agent for ``palaestra train`` when SB3's
            ``Class(policy, vec_env, seed=..., **hyperparams)`` does not fit (offline agents built from a
            dataset, agents that need the bare env). Called as ``builder(env_id, env_kwargs, seed, hyperparams)``.
        family: ``"baseline"`` (SB3), ``"online"``, ``"offline"`` (trains from an env's ``get_dataset()``) or
            ``"llm"`` (Text spaces); the CLI checks that an env fits the family before building anything.
        deterministic_actor: The policy's actions do not depend on ``deterministic`` (TD3-style actors).
        acts: The saved model is a policy (``False`` for a model that only helps one, like CDSA's score model).
        extra_hyperparams: Names the builder takes on top of the class constructor's arguments.
    """

    name: str
    entry_point: str
    description: str
    policy: str | None = "MlpPolicy"
    action_spaces: tuple[str, ...] = ()
    builder: str | None = None
    family: str = "baseline"
    deterministic_actor: bool = False
    acts: bool = True
    extra_hyperparams: tuple[str, ...] = ()

    def load_class(self) -> Any:
        """Import and return the algorithm's class."""
        return _import(self.entry_point)

    def load_builder(self) -> Any:
        """Import and return the builder function, or ``None`` when the SB3 constructor is used."""
        return None if self.builder is None else _import(self.builder)


def _import(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


ALGORITHMS: dict[str, AlgorithmSpec] = {}


def register_algorithm(spec: AlgorithmSpec) -> None:
    """Add ``spec`` to :data:`ALGORITHMS` (re-registering a name replaces it)."""
    ALGORITHMS[spec.name] = spec


def get_algorithm(name: str) -> AlgorithmSpec:
    """Return the spec registered under ``name``.

    Raises:
        ValueError: If ``name`` is not registered; the message lists the known names.
    """
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {sorted(ALGORITHMS)}") from None


# --- Stable-Baselines3 baselines ------------------------------------------------------------------
register_algorithm(AlgorithmSpec("ppo", "stable_baselines3:PPO", "Proximal Policy Optimization (SB3)"))
register_algorithm(AlgorithmSpec("sac", "stable_baselines3:SAC", "Soft Actor-Critic (SB3)", action_spaces=("Box",)))
register_algorithm(
    AlgorithmSpec("td3", "stable_baselines3:TD3", "Twin Delayed DDPG (SB3)", action_spaces=("Box",), deterministic_actor=True)
)
register_algorithm(AlgorithmSpec("dqn", "stable_baselines3:DQN", "Deep Q-Network (SB3)", action_spaces=("Discrete",)))
register_algorithm(
    AlgorithmSpec(
        "maskable-ppo",
        "sb3_contrib:MaskablePPO",
        "PPO with invalid-action masking (sb3-contrib); on a text env, over its candidate actions",
        action_spaces=("Discrete",),
    )
)

# --- Offline RL (trained from an offline env's dataset; --timesteps counts gradient steps) --------
register_algorithm(
    AlgorithmSpec(
        "td3bc",
        "palaestra.agents.offline.td3_bc:TD3BC",
        "TD3+BC offline RL (Fujimoto & Gu 2021) on an offline env id, e.g. hopper-medium-v0",
        policy=None,
        action_spaces=("Box",),
        builder="palaestra.agents.offline.td3_bc:build_td3bc",
        family="offline",
        deterministic_actor=True,
    )
)
register_algorithm(
    AlgorithmSpec(
        "iql",
        "palaestra.agents.offline.iql:IQL",
        "Implicit Q-Learning offline RL (Kostrikov et al. 2022) on an offline env id",
        policy=None,
        action_spaces=("Box",),
        builder="palaestra.agents.offline.iql:build_iql",
        family="offline",
    )
)

# --- Offline RL methods built on the baselines (palaestra.agents.offline) ---------------------------
register_algorithm(
    AlgorithmSpec(
        "a2pr",
        "palaestra.agents.offline.a2pr:A2PR",
        "A2PR offline RL (Liu et al. 2024): TD3+BC with advantage-guided BC targets, on an offline env id",
        policy=None,
        action_spaces=("Box",),
        builder="palaestra.agents.offline.a2pr:build_a2pr",
        family="offline",
        deterministic_actor=True,
    )
)
register_algorithm(
    AlgorithmSpec(
        "cdsa-score",
        "palaestra.agents.offline.cdsa:DatasetScoreModel",
        "CDSA's dataset score model (reconstruction of Liu et al. 2024); use with `palaestra eval --cdsa DIR`",
        policy=None,
        action_spaces=("Box",),
        builder="palaestra.agents.offline.cdsa:build_cdsa_score_model",
        family="offline",
        acts=False,
        extra_hyperparams=("batch_size", "lr"),
    )
)
register_algorithm(
    AlgorithmSpec(
        "pgd",
        "palaestra.agents.offline.pgd:PGD",
        "Policy-guided diffusion (Jackson et al. 2024): TD3+BC on mostly synthetic, policy-guided trajectories",
        policy=None,
        action_spaces=("Box",),
        builder="palaestra.agents.offline.pgd:build_pgd",
        family="offline",
        deterministic_actor=True,
    )
)
register_algorithm(
    AlgorithmSpec(
        "pgd-iql",
        "palaestra.agents.offline.pgd:PGDIQL",
        "Policy-guided diffusion (Jackson et al. 2024): IQL on mostly synthetic, policy-guided trajectories",
        policy=None,
        action_spaces=("Box",),
        builder="palaestra.agents.offline.pgd:build_pgd_iql",
        family="offline",
    )
)

# --- Multi-turn LLM agents (Text spaces; ``timesteps`` counts RL updates) ----------------------------------------
_LLM = "palaestra.agents.llm.trainer"
register_algorithm(
    AlgorithmSpec(
        "grpo",
        f"{_LLM}:GRPO",
        "GRPO for multi-turn LLM agents (group outcome advantage)",
        policy=None,
        action_spaces=("Text",),
        builder=f"{_LLM}:build_grpo",
        family="llm",
    )
)
register_algorithm(
    AlgorithmSpec(
        "igpo",
        f"{_LLM}:IGPO",
        "IGPO for multi-turn LLM agents (information-gain turn rewards)",
        policy=None,
        action_spaces=("Text",),
        builder=f"{_LLM}:build_igpo",
        family="llm",
    )
)
register_algorithm(
    AlgorithmSpec(
        "gigpo",
        f"{_LLM}:GiGPO",
        "GiGPO for multi-turn LLM agents (anchor-state step advantages)",
        policy=None,
        action_spaces=("Text",),
        builder=f"{_LLM}:build_gigpo",
        family="llm",
    )
)

# --- Online agents ---------------------------------------------------------------------------------
register_algorithm(
    AlgorithmSpec(
        "props",
        "palaestra.agents.online.props:PROPS",
        "Proximal Robust On-Policy Sampling (PPO + adaptive behaviour policy)",
        action_spaces=("Box", "Discrete"),
        family="online",
    )
)
register_algorithm(
    AlgorithmSpec(
        "drrpo",
        "palaestra.agents.online.drrpo:DRRPO",
        "Distributionally Robust Regularized Policy Optimization (linear features, TV uncertainty)",
        policy=None,
        action_spaces=("Discrete",),
        builder="palaestra.agents.online.drrpo:build_drrpo",
        family="online",
    )
)
register_algorithm(
    AlgorithmSpec(
        "sqirl",
        "palaestra.agents.online.sqirl:SQIRL",
        "Shallow Q-Iteration via Reinforcement Learning (tabular or MLP regressor)",
        policy=None,
        action_spaces=("Discrete",),
        builder="palaestra.agents.online.sqirl:build_sqirl",
        family="online",
    )
)
