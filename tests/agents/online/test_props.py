import copy
import csv
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import ActorCriticPolicy

from palaestra.agents import get_algorithm
from palaestra.agents.online import PROPS
from palaestra.agents.online.props import (
    RollingRolloutBuffer,
    SamplingErrorCallback,
    props_behavior_loss,
    sampling_error,
)
from palaestra.cli import main as cli_main
from palaestra.protocol import Agent

th.set_num_threads(1)

SMALL = {"n_steps": 64, "props_n_steps": 32, "batch_size": 32, "n_epochs": 2}


# --- the behaviour objective, by hand ------------------------------------------------------------------------------


def test_behavior_loss_matches_hand_computation():
    log_ratio = th.log(th.tensor([0.5, 1.0, 1.5], requires_grad=True))
    kl = th.tensor([0.1, 0.2, 0.3])
    loss = props_behavior_loss(log_ratio, kl, clip_range=0.3, kl_coef=0.5)
    # max(r, clip(r, 0.7, 1.3)) = [0.7, 1.0, 1.5]; mean = 3.2 / 3; + 0.5 * mean(kl) = 0.5 * 0.2
    assert loss.item() == pytest.approx(3.2 / 3 + 0.1, abs=1e-6)


def test_behavior_loss_has_no_gradient_below_the_clip():
    log_ratio = th.log(th.tensor([0.5, 1.5])).requires_grad_(True)
    props_behavior_loss(log_ratio, th.zeros(2), clip_range=0.3, kl_coef=0.0).backward()
    # d/d(log r) of mean(r) is r / 2 where unclipped; the term at r = 0.5 < 1 - eps is constant 0.7.
    assert log_ratio.grad.tolist() == pytest.approx([0.0, 0.75])


# --- sampling error --------------------------------------------------------------------------------------------------


def _policy(action_space: spaces.Space, seed: int = 0) -> ActorCriticPolicy:
    th.manual_seed(seed)
    return ActorCriticPolicy(spaces.Box(-1.0, 1.0, (3,)), action_space, lambda _: 1e-3)


def test_sampling_error_of_target_samples_is_near_zero_and_of_a_skewed_buffer_is_the_exact_kl():
    policy = _policy(spaces.Discrete(2))
    state = th.tensor([[0.3, -0.2, 0.5]])
    with th.no_grad():
        p = policy.get_distribution(state).distribution.probs[0].numpy()
    n = 20_000
    rng = np.random.default_rng(0)
    observations = state.repeat(n, 1)
    on_policy = th.as_tensor(rng.choice(2, size=n, p=p))
    assert sampling_error(policy, observations, on_policy) < 1e-3

    # 90 % of action 0: with a single state pi_D is the action frequency, so SE = KL(q || p) exactly.
    skewed = th.as_tensor(np.r_[np.zeros(int(0.9 * n)), np.ones(n - int(0.9 * n))]).long()
    q = np.array([0.9, 0.1])
    exact = float(np.sum(q * np.log(q / p)))
    assert exact > 0.1
    assert sampling_error(policy, observations, skewed) == pytest.approx(exact, abs=1e-3)


def test_sampling_error_for_gaussian_policies():
    policy = _policy(spaces.Box(-1.0, 1.0, (2,)))
    state = th.tensor([[0.1, 0.2, 0.3]])
    n = 20_000
    observations = state.repeat(n, 1)
    with th.no_grad():
        mean = policy.get_distribution(state).distribution.mean[0]
    generator = th.Generator().manual_seed(0)
    on_policy = mean + th.randn(n, 2, generator=generator)  # log_std starts at 0: std 1
    assert sampling_error(policy, observations, on_policy) < 1e-3
    shifted = on_policy + th.tensor([1.0, 0.0])  # KL(N(m + 1, 1) || N(m, 1)) = 1/2
    assert sampling_error(policy, observations, shifted) == pytest.approx(0.5, abs=0.02)


def test_sampling_error_rejects_mismatched_inputs():
    policy = _policy(spaces.Discrete(2))
    with pytest.raises(ValueError, match="3 and 2"):
        sampling_error(policy, th.zeros(3, 3), th.zeros(2, dtype=th.long))


# --- behaviour update -------------------------------------------------------------------------------------------------


