"""Candidate actions: a text env as a ``Discrete`` choice among the messages it offers, for Stable-Baselines3."""

from __future__ import annotations

import itertools
import re
import warnings
import zlib
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

__all__ = ["CANDIDATE_INFO_KEYS", "CandidateActions", "candidate_layout", "hashed_bag_of_words", "word_shapes"]

#: The ``info`` key each palaestra text env lists its candidate messages under, and the request that turns it on.
CANDIDATE_INFO_KEYS = {"ToolSearchEnv": "candidates", "TextWorldEnv": "admissible_commands"}
_WORD = re.compile(r"</?\w+>|\w+")  # a tag (<search>, </answer>) is one word
_CONTEXT_WORDS = 5  # words either side of a candidate's first occurrence in the latest observation


def hashed_bag_of_words(text: str, size: int) -> np.ndarray:
    """Lower-cased words and word bigrams of ``text`` hashed (CRC32) into ``size`` buckets; counts ``log1p``, L2-normed.

    A stable hash (not Python's salted ``hash``), so an encoding is the same in every process.
    """
    words = _WORD.findall(text.lower())
    vector = np.zeros(size, dtype=np.float32)
    for gram in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
        vector[zlib.crc32(gram.encode()) % size] += 1.0
    vector = np.log1p(vector)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def candidate_layout(observation_size: int, max_candidates: int) -> int:
    """The ``features`` of a :class:`CandidateActions` observation of ``observation_size`` with ``max_candidates`` slots.

    The observation is ``features + 1`` transcript values, then ``max_candidates`` slots of ``2 * features + 4``.

    Raises:
        ValueError: If no ``features`` gives that size.
    """
    features, remainder = divmod(observation_size - 1 - 4 * max_candidates, 1 + 2 * max_candidates)
    if features < 1 or remainder:
        raise ValueError(
            f"an observation of {observation_size} values is not CandidateActions' layout for {max_candidates} "
            "candidates (features + 1 transcript values, then 2 * features + 4 per candidate)"
        )
    return features


