"""Conformance suite over every registered palaestra env id: new envs are checked automatically."""

import importlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import palaestra
from palaestra.agents import get_algorithm
from palaestra.cli import make_policy_env

ENV_IDS = sorted(palaestra.list_envs())
# ids whose env is chosen by keyword arguments, made with an example of them
EXAMPLE_KWARGS = {"Offline-v0": {"env_id": "Pendulum-v1", "kind": "medium"}}
SB3_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary, gym.spaces.Dict)


def _is_control(env_id: str) -> bool:
    return str(gym.spec(env_id).entry_point).startswith("palaestra.envs.control")


def _sb3_unsupported_reason(env: gym.Env) -> str | None:
    for name, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, SB3_SPACES):
            return f"SB3 does not support {type(space).__name__} {name} spaces"
    return None


def test_every_id_has_a_description():
    assert {"RobustCartPole-v0", "RobustPendulum-v0"} <= set(ENV_IDS)
    for env_id, description in palaestra.list_envs().items():
        assert description.strip() and "\n" not in description, env_id


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(env_id):
    env = gym.make(env_id, **EXAMPLE_KWARGS.get(env_id, {}))
    gym_check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_env_checker(env_id):
    """Every id passes SB3's checker; a text id as ``palaestra train --algo ppo`` wraps it (CandidateActions)."""
    env = make_policy_env(get_algorithm("ppo"), env_id, EXAMPLE_KWARGS.get(env_id, {}))
    reason = _sb3_unsupported_reason(env)
    if reason is not None:
        pytest.skip(reason)
    sb3_check_env(env, warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_module_prefixed_id_and_seeded_determinism(env_id):
    kwargs = EXAMPLE_KWARGS.get(env_id, {})
    first, second = gym.make(f"palaestra:{env_id}", **kwargs), gym.make(env_id, **kwargs)
    first.action_space.seed(0)
    observation_a, _ = first.reset(seed=123)
    observation_b, _ = second.reset(seed=123)
    assert _equal(observation_a, observation_b)
    for _ in range(20):
        action = first.action_space.sample()
        step_a, step_b = first.step(action), second.step(action)
        assert _equal(step_a[0], step_b[0]) and step_a[1:4] == step_b[1:4]
        if step_a[2] or step_a[3]:
            break


@pytest.mark.parametrize("env_id", [env_id for env_id in ENV_IDS if _is_control(env_id)])
def test_sb3_ppo_trains_on_every_control_env(env_id):
    env = gym.make(env_id, **EXAMPLE_KWARGS.get(env_id, {}))
    if _sb3_unsupported_reason(env) is not None:
        pytest.skip(_sb3_unsupported_reason(env))
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0).learn(2048)
    assert model.num_timesteps >= 2048
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action if isinstance(env.action_space, gym.spaces.Box) else int(action))


def test_reimporting_registers_nothing_twice():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(palaestra.envs)
        importlib.reload(palaestra)
    assert sorted(palaestra.list_envs()) == ENV_IDS


def test_unknown_id_and_wrong_kwargs_are_clear_errors():
    with pytest.raises(gym.error.NameNotFound, match="RobustCartPol"):
        gym.make("palaestra:RobustCartPol-v0")
    with pytest.raises(TypeError, match="pole_mass"):
        gym.make("RobustCartPole-v0", pole_mass=2.0)


def _equal(a, b) -> bool:
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else a == b
