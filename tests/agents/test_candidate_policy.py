"""The candidate scorer policy: one network scores every slot of CandidateActions' observation."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO

import palaestra
from palaestra.agents.candidate_policy import (
    EMPTY_SLOT_LOGIT,
    CandidateScorerPolicy,
    MaskableCandidateScorerPolicy,
    scorer_policy_for,
)
from palaestra.wrappers import CandidateActions
from palaestra.wrappers.candidate_actions import candidate_layout, word_shapes


def tool_search(**kwargs):
    base = gym.make("ToolSearch-v0", hops=1, top_k=1, request_infos=["candidates"])
    return CandidateActions(base, max_candidates=12, **kwargs)


def _observation_after_a_search(env):
    env.reset(seed=0)
    observation, *_ = env.step(0)
    assert env.action_masks().sum() >= 3  # several candidates to permute
    return observation


@pytest.mark.parametrize(("algorithm", "policy"), [(MaskablePPO, MaskableCandidateScorerPolicy), (PPO, CandidateScorerPolicy)])
def test_permuting_the_candidates_permutes_their_logits(algorithm, policy):
    env = tool_search(**({} if algorithm is MaskablePPO else {"invalid_action": "noop"}))
    model = algorithm(policy, env, seed=0, n_steps=64, batch_size=32)
    observation = _observation_after_a_search(env)
    head, slots = observation[: env.features + 1], observation[env.features + 1 :].reshape(12, -1)
    order = np.array([2, 0, 1, *range(3, 12)])
    permuted = np.concatenate([head, slots[order].ravel()])
    with torch.no_grad():
        logits = model.policy.mlp_extractor.forward_actor(torch.as_tensor(np.stack([observation, permuted])))
        values = model.policy.predict_values(torch.as_tensor(np.stack([observation, permuted])))
    torch.testing.assert_close(logits[1], logits[0][order])  # the same scorer for every slot
    torch.testing.assert_close(values[1], values[0])  # the value does not depend on the slots' order
    assert isinstance(model.policy.action_net, torch.nn.Identity)


def test_the_first_policy_is_close_to_uniform_and_the_optimiser_trains_the_scorer():
    env = tool_search()
    model = MaskablePPO(MaskableCandidateScorerPolicy, env, seed=0, n_steps=64, batch_size=32)
    with torch.no_grad():
        logits = model.policy.mlp_extractor.forward_actor(torch.as_tensor(_observation_after_a_search(env))[None])[0]
    offered = torch.as_tensor(env.action_masks())
    assert float(logits[offered].abs().max()) < 0.05  # the last layer starts with gain 0.01, as SB3's action_net
    assert torch.all(logits[~offered] == EMPTY_SLOT_LOGIT)  # only the offered candidates are scored
    optimised = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in model.policy.mlp_extractor.parameters())


def test_the_value_has_embeddings_of_its_own():
    """A value-loss step leaves the actor's scores alone, as SB3's MlpPolicy keeps its pi and vf networks apart."""
    env = tool_search()
    model = MaskablePPO(MaskableCandidateScorerPolicy, env, seed=0, n_steps=64, batch_size=32)
    observation = torch.as_tensor(_observation_after_a_search(env))[None]
    extractor = model.policy.mlp_extractor
    before = extractor.forward_actor(observation).detach()
    model.policy.zero_grad()
    model.policy.predict_values(observation).sum().backward()
    actor = [*extractor.state.parameters(), *extractor.slot.parameters(), *extractor.score.parameters()]
    assert all(p.grad is None or not p.grad.any() for p in actor)
    assert any(p.grad is not None and p.grad.any() for p in extractor.critic_state.parameters())
    torch.testing.assert_close(extractor.forward_actor(observation), before)


def test_scorer_policy_for_knows_ppo_and_maskable_ppo_only():
    assert scorer_policy_for(MaskablePPO) is MaskableCandidateScorerPolicy
    assert scorer_policy_for(PPO) is CandidateScorerPolicy
    assert scorer_policy_for(DQN) is None


def test_the_scorer_refuses_an_observation_that_is_not_candidate_actions_layout():
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="not CandidateActions' layout"):
        PPO(CandidateScorerPolicy, env)


def test_candidate_layout_inverts_the_observation_size():
    for features, slots in ((16, 4), (64, 32), (3, 1)):
        assert candidate_layout(features + 1 + slots * (2 * features + 4), slots) == features
    with pytest.raises(ValueError, match="not CandidateActions' layout"):
        candidate_layout(100, 3)


def test_word_shapes_tell_numbers_from_names():
    assert word_shapes("Port Elsby 1923 in 3.5 McX") == "shape_ul shape_ul shape_d shape_l shape_d shape_d shape_ulu"


class _UniformCandidate:
    def __init__(self):
        self.rng = np.random.default_rng(0)

    def predict(self, observation, state=None, episode_start=None, deterministic=False, action_masks=None):
        return np.asarray(self.rng.choice(np.flatnonzero(action_masks))), None


@pytest.mark.slow
def test_maskable_ppo_with_the_scorer_answers_unseen_questions_well_above_chance():
    """20k steps on 1-hop questions from 32 training worlds; exact match on dev and on the hot world it never saw."""
    torch.set_num_threads(1)

    def env(split):
        kwargs = {"train_worlds": 32} if split == "train" else {}
        return CandidateActions(gym.make("ToolSearch-v0", hops=1, split=split, request_infos=["candidates"], **kwargs))

    model = MaskablePPO(MaskableCandidateScorerPolicy, env("train"), seed=0, n_steps=512, batch_size=64).learn(20_000)
    for split in ("dev", "hot"):
        learned = palaestra.evaluate(model, env(split), n_episodes=100, seed=10_000).mean
        chance = palaestra.evaluate(_UniformCandidate(), env(split), n_episodes=100, seed=10_000).mean
        assert chance < 0.12 and learned > chance + 0.1, (split, learned, chance)


@pytest.mark.slow
def test_maskable_ppo_with_the_scorer_wins_a_small_textworld_game():
    """A five-room game with a five-step quest, which a uniform choice among the admissible commands never wins."""
    torch.set_num_threads(1)
    game = {"game_seeds": 0, "nb_rooms": 5, "nb_objects": 8, "quest_length": 5}

    def env():
        return CandidateActions(gym.make("TextWorld-v0", request_infos=["admissible_commands"], **game))

    model = MaskablePPO(MaskableCandidateScorerPolicy, env(), seed=0, n_steps=512, batch_size=64).learn(20_000)
    learned = palaestra.evaluate(model, env(), n_episodes=5, seed=10_000)
    chance = palaestra.evaluate(_UniformCandidate(), env(), n_episodes=20, seed=10_000)
    assert learned.successes is not None and chance.successes is not None
    assert learned.successes.mean() >= 0.8 and chance.successes.mean() <= 0.1
