"""CDSA: the DSM loss by hand, a score net against a known score, actions pulled toward the data, bad input."""

import json
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import palaestra  # noqa: F401
from palaestra.agents.offline import TD3BC
from palaestra.agents.offline.cdsa import CDSA, DatasetScoreModel, ScoreNet, denoising_score_matching_loss
from palaestra.cli import main
from palaestra.evaluation import evaluate
from palaestra.protocol import Policy


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


class ConstantPolicy:
    """A frozen 'pretrained' policy that always proposes the same action."""

    def __init__(self, action, observation_space, action_space):
        self.action, self.observation_space, self.action_space = (
            np.asarray(action, np.float32),
            observation_space,
            action_space,
        )

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        observation = np.asarray(observation)
        if observation.shape == self.observation_space.shape:
            return self.action.copy(), state
        return np.tile(self.action, (len(observation), 1)), state


def behaviour(observations):
    """The dataset's (deterministic) behaviour policy: a = 1.5 * tanh(s_0)."""
    return 1.5 * np.tanh(observations[:, :1])


def toy_dataset(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    observations = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    actions = (behaviour(observations) + 0.05 * rng.standard_normal((n, 1))).astype(np.float32)
    next_observations = (observations + 0.1 * np.concatenate([actions, -actions], 1)).astype(np.float32)
    ends = np.zeros(n, bool)
    ends[99::100] = True
    return {
        "observations": observations,
        "actions": actions,
        "next_observations": next_observations,
        "rewards": np.zeros(n, np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": ends,
    }


SPACES = (gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32))


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    env = SimpleNamespace(observation_space=SPACES[0], action_space=SPACES[1])  # only the spaces are read
    model = DatasetScoreModel.from_dataset(toy_dataset(), env, hidden_sizes=(64, 64))
    history = model.fit(steps=2000, batch_size=256, lr=2e-3, seed=0)
    return model, history


# --- the loss by hand --------------------------------------------------------------------------------
def test_dsm_loss_by_hand():
    scores = torch.tensor([[1.0, 0.0], [0.0, -0.5]])
    noise = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    sigmas = torch.tensor([[2.0], [2.0]])
    # 1/2 mean ||sigma s + eps||^2 = 1/2 * ((4 + 1) + (1 + 0)) / 2
    assert denoising_score_matching_loss(scores, noise, sigmas).item() == pytest.approx(1.5)
    # the loss is minimised by the true score of the noised point, s = -eps / sigma
    assert denoising_score_matching_loss(-noise / sigmas, noise, sigmas).item() == 0.0


def test_score_net_learns_the_score_of_a_gaussian():
    mean, std = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 1.0])
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = ScoreNet(2, (64, 64))
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    sigma = 0.5
    for _ in range(1500):
        x = mean + std * torch.randn(256, 2, generator=generator)
        sigmas = torch.full((256, 1), sigma) * torch.exp(0.3 * torch.randn(256, 1, generator=generator))
        noise = torch.randn(256, 2, generator=generator)
        loss = denoising_score_matching_loss(net(x + sigmas * noise, sigmas), noise, sigmas)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    points = mean + std * torch.randn(500, 2, generator=generator)
    # N(mu, diag(std^2)) noised with sigma is N(mu, diag(std^2 + sigma^2)): score -(x - mu) / (std^2 + sigma^2)
    true = -(points - mean) / (std**2 + sigma**2)
    with torch.no_grad():
        predicted = net(points, torch.full((500, 1), sigma))
    cosine = torch.nn.functional.cosine_similarity(predicted, true, dim=1)
    assert cosine.median().item() > 0.95
    assert ((predicted - true).norm(dim=1) / true.norm(dim=1)).median().item() < 0.25


# --- the correction ----------------------------------------------------------------------------------
def test_score_model_training_reduces_its_losses(fitted):
    _, history = fitted
    first, last = history[0], history[-1]
    for key in ("joint_dsm", "state_dsm", "inverse_dynamics", "forward_dynamics"):
        assert last[key] < first[key], key


