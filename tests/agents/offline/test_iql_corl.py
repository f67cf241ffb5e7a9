"""IQL against CORL's rules: the reward scale's episodes, the per-dataset presets and the deterministic actor.

Reference: tinkoff-ai/CORL at commit 6afec90484bbf47dee05fdf525e26a3ebe028e9b, ``algorithms/offline/iql.py``
(``return_reward_range``, ``modify_reward``, ``DeterministicPolicy``, ``ImplicitQLearning._update_policy``) and
``configs/offline/iql/<task>/<dataset>_v2.yaml``. The rules are transcribed below, not imported.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

import palaestra  # noqa: F401
from palaestra.agents.offline import IQL
from palaestra.agents.offline.iql import IQL_PRESETS, build_iql, iql_actor_loss, iql_preset, reward_scale


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def corl_return_range(rewards: np.ndarray, terminals: np.ndarray, max_episode_steps: int) -> tuple[float, float]:
    """CORL's ``return_reward_range`` rule: walk the rows adding rewards; an episode closes on a terminal row or
    when it reaches ``max_episode_steps`` rows, and its return is recorded then; the rows still open at the end
    of the data are never recorded. Time-out flags are not read. Returns (min, max) of the recorded returns."""
    returns, running, length = [], 0.0, 0
    for reward, terminal in zip(rewards, terminals, strict=True):
        running += float(reward)
        length += 1
        if terminal or length == max_episode_steps:
            returns.append(running)
            running, length = 0.0, 0
    return min(returns), max(returns)


def corl_scale(rewards: np.ndarray, terminals: np.ndarray, max_episode_steps: int) -> float:
    """CORL's ``modify_reward`` for MuJoCo: rewards divided by (max - min) and multiplied by 1000 (its default)."""
    low, high = corl_return_range(rewards, terminals, max_episode_steps)
    return 1000.0 / (high - low)


# --- reward scale ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tail_reward", [10.0, 0.01])  # the cut tail would set the max, then the min
def test_reward_scale_leaves_out_a_cut_tail_as_corl_does(tail_reward):
    limit = 4
    # a 3-step terminal episode (return 3), a full 4-step time-out (8), a 2-step terminal one (1) and a 2-step
    # tail that dataset generation cut and flagged as a time-out (2 * tail_reward)
    rewards = np.array([1, 1, 1, 2, 2, 2, 2, 0.5, 0.5, tail_reward, tail_reward])
    terminals = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
    timeouts = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    expected = corl_scale(rewards, terminals, limit)
    assert expected == pytest.approx(1000.0 / 7.0)
    assert reward_scale(rewards, terminals, timeouts, max_episode_steps=limit) == pytest.approx(expected)
    # the time limit unknown: only the last, non-terminal episode is taken as cut, the same here
    assert reward_scale(rewards, terminals, timeouts) == pytest.approx(expected)
    # counting the tail, as before, is another scale
    every_episode = 1000.0 / (max(8.0, 2 * tail_reward) - min(1.0, 2 * tail_reward))
    assert every_episode != pytest.approx(expected)


def test_reward_scale_keeps_a_last_episode_that_ends_in_a_terminal_or_at_the_time_limit():
    limit = 3
    rewards = np.array([1.0, 1.0, 1.0, 5.0, 0.0])
    terminals = np.array([0, 0, 0, 0, 1], dtype=bool)
    timeouts = np.array([0, 0, 1, 0, 0], dtype=bool)
    assert reward_scale(rewards, terminals, timeouts, limit) == pytest.approx(corl_scale(rewards, terminals, limit))
    full_last = np.array([0, 0, 1, 0, 0, 1], dtype=bool)  # two full-length time-outs, the last at the last row
    rewards = np.array([1.0, 1.0, 1.0, 4.0, 4.0, 4.0])
    no_terminals = np.zeros(6, dtype=bool)
    assert reward_scale(rewards, no_terminals, full_last, limit) == pytest.approx(corl_scale(rewards, no_terminals, limit))


def test_iql_scales_pendulum_rewards_by_corls_rule_with_the_env_time_limit():
    env = gym.make("pendulum-medium-v0", dataset_size=500, progress=False)  # two 200-step episodes + a cut 100
    data = env.get_dataset()
    assert env.spec.max_episode_steps == 200 and data["timeouts"][-1] and not data["terminals"].any()
    agent = IQL(env, seed=0, hidden_sizes=(16, 16))
    expected = corl_scale(data["rewards"], data["terminals"], 200)
    assert agent.config["reward_scale"] == pytest.approx(expected)
    tail_counted = 1000.0 / np.ptp([data["rewards"][:200].sum(), data["rewards"][200:400].sum(), data["rewards"][400:].sum()])
    assert tail_counted != pytest.approx(expected)  # the cut episode would have changed the scale
    torch.testing.assert_close(agent._data["rewards"][:, 0], torch.as_tensor(data["rewards"] * expected, dtype=torch.float32))