def test_behavior_update_raises_the_probability_of_the_under_sampled_action():
    model = PROPS("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    state = th.tensor([[0.01, -0.02, 0.03, 0.04]])
    observations = state.repeat(200, 1)
    actions = th.tensor([0] * 180 + [1] * 20)  # action 1 is under-sampled (the target is close to 50/50)
    with th.no_grad():
        target_before = model.policy.get_distribution(state).distribution.probs[0].clone()
    stats = model.fit_behavior(observations, actions)
    with th.no_grad():
        behavior = model.behavior_policy.get_distribution(state).distribution.probs[0]
        target_after = model.policy.get_distribution(state).distribution.probs[0]
    assert stats["n_updates"] > 0
    assert behavior[1] > target_before[1] + 0.02
    assert th.equal(target_before, target_after)  # only pi_phi moves
    # The KL early stop keeps pi_phi near pi_theta (delta_PROPS = 0.05 on the k3 estimate).
    kl = float(th.sum(behavior * th.log(behavior / target_before)))
    assert kl < 0.1


def test_behavior_update_reverses_with_the_skew():
    model = PROPS("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    state = th.tensor([[0.01, -0.02, 0.03, 0.04]])
    model.fit_behavior(state.repeat(200, 1), th.tensor([1] * 180 + [0] * 20))
    with th.no_grad():
        behavior = model.behavior_policy.get_distribution(state).distribution.probs[0]
        target = model.policy.get_distribution(state).distribution.probs[0]
    assert behavior[0] > target[0] + 0.02


# --- rolling buffer ---------------------------------------------------------------------------------------------------


def _buffer(capacity: int = 4) -> RollingRolloutBuffer:
    return RollingRolloutBuffer(capacity, spaces.Box(-10.0, 10.0, (3,)), spaces.Discrete(2), gamma=0.5, gae_lambda=1.0)


def _add(buffer: RollingRolloutBuffer, k: int) -> None:
    buffer.add(np.full((1, 3), k, dtype=np.float32), np.array([[k % 2]]), np.array([float(k)]), np.array([0.0]),
               th.zeros(1), th.zeros(1))  # fmt: skip


def test_rolling_buffer_evicts_the_oldest_steps_first():
    buffer = _buffer()
    for k in range(4):
        _add(buffer, k)
    assert buffer.make_room(2) == 2
    _add(buffer, 4)
    observations, actions = buffer.transitions()
    assert observations[:, 0].tolist() == [2.0, 3.0, 4.0]
    assert actions[:, 0].tolist() == [0, 1, 0]
    assert buffer.rewards[:3, 0].tolist() == [2.0, 3.0, 4.0]


def test_training_buffer_recomputes_under_the_policy_and_bootstraps_time_limits():
    buffer = _buffer()
    policy = _policy(spaces.Discrete(2))
    for k in range(3):
        _add(buffer, k)
    terminal = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    buffer.mark_timeout(0, terminal)
    last_obs = np.zeros((1, 3), dtype=np.float32)
    training = buffer.training_buffer(policy, last_obs, np.array([False]))
    with th.no_grad():
        values = policy.predict_values(th.tensor([[0.0] * 3, [1.0] * 3, [2.0] * 3])).flatten().numpy()
        terminal_value = policy.predict_values(th.as_tensor(terminal)[None]).item()
        last_value = policy.predict_values(th.as_tensor(last_obs)).item()
        log_probs = policy.get_distribution(th.tensor([[0.0] * 3, [1.0] * 3, [2.0] * 3])).log_prob(th.tensor([0, 1, 0]))
    assert training.values[:, 0] == pytest.approx(values, abs=1e-6)
    assert training.log_probs[:, 0] == pytest.approx(log_probs.numpy(), abs=1e-6)
    assert training.rewards[2, 0] == pytest.approx(2.0 + 0.5 * terminal_value, abs=1e-6)
    # gamma = 0.5, lambda = 1: returns are discounted sums bootstrapped with V(last obs).
    r = [0.0, 1.0, 2.0 + 0.5 * terminal_value]
    expected_last = r[2] + 0.5 * last_value
    assert training.returns[2, 0] == pytest.approx(expected_last, abs=1e-5)
    assert training.returns[0, 0] == pytest.approx(r[0] + 0.5 * (r[1] + 0.5 * expected_last), abs=1e-5)


# --- the algorithm with SB3's machinery -----------------------------------------------------------------------------


def test_buffer_keeps_b_batches_and_logs_sampling_error(tmp_path):
    model = PROPS("MlpPolicy", "CartPole-v1", seed=0, buffer_batches=3, **SMALL)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(64 * 5)
    assert model.rollout_buffer.pos == 3 * 64
    # SB3 dumps the log after each rollout, before train(): row k holds the statistics of update k - 1.
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))[1:]
    sizes = [float(row["train/buffer_size"]) for row in rows]
    errors = [float(row["train/sampling_error"]) for row in rows]
    assert sizes == [64, 128, 192, 192]
    assert all(e >= -1e-6 and math.isfinite(e) for e in errors)
    assert all(row["train/behavior_loss"] != "" for row in rows)


