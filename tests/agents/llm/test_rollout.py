import math

import gymnasium as gym
import pytest
import torch as th

from palaestra.agents.llm.losses import clipped_surrogate_loss
from palaestra.agents.llm.models import load_model
from palaestra.agents.llm.rollout import (
    ChatTurns,
    PromptTooLongError,
    StopChecker,
    answer_probabilities,
    check_text_env,
    collect_episodes,
    encode_text,
    pad_episodes,
    prompt_ids,
    reply_ids,
    sample_actions,
    sequence_logprobs,
)
from tests.agents.llm.conftest import make_toy_env


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_model(tiny_model_dir)


def collect(policy, n=4, seeds=None, temperature=1.0, max_length=256, max_new_tokens=6):
    model, tokenizer = policy
    envs = [make_toy_env() for _ in range(n)]
    seeds = [7] * n if seeds is None else seeds
    generator = th.Generator().manual_seed(0)
    return collect_episodes(model, tokenizer, envs, seeds, max_new_tokens, max_length, temperature, generator)


def test_episode_sequence_layout(policy):
    _, tokenizer = policy
    for episode in collect(policy):
        # prompt, then for each turn: the sampled action ids (turn k) followed by the observation ids (-1)
        prompt = prompt_ids(tokenizer, episode.observations[0])
        assert episode.ids[: len(prompt)] == prompt
        assert episode.context_ends[0] == len(prompt)
        for k in range(episode.n_turns):
            start = episode.context_ends[k]
            end = episode.context_ends[k + 1] if k + 1 < episode.n_turns else len(episode.ids)
            action_positions = [p for p in range(start, end) if episode.turn_index[p] == k]
            assert action_positions == list(range(start, start + len(action_positions)))  # contiguous, first
            assert 1 <= len(action_positions) <= 6
            action_ids = episode.ids[start : start + len(action_positions)]
            assert tokenizer.decode(action_ids, skip_special_tokens=True) == episode.actions[k]
            if k + 1 < episode.n_turns:  # the observation was tokenised once and appended as is
                assert episode.ids[start + len(action_positions) : end] == encode_text(tokenizer, episode.observations[k + 1])
                assert set(episode.turn_index[start + len(action_positions) : end]) <= {-1}
        assert all(t in (-1, *range(episode.n_turns)) for t in episode.turn_index)


def test_group_copies_share_the_question_and_stored_ids_are_the_sampled_ones(policy):
    model, tokenizer = policy
    episodes = collect(policy, n=3, temperature=0.0)
    assert len({e.observations[0] for e in episodes}) == 1
    first = episodes[0]
    resampled = sample_actions(
        model, [first.ids[: first.context_ends[0]]], 6, StopChecker(tokenizer), tokenizer.pad_token_id, 0.0
    )
    assert first.ids[first.context_ends[0] : first.context_ends[0] + len(resampled[0])] == resampled[0]


def test_token_budget_truncates(policy):
    episodes = collect(policy, n=2, max_length=20, max_new_tokens=6)
    assert all(e.truncated and len(e.ids) <= 20 + 6 for e in episodes)


def test_loss_mask_no_gradient_reaches_prompt_or_observation_tokens(policy):
    model, tokenizer = policy
    episodes = [e for e in collect(policy, n=4) if e.n_turns > 1] or collect(policy, n=4)
    ids, attention, turn = pad_episodes(episodes, tokenizer.pad_token_id)
    mask = turn >= 0
    assert bool((~mask).any()) and bool(mask.any())
    advantages = th.randn(ids.shape)
    with th.no_grad():
        old_logp, _ = sequence_logprobs(model, ids, attention)
    logp, _ = sequence_logprobs(model, ids, attention)
    assert th.equal(logp.detach(), old_logp)  # ratios are exactly 1 before the first update
    logp = logp.detach().requires_grad_(True)
    loss, _ = clipped_surrogate_loss(logp - old_logp, advantages, mask)
    loss.backward()
    assert th.all(logp.grad[~mask] == 0) and th.any(logp.grad[mask] != 0)
    # perturbation: changing anything off the action tokens leaves the loss unchanged
    noisy_logp = th.where(mask, logp.detach(), logp.detach() + 5 * th.randn(ids.shape))
    noisy_adv = th.where(mask, advantages, 100 * th.randn(ids.shape))
    perturbed, _ = clipped_surrogate_loss(noisy_logp - old_logp, noisy_adv, mask)
    assert float(perturbed) == pytest.approx(float(loss.detach()), abs=1e-6)