# --- presets -----------------------------------------------------------------------------------------
#: Transcribed from CORL @ 6afec90484bbf47dee05fdf525e26a3ebe028e9b, configs/offline/iql/<task>/<dataset>_v2.yaml:
#: (normalize_reward, iql_deterministic, tau, beta, iql_tau) per dataset.
CORL_CONFIGS = {
    "hopper-random": (False, False, 0.005, 3.0, 0.7),  # configs/offline/iql/hopper/random_v2.yaml
    "hopper-medium": (True, True, 0.001, 3.0, 0.7),  # configs/offline/iql/hopper/medium_v2.yaml
    "hopper-expert": (False, False, 0.005, 3.0, 0.7),  # configs/offline/iql/hopper/expert_v2.yaml
    "hopper-medium-replay": (True, True, 0.001, 3.0, 0.7),  # configs/offline/iql/hopper/medium_replay_v2.yaml
    "hopper-medium-expert": (False, False, 0.005, 6.0, 0.5),  # configs/offline/iql/hopper/medium_expert_v2.yaml
    **{
        f"{task}-{kind}": (False, False, 0.005, 3.0, 0.7)  # configs/offline/iql/{halfcheetah,walker2d}/*_v2.yaml
        for task in ("halfcheetah", "walker2d")
        for kind in ("random", "medium", "expert", "medium-replay", "medium-expert")
    },
}


def test_presets_transcribe_corls_per_dataset_configs():
    assert set(IQL_PRESETS) == set(CORL_CONFIGS)
    for dataset, (normalize_reward, deterministic, tau, beta, expectile) in CORL_CONFIGS.items():
        expected = {
            "normalize_reward": normalize_reward,
            "deterministic_actor": deterministic,
            "tau": tau,
            "beta": beta,
            "expectile": expectile,
        }
        assert iql_preset(f"{dataset}-v0") == expected, dataset
    assert iql_preset("pendulum-medium-v0") == {}


def test_build_iql_applies_the_preset_and_hyperparameters_override_it():
    kwargs = {"dataset_size": 1500, "progress": False}
    agent = build_iql("hopper-medium-v0", kwargs, 0, {"hidden_sizes": (16, 16)})
    assert agent.config["deterministic_actor"] and agent.config["tau"] == 0.001 and "reward_scale" in agent.config
    assert not hasattr(agent.actor, "distribution")
    overridden = build_iql("hopper-medium-v0", kwargs, 0, {"hidden_sizes": (16, 16), "deterministic_actor": False})
    assert hasattr(overridden.actor, "distribution") and overridden.config["tau"] == 0.001
    expert = build_iql("hopper-medium-expert-v0", kwargs, 0, {"hidden_sizes": (16, 16)})
    assert (expert.config["beta"], expert.config["expectile"]) == (6.0, 0.5)
    assert "reward_scale" not in expert.config  # CORL leaves hopper-medium-expert's rewards unscaled
    torch.testing.assert_close(
        expert._data["rewards"][:, 0], torch.as_tensor(expert.env.get_dataset()["rewards"], dtype=torch.float32)
    )


# --- deterministic actor -----------------------------------------------------------------------------
def test_deterministic_actor_loss_is_corls_weighted_squared_error():
    """CORL's ``_update_policy`` for a tensor-valued actor: ``mean(min(exp(beta * A), 100) * sum_j (pi_j - a_j)^2)``."""
    torch.manual_seed(0)
    advantages, pi, actions = torch.randn(8, 1), torch.rand(8, 3) * 2 - 1, torch.rand(8, 3) * 2 - 1
    beta = 3.0
    expected = sum(
        min(float(np.exp(beta * float(adv))), 100.0) * float(((p - a) ** 2).sum())
        for adv, p, a in zip(advantages, pi, actions, strict=True)
    ) / len(pi)
    squared = (pi - actions).pow(2).sum(-1, keepdim=True)
    assert iql_actor_loss(advantages, -squared, beta).item() == pytest.approx(expected, rel=1e-5)


def test_deterministic_actor_trains_acts_deterministically_and_round_trips(tmp_path):
    env = gym.make("pendulum-expert-v0", dataset_size=500, progress=False)
    agent = IQL(env, seed=0, eval_freq=0, hidden_sizes=(16, 16), deterministic_actor=True)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    agent.learn(5)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters(), strict=True))
    observations = env.get_dataset()["observations"][:6]
    greedy, _ = agent.predict(observations, deterministic=True)
    sampled, _ = agent.predict(observations, deterministic=False)
    np.testing.assert_array_equal(greedy, sampled)
    assert np.all(np.abs(greedy) <= 2.0)
    agent.save(tmp_path / "model")
    loaded = IQL.load(tmp_path / "model")
    assert loaded.config["deterministic_actor"]
    np.testing.assert_allclose(loaded.predict(observations)[0], greedy)