def test_adjustment_moves_out_of_distribution_actions_toward_the_data(fitted):
    model, _ = fitted
    rng = np.random.default_rng(1)
    observations = rng.uniform(-0.8, 0.8, (200, 2)).astype(np.float32)
    ood = np.full((200, 1), 1.9, np.float32)  # the data's actions are 1.5 * tanh(s_0), mostly far below 1.9
    policy = ConstantPolicy([1.9], *SPACES)
    cdsa = CDSA(policy, model, step_size=1.0, n_steps=10, max_step_norm=0.2)
    adjusted = cdsa.adjust(observations, ood)
    before = np.abs(ood - behaviour(observations))
    after = np.abs(adjusted - behaviour(observations))
    assert np.mean(after < before) > 0.9
    assert after.mean() < 0.6 * before.mean()
    assert np.all(np.abs(adjusted) <= 2.0)
    assert np.all(np.abs(adjusted - ood) <= 10 * 0.2 * 2.0 + 1e-5)  # K steps of at most max_step_norm (x max_action)
    # an in-distribution action barely moves
    on_data = behaviour(observations).astype(np.float32)
    assert np.abs(cdsa.adjust(observations, on_data) - on_data).mean() < 0.25 * (adjusted - ood).__abs__().mean()


def test_state_term_and_gate(fitted):
    model, _ = fitted
    observations = np.zeros((4, 2), np.float32)
    policy = ConstantPolicy([1.9], *SPACES)
    blended = CDSA(policy, model, n_steps=0, state_weight=1.0).adjust(observations, np.full((4, 1), 1.9, np.float32))
    assert np.all(np.abs(blended - 1.9) > 0.3)  # the inverse-dynamics action replaced the OOD one
    gated = CDSA(policy, model, ood_threshold=1e6).adjust(observations, np.full((4, 1), 1.9, np.float32))
    np.testing.assert_allclose(gated, 1.9)  # nothing judged out of distribution: unchanged


def test_cdsa_is_a_policy_and_predicts_single_and_batched(fitted):
    model, _ = fitted
    cdsa = CDSA(ConstantPolicy([1.9], *SPACES), model)
    assert isinstance(cdsa, Policy)
    single, state = cdsa.predict(np.zeros(2, np.float32))
    assert single.shape == (1,) and state is None
    batch, _ = cdsa.predict(np.zeros((3, 2), np.float32))
    assert batch.shape == (3, 1)
    np.testing.assert_allclose(batch[0], single, rtol=1e-5)
    unchanged, _ = CDSA(ConstantPolicy([1.9], *SPACES), model, n_steps=0).predict(np.zeros(2, np.float32))
    np.testing.assert_allclose(unchanged, [1.9])