def test_works_with_sb3_callbacks_and_evaluate_policy(tmp_path):
    model = PROPS("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    eval_callback = EvalCallback(Monitor(gym.make("CartPole-v1")), n_eval_episodes=2, eval_freq=128, log_path=str(tmp_path))
    checkpoints = CheckpointCallback(save_freq=128, save_path=str(tmp_path), name_prefix="props")
    sampling = SamplingErrorCallback()
    model.learn(256, callback=[eval_callback, checkpoints, sampling])
    assert eval_callback.evaluations_timesteps == [128, 256]
    assert (tmp_path / "props_256_steps.zip").exists()
    assert [t for t, _ in sampling.history] == [64, 128, 192, 256]  # num_timesteps at each rollout end
    mean, _ = evaluate_policy(model, Monitor(gym.make("CartPole-v1")), n_eval_episodes=2)
    assert mean > 0
    assert isinstance(model, Agent)


def test_sampling_error_callback_refuses_an_off_policy_algorithm():
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=0, buffer_size=100, seed=0)
    with pytest.raises(TypeError, match=r"needs an on-policy algorithm .* got SAC"):
        model.learn(2, callback=SamplingErrorCallback())


def test_save_load_round_trip(tmp_path):
    model = PROPS("MlpPolicy", "CartPole-v1", seed=0, buffer_batches=3, props_kl_coef=0.2, **SMALL)
    model.learn(128)
    model.save(tmp_path / "props")
    loaded = PROPS.load(tmp_path / "props", env=model.get_env())
    assert (loaded.buffer_batches, loaded.props_n_steps, loaded.props_kl_coef) == (3, 32, 0.2)
    observations = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    assert np.array_equal(
        model.predict(observations, deterministic=True)[0], loaded.predict(observations, deterministic=True)[0]
    )
    for original, restored in zip(model.behavior_policy.parameters(), loaded.behavior_policy.parameters(), strict=True):
        assert th.equal(original, restored)
    assert loaded.rollout_buffer.buffer_size == 3 * 64
    loaded.learn(64, reset_num_timesteps=False)  # training continues after loading
    assert loaded.num_timesteps == 192


