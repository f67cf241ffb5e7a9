"""ToolSearch-v0: answer a question by calling a BM25 search tool over a generated fictional world."""

from __future__ import annotations

import functools
import os
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from palaestra.envs.text.corpus import load_user_world
from palaestra.envs.text.protocol import (
    CHARSET,
    INVALID_REASONS,
    check_message,
    corrective_message,
    parse_action,
    render_information,
    render_prompt,
    to_charset,
)
from palaestra.envs.text.rewards import REWARD_TYPES, exact_match, normalize_answer, search_r1_format_reward, token_f1
from palaestra.envs.text.search import SearchIndex, index_for
from palaestra.envs.text.world import SPLITS, Question, World, WorldConfig, build_world

__all__ = ["ToolSearchEnv", "ToolSearchInfos"]

_RESET_OPTIONS = ("question_id", "split", "hops", "question")
_EXTRA_WORLD_ID = re.compile(r"w(\d+)-")  # the id prefix of a question from an extra training world
_TITLE_CHARS = 200
# Normalised document texts, filled lazily per world for the retrieval-correctness check of the format reward.
_NORMALIZED_DOCS: weakref.WeakKeyDictionary[World, dict[int, str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ToolSearchInfos:
    """Opt-in privileged ``info`` fields (like TextWorld's ``EnvInfos``); none is ever part of an observation.

    Attributes:
        answers: Add ``info["answers"]``, the gold answers.
        gold_doc_ids: Add ``info["gold_doc_ids"]``, the supporting documents in hop order.
        oracle_action: Add ``info["oracle_action"]``, the message the oracle would send next from this state.
        candidates: Add ``info["candidates"]``, the messages the transcript makes possible
            (:meth:`ToolSearchEnv.candidate_actions`), for agents that choose among a finite set of actions.
    """

    answers: bool = False
    gold_doc_ids: bool = False
    oracle_action: bool = False
    candidates: bool = False

    @classmethod
    def coerce(cls, value: ToolSearchInfos | Iterable[str] | None) -> ToolSearchInfos:
        """Build from an instance, an iterable of field names, or ``None`` (nothing requested)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise TypeError(f"request_infos must be a ToolSearchInfos or an iterable of field names, got {value!r}")
        names = {f.name for f in fields(cls)}
        requested = list(value)
        unknown = [name for name in requested if name not in names]
        if unknown:
            raise ValueError(f"unknown info request(s) {unknown}; expected names among {sorted(names)}")
        return cls(**dict.fromkeys(requested, True))


class ToolSearchEnv(gym.Env[str, str]):
    """Multi-turn question answering with a search tool, over a corpus no pretrained model has seen.

    ## Description
    An agent answers a question by sending messages. A message holding ``<search> query </search>`` runs a BM25
    search (the ``bm25s`` package) over the corpus and returns the ``top_k`` documents inside ``<information>``;
    a message holding ``<answer> text </answer>`` ends the episode. This is the interaction protocol of
    Search-R1 ("Search-R1: Training LLMs to Reason and Leverage Search Engines with Reinforcement Learning",
    arXiv:2503.09516), used by IGPO, GiGPO and ReSeek, made offline and reproducible. By default the corpus is a
    generated fictional world (ReSeek's FictionalHot idea, arXiv:2510.00568): persons, cities, countries,
    organisations and works with invented names, one document per entity, and 1-, 2- and 3-hop questions
    (bridge chains and numeric comparisons) whose answers exist only in that corpus. A user corpus and QA file
    (JSON Lines) can replace it.

    ## Action Space
    ``Text(max_length=max_action_length, min_length=0, charset=CHARSET)``: the agent's message, printable ASCII
    plus newline and tab. Optional ``<think> ... </think>`` blocks are ignored; tags are case-insensitive.

    ## Observation Space
    ``Text(max_length=<computed bound>, min_length=0, charset=CHARSET)``.

    | obs_mode | first observation          | later observations                                               |
    |----------|----------------------------|------------------------------------------------------------------|
    | "delta"  | instructions + question    | only the env's reply: ``<information>`` block, feedback, or "" |
    | "full"   | instructions + question    | the whole transcript: prompt, every message and every reply     |

    Documents are rendered one per line as ``Doc j(Title: t) text``, each text cut to ``max_doc_chars`` characters
    and each title to 200. The bound on the length follows from ``max_turns``, ``top_k``, ``max_doc_chars``,
    ``max_action_length`` (full mode) and the longest question.

    ## Rewards
    ``reward_type="em"`` (default): 1 for an exact-match answer (SQuAD normalisation), else 0. ``"f1"``: token
    F1 of the answer. ``"em_format"``: Search-R1's format-aware exact match (see
    :func:`~palaestra.envs.text.rewards.search_r1_format_reward`), paid on the last step. On every step
    ``step_cost`` is subtracted, and ``invalid_action_penalty`` more on an invalid message. Group-dependent
    signals (information gain, tool-call efficiency) are left to trainers, which find what they need in ``info``.

    ## Starting State
    A question drawn uniformly (with ``np_random``) from ``split`` and ``hops``, unless ``reset`` options pick one:
    ``{"question_id": id}``, ``{"split": s}``, ``{"hops": h}``, or ``{"question": Question | {"question", "answers"}}``
    (an ad-hoc question over the corpus). Trainers reset G copies with the same ``question_id``.

    ## Episode End
    Terminated when the agent answers. Truncated after ``max_turns`` turns (searches and invalid messages count).

    ## Info
    Every step: ``turn``, ``action_type`` ("search"/"answer"/"invalid"), ``valid``, ``reason``, ``query``,
    ``retrieved_doc_ids``, ``gold_doc_hit``, ``anchor`` (question id and sorted doc ids retrieved so far: the
    GiGPO anchor state), ``tool_calls``, ``question_id``, ``split``, ``hops``. At the end: ``prediction`` (or
    ``None``), ``em``, ``f1``, ``is_success``. Privileged fields only through ``request_infos``.

    ## Arguments
    | argument               | default        | meaning                                                     |
    |------------------------|----------------|-------------------------------------------------------------|
    | world                  | WorldConfig()  | config of the generated world (seed, sizes)                 |
    | corpus, questions      | None           | paths of a user corpus and QA file (JSONL), used together   |
    | split                  | "train"        | default split: train, dev, test or hot                      |
    | hops                   | None           | default hop count(s) (int or sequence), ``None`` for all     |
    | top_k                  | 3              | documents per search                                        |
    | max_turns              | 4              | turn limit, the answer included                             |
    | reward_type            | "em"           | "em", "f1" or "em_format"                                   |
    | invalid_action_penalty | 0.0            | subtracted on each invalid message                          |
    | step_cost              | 0.0            | subtracted on every step                                    |
    | obs_mode               | "delta"        | "delta" or "full"                                           |
    | request_infos          | None           | ToolSearchInfos or names among answers, gold_doc_ids, oracle_action |
    | max_action_length      | 2048           | longest message in the action space                         |
    | max_content_length     | 300            | longest query or answer; longer ones are invalid turns      |
    | max_doc_chars          | 600            | characters of each document shown                           |
    | render_mode            | None           | "ansi": ``render()`` returns the transcript                  |
    | train_worlds           | 1              | generated worlds the train split draws from (see below)     |

    ``train_worlds=N`` adds the training questions of N - 1 more worlds, the same config with seeds ``seed + 1`` to
    ``seed + N - 1`` (ids ``w<k>-q-...``), each episode searching its own world's documents. An agent trained on
    thousands of names cannot memorise them and has to copy what it reads; dev, test and hot questions stay those
    of the first world and of the hot world (seed ``seed + 1000003``), which no extra world reaches.

    ## Version History
    * v0: Initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012  (gymnasium.Env declares it as a plain attribute)

    def __init__(
        self,
        world: WorldConfig | None = None,
        corpus: str | os.PathLike[str] | None = None,
        questions: str | os.PathLike[str] | None = None,
        split: str = "train",
        hops: int | Sequence[int] | None = None,
        top_k: int = 3,
        max_turns: int = 4,
        reward_type: str = "em",
        invalid_action_penalty: float = 0.0,
        step_cost: float = 0.0,
        obs_mode: str = "delta",
        request_infos: ToolSearchInfos | Iterable[str] | None = None,
        max_action_length: int = 2048,
        max_content_length: int = 300,
        max_doc_chars: int = 600,
        render_mode: str | None = None,
        train_worlds: int = 1,
    ) -> None:
        for name, value, low in (
            ("train_worlds", train_worlds, 1),
            ("top_k", top_k, 1),
            ("max_turns", max_turns, 1),
            ("max_action_length", max_action_length, 1),
            ("max_content_length", max_content_length, 1),
            ("max_doc_chars", max_doc_chars, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
        if obs_mode not in ("delta", "full"):
            raise ValueError(f"obs_mode must be 'delta' or 'full', got {obs_mode!r}")
        for name, cost in (("invalid_action_penalty", invalid_action_penalty), ("step_cost", step_cost)):
            if not np.isfinite(cost) or cost < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {cost!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        if (corpus is None) != (questions is None):
            raise ValueError("corpus and questions must be given together (a corpus JSONL and a QA JSONL)")
        if corpus is not None and world is not None:
            raise ValueError("pass either world (a generated world) or corpus/questions (your own data), not both")
        if train_worlds > 1000:  # an integer >= 1, checked above
            raise ValueError(f"train_worlds must be at most 1000 (the hot world's seed lies beyond), got {train_worlds}")
        if corpus is not None and train_worlds != 1:
            raise ValueError("train_worlds draws training questions from several generated worlds; a user corpus has one")

        self.top_k = int(top_k)
        self.max_turns = int(max_turns)
        self.reward_type = reward_type
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.step_cost = float(step_cost)
        self.obs_mode = obs_mode
        self.request_infos = ToolSearchInfos.coerce(request_infos)
        self.max_action_length = int(max_action_length)
        self.max_content_length = int(max_content_length)
        self.max_doc_chars = int(max_doc_chars)
        self.render_mode = render_mode
        self.train_worlds = int(train_worlds)

        if corpus is not None:
            self.world_config: WorldConfig | None = None
            self.world = load_user_world(corpus, questions)  # type: ignore[arg-type]
        else:
            self.world_config = WorldConfig() if world is None else world
            if not isinstance(self.world_config, WorldConfig):
                raise TypeError(f"world must be a WorldConfig, got {type(self.world_config).__name__}")
            self.world = build_world(self.world_config)
        self.index: SearchIndex = index_for(self.world)
        self._pools: dict[tuple[str, tuple[int, ...] | None], tuple[Question, ...]] = {}
        self.split = self._check_split(split)
        self.hops = self._check_hops(hops)
        self._pool(self.split, self.hops)  # fail now, not at the first reset, when the default selection is empty

        longest_question = max(len(q.question) for q in self.world.questions)
        self.max_question_length = max(longest_question, 4 * self.max_content_length)
        prompt_bound = len(render_prompt("", self.max_turns)) + self.max_question_length
        doc_line = len("Doc 10(Title: ) \n") + _TITLE_CHARS + self.max_doc_chars + 3
        reply_bound = max(
            len(render_information([])) + self.top_k * doc_line,
            max(len(corrective_message(reason)) for reason in INVALID_REASONS),
        )
        per_turn = reply_bound + (self.max_action_length if obs_mode == "full" else 0)
        self.observation_space = spaces.Text(
            max_length=prompt_bound + self.max_turns * per_turn, min_length=0, charset=CHARSET
        )
        self.action_space = spaces.Text(max_length=self.max_action_length, min_length=0, charset=CHARSET)

        self._question: Question | None = None
        self._episode_index: SearchIndex = self.index
        self._episode_world: World = self.world
        self._transcript = ""
        self._turn = 0
        self._done = True
        self._retrieved: set[str] = set()
        self._seen_texts: list[str] = []  # the retrieved documents as shown, in the order they came back
        self._tool_calls = 0
        self._all_valid = True
        self._answer_retrieved = False
        self._normalized_answers: tuple[str, ...] = ()

    # --- question selection ---------------------------------------------------------------------------------
    def _check_split(self, split: object) -> str:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "hot" and self.world_config is None:
            raise ValueError("the 'hot' split exists only for generated worlds, not for a user corpus")
        return str(split)

    @staticmethod
    def _check_hops(hops: object) -> tuple[int, ...] | None:
        if hops is None:
            return None
        values = (hops,) if isinstance(hops, (int, np.integer)) and not isinstance(hops, bool) else hops
        if (
            not isinstance(values, Sequence)
            or not values
            or not all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in values)
        ):
            raise ValueError(f"hops must be None, an integer >= 1 or a non-empty sequence of them, got {hops!r}")
        return tuple(sorted({int(h) for h in values}))

    def _world_of_split(self, split: str) -> World:
        if split == "hot":
            return build_world(self.world_config, hot=True)  # type: ignore[arg-type]
        return self.world

    def _extra_world(self, k: int) -> tuple[World, SearchIndex]:
        """The ``k``-th extra training world (``train_worlds``), the main config with seed ``seed + k``, and its index."""
        config = self.world_config
        assert config is not None  # train_worlds > 1 is refused for a user corpus
        return _extra_world_and_index(replace(config, seed=config.seed + k))

    def _world_and_index_of(self, question: Question) -> tuple[World, SearchIndex]:
        match = _EXTRA_WORLD_ID.match(question.id)
        if match is not None:
            return self._extra_world(int(match.group(1)))
        world = self._world_of_split("hot") if question.split == "hot" else self.world
        return world, index_for(world)

    def _pool(self, split: str, hops: tuple[int, ...] | None) -> tuple[Question, ...]:
        key = (split, hops)
        if key not in self._pools:
            world = self._world_of_split(split)
            pool = tuple(q for q in world.questions if q.split == split and (hops is None or q.hops in hops))
            if split == "train":  # the extra worlds' training questions, with ids that name their world
                pool += tuple(
                    replace(q, id=f"w{k}-{q.id}")
                    for k in range(1, self.train_worlds)
                    for q in self._extra_world(k)[0].questions
                    if q.split == "train" and (hops is None or q.hops in hops)
                )
            if not pool:
                raise ValueError(f"no question in split {split!r} with hops {hops} in world {world.name}")
            self._pools[key] = pool
        return self._pools[key]

    def lookup_question(self, question_id: str) -> Question:
        """Return the question with id ``question_id`` from this env's world or its hot world.

        Raises:
            ValueError: If no question has that id.
        """
        found = self.world.question_index.get(question_id)
        match = _EXTRA_WORLD_ID.match(question_id)
        if match is not None and 0 < int(match.group(1)) < self.train_worlds:
            inner = self._extra_world(int(match.group(1)))[0].question_index.get(question_id[match.end() :])
            found = None if inner is None else replace(inner, id=question_id)
        if found is None and self.world_config is not None and question_id.startswith("hot-"):
            found = build_world(self.world_config, hot=True).question_index.get(question_id)
        if found is None:
            raise ValueError(f"unknown question_id {question_id!r} in world {self.world.name}")
        return found

    def find_question_text(self, text: str) -> Question | None:
        """The question whose text is ``text`` (main world first, then the hot world), or ``None``."""
        found = self.world.questions_by_text.get(text)
        if found is None and self.world_config is not None:
            found = build_world(self.world_config, hot=True).questions_by_text.get(text)
        return found

    def _adhoc_question(self, value: object) -> Question:
        if isinstance(value, Question):
            return value
        if not isinstance(value, Mapping) or not isinstance(value.get("question"), str):
            raise ValueError(
                f"options['question'] must be a Question or a mapping with 'question' and 'answers', got {value!r}"
            )
        answers = value.get("answers")
        if (
            isinstance(answers, str)
            or not isinstance(answers, Sequence)
            or not answers
            or not all(isinstance(a, str) for a in answers)
        ):
            raise ValueError(f"options['question']['answers'] must be a non-empty list of strings, got {answers!r}")
        gold = tuple(value.get("gold_doc_ids", ()))
        unknown = [g for g in gold if g not in self.world.doc_index]
        if unknown:
            raise ValueError(f"options['question']['gold_doc_ids'] names unknown documents: {unknown}")
        text = " ".join(to_charset(value["question"]).split())  # the question is the prompt's last line
        if len(text) > self.max_question_length:
            raise ValueError(
                f"options['question']['question'] has {len(text)} characters; at most {self.max_question_length} fit "
                "the observation space (raise max_content_length for longer questions)"
            )
        titles = tuple(self.world.documents[self.world.doc_index[g]].title for g in gold)
        return Question("custom", text, tuple(answers), max(1, len(gold)), "user", gold, titles, "custom")

    # --- Gymnasium API ----------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode on a new question; see the class docstring for ``options``."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - set(_RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; expected keys among {list(_RESET_OPTIONS)}")
        if "question" in options:
            question = self._adhoc_question(options["question"])
        elif "question_id" in options:
            question = self.lookup_question(options["question_id"])
        else:
            split = self._check_split(options.get("split", self.split))
            hops = self._check_hops(options["hops"]) if "hops" in options else self.hops
            pool = self._pool(split, hops)
            question = pool[int(self.np_random.integers(len(pool)))]
        self._question = question
        self._normalized_answers = tuple(normalize_answer(a) for a in question.answers)
        self._episode_world, self._episode_index = self._world_and_index_of(question)
        self._turn = 0
        self._done = False
        self._retrieved = set()
        self._seen_texts = []
        self._tool_calls = 0
        self._all_valid = True
        self._answer_retrieved = False
        observation = render_prompt(question.question, self.max_turns)
        self._transcript = observation
        return observation, self._info({})

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send one message; see the class docstring for what comes back.

        Raises:
            ResetNeeded: If called before ``reset`` or after the episode ended.
            TypeError: If ``action`` is not a string.
            ValueError: If ``action`` is outside the action space (too long, or characters outside the charset).
        """
        if self._done or self._question is None:
            raise ResetNeeded("call reset() before step(): the episode has not started or has ended")
        message = check_message(action, self.max_action_length)
        question = self._question
        self._turn += 1
        parsed = parse_action(message, self.max_content_length)
        reward = -self.step_cost if self.step_cost else 0.0
        terminated = False
        step_info: dict[str, Any] = {
            "action_type": parsed.kind,
            "valid": parsed.valid,
            "reason": parsed.reason,
            "query": None,
            "retrieved_doc_ids": (),
            "gold_doc_hit": False,
        }
        if parsed.kind == "search":
            hits = self._episode_index.search(parsed.content, self.top_k)
            documents = [self._episode_world.documents[hit.row] for hit in hits]
            reply = render_information([(d.title[:_TITLE_CHARS], d.text[: self.max_doc_chars]) for d in documents])
            doc_ids = tuple(hit.doc_id for hit in hits)
            self._seen_texts.extend(f"{d.title[:_TITLE_CHARS]} {d.text[: self.max_doc_chars]}" for d in documents)
            self._retrieved.update(doc_ids)
            self._tool_calls += 1
            if not self._answer_retrieved:
                self._answer_retrieved = any(self._doc_contains_answer(hit.row) for hit in hits)
            step_info.update(query=parsed.content, retrieved_doc_ids=doc_ids,
                             gold_doc_hit=bool(set(doc_ids) & set(question.gold_doc_ids)))  # fmt: skip
        elif parsed.kind == "answer":
            terminated = True
            reply = ""
        else:
            self._all_valid = False
            reward -= self.invalid_action_penalty
            reply = corrective_message(parsed.reason)
        truncated = not terminated and self._turn >= self.max_turns
        if terminated or truncated:
            prediction = parsed.content if terminated else None
            em = exact_match(prediction, question.answers) if prediction is not None else 0.0
            f1 = token_f1(prediction, question.answers) if prediction is not None else 0.0
            if self.reward_type == "em":
                reward += em
            elif self.reward_type == "f1":
                reward += f1
            else:
                reward += search_r1_format_reward(
                    correct=em == 1.0, answered=terminated, valid_format=self._all_valid,
                    retrieval_correct=self._answer_retrieved,
                )  # fmt: skip
            step_info.update(prediction=prediction, em=em, f1=f1, is_success=em == 1.0)
            self._done = True
        self._transcript += message + reply
        observation = self._transcript if self.obs_mode == "full" else reply
        return observation, float(reward), terminated, truncated, self._info(step_info)

    def render(self) -> str | None:
        """With ``render_mode="ansi"``, the transcript so far (prompt, messages and replies); else ``None``."""
        if self.render_mode == "ansi":
            return self._transcript
        return None

    # --- helpers ----------------------------------------------------------------------------------------------
    def oracle_action(self) -> str:
        """The oracle's next message: search the first gold document not yet retrieved, else answer.

        Privileged: reads the gold documents and answers. Exposed to agents only via ``request_infos``.
        """
        if self._question is None:
            raise ResetNeeded("call reset() before asking for the oracle's action")
        for doc_id, query in zip(self._question.gold_doc_ids, self._question.oracle_queries, strict=True):
            if doc_id not in self._retrieved:
                return f"<search> {query} </search>"
        return f"<answer> {self._question.answers[0]} </answer>"

    def _doc_contains_answer(self, row: int) -> bool:
        """Whether document ``row`` of this episode's world contains a gold answer (Search-R1's retrieval check)."""
        normalized = _NORMALIZED_DOCS.setdefault(self._episode_world, {})
        if row not in normalized:
            document = self._episode_world.documents[row]
            normalized[row] = f" {normalize_answer(document.title)} {normalize_answer(document.text)} "
        haystack = normalized[row]
        return any(f" {answer} " in haystack for answer in self._normalized_answers if answer)

    def _info(self, step_info: dict[str, Any]) -> dict[str, Any]:
        question = self._question
        assert question is not None  # internal invariant: only called inside an episode
        info: dict[str, Any] = {
            "turn": self._turn,
            "question_id": question.id,
            "split": question.split,
            "hops": question.hops,
            "tool_calls": self._tool_calls,
            "anchor": (question.id, tuple(sorted(self._retrieved))),
            **step_info,
        }
        if self.request_infos.answers:
            info["answers"] = question.answers
        if self.request_infos.gold_doc_ids:
            info["gold_doc_ids"] = question.gold_doc_ids
        if self.request_infos.oracle_action and not self._done:
            info["oracle_action"] = self.oracle_action()
        if self.request_infos.candidates and not self._done:
            info["candidates"] = self.candidate_actions()
        return info

    def candidate_actions(self) -> list[str]:
        """The messages the transcript makes possible: the finite action set of a classic RL agent.

        Searches for the entity names in the question and in the documents retrieved so far, then answers for the
        entity names and the numbers in those documents, each in order of first appearance and without repeats.
        An entity name is a document title of the episode's world; a document counts as shown (cut to
        ``max_doc_chars``). The list never reads the gold answer, so it does not depend on it: before the first
        search it holds searches only.
        """
        question = self._question
        assert question is not None  # internal invariant: only called inside an episode
        names = _entity_pattern(self._episode_world)
        asked = names.findall(question.question)
        shown = [name for text in self._seen_texts for name in names.findall(text)]
        numbers = [number for text in self._seen_texts for number in _NUMBER.findall(text)]
        searches = [f"<search> {name} </search>" for name in dict.fromkeys(asked + shown)]
        answers = [f"<answer> {value} </answer>" for value in dict.fromkeys(shown + numbers)]
        return searches + answers


@functools.cache
def _extra_world_and_index(config: WorldConfig) -> tuple[World, SearchIndex]:
    """An extra training world and its search index, built once per process (``build_world`` keeps only a few)."""
    world = build_world(config)
    return world, index_for(world)


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w|\.\d)")  # 1923, 3.5; not the digits inside a word
_ENTITY_PATTERNS: weakref.WeakKeyDictionary[World, re.Pattern[str]] = weakref.WeakKeyDictionary()


def _entity_pattern(world: World) -> re.Pattern[str]:
    """A regex matching every document title of ``world`` as a whole phrase, longest first (cached per world)."""
    if world not in _ENTITY_PATTERNS:
        titles = sorted({doc.title for doc in world.documents if doc.title}, key=len, reverse=True)
        _ENTITY_PATTERNS[world] = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, titles)) + r")(?!\w)")
    return _ENTITY_PATTERNS[world]
