import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from palaestra.agents.llm.rollout import PromptTooLongError, pad_episodes, prompt_ids
from palaestra.agents.llm.trainer import GRPO, IGPO, GiGPO, MultiTurnAgent
from palaestra.evaluation import evaluate
from palaestra.protocol import Agent
from tests.agents.llm.conftest import make_toy_env

SMALL = {
    "group_size": 4,
    "n_prompts": 2,
    "max_new_tokens": 6,
    "max_length": 128,
    "sft_episodes": 32,
    "sft_steps": 0,
    "eval_questions": 4,
    "eval_splits": ("train", "dev"),
}


def make(cls=GRPO, **kwargs):
    return cls(make_toy_env, **{**SMALL, **kwargs})


def test_bad_arguments():
    with pytest.raises(ValueError, match="group_size"):
        make(group_size=1)
    with pytest.raises(ValueError, match="advantage"):
        make(MultiTurnAgent, advantage="ppo")
    with pytest.raises(ValueError, match="ratio_level"):
        make(ratio_level="sequence")
    with pytest.raises(ValueError, match="llds_coef"):
        make(llds_coef=-0.1)
    with pytest.raises(TypeError, match=r"spaces\.Text"):
        MultiTurnAgent(lambda: gym.make("CartPole-v1"), **SMALL)


def test_smoke_sft_rl_and_checkpoint_round_trip(tmp_path):
    agent = make(sft_steps=5)
    agent.learn(total_timesteps=2)
    assert agent.sft_done and agent.num_updates == 2
    stats = agent._last_stats
    assert math.isfinite(stats["train/loss"]) and stats["train/clip_frac"] == 0.0  # one epoch: ratio == 1
    agent.save(tmp_path / "model")
    loaded = GRPO.load(tmp_path / "model", env=make_toy_env)
    assert loaded.num_updates == 2 and loaded.sft_done and loaded.advantage == "grpo"
    for a, b in zip(agent.model.parameters(), loaded.model.parameters(), strict=True):
        assert th.equal(a, b)
    env = make_toy_env()
    observation, _ = env.reset(seed=3)
    action, state = agent.predict(observation, deterministic=True)
    again, _ = loaded.predict(observation, deterministic=True)
    assert action == again and isinstance(state[0], np.ndarray)
    assert isinstance(agent, Agent)  # the palaestra Policy/Agent protocols
    result = evaluate(agent, make_toy_env(), n_episodes=2, seed=0)
    assert len(result.returns) == 2


def test_batched_predict_matches_single_predictions_and_checks_its_state():
    agent = make(sft_steps=5)
    agent.learn(total_timesteps=1)
    envs = [make_toy_env() for _ in range(3)]
    first = [env.reset(seed=seed)[0] for seed, env in enumerate(envs)]
    actions, state = agent.predict(np.array(first, dtype=object), deterministic=True)
    singles = [agent.predict(observation, deterministic=True) for observation in first]
    assert actions == [action for action, _ in singles]
    assert all(np.array_equal(a, b[0]) for a, b in zip(state, (s for _, s in singles), strict=True))
    replies = [env.step(action)[0] for env, action in zip(envs, actions, strict=True)]
    follow, next_state = agent.predict(replies, state=state, episode_start=np.array([False, True, False]))
    assert len(follow) == 3
    assert np.array_equal(next_state[0][: len(state[0])], state[0])  # continued: the history grows
    prompt = prompt_ids(agent.tokenizer, replies[1])  # restarted: the reply is read as a new prompt
    assert next_state[1][: len(prompt)].tolist() == prompt
    with pytest.raises(ValueError, match="state holds 3 episodes but 2"):
        agent.predict(replies[:2], state=state)
    with pytest.raises(ValueError, match="empty batch"):
        agent.predict([])
    with pytest.raises(TypeError, match="list of str"):
        agent.predict([1, 2])


def test_all_fail_group_grpo_collapses_igpo_does_not():
    agent = make(IGPO)  # untrained: every rollout fails
    groups, _ = agent.collect()
    group = groups[0]
    assert all(e.episode_return == 0 for e in group)
    igpo_adv, collapsed = agent._group_turn_advantages(group)
    assert collapsed
    assert float(igpo_adv.abs().sum()) > 0  # information gains still differ between rollouts
    agent.advantage = "grpo"
    grpo_adv, _ = agent._group_turn_advantages(group)
    assert th.equal(grpo_adv, th.zeros_like(grpo_adv))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (IGPO, {}),
        (GiGPO, {"norm_adv_by_std": False}),
        (GRPO, {"ratio_level": "turn", "clipping_correction": True, "n_epochs": 2, "batch_size": 4}),
        (GRPO, {"kl_coef": 0.01, "ent_coef": 0.01, "aggregation": "seq-mean-token-mean", "clip_range_high": 0.28}),
        (GRPO, {"empg": True, "otc": True}),
        (GRPO, {"llds_coef": 0.1, "n_epochs": 2}),
    ],
)
def test_every_estimator_and_loss_option_trains(cls, kwargs):
    agent = make(cls, sft_steps=3, **kwargs)
    before = [p.detach().clone() for p in agent.model.parameters()]
    agent.learn(total_timesteps=1)
    stats = agent._last_stats
    assert all(math.isfinite(v) for k, v in stats.items() if k.startswith("train/")), stats
    assert 0.0 <= stats["rollout/zero_variance_groups"] <= 1.0
    assert any(not th.equal(a, b) for a, b in zip(before, agent.model.parameters(), strict=True))


def test_same_seed_same_sft_with_noisy_expert_turns():
    # Noisy turns draw words from the vocabulary; the tokenizer's vocabulary map has no stable order between loads.
    first, second = make(sft_steps=3, sft_noise=0.9), make(sft_steps=3, sft_noise=0.9)
    for agent in (first, second):
        agent.learn(total_timesteps=0)
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert th.equal(a, b)


