"""Multi-turn rollout engine: G env copies, turn-synchronous batched sampling, one growing token sequence each.

Each episode is ONE token sequence ``prompt, action_1, observation_1, action_2, ...`` that stores the ids the model
sampled (decoded only to be sent to the env, never re-encoded), and the observation ids tokenised once when the env
returns them. ``turn_index`` is ``k`` on the tokens of action ``k`` and ``-1`` on prompt and observation tokens, so
the loss mask ``turn_index >= 0`` is 1 only on tokens the policy produced (Search-R1's ``state_masking``).

Generation stops a row at the first closing ``</search>`` or ``</answer>`` (or the eos token, or
``max_new_tokens``). With a word-level tokenizer the tags are single ids; with a BPE tokenizer the row stops at the
first token after which the decoded tail contains a tag.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces

from palaestra.agents.llm.models import STOP_TAGS

__all__ = [
    "ChatTurns",
    "Episode",
    "PromptTooLongError",
    "StopChecker",
    "answer_probabilities",
    "check_prompt_fits",
    "check_text_env",
    "collect_episodes",
    "encode_text",
    "prompt_ids",
    "reply_ids",
    "sample_actions",
    "sequence_logprobs",
]


@dataclass
class Episode:
    """One multi-turn episode as a single token sequence.

    Attributes:
        ids: All token ids: prompt, then each action (sampled ids) and its observation.
        turn_index: Per token: the turn (0-based) of an action token, ``-1`` for prompt and observation tokens.
        context_ends: ``context_ends[k]`` is the sequence length before action ``k`` (prompt, then after each reply).
        actions: The decoded text sent to the env at each turn.
        observations: The env's text observations (the reset observation first).
        rewards: The env reward of each turn.
        infos: The env's info dicts (reset info first).
        anchors: Hashable key of the state each action was taken in (GiGPO's anchor state).
        terminated: Whether the env terminated the episode.
        truncated: Whether the episode was cut (env time limit or the engine's token budget).
    """

    ids: list[int]
    turn_index: list[int]
    context_ends: list[int] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    anchors: list[Hashable] = field(default_factory=list)
    terminated: bool = False
    truncated: bool = False

    @property
    def n_turns(self) -> int:
        """Number of actions taken."""
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        """Sum of the env rewards."""
        return float(sum(self.rewards))

    @property
    def done(self) -> bool:
        """Whether the episode has ended."""
        return self.terminated or self.truncated

    def __repr__(self) -> str:
        return (
            f"Episode(tokens={len(self.ids)}, action_tokens={sum(t >= 0 for t in self.turn_index)}, turns={self.n_turns}, "
            f"return={self.episode_return:.3g}, terminated={self.terminated}, truncated={self.truncated})"
        )


def check_text_env(env: gym.Env) -> None:
    """Raise ``TypeError`` unless both of ``env``'s spaces are :class:`gymnasium.spaces.Text`."""
    for name in ("observation_space", "action_space"):
        space = getattr(env, name)
        if not isinstance(space, spaces.Text):
            raise TypeError(f"the LLM agents need an env whose {name} is gymnasium.spaces.Text, got {space!r}")


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (observations and expert actions are tokenised once)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def _anchor(info: dict[str, Any], observation: str) -> Hashable:
    anchor = info.get("anchor")
    return observation if anchor is None else anchor


def _to_action(text: str, space: spaces.Text) -> str:
    charset = space.character_set
    kept = "".join(ch if ch in charset else ("\n" if ch.isspace() and "\n" in charset else "?") for ch in text)
    return kept[: space.max_length]


class StopChecker:
    """Decides whether a row of sampled ids has just closed an action (stop tag or eos)."""

    def __init__(self, tokenizer: Any, tags: Sequence[str] = STOP_TAGS) -> None:
        self.tokenizer = tokenizer
        self.tags = tuple(tags)
        self.single_ids: set[int] = set()
        tail = 1
        for tag in self.tags:
            ids = encode_text(tokenizer, tag)
            if len(ids) == 1:
                self.single_ids.add(ids[0])
            tail = max(tail, len(ids) + 2)
        self.tail = tail
        self.all_single = len(self.single_ids) == len(self.tags)
        self.eos_id = tokenizer.eos_token_id

    def __call__(self, ids: Sequence[int]) -> bool:
        """Whether ``ids`` (one row's sampled ids so far) end the action."""
        last = ids[-1]
        if last == self.eos_id or last in self.single_ids:
            return True
        if self.all_single:
            return False
        text = self.tokenizer.decode(list(ids[-self.tail :]), skip_special_tokens=False)
        return any(tag in text for tag in self.tags)


def _forward_parameters(model: Any) -> Mapping[str, Any]:
    """The names ``model.forward`` takes (none for a forward without an inspectable signature)."""
    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}


def _cache_name(model: Any) -> str:
    """The name of the KV cache in ``model``'s forward arguments and outputs.

    ``cache`` in transformers versions that take it (they deprecate ``past_key_values`` with a FutureWarning),
    ``past_key_values`` in older ones.
    """
    return "cache" if "cache" in _forward_parameters(model) else "past_key_values"


def _last_logits_only(model: Any) -> dict[str, int]:
    """The forward argument that computes the logits of the last position only, if ``model`` takes one.

    Sampling needs only the last position's logits; without it, the prompt's forward pass also projects every
    prompt position onto the vocabulary (for a 49k-token vocabulary, a fifth of a 135M model's weights).
    ``logits_to_keep`` in transformers >= 4.50, ``num_logits_to_keep`` in 4.45 to 4.49.
    """
    parameters = _forward_parameters(model)
    return next(({name: 1} for name in ("logits_to_keep", "num_logits_to_keep") if name in parameters), {})


@th.no_grad()
def sample_actions(
    model: Any,
    contexts: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop: StopChecker,
    pad_id: int,
    temperature: float = 1.0,
    generator: th.Generator | None = None,
) -> list[list[int]]:
    """Sample one action per context, batched and left-padded, with a KV cache; each row stops on its own.

    Args:
        model: A causal LM.
        contexts: Token ids of each episode so far.
        max_new_tokens: Longest action.
        stop: Stop criterion per row.
        pad_id: Padding id.
        temperature: Sampling temperature; 0 means greedy.
        generator: Seeded torch generator for the samples.

    Returns:
        The sampled ids of each row, up to and including its stop token.
    """
    device = next(model.parameters()).device
    batch, width = len(contexts), max(len(c) for c in contexts)
    input_ids = th.full((batch, width), pad_id, dtype=th.long)
    attention = th.zeros((batch, width), dtype=th.long)
    for row, context in enumerate(contexts):
        input_ids[row, width - len(context) :] = th.tensor(context, dtype=th.long)
        attention[row, width - len(context) :] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    cache_name, last_only = _cache_name(model), _last_logits_only(model)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True, **last_only)
    cache, logits = getattr(out, cache_name), out.logits[:, -1, :]
    next_position = positions[:, -1:] + 1
    sampled: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    for _ in range(max_new_tokens):
        if temperature == 0:
            tokens = logits.argmax(dim=-1)
        else:
            probs = F.softmax(logits.float() / temperature, dim=-1)
            tokens = th.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
        for row in range(batch):
            if not done[row]:
                sampled[row].append(int(tokens[row]))
                done[row] = stop(sampled[row])
        if all(done):
            break
        attention = th.cat([attention, th.ones((batch, 1), dtype=attention.dtype, device=device)], dim=1)
        out = model(
            input_ids=tokens.unsqueeze(1),
            attention_mask=attention,
            position_ids=next_position,
            use_cache=True,
            **{cache_name: cache},
            **last_only,
        )
        cache, logits = getattr(out, cache_name), out.logits[:, -1, :]
        next_position = next_position + 1
    return sampled