def test_non_text_env_is_rejected():
    with pytest.raises(TypeError, match=r"spaces\.Text"):
        check_text_env(gym.make("CartPole-v1"))


def test_stop_checker_single_token_tags(policy):
    _, tokenizer = policy
    stop = StopChecker(tokenizer)
    assert stop.all_single
    close = encode_text(tokenizer, "</answer>")
    assert stop([5, *close]) and not stop(encode_text(tokenizer, "<answer> alpa"))
    assert stop([tokenizer.eos_token_id])


def test_sequence_logprobs_are_those_of_the_sampling_policy_at_the_temperature(policy):
    # verl (volcengine/verl at commit b178a3cd56f58b2d502255daba591e92833930a7, verl/workers/actor/dp_actor.py,
    # _forward_micro_batch: logits.div_(temperature), then log-probs and entropy of those logits) and TRL
    # (huggingface/trl at commit f2cd57710ae345ea6428ae95363267fcf38a3dc8, trl/trainer/grpo_trainer.py,
    # _get_per_token_logps_and_entropies: logits.div_(self.temperature)): log_softmax(logits / T) at the sampled ids.
    model, tokenizer = policy
    episodes = collect(policy, n=3, temperature=0.7)
    ids, attention, turn = pad_episodes(episodes, tokenizer.pad_token_id)
    with th.no_grad():
        logp, entropy = sequence_logprobs(model, ids, attention, with_entropy=True, temperature=0.7)
        untempered, _ = sequence_logprobs(model, ids, attention)
        greedy, _ = sequence_logprobs(model, ids, attention, temperature=0.0)  # greedy: the loss is taken at T = 1
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1, :].float()
    reference = th.log_softmax(logits / 0.7, dim=-1)
    expected = th.gather(reference, 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = (turn[:, 1:] >= 0) & (attention[:, 1:] > 0)
    assert th.allclose(logp[:, 1:][mask], expected[mask], atol=1e-5)
    expected_entropy = -(reference.exp() * reference).sum(-1)
    assert th.allclose(entropy[:, 1:][attention[:, 1:] > 0], expected_entropy[attention[:, 1:] > 0], atol=1e-5)
    assert float((untempered - logp)[:, 1:][mask].abs().max()) > 1e-3  # the bug this guards against
    assert th.equal(greedy, untempered)
    with pytest.raises(ValueError, match="temperature"):
        sequence_logprobs(model, ids, attention, temperature=-1.0)


def test_first_action_token_logprob_is_the_probability_it_was_sampled_with(policy):
    # sample_actions draws from softmax(logits[-1] / T); sequence_logprobs at T must give that probability.
    model, _ = policy
    episode = collect(policy, n=1, temperature=0.7)[0]
    start = episode.context_ends[0]
    context = th.tensor([episode.ids[:start]])
    with th.no_grad():
        last = model(input_ids=context, attention_mask=th.ones_like(context)).logits[0, -1].float()
    sampled_with = th.softmax(last / 0.7, dim=-1)[episode.ids[start]]
    ids = th.tensor([episode.ids])
    with th.no_grad():
        logp, _ = sequence_logprobs(model, ids, th.ones_like(ids), temperature=0.7)
    assert math.isclose(float(logp[0, start].exp()), float(sampled_with), rel_tol=1e-4)


def test_a_prompt_longer_than_the_budget_raises_before_any_turn(policy):
    _, tokenizer = policy
    prompt = len(prompt_ids(tokenizer, make_toy_env().reset(seed=7)[0]))
    with pytest.raises(PromptTooLongError) as error:
        collect(policy, n=2, max_length=prompt + 5, max_new_tokens=6)
    message = str(error.value)
    for part in (f"{prompt} tokens", f"max_length={prompt + 5}", "max_new_tokens=6", f"at least {prompt + 6}"):
        assert part in message, message
    assert isinstance(error.value, ValueError)
    episodes = collect(policy, n=2, max_length=prompt + 6, max_new_tokens=6)  # exactly one action fits
    assert all(e.n_turns == 1 for e in episodes)


# A chat template in the style of ChatML, written with the tiny tokenizer's own special tokens.
TOY_CHAT_TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }} : {{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant : {% endif %}"
)


@pytest.fixture()
def chat_policy(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    tokenizer.chat_template = TOY_CHAT_TEMPLATE
    return model, tokenizer


def test_chat_turns_are_read_off_the_template(chat_policy):
    _, tokenizer = chat_policy
    chat = ChatTurns.from_tokenizer(tokenizer)
    assert chat == ChatTurns(prompt_prefix="<bos>user : ", assistant_prefix="<eos><bos>assistant : ",
                             user_prefix="<eos><bos>user : ", end_of_turn="<eos>")  # fmt: skip
    # an action that ended with eos closed its turn: the next user message does not close it again
    eos = tokenizer.eos_token_id
    assert reply_ids(tokenizer, "capital", chat, [5, eos]) == encode_text(
        tokenizer, "<bos>user : capital<eos><bos>assistant : "
    )
    assert reply_ids(tokenizer, "capital", chat, [5]) == encode_text(
        tokenizer, "<eos><bos>user : capital<eos><bos>assistant : "
    )
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        ChatTurns.from_tokenizer(tokenizer)


def test_a_chat_episode_is_the_template_rendered_over_its_turns_and_only_actions_are_trained(chat_policy):
    model, tokenizer = chat_policy
    chat = ChatTurns.from_tokenizer(tokenizer)
    envs = [make_toy_env() for _ in range(3)]
    episodes = collect_episodes(model, tokenizer, envs, [7, 8, 9], 6, 256, 1.0, th.Generator().manual_seed(0), chat=chat)
    for episode in episodes:
        messages = [{"role": "user", "content": episode.observations[0]}]
        for k in range(episode.n_turns):  # the actions left empty: what remains is the env's and the template's text
            messages.append({"role": "assistant", "content": ""})
            if k + 1 < len(episode.observations):
                messages.append({"role": "user", "content": episode.observations[k + 1]})
        expected = encode_text(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
        ends = {len(episode.ids) - 1} | {p - 1 for p in range(1, len(episode.ids)) if episode.turn_index[p] == -1}
        eos = tokenizer.eos_token_id  # an action's own closing eos stands where the template closes the turn
        context = [i for p, (i, t) in enumerate(zip(episode.ids, episode.turn_index, strict=True))
                   if t == -1 or (i == eos and p in ends)]  # fmt: skip
        assert context == expected[: len(context)]  # the template's own tokens, in the template's places
        for k, action in enumerate(episode.actions):
            action_ids = [i for i, t in zip(episode.ids, episode.turn_index, strict=True) if t == k]
            assert tokenizer.decode(action_ids, skip_special_tokens=True) == action
            assert episode.context_ends[k] == episode.turn_index.index(k)  # each turn samples after "assistant :"
            assert encode_text(tokenizer, "assistant :") == episode.ids[episode.context_ends[k] - 2 : episode.context_ends[k]]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_cached_answer_probe_equals_a_forward_pass_per_context(policy, temperature):
    """IGPO's P_k from one pass per episode equals the rule: run ctx_k + prefix + answer, average the answer's logprobs."""
    model, tokenizer = policy
    episodes = collect(policy, n=3, seeds=[7, 8, 9], max_new_tokens=6)
    prefix, answer = encode_text(tokenizer, "capital is"), encode_text(tokenizer, "paris")
    probes = answer_probabilities(model, episodes, prefix, answer, tokenizer.pad_token_id, temperature, micro_batch_size=2)
    assert [len(p) for p in probes] == [len(e.context_ends) for e in episodes]
    for episode, got in zip(episodes, probes, strict=True):
        for k, end in enumerate(episode.context_ends):
            ids = th.tensor([episode.ids[:end] + prefix + answer])
            with th.no_grad():
                logp, _ = sequence_logprobs(model, ids, th.ones_like(ids), temperature=temperature)
            expected = logp[0, end + len(prefix) :].mean().exp()
            assert math.isclose(float(got[k]), float(expected), rel_tol=1e-4), (k, float(got[k]), float(expected))