def test_score_model_save_load_round_trip(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "score")
    loaded = DatasetScoreModel.load(tmp_path / "score")
    observations, actions = np.zeros((3, 2), np.float32), np.full((3, 1), 1.9, np.float32)
    policy = ConstantPolicy([1.9], *SPACES)
    np.testing.assert_allclose(
        CDSA(policy, loaded).adjust(observations, actions), CDSA(policy, model).adjust(observations, actions)
    )
    torch.save({"algorithm": "TD3BC"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a CDSA score model"):
        DatasetScoreModel.load(tmp_path / "other.pt")


def test_wraps_a_pretrained_offline_agent_on_its_env():
    env = gym.make("pendulum-expert-v0", dataset_size=400, progress=False)
    agent = TD3BC(env, seed=0, eval_freq=0, hidden_sizes=(32, 32)).learn(4)
    model = DatasetScoreModel.from_dataset(env.get_dataset(), env, hidden_sizes=(32,))
    model.fit(steps=5, batch_size=32)
    np.testing.assert_allclose(model.obs_mean.numpy(), agent.obs_mean, rtol=1e-5)  # same normalisation as the agent
    result = evaluate(CDSA(agent, model), env, n_episodes=1, seed=0)
    assert len(result.returns) == 1


def test_cli_trains_a_score_model_and_evaluates_a_policy_with_cdsa(tmp_path, capsys):
    data = ["--env", "pendulum-medium-v0", "--env-kwargs", "dataset_size=400", "progress=False", "--no-progress-bar"]
    policy_dir, score_dir = tmp_path / "td3bc", tmp_path / "score"
    assert main(["train", "--algo", "td3bc", "--timesteps", "4", "--out", str(policy_dir), *data]) == 0
    score = [
        "train",
        "--algo",
        "cdsa-score",
        "--timesteps",
        "5",
        "--out",
        str(score_dir),
        "--hyperparams",
        "hidden_sizes=(16,)",
    ]
    assert main([*score, "batch_size=32", *data]) == 0
    evaluation = ["eval", "--checkpoint", str(policy_dir), "--episodes", "1", "--json", "--cdsa", str(score_dir)]
    assert main([*evaluation, "--cdsa-kwargs", "step_size=0.3", "n_steps=2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["env_id"] == "pendulum-medium-v0"
    assert main([*evaluation, "--cdsa-kwargs", "step_size=-1"]) == 2
    assert "step_size must be >= 0" in capsys.readouterr().err


# --- bad input ---------------------------------------------------------------------------------------
def test_bad_input_is_rejected(fitted):
    model, _ = fitted
    with pytest.raises(ValueError, match="the policy acts in"):
        CDSA(ConstantPolicy([0.0, 0.0], SPACES[0], gym.spaces.Box(-2, 2, (2,), np.float32)), model)
    with pytest.raises(ValueError, match="the policy acts in"):
        CDSA(ConstantPolicy([0.0], SPACES[0], gym.spaces.Box(-1, 1, (1,), np.float32)), model)
    with pytest.raises(TypeError, match="Box action_space"):
        CDSA(ConstantPolicy([0], SPACES[0], gym.spaces.Discrete(3)), model)
    with pytest.raises(ValueError, match="the policy observes"):
        CDSA(ConstantPolicy([0.0], gym.spaces.Box(-1, 1, (3,), np.float32), SPACES[1]), model)
    policy = ConstantPolicy([0.0], *SPACES)
    with pytest.raises(ValueError, match="step_size must be >= 0, got -1"):
        CDSA(policy, model, step_size=-1)
    with pytest.raises(ValueError, match="sigma_end <= sigma_start"):
        CDSA(policy, model, sigma_start=0.1, sigma_end=0.2)
    with pytest.raises(ValueError, match="state_weight must be in"):
        CDSA(policy, model, state_weight=1.5)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        DatasetScoreModel(*SPACES, np.zeros(2), np.ones(2), sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="the dataset's observations have shape"):
        DatasetScoreModel.from_dataset(toy_dataset(50), gym.make("Pendulum-v1"))


def test_rows_without_a_real_next_state_are_left_out_of_the_fit(monkeypatch):
    """An imported D4RL terminal row stores s as its own next state; the next-state losses must never see it."""
    from palaestra.agents.offline import cdsa

    rng = np.random.default_rng(0)
    n = 64
    data = {
        "observations": rng.normal(size=(n, 3)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 1)).astype(np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
        "next_observations": rng.normal(size=(n, 3)).astype(np.float32),
        "has_next_observation": np.ones(n, bool),
    }
    marked = [5, 17, 40]
    data["has_next_observation"][marked] = False
    data["next_observations"][marked] = 1e6  # a poisoned next state: any use of it blows up the dynamics loss
    assert list(np.setdiff1d(np.arange(n), cdsa.real_next_state_rows(data))) == marked
    model = DatasetScoreModel.from_dataset(data, hidden_sizes=(16,))
    history = model.fit(steps=20, batch_size=64, dataset=data)
    assert all(np.isfinite(entry["forward_dynamics"]) and entry["forward_dynamics"] < 1e3 for entry in history)