class CandidateActions(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Turn a ``Text``-space env into one Stable-Baselines3 trains on: pick one of the candidate messages it offers.

    Text envs usually say which messages make sense: TextWorld's admissible commands, ToolSearch-v0's searches and
    answers for the names and numbers its transcript shows
    (:meth:`~palaestra.envs.text.tool_search.ToolSearchEnv.candidate_actions`). The wrapper reads them from
    ``info[key]`` after every reset and step and exposes:

    - **Actions:** ``Discrete(max_candidates)``; action ``i`` sends the ``i``-th candidate. :meth:`action_masks`
      marks the real candidates (the protocol of sb3-contrib's ``MaskablePPO``). An index outside the mask raises
      ``ValueError``, or with ``invalid_action="noop"`` sends an empty message (an invalid turn the env scores as
      such) so that plain PPO or DQN, which sample without a mask, can learn to avoid it.
    - **Observations:** a ``Box`` in [0, 1], the concatenation of

      * the transcript (every observation so far) as a hashed bag of words and bigrams (:func:`hashed_bag_of_words`,
        ``features`` buckets) and the fraction of ``max_turns`` spent;
      * per candidate slot: the candidate's own hashed words with their shapes (:func:`word_shapes`: a number or a
        name), the hashed words around its first occurrence in the latest observation (five either side: "born
        in the year 1923"), and four scores: the cosine between that
        context and the first observation (the question or the room), the share of its words found in the first
        observation, whether it occurs in the latest observation, and whether it was sent before. Empty slots are
        zeros.

      Names are hashed, so an unseen name lands in some bucket; what transfers to a world never seen is the
      shapes, the context and the overlap scores, which do not depend on the names.
      :mod:`palaestra.agents.candidate_policy` scores every slot with one shared network.

    More than ``max_candidates`` candidates: the first ``max_candidates`` are kept and a warning names the number
    once (``on_overflow="error"`` raises instead).

    Example:
        >>> import gymnasium as gym
        >>> import palaestra
        >>> env = CandidateActions(gym.make("ToolSearch-v0", hops=1, request_infos=["candidates"]), max_candidates=8)
        >>> obs, info = env.reset(seed=0)
        >>> env.action_masks()[:2], info["candidates"][0].startswith("<search>")
        (array([ True, False]), True)

    Change logs:
        * v0.1.0: Initially added.
    """

    def __init__(
        self,
        env: gym.Env,
        max_candidates: int = 32,
        features: int = 64,
        key: str | None = None,
        invalid_action: str = "error",
        on_overflow: str = "truncate",
        max_turns: int | None = None,
    ) -> None:
        """Wrap ``env``.

        Args:
            env: An env whose observations and actions are ``gymnasium.spaces.Text`` and whose ``info`` lists the
                candidate messages under ``key``.
            max_candidates: ``n`` of ``Discrete(n)``.
            features: Hash buckets of each bag of words.
            key: The ``info`` key of the candidate list (default: :data:`CANDIDATE_INFO_KEYS` for palaestra's envs).
            invalid_action: ``"error"`` (an index outside the mask raises) or ``"noop"`` (it sends an empty message).
            on_overflow: ``"truncate"`` (keep the first ``max_candidates``, warn once) or ``"error"``.
            max_turns: The env's turn limit for the time feature (default: the env's ``max_turns`` or
                ``max_episode_steps``, else 10).
        """
        if not isinstance(env.observation_space, gym.spaces.Text) or not isinstance(env.action_space, gym.spaces.Text):
            raise TypeError(
                "CandidateActions wraps an env with Text observations and actions (gymnasium.spaces.Text), got "
                f"{type(env.observation_space).__name__} observations and {type(env.action_space).__name__} actions"
            )
        for name, value in (("max_candidates", max_candidates), ("features", features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if invalid_action not in ("error", "noop"):
            raise ValueError(f"invalid_action must be 'error' or 'noop', got {invalid_action!r}")
        if on_overflow not in ("truncate", "error"):
            raise ValueError(f"on_overflow must be 'truncate' or 'error', got {on_overflow!r}")
        gym.utils.RecordConstructorArgs.__init__(
            self, max_candidates=max_candidates, features=features, key=key, invalid_action=invalid_action,
            on_overflow=on_overflow, max_turns=max_turns,
        )  # fmt: skip
        gym.Wrapper.__init__(self, env)
        self.key = key or CANDIDATE_INFO_KEYS.get(type(env.unwrapped).__name__, "candidates")
        self.max_candidates = max_candidates
        self.features = features
        self.invalid_action = invalid_action
        self.on_overflow = on_overflow
        limit = max_turns or getattr(env.unwrapped, "max_turns", None) or getattr(env.spec, "max_episode_steps", None)
        self.max_turns = int(limit or 10)
        self.slot_size = 2 * features + 4
        self.action_space = gym.spaces.Discrete(max_candidates)
        self.observation_space = gym.spaces.Box(
            0.0, 1.0, shape=(features + 1 + max_candidates * self.slot_size,), dtype=np.float32
        )
        self.candidates: list[str] = []
        self._transcript: list[str] = []
        self._sent: set[str] = set()
        self._warned = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env; the observation encodes its first message and the candidates it offers."""
        text, info = self.env.reset(seed=seed, options=options)
        self._transcript, self._sent = [text], set()
        self._read_candidates(info, terminal=False)
        return self._encode(), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Send candidate ``action`` (an index); see the class docstring for indices outside the mask."""
        index = int(action)
        if 0 <= index < len(self.candidates):
            message = self.candidates[index]
        elif self.invalid_action == "noop" and 0 <= index < self.max_candidates:
            message = ""
        else:
            raise ValueError(
                f"action {index} is not one of the {len(self.candidates)} candidates offered (indices 0 to "
                f"{len(self.candidates) - 1}); mask the others with action_masks(), or wrap with invalid_action='noop'"
            )
        self._sent.add(message)
        text, reward, terminated, truncated, info = self.env.step(message)
        self._transcript.append(text)
        info["message"] = message
        self._read_candidates(info, terminal=terminated or truncated)
        return self._encode(), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """``True`` for the slots that hold a candidate (sb3-contrib's ``MaskablePPO`` calls this)."""
        mask = np.zeros(self.max_candidates, dtype=bool)
        mask[: len(self.candidates)] = True
        if not mask.any():
            mask[0] = True  # a finished episode offers nothing; SB3 needs one legal action to compute the mask
        return mask

    def _read_candidates(self, info: dict[str, Any], terminal: bool) -> None:
        if terminal:
            self.candidates = []
            return
        if self.key not in info:
            raise KeyError(
                f"CandidateActions reads the candidate messages from info[{self.key!r}], which this env does not "
                f"give; make the env with request_infos=[{self.key!r}]"
            )
        candidates = [str(c) for c in info[self.key]]
        if len(candidates) > self.max_candidates:
            if self.on_overflow == "error":
                raise ValueError(
                    f"the env offers {len(candidates)} candidates, more than max_candidates={self.max_candidates}"
                )
            if not self._warned:
                warnings.warn(
                    f"the env offers {len(candidates)} candidates; CandidateActions keeps the first "
                    f"max_candidates={self.max_candidates} (raise it to offer them all)",
                    stacklevel=3,
                )
                self._warned = True
            candidates = candidates[: self.max_candidates]
        self.candidates = candidates

    def _encode(self) -> np.ndarray:
        first, latest = self._transcript[0].lower(), self._transcript[-1].lower()
        head = [hashed_bag_of_words(" ".join(self._transcript), self.features),
                np.array([min(1.0, (len(self._transcript) - 1) / self.max_turns)], dtype=np.float32)]  # fmt: skip
        slots = np.zeros((self.max_candidates, self.slot_size), dtype=np.float32)
        first_words, first_bag = set(_WORD.findall(first)), hashed_bag_of_words(first, self.features)
        for i, candidate in enumerate(self.candidates):
            original = _strip_tags(candidate)
            content = original.lower()
            words = _WORD.findall(content)
            context = hashed_bag_of_words(_context(latest, content), self.features)
            slots[i, : self.features] = hashed_bag_of_words(f"{candidate} {word_shapes(original)}", self.features)
            slots[i, self.features : 2 * self.features] = context
            slots[i, -4] = max(0.0, float(context @ first_bag))
            slots[i, -3] = sum(word in first_words for word in words) / len(words) if words else 0.0
            slots[i, -2] = float(bool(content) and content in latest)
            slots[i, -1] = float(candidate in self._sent)
        return np.concatenate([*head, slots.ravel()])


def word_shapes(text: str) -> str:
    """Each word's shape as a token: digits ``d``, capitals ``u``, small letters ``l``, runs collapsed.

    ``"Port Elsby 1923"`` -> ``"shape_ul shape_ul shape_d"``: whether a candidate is a number or a name, which the
    hashed words of a name never seen before cannot say.
    """
    shapes = []
    for word in re.findall(r"\w+", text):
        shape = re.sub(r"[0-9]+", "d", re.sub(r"[A-Z]+", "u", re.sub(r"[a-z]+", "l", word)))
        shapes.append(f"shape_{shape}")
    return " ".join(shapes)


def _strip_tags(message: str) -> str:
    """The content of a tagged message (``<search> Velmora </search>`` -> ``Velmora``)."""
    return re.sub(r"</?\w+>", " ", message).strip()


def _context(text: str, phrase: str) -> str:
    """The words around the first occurrence of ``phrase`` in ``text`` (empty if it does not occur)."""
    at = text.find(phrase) if phrase else -1
    if at < 0:
        return ""
    before = _WORD.findall(text[:at])[-_CONTEXT_WORDS:]
    after = _WORD.findall(text[at + len(phrase) :])[:_CONTEXT_WORDS]
    return " ".join([*before, *after])
