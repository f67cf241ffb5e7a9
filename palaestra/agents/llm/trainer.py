"""One multi-turn RL trainer for LLM agents on palaestra text envs: SFT warm start, then GRPO, IGPO or GiGPO.

The trainer samples groups of G episodes per question (G env copies reset with the same seed), computes one of
the advantage estimators of :mod:`palaestra.agents.llm.advantages` per group, and minimises the token-level (or
turn-level) clipped surrogate of :mod:`palaestra.agents.llm.losses`, optionally with a k3 KL to the frozen SFT
model and EPO's entropy regulariser. Before RL it imitates the env's oracle (``info["oracle_action"]``) with
noisy-expert recoveries: with probability ``sft_noise`` the expert takes a wrong search first (kept in the context,
excluded from the loss) and then recovers.

Papers: GRPO (arXiv:2402.03300), IGPO (arXiv:2510.14967), GiGPO (arXiv:2505.10978), ST-PPO (turn-level ratios),
EPO (entropy smoothing), OTC (arXiv:2504.14870), EMPG (arXiv:2509.09265), DAPO (clip-higher, token-mean).

Reference code read for understanding (not copied): GuoqingWang1/IGPO, langfengQ/verl-agent (GiGPO),
WujiangXu/EPO, PeterGriffinJin/Search-R1.

Differences from the papers:

* Scale: the tiny model (byte-level BPE or word-level tokenizer) and CPU budgets are ours; the papers train
  1.5B-7B models on GPUs.
* IGPO's probe appends ``<answer> gold </answer>`` (first gold alias) to each context, without the paper's short
  "enough information" sentence, and uses the paper's turn-level normalisation, not the released code's
  token-level one.
* The GRPO outcome and IGPO/GiGPO rewards are the env's rewards (EM by default); IGPO's -2 format penalty is not
  used (invalid turns are left to the env's ``invalid_action_penalty``).
* OTC applies to the outcome reward used by GRPO and IGPO (GiGPO keeps the env's step rewards); the optimal call count
  is the group minimum only (no running minimum across training).
* EMPG normalises entropies over the whole update batch; ST-PPO's clipping correction and EPO's smoothing penalty
  use the forms stated in :mod:`palaestra.agents.llm.losses`.
* No critic: ST-PPO's turn-level ratio is combined with group advantages (the paper uses PPO with GAE).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from palaestra.agents.llm.advantages import (
    broadcast_turn_values,
    empg_modulate,
    gigpo_advantages,
    grpo_advantages,
    igpo_advantages,
    igpo_turn_rewards,
    otc_optimal_calls,
    otc_reward,
)
from palaestra.agents.llm.losses import (
    AGGREGATIONS,
    aggregate,
    clipped_surrogate_loss,
    clipping_triggered_weights,
    epo_entropy_loss,
    epo_phase_weight,
    k3_kl,
    llds_loss,
    turn_log_ratio,
    turn_mean,
)
from palaestra.agents.llm.models import load_model, make_tiny_model, quiet_transformers, resolve_model
from palaestra.agents.llm.rollout import (
    ChatTurns,
    Episode,
    PromptTooLongError,
    StopChecker,
    answer_probabilities,
    check_prompt_fits,
    check_text_env,
    collect_episodes,
    encode_text,
    episode_metrics,
    pad_episodes,
    prompt_ids,
    reply_ids,
    sample_actions,
    sequence_logprobs,
)

__all__ = ["ADVANTAGES", "GRPO", "IGPO", "GiGPO", "MultiTurnAgent", "build_gigpo", "build_grpo", "build_igpo"]

#: Advantage estimators the trainer knows.
ADVANTAGES = ("grpo", "igpo", "gigpo")
#: Privileged infos requested from the env, tried in order: ToolSearch-v0's names, then TextWorld-v0's (with its
#: GiGPO anchor, off by default), then the expert's commands alone.
_INFO_REQUESTS = (("answers", "gold_doc_ids", "oracle_action"), ("policy_commands", "anchor"), ("policy_commands",))
_AGENT_FILE = "agent.json"


class MultiTurnAgent:
    """Multi-turn LLM agent trained by SFT on oracle trajectories, then group-relative policy optimisation.

    ``learn(total_timesteps)`` runs ``sft_steps`` SFT updates once, then ``total_timesteps`` RL updates; each RL
    update samples ``n_prompts`` questions x ``group_size`` episodes.

    Args:
        env: A palaestra env id with Text spaces (e.g. ``"ToolSearch-v0"``) or a zero-argument env factory.
        env_kwargs: Keyword arguments of ``gym.make``. The trainer also requests the privileged infos
            ``answers``, ``gold_doc_ids`` and ``oracle_action`` when the env accepts ``request_infos``.
        model: ``"tiny"`` (build a small Qwen2 model with a tokenizer fitted to the env's texts: byte-level BPE
            learnt from the training split, or ``tiny_model_kwargs={"tokenizer": "word"}`` for word-level over every
            evaluated split), a name of :data:`~palaestra.agents.llm.models.NAMED_MODELS` (``"smollm2-135m-instruct"``:
            a pretrained model a registry package ships, converted on first use) or the path of a local Hugging Face
            model directory.
        advantage: ``"grpo"``, ``"igpo"`` or ``"gigpo"``.
        group_size: Rollouts per question, ``G >= 2``.
        n_prompts: Questions per RL update.
        n_epochs: Passes over each batch (1: the ratio is exactly 1, on-policy REINFORCE with a group baseline).
        batch_size: Episodes per optimiser step (``None``: the whole batch).
        micro_batch_size: Episodes per forward pass (gradient accumulation; memory only).
        learning_rate: RL AdamW learning rate.
        max_grad_norm: Gradient-norm clip.
        clip_range: PPO ``eps`` (``eps_low`` with clip-higher).
        clip_range_high: DAPO clip-higher ``eps_high`` (``None``: symmetric).
        aggregation: ``"token-mean"`` or ``"seq-mean-token-mean"``.
        ratio_level: ``"token"`` (PPO/GRPO) or ``"turn"`` (Turn-PPO / ST-PPO geometric-mean turn ratio).
        clipping_correction: Multiply each token's surrogate by ST-PPO-style off-policy weights.
        kl_coef: Weight of the k3 KL to the frozen post-SFT model (0: no reference model).
        llds_coef: Weight of the LLDS likelihood-preserving penalty (0: off; the LLDS paper's lambda is about 0.1).
            It acts only from the second minibatch or epoch of an update (``n_epochs > 1`` or ``batch_size``).
        norm_adv_by_std: Divide group advantages by the std (``False``: Dr. GRPO / GiGPO ``mean_norm``).
        gamma: Turn discount (IGPO default 1.0, GiGPO default 0.95).
        omega: GiGPO step-advantage weight.
        otc: Replace the outcome reward by OTC-GRPO's tool-efficiency reward (GRPO/IGPO outcome).
        otc_c: OTC's smoothing constant.
        empg: Modulate turn advantages with EMPG.
        empg_kappa: EMPG confidence sharpness (also used for the future bonus).
        empg_zeta: EMPG future-clarity weight.
        ent_coef: EPO ``c_H`` (0: no entropy term).
        epo_smooth_coef: EPO ``c_s``.
        epo_kappa_low: EPO lower band factor.
        epo_kappa_high: EPO upper band factor.
        temperature: Sampling temperature for RL rollouts. The old, new and reference log-probs, the entropies and
            IGPO's answer probabilities are those of the sampling policy ``softmax(logits / temperature)``, as in
            verl; 0 samples greedily and takes them at temperature 1. SFT's cross-entropy is at temperature 1.
        max_new_tokens: Longest action in tokens.
        max_length: Longest episode sequence in tokens.
        sft_steps: SFT updates before RL (0: none).
        sft_episodes: Oracle episodes collected for SFT.
        sft_batch_size: Episodes per SFT update.
        sft_learning_rate: SFT AdamW learning rate.
        sft_noise: Probability of a noisy expert turn (then recovery).
        tiny_model_kwargs: Keyword arguments of :func:`~palaestra.agents.llm.models.make_tiny_model`.
        chat_format: Put the episode in the tokenizer's chat template (:class:`~palaestra.agents.llm.rollout.ChatTurns`:
            the task and each observation as user messages, the actions as the assistant's turns); ``None``: when
            the tokenizer has one (instruct models such as ``smollm2-135m-instruct``; the tiny model has none).
        eval_splits: Reset-option splits evaluated by :meth:`evaluate_splits` (``None`` entries: the env's default).
        eval_questions: Questions per split in evaluation.
        eval_freq: Evaluate every this many RL updates (0: never during ``learn``).
        checkpoint_freq: Save every this many RL updates into ``checkpoint_dir`` (0: never).
        checkpoint_dir: Where periodic checkpoints go.
        seed: Seed of the question sampler, sampling generator and model initialisation.
        device: Torch device.
        dtype: Torch dtype name for the model weights (e.g. ``"bfloat16"`` on a GPU); ``None`` keeps the saved one.
        verbose: 1 prints the log tables.
    """

    advantage_default = "grpo"

    def __init__(
        self,
        env: str | Callable[[], gym.Env],
        env_kwargs: dict[str, Any] | None = None,
        model: str = "tiny",
        advantage: str | None = None,
        group_size: int = 8,
        n_prompts: int = 4,
        n_epochs: int = 1,
        batch_size: int | None = None,
        micro_batch_size: int = 8,
        learning_rate: float = 1e-3,
        max_grad_norm: float = 1.0,
        clip_range: float = 0.2,
        clip_range_high: float | None = None,
        aggregation: str = "token-mean",
        ratio_level: str = "token",
        clipping_correction: bool = False,
        kl_coef: float = 0.0,
        llds_coef: float = 0.0,
        norm_adv_by_std: bool = True,
        gamma: float | None = None,
        omega: float = 1.0,
        otc: bool = False,
        otc_c: float = 1.0,
        empg: bool = False,
        empg_kappa: float = 1.0,
        empg_zeta: float = 0.05,
        ent_coef: float = 0.0,
        epo_smooth_coef: float = 1.0,
        epo_kappa_low: float = 0.0,
        epo_kappa_high: float = 2.0,
        temperature: float = 1.0,
        max_new_tokens: int = 16,
        max_length: int = 1024,
        sft_steps: int = 200,
        sft_episodes: int = 256,
        sft_batch_size: int = 16,
        sft_learning_rate: float = 3e-3,
        sft_noise: float = 0.1,
        tiny_model_kwargs: dict[str, Any] | None = None,
        chat_format: bool | None = None,
        eval_splits: Sequence[str | None] = ("dev", "hot"),
        eval_questions: int = 32,
        eval_freq: int = 0,
        checkpoint_freq: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        device: str = "cpu",
        dtype: str | None = None,
        verbose: int = 0,
    ) -> None:
        advantage = self.advantage_default if advantage is None else advantage
        # --- validate every argument before building anything (SB3's order) ---
        if advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {ADVANTAGES}, got {advantage!r}")
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
            raise ValueError(f"group_size must be an integer >= 2 (a group baseline needs two rollouts), got {group_size!r}")
        for name, value in (
            ("n_prompts", n_prompts),
            ("n_epochs", n_epochs),
            ("micro_batch_size", micro_batch_size),
            ("max_new_tokens", max_new_tokens),
            ("max_length", max_length),
            ("sft_episodes", sft_episodes),
            ("sft_batch_size", sft_batch_size),
            ("eval_questions", eval_questions),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, value in (("sft_steps", sft_steps), ("eval_freq", eval_freq), ("checkpoint_freq", checkpoint_freq)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be None or >= 1, got {batch_size!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if ratio_level not in ("token", "turn"):
            raise ValueError(f"ratio_level must be 'token' or 'turn', got {ratio_level!r}")
        positive: tuple[tuple[str, float], ...] = (
            ("learning_rate", learning_rate),
            ("sft_learning_rate", sft_learning_rate),
            ("max_grad_norm", max_grad_norm),
            ("clip_range", clip_range),
        )
        for name, number in positive:
            if not number > 0:
                raise ValueError(f"{name} must be > 0, got {number!r}")
        non_negative: tuple[tuple[str, float], ...] = (
            ("kl_coef", kl_coef),
            ("llds_coef", llds_coef),
            ("ent_coef", ent_coef),
            ("temperature", temperature),
        )
        for name, number in non_negative:
            if not number >= 0:
                raise ValueError(f"{name} must be >= 0, got {number!r}")
        if gamma is not None and not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma!r}")
        if not 0.0 <= sft_noise < 1.0:
            raise ValueError(f"sft_noise must lie in [0, 1), got {sft_noise!r}")
        if checkpoint_freq and checkpoint_dir is None:
            raise ValueError("checkpoint_freq > 0 needs a checkpoint_dir")

        self.env_id, self.env_kwargs = env, dict(env_kwargs or {})
        self.model_name = str(model)
        self.advantage = advantage
        self.group_size, self.n_prompts, self.n_epochs = group_size, n_prompts, n_epochs
        self.batch_size, self.micro_batch_size = batch_size, micro_batch_size
        self.learning_rate, self.max_grad_norm = learning_rate, max_grad_norm
        self.clip_range, self.clip_range_high, self.aggregation = clip_range, clip_range_high, aggregation
        self.ratio_level, self.clipping_correction, self.kl_coef = ratio_level, clipping_correction, kl_coef
        self.norm_adv_by_std, self.llds_coef = norm_adv_by_std, llds_coef
        self.gamma = (1.0 if advantage == "igpo" else 0.95) if gamma is None else gamma
        self.omega, self.otc, self.otc_c = omega, otc, otc_c
        self.empg, self.empg_kappa, self.empg_zeta = empg, empg_kappa, empg_zeta
        self.ent_coef, self.epo_smooth_coef = ent_coef, epo_smooth_coef
        self.epo_kappa_low, self.epo_kappa_high = epo_kappa_low, epo_kappa_high
        self.temperature, self.max_new_tokens, self.max_length = temperature, max_new_tokens, max_length
        self.sft_steps, self.sft_episodes, self.sft_batch_size = sft_steps, sft_episodes, sft_batch_size
        self.sft_learning_rate, self.sft_noise = sft_learning_rate, sft_noise
        self.chat_format = chat_format
        self.tiny_model_kwargs = dict(tiny_model_kwargs or {})
        self.eval_splits, self.eval_questions, self.eval_freq = tuple(eval_splits), eval_questions, eval_freq
        self.checkpoint_freq, self.checkpoint_dir = checkpoint_freq, checkpoint_dir
        if dtype is not None and not isinstance(getattr(th, str(dtype), None), th.dtype):
            raise ValueError(f"dtype must name a torch dtype such as 'bfloat16', got {dtype!r}")
        self.seed, self.device, self.dtype, self.verbose = seed, device, dtype, verbose

        self.rng = np.random.default_rng(seed)
        self.generator = th.Generator().manual_seed(seed)
        self.sft_done = False
        self.num_updates = 0
        self.turn_entropy_sum = np.zeros(0)
        self.turn_entropy_count = np.zeros(0)
        self.logger: Any = None
        self._last_stats: dict[str, float] = {}

        probe = self._make_env()
        check_text_env(probe.unwrapped)
        if advantage == "igpo" and not probe.reset(seed=seed)[1].get("answers"):
            name = env if isinstance(env, str) else "this env"
            raise ValueError(
                f"IGPO needs each question's gold answer in the reset info (info['answers'], as ToolSearch-v0 gives), "
                f"and {name} gives none; use GRPO or GiGPO (--algo grpo or gigpo)"
            )
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        self._envs: list[gym.Env] = [probe]
        self._setup_model(probe)

    # --- construction -----------------------------------------------------------------------------------------------
    def _make_env(self) -> gym.Env:
        if callable(self.env_id):
            return self.env_id()
        kwargs = dict(self.env_kwargs)
        asked = kwargs.pop("request_infos", ())
        asked = (asked,) if isinstance(asked, str) else tuple(asked or ())
        for request in _INFO_REQUESTS:  # what the user asked for, plus what SFT and GiGPO need
            try:
                return gym.make(self.env_id, request_infos=tuple(dict.fromkeys((*asked, *request))), **kwargs)
            except (TypeError, ValueError):  # the env takes no request_infos, or knows other info names
                continue
        return gym.make(self.env_id, **self.env_kwargs)

    def _env_copies(self, n: int) -> list[gym.Env]:
        while len(self._envs) < n:
            self._envs.append(self._make_env())
        return self._envs[:n]

    def _setup_model(self, env: gym.Env) -> None:
        if self.model_name == "tiny":
            directory = Path(tempfile.mkdtemp(prefix="palaestra-tiny-"))
            kwargs: dict[str, Any] = {"max_position_embeddings": self.max_length, "seed": self.seed, "tokenizer": "bpe"}
            kwargs |= self.tiny_model_kwargs
            # BPE learns from the training split's texts alone, so a held-out world is made of pieces it has seen;
            # the word-level baseline gets every evaluated split's words (else they would all be <unk>).
            splits = (None,) if kwargs["tokenizer"] == "bpe" else (None, *self.eval_splits)
            make_tiny_model(directory, self._vocabulary_texts(env, splits), **kwargs)
            self.model_name = str(directory)
        else:
            self.model_name = resolve_model(self.model_name)  # a named model converts once into palaestra's cache
        dtype = None if self.dtype is None else getattr(th, self.dtype)
        self.model, self.tokenizer = load_model(self.model_name, device=self.device, dtype=dtype)
        self.pad_id = self.tokenizer.pad_token_id
        self.ref_model = None
        use_chat = bool(getattr(self.tokenizer, "chat_template", None)) if self.chat_format is None else self.chat_format
        self.chat = ChatTurns.from_tokenizer(self.tokenizer) if use_chat else None

    def _vocabulary_texts(self, env: gym.Env, splits: Sequence[str | None]) -> list[str]:
        """Texts the tiny tokenizer is fitted to: oracle episodes of ``splits`` and the documents of their worlds."""
        texts: list[str] = []
        worlds: dict[int, Any] = {}
        for split in dict.fromkeys(splits):
            options = None if split is None else {"split": split}
            for seed in range(self.sft_episodes if split is None else self.eval_questions):
                try:
                    episode = self._oracle_text_episode(env, 10_000 + seed, options)
                except ValueError:
                    break  # the env has no such split
                texts.extend(episode)
                # A corpus-backed env (ToolSearch-v0) exposes the corpus of the current episode (the "hot" split
                # has its own world): its documents are the words a search can return.
                for world in (getattr(env.unwrapped, "world", None), getattr(env.unwrapped, "_episode_world", None)):
                    if world is not None and id(world) not in worlds:
                        worlds[id(world)] = world
        for world in worlds.values():
            texts.extend(f"{getattr(d, 'title', '')} {getattr(d, 'text', '')}" for d in getattr(world, "documents", ()))
        return texts

    def _oracle_text_episode(self, env: gym.Env, seed: int, options: dict[str, Any] | None) -> list[str]:
        observation, info = env.reset(seed=seed, options=options)
        texts = [observation, *info.get("answers", ())]
        if _expert_action(info) is None:
            return texts
        texts.append(env.step("no tag")[0])  # the feedback to an invalid turn
        observation, info = env.reset(seed=seed, options=options)
        done = False
        while not done and (action := _expert_action(info)) is not None:
            observation, _, terminated, truncated, info = env.step(action)
            texts.extend([action, observation])
            done = terminated or truncated
        return texts

    # --- SFT warm start ---------------------------------------------------------------------------------------------
    def _oracle_episode(self, env: gym.Env, seed: int) -> Episode:
        """One expert episode as a token sequence; noisy expert turns are context only (``turn_index`` -1)."""
        observation, info = env.reset(seed=seed)
        if _expert_action(info) is None:
            raise ValueError(
                "the SFT warm start needs an expert in the env's info (info['oracle_action'] as ToolSearch-v0 gives, or "
                "info['policy_commands'] as TextWorld-v0 gives); pass sft_steps=0 otherwise"
            )
        stop = StopChecker(self.tokenizer)
        ids = prompt_ids(self.tokenizer, observation, self.chat)
        check_prompt_fits(len(ids), self.max_new_tokens, self.max_length)
        episode = Episode(ids=ids, turn_index=[-1] * len(ids), observations=[observation], infos=[info])
        vocabulary = _noise_words(self.tokenizer)
        turn = 0
        while not episode.done:
            expert = _expert_action(info)
            assert expert is not None  # checked at reset and before each turn below
            noisy = self.rng.random() < self.sft_noise
            if noisy:  # a wrong turn the expert then recovers from
                word = vocabulary[int(self.rng.integers(len(vocabulary)))]
                action = f"<search> {word} </search>" if "<search>" in expert or "<answer>" in expert else word
            else:
                action = expert
            action_ids = encode_text(self.tokenizer, action)
            if self.tokenizer.eos_token_id is not None and not (action_ids and stop(action_ids)):
                action_ids.append(self.tokenizer.eos_token_id)  # tag-free commands end with eos, as rollouts stop
            episode.context_ends.append(len(episode.ids))
            episode.ids.extend(action_ids)
            episode.turn_index.extend([-1 if noisy else turn] * len(action_ids))
            observation, reward, terminated, truncated, info = env.step(action)
            episode.actions.append(action)
            episode.rewards.append(float(reward))
            episode.terminated, episode.truncated = bool(terminated), bool(truncated)
            if not episode.done:
                obs_ids = reply_ids(self.tokenizer, observation, self.chat, episode.ids)
                episode.ids.extend(obs_ids)
                episode.turn_index.extend([-1] * len(obs_ids))
                if _expert_action(info) is None or len(episode.ids) + self.max_new_tokens > self.max_length:
                    episode.truncated = True
            turn += 1
        return episode

    def sft(self, n_steps: int | None = None, progress_bar: bool = False) -> dict[str, float]:
        """Imitate the oracle: cross-entropy on expert action tokens only. Returns the last loss and token accuracy."""
        n_steps = self.sft_steps if n_steps is None else n_steps
        env = self._env_copies(1)[0]
        data = [self._oracle_episode(env, int(self.rng.integers(2**31))) for _ in range(self.sft_episodes)]
        optimizer = th.optim.AdamW(self.model.parameters(), lr=self.sft_learning_rate)
        self.model.train()
        stats: dict[str, float] = {}
        for step in _progress(range(n_steps), progress_bar, "SFT"):
            rows = self.rng.choice(len(data), size=min(self.sft_batch_size, len(data)), replace=False)
            batch = [data[int(r)] for r in rows]
            ids, attention, turn = pad_episodes(batch, self.pad_id)
            logp, _ = sequence_logprobs(self.model, ids.to(self.device), attention.to(self.device))
            mask = (turn >= 0).to(self.device)
            loss = -aggregate(logp, mask, "token-mean")
            optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            optimizer.step()
            stats = {"sft/loss": float(loss.detach()), "sft/token_prob": float(aggregate(logp.detach().exp(), mask))}
            if self.logger is not None and (step % 20 == 0 or step == n_steps - 1):
                for key, value in stats.items():
                    self.logger.record(key, value)
                self.logger.dump(step)
        self.model.eval()
        self.sft_done = True
        return stats

    # --- advantages -------------------------------------------------------------------------------------------------
    def _outcomes(self, group: Sequence[Episode]) -> th.Tensor:
        returns = [e.episode_return for e in group]
        if not self.otc:
            return th.tensor(returns, dtype=th.float32)
        correct = [episode_metrics(e)["em"] > 0 for e in group]
        calls = [int(episode_metrics(e)["searches"]) for e in group]
        optimum = otc_optimal_calls(calls, correct)  # OTC-GRPO: fewest calls among correct rollouts
        return th.tensor([otc_reward(c, m, optimum, c=self.otc_c) for c, m in zip(correct, calls, strict=True)])

    @th.no_grad()
    def _answer_probs(self, group: Sequence[Episode], n_turns: int) -> th.Tensor:
        """IGPO probe: ``P_k`` = geometric-mean probability of the gold answer's tokens after context ``k``."""
        gold = group[0].infos[0].get("answers")
        if not gold:
            raise ValueError("IGPO needs the gold answer: the env must put it in the reset info as info['answers']")
        # at the rollout temperature, as the authors' probe (verl's compute_log_prob) reads it
        per_episode = answer_probabilities(
            self.model,
            group,
            encode_text(self.tokenizer, "<answer>"),
            encode_text(self.tokenizer, f" {gold[0]}"),
            self.pad_id,
            self.temperature,
            self.micro_batch_size,
        )
        probs = th.zeros(len(group), n_turns + 1)
        for i, episode_probs in enumerate(per_episode):
            probs[i, : len(episode_probs)] = episode_probs
        return probs

    def _group_turn_advantages(self, group: Sequence[Episode]) -> tuple[th.Tensor, bool]:
        n_turns = max(e.n_turns for e in group)
        turn_mask = th.tensor([[k < e.n_turns for k in range(n_turns)] for e in group])
        outcome = self._outcomes(group)
        zero_variance = bool((outcome == outcome[0]).all())
        if self.advantage == "grpo":
            adv = grpo_advantages(outcome, self.norm_adv_by_std).unsqueeze(1).expand(-1, n_turns)
        elif self.advantage == "igpo":
            rewards = igpo_turn_rewards(self._answer_probs(group, n_turns), outcome, turn_mask)
            adv = igpo_advantages(rewards, turn_mask, self.gamma, self.norm_adv_by_std)
        else:
            step_rewards = th.tensor([[e.rewards[k] if k < e.n_turns else 0.0 for k in range(n_turns)] for e in group])
            anchors = [e.anchors for e in group]
            adv = gigpo_advantages(step_rewards, turn_mask, anchors, self.gamma, self.omega, self.norm_adv_by_std)
        return th.where(turn_mask, adv, th.zeros_like(adv)), zero_variance

    # --- RL ---------------------------------------------------------------------------------------------------------
    def collect(self) -> tuple[list[list[Episode]], float]:
        """Sample ``n_prompts`` groups of ``group_size`` episodes; returns the groups and the generation time."""
        envs = self._env_copies(self.n_prompts * self.group_size)
        seeds = [int(s) for s in self.rng.integers(2**31, size=self.n_prompts) for _ in range(self.group_size)]
        start = time.perf_counter()
        episodes = collect_episodes(
            self.model, self.tokenizer, envs, seeds, self.max_new_tokens, self.max_length, self.temperature, self.generator,
            chat=self.chat,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        groups = [episodes[i : i + self.group_size] for i in range(0, len(episodes), self.group_size)]
        return groups, elapsed

    def train_step(self) -> dict[str, float]:
        """One RL update: sample groups, compute advantages, minimise the clipped surrogate. Returns the log dict."""
        step_start = time.perf_counter()
        groups, gen_time = self.collect()
        episodes = [e for g in groups for e in g]
        n_turns = max(e.n_turns for e in episodes)
        turn_adv = th.zeros(len(episodes), n_turns)
        zero_variance = 0
        for gi, group in enumerate(groups):
            adv, collapsed = self._group_turn_advantages(group)
            turn_adv[gi * self.group_size : (gi + 1) * self.group_size, : adv.shape[1]] = adv
            zero_variance += collapsed
        ids, attention, turn = pad_episodes(episodes, self.pad_id)
        ids, attention, turn = ids.to(self.device), attention.to(self.device), turn.to(self.device)
        mask = turn >= 0
        need_entropy = self.empg or self.ent_coef > 0
        start = time.perf_counter()
        old_logp, old_entropy = self._logprobs(self.model, ids, attention, need_entropy)
        if self.empg:
            turn_mask = th.tensor([[k < e.n_turns for k in range(n_turns)] for e in episodes])
            step_entropy = turn_mean(old_entropy.cpu(), turn.cpu(), n_turns)
            turn_adv = empg_modulate(turn_adv, step_entropy, turn_mask, self.empg_kappa, self.empg_kappa, self.empg_zeta)
        advantages = broadcast_turn_values(turn_adv.to(self.device), turn)
        ref_logp = None
        if self.kl_coef > 0:
            if self.ref_model is None:
                self.ref_model = copy.deepcopy(self.model).eval()
            ref_logp, _ = self._logprobs(self.ref_model, ids, attention, False)
        history = self._turn_entropy_history(n_turns).to(self.device)
        stats = self._update(ids, attention, turn, mask, advantages, old_logp, ref_logp, history)
        train_time = time.perf_counter() - start
        if old_entropy is not None:
            self._record_turn_entropy(old_entropy.cpu(), turn.cpu(), n_turns)
        metrics = [episode_metrics(e) for e in episodes]
        n_generated = sum(int(mask[i].sum()) for i in range(len(episodes)))
        self.num_updates += 1
        stats.update(
            {
                "rollout/ep_rew_mean": float(np.mean([e.episode_return for e in episodes])),
                "rollout/em": float(np.mean([m["em"] for m in metrics])),
                "rollout/turns": float(np.mean([m["turns"] for m in metrics])),
                "rollout/searches": float(np.mean([m["searches"] for m in metrics])),
                "rollout/invalid_rate": float(np.mean([m["invalid_rate"] for m in metrics])),
                "rollout/zero_variance_groups": zero_variance / len(groups),
                "time/gen_tokens_per_s": n_generated / max(gen_time, 1e-9),
                "time/train_tokens_per_s": float(attention.sum()) * (self.n_epochs + 1) / max(train_time, 1e-9),
                "time/gen_s": gen_time,
                "time/train_s": train_time,
                "time/step_s": time.perf_counter() - step_start,
            }
        )
        self._last_stats = stats
        return stats

    def _logprobs(self, model: Any, ids: th.Tensor, attention: th.Tensor, with_entropy: bool) -> tuple[Any, Any]:
        logps, entropies = [], []
        with th.no_grad():
            for start in range(0, ids.shape[0], self.micro_batch_size):
                end = start + self.micro_batch_size
                logp, entropy = sequence_logprobs(model, ids[start:end], attention[start:end], with_entropy, self.temperature)
                logps.append(logp)
                entropies.append(entropy)
        return th.cat(logps), (th.cat(entropies) if with_entropy else None)  # type: ignore[arg-type]

    def _turn_entropy_history(self, n_turns: int) -> th.Tensor:
        history = th.full((n_turns,), float("nan"))
        known = min(n_turns, len(self.turn_entropy_sum))
        for k in range(known):
            if self.turn_entropy_count[k] > 0:
                history[k] = self.turn_entropy_sum[k] / self.turn_entropy_count[k]
        return history

    def _record_turn_entropy(self, entropy: th.Tensor, turn: th.Tensor, n_turns: int) -> None:
        """EPO's per-turn-index cumulative mean entropy ``H_bar_k`` over past training steps."""
        if len(self.turn_entropy_sum) < n_turns:
            self.turn_entropy_sum = np.pad(self.turn_entropy_sum, (0, n_turns - len(self.turn_entropy_sum)))
            self.turn_entropy_count = np.pad(self.turn_entropy_count, (0, n_turns - len(self.turn_entropy_count)))
        for k in range(n_turns):
            selected = entropy[turn == k]
            if selected.numel():
                self.turn_entropy_sum[k] += float(selected.mean())
                self.turn_entropy_count[k] += 1

    def _update(
        self,
        ids: th.Tensor,
        attention: th.Tensor,
        turn: th.Tensor,
        mask: th.Tensor,
        advantages: th.Tensor,
        old_logp: th.Tensor,
        ref_logp: th.Tensor | None,
        history: th.Tensor,
    ) -> dict[str, float]:
        if not hasattr(self, "optimizer"):
            self.optimizer = th.optim.AdamW(self.model.parameters(), lr=self.learning_rate)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate
        n = ids.shape[0]
        batch_size = n if self.batch_size is None else min(self.batch_size, n)
        phase = epo_phase_weight(self.num_updates, max(self._total_updates, 1))
        sums: dict[str, float] = {}
        count = 0
        self.model.train()
        for _ in range(self.n_epochs):
            order = self.rng.permutation(n)
            for start in range(0, n, batch_size):
                rows = th.as_tensor(order[start : start + batch_size], device=ids.device)
                self.optimizer.zero_grad()
                weight_total = self._weight(mask[rows])
                for micro in range(0, len(rows), self.micro_batch_size):
                    r = rows[micro : micro + self.micro_batch_size]
                    chunk_weight = self._weight(mask[r]) / max(weight_total, 1e-9)
                    if chunk_weight == 0:
                        continue
                    loss, stats = self._loss(
                        ids[r],
                        attention[r],
                        turn[r],
                        mask[r],
                        advantages[r],
                        old_logp[r],
                        None if ref_logp is None else ref_logp[r],
                        history,
                        phase,
                    )
                    (loss * chunk_weight).backward()
                    for key, value in stats.items():
                        sums[key] = sums.get(key, 0.0) + value * chunk_weight
                grad_norm = th.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
                self.optimizer.step()
                sums["train/grad_norm"] = sums.get("train/grad_norm", 0.0) + float(grad_norm)
                count += 1
        self.model.eval()
        return {key: value / count for key, value in sums.items()}

    def _weight(self, mask: th.Tensor) -> float:
        """Share of a micro-batch in its minibatch's loss aggregate (tokens, or sequences with tokens)."""
        if self.aggregation == "token-mean":
            return float(mask.sum())
        return float((mask.sum(dim=1) > 0).sum())

    def _loss(
        self,
        ids: th.Tensor,
        attention: th.Tensor,
        turn: th.Tensor,
        mask: th.Tensor,
        advantages: th.Tensor,
        old_logp: th.Tensor,
        ref_logp: th.Tensor | None,
        history: th.Tensor,
        phase: float,
    ) -> tuple[th.Tensor, dict[str, float]]:
        logp, entropy = sequence_logprobs(
            self.model, ids, attention, with_entropy=self.ent_coef > 0, temperature=self.temperature
        )
        if self.ratio_level == "turn":
            log_ratio = turn_log_ratio(logp, old_logp, turn)  # Turn-PPO / ST-PPO: one ratio per turn
        else:
            log_ratio = logp - old_logp
        weights = clipping_triggered_weights(log_ratio, mask, self.clip_range) if self.clipping_correction else None
        loss, stats = clipped_surrogate_loss(
            log_ratio, advantages, mask, self.clip_range, self.clip_range_high, self.aggregation, weights
        )
        out = {"train/policy_loss": float(loss.detach()), **{f"train/{k}": v for k, v in stats.items()}}
        if ref_logp is not None:
            kl = aggregate(k3_kl(logp, ref_logp), mask, self.aggregation)  # GRPO Eq. (4), verl low_var_kl
            loss = loss + self.kl_coef * kl
            out["train/kl_ref"] = float(kl.detach())
        if self.llds_coef > 0:  # LLDS: protect rollouts whose likelihood fell (research notes Sec. 1.3)
            llds = llds_loss(logp, old_logp, mask)
            loss = loss + self.llds_coef * llds
            out["train/llds"] = float(llds.detach())
        if self.ent_coef > 0:
            entropy_loss, entropy_stats = epo_entropy_loss(
                entropy,  # type: ignore[arg-type]
                mask,
                turn,
                history,
                self.ent_coef,
                self.epo_smooth_coef,
                self.epo_kappa_low,
                self.epo_kappa_high,
                phase,
                self.aggregation,
            )
            loss = loss + entropy_loss
            out.update({f"train/{k}": v for k, v in entropy_stats.items()})
        out["train/loss"] = float(loss.detach())
        return loss, out

    def learn(self, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> MultiTurnAgent:
        """Run the SFT warm start once (``sft_steps`` updates), then ``total_timesteps`` RL updates.

        Args:
            total_timesteps: Number of RL updates (each samples ``n_prompts * group_size`` episodes).
            callback: Optional ``callback(agent, stats) -> bool | None``; returning ``False`` stops training.
            progress_bar: Show tqdm progress bars.

        Returns:
            ``self``.
        """
        if total_timesteps < 0:
            raise ValueError(f"total_timesteps must be >= 0, got {total_timesteps!r}")
        if not self.sft_done and self.sft_steps > 0:
            self.sft(progress_bar=progress_bar)
        self._total_updates = self.num_updates + total_timesteps
        for _ in _progress(range(total_timesteps), progress_bar, self.advantage.upper()):
            stats = self.train_step()
            if self.eval_freq and self.num_updates % self.eval_freq == 0:
                stats.update(self.evaluate_splits())
            if self.logger is not None:
                for key, value in stats.items():
                    self.logger.record(key, value)
                self.logger.dump(self.num_updates)
            if self.checkpoint_freq and self.num_updates % self.checkpoint_freq == 0:
                self.save(Path(self.checkpoint_dir) / f"step_{self.num_updates}")  # type: ignore[arg-type]
            if callback is not None and callback(self, stats) is False:
                break
        return self

    _total_updates = 0

    # --- evaluation -------------------------------------------------------------------------------------------------
    def evaluate_splits(self, n_questions: int | None = None, splits: Sequence[str | None] | None = None) -> dict[str, float]:
        """Greedy evaluation: EM, F1, searches per question, invalid rate and gold-doc recall per split.

        Returns:
            ``{"eval/<split>_<metric>": value}``; splits the env does not know are skipped.
        """
        n = self.eval_questions if n_questions is None else n_questions
        out: dict[str, float] = {}
        for split in self.eval_splits if splits is None else splits:
            envs = self._env_copies(n)
            options = None if split is None else {"split": split}
            try:
                episodes = collect_episodes(
                    self.model,
                    self.tokenizer,
                    envs,
                    [20_000 + i for i in range(n)],
                    self.max_new_tokens,
                    self.max_length,
                    0.0,
                    None,
                    options,
                    self.chat,
                )
            except PromptTooLongError:
                raise
            except ValueError:  # the env has no such split
                continue
            metrics = [episode_metrics(e) for e in episodes]
            name = split or "default"
            for key in ("em", "f1", "searches", "invalid_rate", "gold_doc_recall"):
                values = [m[key] for m in metrics if not np.isnan(m[key])]
                out[f"eval/{name}_{key}"] = float(np.mean(values)) if values else float("nan")
        return out

    # --- Policy protocol --------------------------------------------------------------------------------------------
    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[Any, tuple[np.ndarray, ...] | None]:
        """Return the next message for a text observation, or one per observation of a batch.

        ``state`` holds each episode's token ids so far, one array per episode. Where ``state`` is ``None`` or
        ``episode_start`` is set, the observation is taken as an episode's first (the prompt); otherwise it is
        the env's reply to the previous message (``obs_mode="delta"``). A batch (a list or array of strings, as
        a vectorised env returns) is generated in one left-padded batch and returns a list of messages.
        """
        batched = not isinstance(observation, str)
        observations = list(observation) if isinstance(observation, (list, tuple, np.ndarray)) else [observation]
        if not all(isinstance(text, str) for text in observations):
            raise TypeError(f"observation must be a str (a text observation) or a list of str, got {observation!r:.80}")
        if not observations:
            raise ValueError("observation is an empty batch; expected at least one text observation")
        starts = self._episode_starts(len(observations), state, episode_start)
        histories = [
            prompt_ids(self.tokenizer, text, self.chat) if starts[i] else self._continue(state[i].tolist(), text)  # type: ignore[index]
            for i, text in enumerate(observations)
        ]
        actions = sample_actions(
            self.model,
            histories,
            self.max_new_tokens,
            StopChecker(self.tokenizer),
            self.pad_id,
            0.0 if deterministic else self.temperature,
            self.generator,
        )
        texts = [_printable(self.tokenizer.decode(ids, skip_special_tokens=True)) for ids in actions]
        new_state = tuple(np.asarray(h + a, dtype=np.int64) for h, a in zip(histories, actions, strict=True))
        return (texts if batched else texts[0]), new_state

    def _continue(self, history: list[int], observation: str) -> list[int]:
        """An episode's ids so far followed by the env's reply to its last message."""
        return [*history, *reply_ids(self.tokenizer, observation, self.chat, history)]

    @staticmethod
    def _episode_starts(n: int, state: tuple[np.ndarray, ...] | None, episode_start: np.ndarray | None) -> np.ndarray:
        """Which of ``n`` episodes start now: all without a state, else those flagged by ``episode_start``."""
        if state is None:
            return np.ones(n, dtype=bool)
        if len(state) != n:
            raise ValueError(f"state holds {len(state)} episodes but {n} observations were given")
        if episode_start is None:
            return np.zeros(n, dtype=bool)
        starts = np.asarray(episode_start, dtype=bool).reshape(-1)
        if len(starts) != n:
            raise ValueError(f"episode_start has {len(starts)} flags but {n} observations were given")
        return starts

    # --- logging and persistence ------------------------------------------------------------------------------------
    def set_logger(self, logger: Any) -> None:
        """Use an SB3 :class:`~stable_baselines3.common.logger.Logger` (CSV, TensorBoard, stdout)."""
        self.logger = logger

    def _config(self) -> dict[str, Any]:
        names = (
            "advantage",
            "group_size",
            "n_prompts",
            "n_epochs",
            "batch_size",
            "micro_batch_size",
            "learning_rate",
            "max_grad_norm",
            "clip_range",
            "clip_range_high",
            "aggregation",
            "ratio_level",
            "clipping_correction",
            "kl_coef",
            "llds_coef",
            "norm_adv_by_std",
            "gamma",
            "omega",
            "otc",
            "otc_c",
            "empg",
            "empg_kappa",
            "empg_zeta",
            "ent_coef",
            "epo_smooth_coef",
            "epo_kappa_low",
            "epo_kappa_high",
            "temperature",
            "max_new_tokens",
            "max_length",
            "sft_steps",
            "sft_episodes",
            "sft_batch_size",
            "sft_learning_rate",
            "sft_noise",
            "chat_format",
            "eval_questions",
            "seed",
            "dtype",
        )
        config = {name: getattr(self, name) for name in names}
        config["eval_splits"] = list(self.eval_splits)
        return config

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model, tokenizer and the agent's configuration and counters into the directory ``path``."""
        if callable(self.env_id):
            env_id: str | None = None
        else:
            env_id = self.env_id
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        with quiet_transformers():
            self.model.save_pretrained(directory)
            self.tokenizer.save_pretrained(directory)
        state = {
            "env_id": env_id,
            "env_kwargs": self.env_kwargs,
            "config": self._config(),
            "num_updates": self.num_updates,
            "sft_done": self.sft_done,
            "turn_entropy_sum": self.turn_entropy_sum.tolist(),
            "turn_entropy_count": self.turn_entropy_count.tolist(),
        }
        (directory / _AGENT_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str], env: Any = None, **overrides: Any) -> MultiTurnAgent:
        """Rebuild an agent written by :meth:`save`.

        Args:
            path: The directory written by :meth:`save`.
            env: An env id or factory replacing the saved env id.
            **overrides: Hyperparameters replacing the saved ones (e.g. ``advantage="igpo"``, ``seed=1``, to start
                several RL runs from one SFT checkpoint).
        """
        directory = Path(path)
        agent_file = directory / _AGENT_FILE
        if not agent_file.is_file():
            raise ValueError(f"{str(path)!r} is not a saved LLM agent: it has no {_AGENT_FILE}")
        state = json.loads(agent_file.read_text())
        env = state["env_id"] if env is None else env
        if env is None:
            raise ValueError("the agent was trained on an env factory; pass env= to load it")
        config = {**state["config"], **overrides}
        if cls is not MultiTurnAgent and "advantage" not in overrides:
            config["advantage"] = cls.advantage_default
        agent = cls(env, state["env_kwargs"], model=str(directory), **config)
        agent.num_updates, agent.sft_done = state["num_updates"], state["sft_done"]
        agent.turn_entropy_sum = np.asarray(state["turn_entropy_sum"], dtype=float)
        agent.turn_entropy_count = np.asarray(state["turn_entropy_count"], dtype=float)
        return agent


def _noise_words(tokenizer: Any) -> list[str]:
    """The ASCII words the tokenizer's tokens spell (a BPE token's text, not its byte-level form such as ``Ġword``).

    Sorted: ``get_vocab()`` is a hash map whose order changes between processes, and a seed must reproduce a run.
    """
    words = {tokenizer.convert_tokens_to_string([token]).strip() for token in tokenizer.get_vocab()}
    return sorted(word for word in words if word.isascii() and word.isalpha()) or ["x"]


def _expert_action(info: dict[str, Any]) -> str | None:
    """The env expert's next message: ``info["oracle_action"]``, else the first of ``info["policy_commands"]``."""
    if info.get("oracle_action") is not None:
        return str(info["oracle_action"])
    commands = info.get("policy_commands")
    return str(commands[0]) if commands else None


def _progress(iterable: Any, enabled: bool, description: str) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description)


class GRPO(MultiTurnAgent):
    """GRPO for multi-turn agents: group-normalised outcome advantage on every action token (DeepSeekMath)."""

    advantage_default = "grpo"


class IGPO(MultiTurnAgent):
    """IGPO: turn rewards from the information gain about the gold answer plus the outcome (arXiv:2510.14967)."""

    advantage_default = "igpo"


class GiGPO(MultiTurnAgent):
    """GiGPO: episode-level plus anchor-state step-level group advantages (arXiv:2505.10978)."""

    advantage_default = "gigpo"


def _build(
    cls: type[MultiTurnAgent], env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]
) -> MultiTurnAgent:
    try:
        return cls(env_id, env_kwargs, seed=seed, **hyperparams)
    except FileNotFoundError as error:  # a wrong --model path is a usage error for the CLI
        raise ValueError(str(error)) from None


def build_grpo(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> MultiTurnAgent:
    """``palaestra train --algo grpo`` builder."""
    return _build(GRPO, env_id, env_kwargs, seed, hyperparams)


def build_igpo(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> MultiTurnAgent:
    """``palaestra train --algo igpo`` builder."""
    return _build(IGPO, env_id, env_kwargs, seed, hyperparams)


def build_gigpo(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> MultiTurnAgent:
    """``palaestra train --algo gigpo`` builder."""
    return _build(GiGPO, env_id, env_kwargs, seed, hyperparams)


def _printable(text: str) -> str:
    """``text`` without control characters other than newline and tab (tokenizer byte artefacts)."""
    return "".join(ch for ch in text if 32 <= ord(ch) < 127 or ch in "\n\t")