def test_loading_a_checkpoint_of_another_algorithm_fails(tmp_path):
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32).save(tmp_path / "ppo")
    with pytest.raises(ValueError, match="is not a PROPS checkpoint"):
        PROPS.load(tmp_path / "ppo")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"buffer_batches": 0}, "buffer_batches .* got 0"),
        ({"buffer_batches": 1.5}, "buffer_batches .* got 1.5"),
        ({"props_n_steps": 24}, "m=24 and n=64"),
        ({"props_n_steps": 0}, "props_n_steps .* got 0"),
        ({"props_n_epochs": 0}, "props_n_epochs .* got 0"),
        ({"props_n_minibatches": -1}, "props_n_minibatches .* got -1"),
        ({"props_clip_range": 0.0}, "props_clip_range .* got 0.0"),
        ({"props_kl_coef": -0.1}, "props_kl_coef .* got -0.1"),
        ({"props_target_kl": 0}, "props_target_kl .* got 0"),
        ({"props_learning_rate": -1e-3}, "props_learning_rate .* got -0.001"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PROPS("MlpPolicy", "CartPole-v1", **{**SMALL, **kwargs})


def test_unsupported_action_space_is_rejected():
    class MultiBinaryEnv(gym.Env):
        observation_space = spaces.Box(-1.0, 1.0, (2,))
        action_space = spaces.MultiBinary(3)

        def reset(self, *, seed=None, options=None):
            return np.zeros(2, dtype=np.float32), {}

        def step(self, action):
            return np.zeros(2, dtype=np.float32), 0.0, True, False, {}

    with pytest.raises(ValueError, match="MultiBinary"):
        PROPS("MlpPolicy", MultiBinaryEnv(), **SMALL)


def test_ppo_buffer_ablation_samples_with_the_target():
    model = PROPS("MlpPolicy", "CartPole-v1", seed=0, adaptive_sampling=False, **SMALL)
    model.learn(128)
    # Without adaptive sampling the behaviour policy is never re-fitted: it still holds its initial weights.
    fresh = PROPS("MlpPolicy", "CartPole-v1", seed=0, adaptive_sampling=False, **SMALL)
    for a, b in zip(model.behavior_policy.parameters(), fresh.behavior_policy.parameters(), strict=True):
        assert th.equal(a, b)


def test_continuous_actions_train():
    model = PROPS("MlpPolicy", "Pendulum-v1", seed=0, **SMALL)
    model.learn(128)
    action, _ = model.predict(np.zeros(3, dtype=np.float32))
    assert action.shape == (1,)


def test_cli_train_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    hyper = ["n_steps=64", "props_n_steps=32", "batch_size=32", "n_epochs=2"]
    args = ["train", "--algo", "props", "--env", "CartPole-v1", "--timesteps", "128", "--out", str(out)]
    assert cli_main([*args, "--no-progress-bar", "--hyperparams", *hyper]) == 0
    assert get_algorithm("props").load_class() is PROPS
    assert cli_main(["eval", "--checkpoint", str(out), "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_episodes"] == 2


# --- learning ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_learns_cartpole():
    model = PROPS(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=256, props_n_steps=128, batch_size=64, learning_rate=1e-3,
        props_learning_rate=1e-3,
    )  # fmt: skip
    model.learn(25_000)
    mean, _ = evaluate_policy(model, Monitor(gym.make("CartPole-v1")), n_eval_episodes=10, deterministic=True)
    assert mean >= 195


def test_sampling_error_callback_records_steps_when_nested():
    from stable_baselines3.common.callbacks import CallbackList

    sampling = SamplingErrorCallback()

    class Outer(CallbackList):
        """Forwards only rollout ends, as a measuring callback that wraps another one does."""

        def _on_step(self) -> bool:
            return True

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, seed=0)
    model.learn(128, callback=Outer([sampling]))
    assert [t for t, _ in sampling.history] == [64, 128]
    assert all(v >= -1e-6 for _, v in sampling.history)


# --- fidelity to the authors' code (NicholasCorrado/PPOROS, NicholasCorrado/PROPS) ------------------------------------


class _CountingEnv(gym.Env):
    """Reward 1 per step; the observation is (t, started) so that the terminal and the reset observations differ."""

    observation_space = spaces.Box(-10.0, 10.0, (2,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t, 1.0], dtype=np.float32), 1.0, False, False, {}


def test_truncated_episodes_bootstrap_with_their_terminal_observation_not_the_next_episode():
    # Episodes of 3 steps cut by a time limit: steps 0-2 and 3-5 are two whole episodes, 6-7 a live one.
    env = gym.wrappers.TimeLimit(_CountingEnv(), max_episode_steps=3)
    gamma = 0.9
    model = PROPS("MlpPolicy", env, n_steps=8, props_n_steps=4, batch_size=8, n_epochs=1, gamma=gamma, gae_lambda=1.0,
                  log_sampling_error=False, seed=0)  # fmt: skip
    model.learn(8)
    storage = model.rollout_buffer
    assert storage.pos == 8 and storage.timeouts[:8, 0].tolist() == [False, False, True] * 2 + [False, False]
    training = storage.training_buffer(model.policy, model._last_obs, model._last_episode_starts)
    with th.no_grad():
        v_terminal, v_reset, v_last = model.policy.predict_values(th.tensor([[3.0, 1.0], [0.0, 0.0], [2.0, 1.0]])).flatten()
    v_terminal, v_reset, v_last = float(v_terminal), float(v_reset), float(v_last)
    # SB3's rule (on_policy_algorithm.collect_rollouts + RolloutBuffer.compute_returns_and_advantage): the last step of
    # a truncated episode gets r + gamma V(terminal_observation), and the next step starts a new episode (no GAE
    # across it). With lambda = 1 the returns are discounted sums within each episode plus that bootstrap.
    episode = [sum(gamma**i for i in range(3 - j)) + gamma ** (3 - j) * v_terminal for j in range(3)]
    live = [1 + gamma + gamma**2 * v_last, 1 + gamma * v_last]
    assert training.returns[:, 0] == pytest.approx(episode * 2 + live, abs=1e-5)
    # PPOROS @ 1e16b0e77f5aca188ed929f8e4256f0d6162049a, PROPS/ppo_props_{continuous,discrete}.py stores
    # next_done = terminated only, so (no env here terminates) GAE with lambda = 1 runs across both cuts to the end of
    # the buffer: G_2 = sum_{i<6} gamma^i + gamma^6 V(last obs). PPOROS @ a0c8708529047f85dcf98f90d5ea264dd43aeba2
    # stores terminated or truncated: G_2 = 1 (no bootstrap). palaestra's G_2 is neither.
    ppo_ros_1e16b0e = sum(gamma**i for i in range(6)) + gamma**6 * v_last
    assert abs(training.returns[2, 0] - ppo_ros_1e16b0e) > 1e-3 and abs(training.returns[2, 0] - 1.0) > 1e-3
    assert abs(v_terminal - v_reset) > 1e-4


def test_behavior_refit_after_a_target_update_is_anchored_to_the_updated_target():
    anchors: list[dict[str, th.Tensor]] = []
    pre_update: list[dict[str, th.Tensor]] = []

    class Recording(PROPS):
        def train(self) -> None:
            pre_update.append(copy.deepcopy(self.policy.state_dict()))
            super().train()

        def fit_behavior(self, observations, actions):
            anchors.append(copy.deepcopy(self.policy.state_dict()))  # fit_behavior scores the data with self.policy
            return super().fit_behavior(observations, actions)

    model = Recording("MlpPolicy", "CartPole-v1", seed=0, log_sampling_error=False, **SMALL)
    initial = copy.deepcopy(model.policy.state_dict())
    model.learn(64)  # refits at step 32 (mid-batch) and after the target update at step 64
    assert len(anchors) == 2 and len(pre_update) == 1
    same = lambda a, b: all(th.equal(a[k], b[k]) for k in a)  # noqa: E731
    # Mid-batch refit: no target update since the last one, so PPOROS's anchor (the target's log-probs from before
    # the latest PPO update) and the current target are the same policy.
    assert same(anchors[0], initial) and same(pre_update[0], initial)
    # Refit after the update: palaestra (and NicholasCorrado/PROPS @ d5d91bd, ppo_discrete.py, which recomputes
    # log-probs before each refit) anchors to the updated target; PPOROS @ 1e16b0e / a0c8708 reuses the `logprobs`,
    # `means`, `stds` computed before update_ppo, i.e. the pre-update target. The two differ here: PPO moved.
    assert same(anchors[1], model.policy.state_dict())
    assert not same(anchors[1], pre_update[0])


def _ppo_ros_behavior_steps_per_epoch(buffer_size: int, m: int, n_minibatches: int, n_data: int) -> int:
    # PPOROS @ 1e16b0e77f5aca188ed929f8e4256f0d6162049a and @ a0c8708529047f85dcf98f90d5ea264dd43aeba2,
    # PROPS/ppo_props_{continuous,discrete}.py: props_minibatch_size = (buffer_size - props_num_steps) //
    # props_num_minibatches, and update_props steps over the data in minibatches of min(props_minibatch_size, n_data).
    minibatch = min((buffer_size - m) // n_minibatches, n_data)
    return math.ceil(n_data / minibatch)


def test_behavior_minibatches_match_ppo_ros_once_the_buffer_is_full():
    # b = 2, n = 64, m = 32: the buffer holds 128 steps; a refit on a full buffer sees 128 - 32 = 96 of them.
    model = PROPS("MlpPolicy", "CartPole-v1", seed=0, props_target_kl=None, props_n_epochs=1, **SMALL)
    observations, actions = th.rand(96, 4) * 0.1, th.randint(0, 2, (96,))
    full = model.fit_behavior(observations, actions)
    assert full["n_updates"] == _ppo_ros_behavior_steps_per_epoch(128, 32, 16, 96) == 16
    # While the buffer fills (the first refit sees m = 32 steps) palaestra keeps 16 minibatches per epoch (as the
    # PROPS rewrite, ppo_discrete.py @ d5d91bd: max(len(data) // props_num_minibatches, 1)); PPOROS takes 6 (documented).
    filling = model.fit_behavior(observations[:32], actions[:32])
    assert filling["n_updates"] == 16 != _ppo_ros_behavior_steps_per_epoch(128, 32, 16, 32) == 6


def test_behavior_adam_eps_is_the_reference_value():
    # PPOROS @ a0c8708529047f85dcf98f90d5ea264dd43aeba2, PROPS/ppo_props_{continuous,discrete}.py:
    # props_optimizer = optim.Adam(agent_props.parameters(), lr=args.props_learning_rate, eps=1e-5)
    # (the continuous script @ 1e16b0e omits eps, torch's default 1e-8; documented in the module docstring).
    model = PROPS("MlpPolicy", "CartPole-v1", seed=0, **SMALL)
    assert model.behavior_optimizer.param_groups[0]["eps"] == 1e-5
    assert model.policy.optimizer.param_groups[0]["eps"] == 1e-5  # the target's: optim.Adam(..., eps=1e-5) there too
