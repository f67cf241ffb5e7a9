"""TextWorld-v0: a Gymnasium 1.x adapter over Microsoft's ``textworld`` text adventures (optional extra)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled, ResetNeeded

from palaestra.cache import cache_dir as cache_folder
from palaestra.envs.text.protocol import to_charset

__all__ = [
    "COMMAND_CHARSET",
    "DISABLED_VERBS",
    "QUIT_VERBS",
    "TEXTWORLD_INFOS",
    "TextWorldEnv",
    "default_cache_dir",
    "generate_game",
]

#: Charset of TextWorld commands: printable ASCII without newline, tab (a newline would split a command) and
#: backslash (which starts the interpreter's own meta-commands such as ``\\q``).
COMMAND_CHARSET = "".join(chr(code) for code in range(32, 127) if chr(code) != "\\")
_OBSERVATION_CHARSET = "".join(chr(code) for code in range(32, 127)) + "\n\t"
_COMMAND_SET = frozenset(COMMAND_CHARSET)

#: Verbs the env answers itself (``_DISABLED_REPLY``), never sending the command to the game.
DISABLED_VERBS = frozenset(
    {
        # files: they would read or write the working directory
        "save", "restore", "script", "unscript", "transcript", "noscript",
        # episode control: an episode starts over with reset(); either would also desync TextWorld's quest tracking
        "restart", "undo",
        # printing modes: they change later observations (superbrief also the anchor's room description)
        "verbose", "long", "brief", "normal", "superbrief", "short", "notify",
        # TextWorld's framework commands ("print_state", "enable print state option", "restrict commands", and
        # every "tw-..." word): they reveal the whole world state, pollute later feedback or change the rules
        "print_state", "enable", "disable", "restrict",
    }
)  # fmt: skip
#: Verbs that quit the game: the env ends the episode (``terminated``, neither won nor lost).
QUIT_VERBS = frozenset({"quit", "q"})
_DISABLED_REPLY = "That command is not available in this environment.\n"
_QUIT_REPLY = "You have quit the game.\n"
_TOKEN = re.compile(r'[.,"]|[^\s.,"]+')  # the parser's words: '.', ',' and '"' are words of their own
_ZSCII_A2 = frozenset("0123456789.,!?_#'\"/\\-:()")
_OUTSIDE_CHARSET = re.compile(r"[^ -~\n\t]")

#: Optional ``info`` fields, requested by name (TextWorld's ``EnvInfos`` fields, "walkthrough" for the extra,
#: "anchor" for the GiGPO anchor state).
TEXTWORLD_INFOS = (
    "admissible_commands",
    "policy_commands",
    "walkthrough",
    "description",
    "inventory",
    "objective",
    "anchor",
)


def _import_textworld() -> Any:
    try:
        import textworld
        import textworld.generator
    except ImportError as error:
        raise DependencyNotInstalled('TextWorld-v0 needs the textworld package: pip install "palaestra[text]"') from error
    return textworld


def default_cache_dir() -> Path:
    """Where generated games are cached: ``$PALAESTRA_CACHE/textworld`` or ``~/.cache/palaestra/textworld``."""
    return cache_folder("textworld")


def generate_game(
    seed: int,
    nb_rooms: int = 3,
    nb_objects: int = 5,
    quest_length: int = 3,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Generate and compile a TextWorld game with ``textworld.generator`` (offline), or reuse the cached file.

    The file name encodes every argument, so equal arguments always return the same game; a game is compiled
    in a temporary directory and renamed into the cache, so concurrent processes never see half a file.

    Args:
        seed: Generator seed.
        nb_rooms: Rooms in the world (TextWorld's ``world_size``).
        nb_objects: Objects in the world.
        quest_length: Minimum number of actions of the quest.
        cache_dir: Cache directory (:func:`default_cache_dir` when ``None``).

    Returns:
        Path of the ``.z8`` game file.
    """
    for name, value in (("nb_rooms", nb_rooms), ("nb_objects", nb_objects), ("quest_length", quest_length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"tw-seed{int(seed)}-rooms{nb_rooms}-objects{nb_objects}-quest{quest_length}.z8"
    if path.is_file():
        return path
    textworld = _import_textworld()
    directory.mkdir(parents=True, exist_ok=True)
    options = textworld.GameOptions()
    options.seeds = int(seed)
    options.nb_rooms = int(nb_rooms)
    options.nb_objects = int(nb_objects)
    options.quest_length = int(quest_length)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        options.path = str(Path(tmp) / path.name)
        game = textworld.generator.make_game(options)
        compiled = Path(textworld.generator.compile_game(game, options))
        for sibling in compiled.parent.glob(compiled.stem + ".*"):  # the .z8 and its .json/.ni companions
            os.replace(sibling, directory / sibling.name)
    return path


class TextWorldEnv(gym.Env[str, str]):
    """Text adventures generated by TextWorld, behind Gymnasium's 5-tuple API.

    ## Description
    TextWorld ("TextWorld: A Learning Environment for Text-based Games", Cote et al. 2018, arXiv:1806.11532)
    generates parser-based adventure games from a seed: rooms, objects and a quest whose completion is scored.
    This adapter generates games offline with ``textworld.generator`` (cached on disk) or plays given
    ``.z8``/``.ulx`` files, and converts TextWorld's own 4-tuple API (cumulative score, done) into Gymnasium's.

    ## Action Space
    ``Text(max_length=max_command_length, min_length=0, charset=COMMAND_CHARSET)``: one command, printable ASCII
    (no newline or tab, which the game's parser would read as two commands, and no backslash, which starts
    the interpreter's meta-commands).

    ## Observation Space
    ``Text(max_length=max_observation_length, min_length=0)``, printable ASCII plus newline and tab: the game's
    feedback to the last command (the intro and first room after ``reset``).

    The interpreter's meta-commands never reach the game. ``quit`` (``q``) ends the episode: the reply is "You
    have quit the game.", ``terminated`` with reward 0, neither ``won`` nor ``lost``. The env answers the others
    itself with "That command is not available in this environment." and the game does not change (they still
    count as a step): the file verbs (``save``, ``restore``, ``script``, ``unscript``, ``transcript``,
    ``noscript``), which would write into the working directory; ``restart`` and ``undo`` (a new episode is
    ``reset()``'s, and both would desync TextWorld's quest tracking); the printing modes (``verbose``/``long``,
    ``brief``/``normal``, ``superbrief``/``short``, ``notify``), which would change later observations and the
    anchor; and TextWorld's framework commands (``tw-...``, ``print_state``, ``enable``/``disable print state
    option``, ``restrict commands``), which reveal the world state or pollute later feedback. Every sentence of a
    command is checked ("look. save", "look then save", "me, quit"), and words as the game's dictionary cuts them
    ("transcripx" is ``transcript``). Read-only meta verbs go to the game: ``score``, ``version``, ``verify``,
    ``pronouns``, ``goal``, ``help``, ``again``, ``oops``.

    ## Rewards
    The change of the game's score: ``score_t - score_{t-1}`` (TextWorld reports the cumulative score).

    ## Starting State
    The start of a game drawn uniformly (with ``np_random``) among the env's games, or ``options={"game_index": i}``.

    ## Episode End
    Terminated when the game is won or lost; truncated after ``max_steps`` commands.

    ## Info
    Always: ``score``, ``max_score``, ``moves``, ``won``, ``lost``, ``is_success`` (= won), ``game_file``. On
    request (``request_infos``): any of ``admissible_commands``, ``policy_commands`` (a shortest winning command
    sequence from here), ``walkthrough``, ``description``, ``inventory``, ``objective``, and ``anchor`` (room
    description and inventory: the GiGPO anchor state, which the LLM trainer requests). TextWorld computes the
    description and the inventory (so the anchor too) with extra interpreter commands every step, so none of the
    three is on by default.

    ## Arguments
    | argument               | default | meaning                                                        |
    |------------------------|---------|----------------------------------------------------------------|
    | game_files             | None    | path(s) of existing games; ``None`` generates from the seeds   |
    | game_seeds             | 0       | seed or seeds of generated games (one game per seed)           |
    | nb_rooms               | 3       | rooms of generated games                                       |
    | nb_objects             | 5       | objects of generated games                                     |
    | quest_length           | 3       | quest length of generated games                                |
    | cache_dir              | None    | where generated games are cached                               |
    | max_steps              | 50      | commands per episode before truncation                         |
    | request_infos          | ()      | names among ``TEXTWORLD_INFOS``                                 |
    | max_command_length     | 200     | longest command                                                |
    | max_observation_length | 65536   | longest observation                                            |
    | render_mode            | None    | "ansi": ``render()`` returns the transcript                     |

    ## Version History
    * v0: Initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012  (gymnasium.Env declares it as a plain attribute)

    def __init__(
        self,
        game_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        game_seeds: int | Sequence[int] = 0,
        nb_rooms: int = 3,
        nb_objects: int = 5,
        quest_length: int = 3,
        cache_dir: str | os.PathLike[str] | None = None,
        max_steps: int = 50,
        request_infos: Iterable[str] = (),
        max_command_length: int = 200,
        max_observation_length: int = 65536,
        render_mode: str | None = None,
    ) -> None:
        for name, value in (
            ("max_steps", max_steps),
            ("max_command_length", max_command_length),
            ("max_observation_length", max_observation_length),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        if isinstance(request_infos, str):
            raise TypeError(f"request_infos must be an iterable of names, got the string {request_infos!r}")
        self.request_infos = tuple(request_infos)
        unknown = [name for name in self.request_infos if name not in TEXTWORLD_INFOS]
        if unknown:
            raise ValueError(f"unknown info request(s) {unknown}; expected names among {list(TEXTWORLD_INFOS)}")
        self._textworld = _import_textworld()

        if game_files is not None:
            paths = [game_files] if isinstance(game_files, (str, os.PathLike)) else list(game_files)
            if not paths:
                raise ValueError("game_files must name at least one game file")
            self.game_files = tuple(Path(p) for p in paths)
            for path in self.game_files:
                if path.suffix not in (".z8", ".ulx"):
                    raise ValueError(f"game files must be .z8 or .ulx TextWorld games, got {path}")
                if not path.is_file():
                    raise FileNotFoundError(f"no such game file: {path}")
        else:
            seeds = [game_seeds] if isinstance(game_seeds, (int, np.integer)) else list(game_seeds)
            if not seeds or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
                raise ValueError(f"game_seeds must be an integer or a non-empty sequence of integers, got {game_seeds!r}")
            self.game_files = tuple(generate_game(int(s), nb_rooms, nb_objects, quest_length, cache_dir) for s in seeds)

        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.max_command_length = int(max_command_length)
        self.max_observation_length = int(max_observation_length)
        self.action_space = spaces.Text(max_length=int(max_command_length), min_length=0, charset=COMMAND_CHARSET)
        self.observation_space = spaces.Text(
            max_length=int(max_observation_length), min_length=0, charset=_OBSERVATION_CHARSET
        )
        anchor = "anchor" in self.request_infos  # description and inventory cost extra interpreter commands
        self._infos = self._textworld.EnvInfos(
            won=True,
            lost=True,
            score=True,
            max_score=True,
            moves=True,
            description=anchor or "description" in self.request_infos,
            inventory=anchor or "inventory" in self.request_infos,
            admissible_commands="admissible_commands" in self.request_infos,
            policy_commands="policy_commands" in self.request_infos,
            objective="objective" in self.request_infos,
            extras=["walkthrough"] if "walkthrough" in self.request_infos else [],
        )
        self._games: dict[Path, Any] = {}
        self._game: Any = None
        self._state: Any = None
        self._game_file: Path | None = None
        self._score = 0
        self._steps = 0
        self._done = True
        self._transcript = ""

    def _start(self, path: Path) -> Any:
        if path not in self._games:
            with _quiet_jericho():
                self._games[path] = self._textworld.start(str(path), request_infos=self._infos)
        return self._games[path]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Restart a game: ``options={"game_index": i}`` picks one, otherwise it is drawn with ``np_random``."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"game_index"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; expected only 'game_index'")
        if "game_index" in options:
            index = options["game_index"]
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.game_files):
                raise ValueError(f"game_index must be an integer in [0, {len(self.game_files)}), got {index!r}")
        else:
            index = int(self.np_random.integers(len(self.game_files)))
        self._game_file = self.game_files[int(index)]
        self._game = self._start(self._game_file)
        with _quiet_jericho():
            state = self._game.reset()
        self._state = state
        self._score = int(state["score"] or 0)
        self._steps = 0
        self._done = False
        observation = self._observation(state.feedback)
        self._transcript = observation
        return observation, self._info(state)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send one command to the game.

        Raises:
            ResetNeeded: If called before ``reset`` or after the episode ended.
            TypeError: If ``action`` is not a string.
            ValueError: If ``action`` is too long or holds characters outside :data:`COMMAND_CHARSET`.
        """
        if self._done or self._game is None:
            raise ResetNeeded("call reset() before step(): the episode has not started or has ended")
        if isinstance(action, bytes) or not isinstance(action, str):
            raise TypeError(f"the action must be a str (one command), got {type(action).__name__}")
        if len(action) > self.max_command_length:
            raise ValueError(
                f"the command has {len(action)} characters; the action space allows at most {self.max_command_length}"
            )
        bad = sorted(set(action) - _COMMAND_SET)
        if bad:
            raise ValueError(
                f"the command holds characters outside the command charset (printable ASCII without backslash): {bad[:5]}"
            )
        meta = _meta_verb(action)
        if meta is None:
            with _quiet_jericho():
                state, score, _ = self._game.step(action)
            feedback = state.feedback
        else:  # answered here: nothing reaches the game, whose state does not change
            state, score = self._state, self._score
            feedback = _QUIT_REPLY if meta == "quit" else _DISABLED_REPLY
        self._state = state
        reward = float(int(score) - self._score)  # TextWorld returns the cumulative score
        self._score = int(score)
        self._steps += 1
        terminated = bool(state["won"] or state["lost"]) or meta == "quit"
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        observation = self._observation(feedback)
        if self.render_mode == "ansi":  # kept only for render(): it grows with every step
            self._transcript += f"> {action}\n{observation}"
        return observation, reward, terminated, truncated, self._info(state)

    def render(self) -> str | None:
        """With ``render_mode="ansi"``, the transcript so far (feedback and ``> command`` lines); else ``None``."""
        return self._transcript if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Stop every game interpreter this env started."""
        for game in self._games.values():
            game.close()
        self._games.clear()
        self._game = None
        self._done = True

    def _observation(self, feedback: str | None) -> str:
        text = _to_charset(feedback or "")
        limit = self.max_observation_length
        if len(text) > limit:
            raise RuntimeError(f"the game's feedback has {len(text)} characters, more than max_observation_length={limit}")
        return text

    def _info(self, state: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "score": self._score,
            "max_score": state["max_score"],
            "moves": state["moves"],
            "won": bool(state["won"]),
            "lost": bool(state["lost"]),
            "is_success": bool(state["won"]),
            "game_file": str(self._game_file),
        }
        for name in self.request_infos:
            if name == "anchor":
                info[name] = (_to_charset(state["description"] or ""), _to_charset(state["inventory"] or ""))
                continue
            key = "extra.walkthrough" if name == "walkthrough" else name
            value = state[key]
            info[name] = list(value) if isinstance(value, (list, tuple)) else value
        return info


def _to_charset(text: str) -> str:
    """:func:`to_charset`, skipped when ``text`` is already inside the charset (TextWorld's feedback mostly is)."""
    return text if _OUTSIDE_CHARSET.search(text) is None else to_charset(text)


def _dictionary_word(word: str) -> str:
    """``word`` cut to the 9 Z-characters the game's dictionary keeps, as its parser compares words.

    A letter takes one Z-character, a digit or a mark of ZSCII's A2 row two, any other character four; so
    ``transcripx`` is the game's ``transcript``.
    """
    cost = 0
    for index, char in enumerate(word):
        cost += 1 if "a" <= char <= "z" else 2 if char in _ZSCII_A2 else 4
        if cost > 9:
            return word[:index]
    return word


_DISABLED_KEYS = frozenset(map(_dictionary_word, DISABLED_VERBS))
_QUIT_KEYS = frozenset(map(_dictionary_word, QUIT_VERBS))


def _meta_verb(command: str) -> str | None:
    """``"quit"`` or ``"disabled"`` when a sentence of ``command`` starts with such a verb, else ``None``.

    The parser runs every sentence of a command ("look. save", "look then save") and every order after a comma
    ("me, quit"), so each is checked; the first meta verb decides.
    """
    start = True
    for token in _TOKEN.findall(command.lower()):
        if token in (".", ",", "then"):
            start = True
            continue
        if start:
            key = _dictionary_word(token)
            if key in _QUIT_KEYS:
                return "quit"
            if key in _DISABLED_KEYS or token.startswith("tw-"):
                return "disabled"
        start = False
    return None


@contextlib.contextmanager
def _quiet_jericho() -> Iterator[None]:
    """Silence jericho's warnings that TextWorld-made games have no built-in walkthrough or action finder.

    TextWorld computes both itself (from the game's quest), so these warnings say nothing about its games.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Unable to (retrieve walkthrough|find valid actions)")
        yield