def _policy_log_probs(logits: th.Tensor, temperature: float) -> th.Tensor:
    """``log softmax(logits / T)`` in float32: the policy :func:`sample_actions` samples from at ``T`` (0 reads 1)."""
    logits = logits.float()
    if temperature > 0 and temperature != 1:
        logits = logits / temperature
    return F.log_softmax(logits, dim=-1)


def sequence_logprobs(
    model: Any, ids: th.Tensor, attention_mask: th.Tensor, with_entropy: bool = False, temperature: float = 1.0
) -> tuple[th.Tensor, th.Tensor | None]:
    """``logp[b, t] = log pi_T(ids[b, t] | ids[b, <t])`` for right-padded sequences (``logp[:, 0] = 0``).

    ``pi_T = softmax(logits / T)`` is the policy :func:`sample_actions` samples from at ``temperature = T``, so the
    PPO ratio compares the sampling policy with itself; verl (``dp_actor.py``: ``logits.div_(temperature)``) and TRL
    (``GRPOTrainer._get_per_token_logps_and_entropies``: ``logits.div_(self.temperature)``) do the same, and verl
    also scores the reference policy and the entropy at the rollout temperature. ``temperature = 0`` (greedy) has
    no softmax policy; it gives the untempered one (``T = 1``), as is usual.

    Args:
        model: A causal LM.
        ids: Token ids, shape ``(B, T)``.
        attention_mask: 1 on real tokens, shape ``(B, T)``.
        with_entropy: Also return the entropy of ``pi_T`` at each position.
        temperature: The sampling temperature, ``>= 0`` (0: the loss is taken at ``T = 1``).

    Returns:
        Log-probs, shape ``(B, T)``, and the per-position entropy of the policy (same shape) if requested.
    """
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    logits = model(input_ids=ids, attention_mask=attention_mask).logits[:, :-1, :]
    log_probs = _policy_log_probs(logits, temperature)
    taken = th.gather(log_probs, 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    logp = F.pad(taken, (1, 0))
    entropy = None
    if with_entropy:
        entropy = F.pad(-(log_probs.exp() * log_probs).sum(-1), (1, 0))
    return logp, entropy


@th.no_grad()
def answer_probabilities(
    model: Any,
    episodes: Sequence[Episode],
    prefix_ids: Sequence[int],
    answer_ids: Sequence[int],
    pad_id: int,
    temperature: float = 1.0,
    micro_batch_size: int = 8,
) -> list[th.Tensor]:
    """IGPO's probe: for each episode and each context end ``k``, ``P_k = exp(mean_j log pi(a_j | ctx_k, prefix, a_<j))``.

    ``ctx_k = ids[:context_ends[k]]``: the episode up to where its ``k``-th action begins. Teacher-forcing
    ``prefix + answer`` after each context separately would run every context through the model again (an episode
    of ``T`` turns, about ``T / 2`` times its length). Here each episode runs through the model once, keeping its
    KV cache; each context then reads its prefix of that cache: the probe tokens of all ``T`` contexts go in one
    batch whose attention mask opens the cache up to ``context_ends[k]`` only, at positions ``context_ends[k] + j``.
    Causal attention makes that the same computation as the separate forward passes.

    Args:
        model: A causal LM.
        episodes: Episodes with ``context_ends``.
        prefix_ids: The tokens before the answer (``<answer>``); at least one.
        answer_ids: The answer's tokens.
        pad_id: Padding id.
        temperature: Probabilities of ``softmax(logits / T)`` (as :func:`sequence_logprobs`; 0 reads ``T = 1``).
        micro_batch_size: Episodes per forward pass.

    Returns:
        Per episode, ``P_k`` for each of its context ends.
    """
    from transformers import DynamicCache

    if not prefix_ids:
        raise ValueError("the probe needs at least one token before the answer")
    device = next(model.parameters()).device
    probe = th.tensor([*prefix_ids, *answer_ids], dtype=th.long, device=device)
    first = len(prefix_ids) - 1  # the logits at the probe's position j predict its token j + 1
    cache_name = _cache_name(model)
    out: list[th.Tensor] = []
    for start in range(0, len(episodes), micro_batch_size):
        chunk = episodes[start : start + micro_batch_size]
        ids, attention, _ = pad_episodes(chunk, pad_id)
        width = ids.shape[1]
        # an explicit DynamicCache, so that every transformers version returns one (older ones return tuples otherwise)
        episodes_pass = model(input_ids=ids.to(device), attention_mask=attention.to(device), use_cache=True,
                              **{cache_name: DynamicCache()}, **_last_logits_only(model))  # fmt: skip
        cache = getattr(episodes_pass, cache_name)
        rows = [(i, end) for i, episode in enumerate(chunk) for end in episode.context_ends]
        cache.batch_select_indices(th.tensor([i for i, _ in rows], device=device))
        mask = th.zeros((len(rows), width + len(probe)), dtype=th.long, device=device)
        for row, (_, end) in enumerate(rows):
            mask[row, :end] = 1
        mask[:, width:] = 1
        ends = th.tensor([end for _, end in rows], device=device)
        positions = ends.unsqueeze(1) + th.arange(len(probe), device=device)
        logits = model(input_ids=probe.expand(len(rows), -1), attention_mask=mask, position_ids=positions,
                       use_cache=True, **{cache_name: cache}).logits  # fmt: skip
        log_probs = _policy_log_probs(logits[:, first : first + len(answer_ids)], temperature)
        taken = th.gather(log_probs, 2, probe[len(prefix_ids) :].expand(len(rows), -1).unsqueeze(-1)).squeeze(-1)
        probs = taken.mean(dim=1).exp().cpu()
        offsets = [0, *itertools.accumulate(len(episode.context_ends) for episode in chunk)]
        out.extend(probs[a:b] for a, b in itertools.pairwise(offsets))
    return out


class PromptTooLongError(ValueError):
    """An episode's prompt leaves no room for an action within ``max_length``."""


def check_prompt_fits(n_prompt: int, max_new_tokens: int, max_length: int) -> None:
    """Raise :class:`PromptTooLongError` unless a prompt of ``n_prompt`` tokens leaves room for one action.

    A prompt longer than ``max_length - max_new_tokens`` would give an episode of no turn (no action token to
    train on, and no turn for IGPO's or GiGPO's turn rewards).
    """
    if n_prompt + max_new_tokens > max_length:
        raise PromptTooLongError(
            f"the env's prompt is {n_prompt} tokens, but max_length={max_length} with max_new_tokens={max_new_tokens} "
            f"leaves room for prompts of at most {max_length - max_new_tokens} tokens; raise max_length to at least "
            f"{n_prompt + max_new_tokens} (the tiny model's positions follow max_length), lower max_new_tokens, "
            f"or give the env shorter prompts"
        )


@dataclass(frozen=True)
class ChatTurns:
    """An instruct model's chat template around the env's messages.

    The first observation (the task) is the first user message; each later observation is the next user
    message; the model's actions are the assistant's turns. The template's own text around the messages is env
    text (loss mask 0): the model is trained on its actions alone, as without a template.

    Attributes:
        prompt_prefix: Before the first user message (the template's default system message, if it has one).
        assistant_prefix: After a user message: its end and the start of the assistant's turn.
        user_prefix: After an action: the end of the assistant's turn and the start of the next user message.
        end_of_turn: The eos token's text when ``user_prefix`` opens with it (ChatML's ``<|im_end|>``), else ``""``:
            an action that ended with eos closed the turn itself, and the next user message leaves it out.
    """

    prompt_prefix: str
    assistant_prefix: str
    user_prefix: str
    end_of_turn: str = ""

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> ChatTurns:
        """Read the three pieces off the tokenizer's template, rendered around placeholder messages.

        Raises:
            ValueError: If the tokenizer has no chat template, or one that does not render messages in order.
        """
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; use chat_format=False")
        first, action, second = "PALAESTRA_FIRST_MESSAGE", "PALAESTRA_ACTION", "PALAESTRA_SECOND_MESSAGE"
        messages = [{"role": "user", "content": first}, {"role": "assistant", "content": action},
                    {"role": "user", "content": second}]  # fmt: skip
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if not (0 <= text.find(first) < text.find(action) < text.find(second)):
            raise ValueError("the tokenizer's chat template does not render the user and assistant messages in order")
        prompt_prefix, rest = text.split(first, 1)
        assistant_prefix, rest = rest.split(action, 1)
        user_prefix, final_assistant_prefix = rest.split(second, 1)
        if assistant_prefix != final_assistant_prefix:
            raise ValueError("the tokenizer's chat template opens the assistant's turns in two different ways")
        eos = tokenizer.eos_token or ""
        return cls(prompt_prefix, assistant_prefix, user_prefix, eos if eos and user_prefix.startswith(eos) else "")


def prompt_ids(tokenizer: Any, observation: str, chat: ChatTurns | None = None) -> list[int]:
    """The first observation's ids: preceded by the bos token when the tokenizer has one, or as a chat's first turn."""
    if chat is not None:  # the template writes its own start tokens
        return encode_text(tokenizer, chat.prompt_prefix + observation + chat.assistant_prefix)
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    return bos + encode_text(tokenizer, observation)


def reply_ids(tokenizer: Any, observation: str, chat: ChatTurns | None = None, history: Sequence[int] = ()) -> list[int]:
    """A later observation's ids: the text itself, or in a chat the next user turn and the assistant's opening.

    ``history`` is the episode's ids so far: when they end with eos, the model closed its turn, and the template's
    end-of-turn text is not written twice.
    """
    if chat is None:
        return encode_text(tokenizer, observation)
    prefix = chat.user_prefix
    if chat.end_of_turn and len(history) and history[-1] == tokenizer.eos_token_id:
        prefix = prefix[len(chat.end_of_turn) :]
    return encode_text(tokenizer, prefix + observation + chat.assistant_prefix)


def collect_episodes(
    model: Any,
    tokenizer: Any,
    envs: Sequence[gym.Env],
    seeds: Sequence[int | None],
    max_new_tokens: int,
    max_length: int,
    temperature: float = 1.0,
    generator: th.Generator | None = None,
    reset_options: dict[str, Any] | None = None,
    chat: ChatTurns | None = None,
) -> list[Episode]:
    """Run one episode in each env, turn-synchronously: every turn, all unfinished episodes sample in one batch.

    To form a GRPO group, pass G copies of an env and the same seed G times (the same question); to evaluate,
    pass different seeds.

    Args:
        model: The causal LM policy.
        tokenizer: Its tokenizer.
        envs: Env instances with Text spaces (one episode each).
        seeds: ``reset`` seed per env.
        max_new_tokens: Longest action, in tokens.
        max_length: Longest sequence; an episode whose next context would not fit is truncated.
        temperature: Sampling temperature (0: greedy).
        generator: Seeded torch generator.
        reset_options: Passed to every ``reset``.
        chat: The chat template's turns for an instruct model (:class:`ChatTurns`), or None for plain text.

    Returns:
        The episodes, in env order.

    Raises:
        PromptTooLongError: (a ``ValueError``) when a prompt is longer than ``max_length - max_new_tokens`` tokens.
    """
    if len(envs) != len(seeds):
        raise ValueError(f"need one seed per env, got {len(seeds)} seeds for {len(envs)} envs")
    stop = StopChecker(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    episodes = []
    for env, seed in zip(envs, seeds, strict=True):
        check_text_env(env)
        observation, info = env.reset(seed=seed, options=reset_options)
        ids = prompt_ids(tokenizer, observation, chat)
        check_prompt_fits(len(ids), max_new_tokens, max_length)  # else a 0-turn episode
        episodes.append(Episode(ids=ids, turn_index=[-1] * len(ids), observations=[observation], infos=[info]))
    while True:
        active = [i for i, episode in enumerate(episodes) if not episode.done]
        if not active:
            return episodes
        actions = sample_actions(
            model, [episodes[i].ids for i in active], max_new_tokens, stop, pad_id, temperature, generator
        )
        for i, action_ids in zip(active, actions, strict=True):
            episode, env = episodes[i], envs[i]
            turn = episode.n_turns
            episode.context_ends.append(len(episode.ids))
            episode.anchors.append(_anchor(episode.infos[-1], episode.observations[-1]))
            episode.ids.extend(action_ids)
            episode.turn_index.extend([turn] * len(action_ids))
            text = _to_action(tokenizer.decode(action_ids, skip_special_tokens=True), env.action_space)  # type: ignore[arg-type]
            observation, reward, terminated, truncated, info = env.step(text)
            episode.actions.append(text)
            episode.rewards.append(float(reward))
            episode.observations.append(observation)
            episode.infos.append(info)
            episode.terminated, episode.truncated = bool(terminated), bool(truncated)
            if not episode.done:
                obs_ids = reply_ids(tokenizer, observation, chat, episode.ids)
                episode.ids.extend(obs_ids)
                episode.turn_index.extend([-1] * len(obs_ids))
                if len(episode.ids) + max_new_tokens > max_length:
                    episode.truncated = True  # the token budget ends the episode, like a time limit


def pad_episodes(episodes: Sequence[Episode], pad_id: int) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Right-pad episodes into ``ids``, ``attention_mask`` and ``turn_index`` tensors of shape ``(B, T)``."""
    width = max(len(e.ids) for e in episodes)
    ids = th.full((len(episodes), width), pad_id, dtype=th.long)
    attention = th.zeros((len(episodes), width), dtype=th.long)
    turn = th.full((len(episodes), width), -1, dtype=th.long)
    for row, episode in enumerate(episodes):
        n = len(episode.ids)
        ids[row, :n] = th.tensor(episode.ids)
        attention[row, :n] = 1
        turn[row, :n] = th.tensor(episode.turn_index)
    return ids, attention, turn


def episode_metrics(episode: Episode) -> dict[str, float]:
    """EM, F1, searches, invalid turns and gold-document recall of one finished episode (from the env's infos)."""
    final = episode.infos[-1]
    actions = [info.get("action_type") for info in episode.infos[1:]]
    gold = set(episode.infos[0].get("gold_doc_ids", ()) or ())
    retrieved = {doc for info in episode.infos[1:] for doc in info.get("retrieved_doc_ids", ())}
    return {
        "em": float(final.get("em", final.get("is_success", episode.episode_return > 0))),
        "f1": float(final.get("f1", float(episode.episode_return > 0))),
        "return": episode.episode_return,
        "turns": float(episode.n_turns),
        "searches": float(sum(a == "search" for a in actions)),
        "invalid_rate": float(np.mean([a == "invalid" for a in actions])) if actions else 0.0,
        "gold_doc_recall": len(gold & retrieved) / len(gold) if gold else float("nan"),
    }