def test_evaluation_metrics_after_sft():
    agent = make(sft_steps=90, sft_episodes=64)
    agent.learn(total_timesteps=0)
    metrics = agent.evaluate_splits()
    assert metrics["eval/train_em"] >= 0.75  # SFT alone solves the 1-hop toy task on seen questions
    assert metrics["eval/train_invalid_rate"] <= 0.1
    assert metrics["eval/train_gold_doc_recall"] >= 0.75
    assert set(metrics) >= {f"eval/dev_{m}" for m in ("em", "f1", "searches", "invalid_rate", "gold_doc_recall")}


@pytest.mark.slow
def test_learning_em_rises_from_zero_through_sft_then_rl():
    # 150 SFT steps: the default BPE tokenizer spells names in pieces, which takes longer to learn than words
    agent = make(group_size=8, n_prompts=4, sft_steps=150, sft_episodes=64, learning_rate=1e-4, eval_questions=32)
    start = agent.evaluate_splits(splits=("train",))["eval/train_em"]
    agent.learn(total_timesteps=10)
    end = agent.evaluate_splits(splits=("train",))["eval/train_em"]
    assert start == 0.0
    assert end >= 0.75, (start, end)
    assert agent._last_stats["rollout/em"] > 0.25  # sampled (temperature 1) rollouts succeed too


def test_igpo_refuses_an_env_without_gold_answers_before_building_the_model(monkeypatch):
    def build_model(*_):
        raise AssertionError("the model was built before the env was checked")

    monkeypatch.setattr(MultiTurnAgent, "_setup_model", build_model)
    gym.register("palaestra-test/GoToRoom-v0", entry_point="tests.agents.llm.toy_env:GoToRoomEnv")
    try:
        with pytest.raises(ValueError, match="IGPO needs each question's gold answer") as error:
            IGPO("palaestra-test/GoToRoom-v0", **SMALL)
    finally:
        gym.registry.pop("palaestra-test/GoToRoom-v0", None)
    assert "\n" not in str(error.value) and "palaestra-test/GoToRoom-v0" in str(error.value)
    with pytest.raises(AssertionError, match="model was built"):  # an env with gold answers gets past the check
        make(IGPO)


def test_tag_free_command_env_like_textworld():

    gym.register("palaestra-test/GoToRoom-v0", entry_point="tests.agents.llm.toy_env:GoToRoomEnv")
    try:
        hyperparams = {**SMALL, "sft_steps": 150, "eval_questions": 8, "eval_splits": (None,)}
        agent = GiGPO("palaestra-test/GoToRoom-v0", **hyperparams)
        assert agent._envs[0].unwrapped.request_infos == {"policy_commands"}  # TextWorld's expert was requested
        agent.learn(total_timesteps=1)
        assert math.isfinite(agent._last_stats["train/loss"])
        metrics = agent.evaluate_splits()
        assert metrics["eval/default_em"] >= 0.5  # commands end with eos and reach the goal
        with pytest.raises(ValueError, match="gold answer"):
            agent.advantage = "igpo"
            agent.train_step()
    finally:
        gym.registry.pop("palaestra-test/GoToRoom-v0", None)


def test_old_new_and_reference_logprobs_are_taken_at_the_sampling_temperature():
    # verl scores old and reference log-probs and the entropy at the rollout temperature (volcengine/verl at commit
    # b178a3cd56f58b2d502255daba591e92833930a7, verl/workers/fsdp_workers.py: compute_log_prob and
    # compute_ref_log_prob set meta_info["temperature"] = rollout.temperature; dp_actor.py divides the logits by it).
    agent = make(temperature=0.7, kl_coef=0.01, ent_coef=0.01)
    groups, _ = agent.collect()
    ids, attention, _ = pad_episodes([e for g in groups for e in g], agent.pad_id)
    logp, entropy = agent._logprobs(agent.model, ids, attention, True)
    with th.no_grad():
        logits = agent.model(input_ids=ids, attention_mask=attention).logits[:, :-1, :].float()
    reference = th.log_softmax(logits / 0.7, dim=-1)
    expected = th.gather(reference, 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    real = attention[:, 1:] > 0
    assert th.allclose(logp[:, 1:][real], expected[real], atol=1e-5)
    assert th.allclose(entropy[:, 1:][real], -(reference.exp() * reference).sum(-1)[real], atol=1e-5)
    agent.learn(total_timesteps=1)  # the first minibatch's new log-probs are the old and reference ones
    stats = agent._last_stats
    assert stats["train/ratio_dev"] < 1e-5 and abs(stats["train/kl_ref"]) < 1e-6, stats


def test_a_prompt_longer_than_max_length_minus_max_new_tokens_is_refused_at_rollout_start():
    env = make_toy_env()
    agent = make(IGPO, max_length=14, max_new_tokens=6)
    prompt = len(prompt_ids(agent.tokenizer, env.reset(seed=0)[0]))
    assert prompt + 6 > 14  # the toy prompt (10 tokens with bos) does not fit
    message = rf"prompt is {prompt} tokens.*max_length=14.*max_new_tokens=6.*raise max_length to at least {prompt + 6}"
    with pytest.raises(PromptTooLongError, match=message):
        agent.learn(total_timesteps=1)  # before: a 0-turn episode, then IGPO failed deep inside
    with pytest.raises(PromptTooLongError, match=message):
        agent.evaluate_splits(n_questions=2)  # not mistaken for an unknown split
    with pytest.raises(PromptTooLongError, match=message):
        agent.sft(n_steps=1)
