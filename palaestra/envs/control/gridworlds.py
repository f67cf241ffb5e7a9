"""Tabular MiniGrid-like gridworlds with sticky actions built into an exposed transition table.

The layouts follow MiniGrid's (Chevalier-Boisvert et al., https://github.com/Farama-Foundation/Minigrid):
an empty room, lava gaps and crossings, a locked door with its key, four rooms. They are written in pure
numpy so that every env carries its exact :class:`TabularMDP`, from which the (stochastic) effective
horizon of Laidlaw et al. (:mod:`palaestra.envs.control.effective_horizon`) and the exact return of any
policy are computed. Sticky actions (Machado et al., 2018, p = 0.25 as in the sticky BRIDGE MDPs of
Laidlaw et al., ICLR 2024) are part of the table: a state is a grid state plus the previously executed
action, so the table is Markov and sampling the env is sampling the table.

Differences from MiniGrid: the agent moves in the four compass directions (no orientation, no
turn/forward actions); stepping on the key picks it up and stepping into the locked door with the key
opens it (no pickup/toggle actions); observations are the index of the (sticky-augmented) state, not
an egocentric image. The reward is MiniGrid's ``1 - 0.9 * step_count / max_steps`` on reaching the goal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "GRIDWORLDS",
    "GridworldSpec",
    "TabularGridworldEnv",
    "TabularMDP",
    "build_gridworld_mdp",
    "policy_return",
    "sticky_augment",
]

ACTIONS = ("up", "right", "down", "left")
_MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])
_CELLS = set("#.SGLKD")


@dataclass(frozen=True)
class TabularMDP:
    """A finite-horizon tabular MDP with time-indexed expected rewards.

    Terminal outcomes are absorbing states with zero reward, so every quantity (values, effective
    horizon) is computed without special cases; an env built on the table ends the episode on entering
    a state with ``terminal[s]``.

    Attributes:
        transitions: ``P[s, a, s']``, shape ``(S, A, S)``; each row sums to 1.
        rewards: Expected reward ``R[t, s, a]`` of taking ``a`` in ``s`` at step ``t`` (0-based), shape ``(T, S, A)``.
        initial: Initial-state distribution, shape ``(S,)``.
        terminal: Absorbing terminal states, shape ``(S,)`` bool.
        horizon: ``T``, the number of decisions per episode.
    """

    transitions: np.ndarray = dataclasses.field(repr=False)
    rewards: np.ndarray = dataclasses.field(repr=False)
    initial: np.ndarray = dataclasses.field(repr=False)
    terminal: np.ndarray = dataclasses.field(repr=False)
    horizon: int

    def __post_init__(self) -> None:
        n_states, n_actions = self.transitions.shape[:2]
        if self.transitions.shape != (n_states, n_actions, n_states):
            raise ValueError(f"transitions must have shape (S, A, S), got {self.transitions.shape}")
        if not np.allclose(self.transitions.sum(axis=2), 1.0) or (self.transitions < 0).any():
            raise ValueError("every transitions[s, a] must be a probability distribution over next states")
        if self.rewards.shape != (self.horizon, n_states, n_actions):
            expected = (self.horizon, n_states, n_actions)
            raise ValueError(f"rewards must have shape (T, S, A) = {expected}, got {self.rewards.shape}")
        if self.initial.shape != (n_states,) or not np.isclose(self.initial.sum(), 1.0):
            raise ValueError(f"initial must be a distribution of shape ({n_states},)")
        if self.terminal.shape != (n_states,):
            raise ValueError(f"terminal must have shape ({n_states},), got {self.terminal.shape}")

    @property
    def n_states(self) -> int:
        """Number of states ``S``."""
        return self.transitions.shape[0]

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return self.transitions.shape[1]

    def __repr__(self) -> str:
        return f"TabularMDP(n_states={self.n_states}, n_actions={self.n_actions}, horizon={self.horizon})"


def sticky_augment(transitions: np.ndarray, terminal: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Fold sticky actions into a transition table by adding the previously executed action to the state.

    Augmented state ``(s, e)`` with ``e`` in ``{0..A-1}`` (the last executed action) or ``A`` (none yet,
    the first step); it is indexed ``s * (A + 1) + e``. Taking ``a`` in ``(s, e)`` executes ``e`` with
    probability ``p`` (if ``e`` exists) and ``a`` otherwise (Machado et al., 2018, Sec. 5.2); the next
    state is ``(s', executed action)``, or ``(s', none)`` when ``s'`` is terminal.

    Args:
        transitions: Base table ``P[s, a, s']``.
        terminal: Base terminal mask.
        p: Repeat probability in [0, 1).

    Returns:
        The augmented table, shape ``(S (A+1), A, S (A+1))``, and the augmented terminal mask.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"sticky-action probability p must lie in [0, 1), got {p!r}")
    n_states, n_actions, _ = transitions.shape
    width = n_actions + 1
    augmented = np.zeros((n_states * width, n_actions, n_states * width))
    for prev in range(width):
        for action in range(n_actions):
            executed = {action: 1.0} if prev == n_actions or p == 0.0 else {action: 1.0 - p}
            if prev < n_actions and p > 0.0:
                executed[prev] = executed.get(prev, 0.0) + p
            for exec_action, weight in executed.items():
                # (s, prev) --a--> (s', exec_action): P[s, exec_action, s'] * weight.
                next_prev = np.where(terminal, n_actions, exec_action)
                rows = np.arange(n_states) * width + prev
                cols = np.arange(n_states) * width + next_prev
                augmented[rows[:, None], action, cols[None, :]] += weight * transitions[:, exec_action, :]
    return augmented, np.repeat(terminal, width)


@dataclass(frozen=True)
class GridworldSpec:
    """One registered gridworld: its layout, horizon and a short description.

    Attributes:
        name: Short name; the env id is ``StickyGrid-<name>-v0``.
        layout: Rows of ``#`` wall, ``.`` floor, ``S`` start, ``G`` goal, ``L`` lava, ``K`` key, ``D`` locked door.
        horizon: ``max_steps`` of the episode.
        description: One line for ``palaestra list``.
    """

    name: str
    layout: tuple[str, ...]
    horizon: int
    description: str


def _parse_layout(layout: tuple[str, ...] | list[str]) -> np.ndarray:
    rows = [list(row) for row in layout]
    if not rows or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError(f"layout rows must be non-empty and of equal length, got {list(layout)!r}")
    grid = np.array(rows)
    unknown = set(grid.ravel()) - _CELLS
    if unknown:
        raise ValueError(f"layout has unknown cells {sorted(unknown)}; expected characters from {sorted(_CELLS)}")
    for char in "SG":
        if (grid == char).sum() != 1:
            raise ValueError(f"layout must have exactly one {char!r} cell, got {(grid == char).sum()}")
    if (grid == "K").sum() > 1:
        raise ValueError("layout may have at most one key 'K'")
    border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]])
    if (border != "#").any():
        raise ValueError("layout must be surrounded by walls '#'")
    return grid


def build_gridworld_mdp(layout: tuple[str, ...] | list[str], horizon: int, sticky_probability: float = 0.25) -> TabularMDP:
    """Build the exact tabular MDP of a gridworld layout, with sticky actions folded in.

    Base states are ``(cell, has_key)`` for every non-wall cell plus two absorbing terminals (goal
    reached, fell into lava); the table is then augmented with the previous action
    (:func:`sticky_augment`) and restricted to the states reachable from the start.

    Args:
        layout: Rows of the grid (see :class:`GridworldSpec`).
        horizon: Episode length ``T`` (MiniGrid's ``max_steps``).
        sticky_probability: Probability of repeating the previously executed action.

    Returns:
        The MDP; ``rewards[t, s, a] = (1 - 0.9 (t + 1) / T) * P(goal reached | s, a)``.
    """
    return _build(layout, horizon, sticky_probability)[0]


def _build(
    layout: tuple[str, ...] | list[str], horizon: int, sticky_probability: float
) -> tuple[TabularMDP, np.ndarray, list[tuple[int, int, bool, int | None]]]:
    """The MDP, the mask of its goal terminals and a readable label per state."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    grid = _parse_layout(layout)
    key_states = (0, 1) if (grid == "K").any() else (0,)
    cells = [(int(r), int(c)) for r, c in np.argwhere(grid != "#")]
    index = {(cell, k): i for i, (cell, k) in enumerate((c, k) for c in cells for k in key_states)}
    goal_state, lava_state = len(index), len(index) + 1
    n_base, n_actions = len(index) + 2, len(ACTIONS)
    base = np.zeros((n_base, n_actions, n_base))
    for (cell, key), s in index.items():
        if grid[cell] in "GL":  # entering these cells ends the episode, so they are never occupied
            base[s, :, s] = 1.0
            continue
        for a, (dr, dc) in enumerate(_MOVES):
            target = (cell[0] + int(dr), cell[1] + int(dc))
            kind = grid[target]
            if kind == "#" or (kind == "D" and not key):  # bump: stay
                next_state = s
            elif kind == "G":
                next_state = goal_state
            elif kind == "L":
                next_state = lava_state
            else:  # floor, start, open door, key (picked up on entry)
                next_state = index[(target, 1 if kind == "K" else key)]
            base[s, a, next_state] = 1.0
    base[goal_state, :, goal_state] = 1.0
    base[lava_state, :, lava_state] = 1.0
    terminal = np.zeros(n_base, dtype=bool)
    terminal[[goal_state, lava_state]] = True
    start_row, start_column = (int(v) for v in np.argwhere(grid == "S")[0])
    start_cell = (start_row, start_column)

    transitions, aug_terminal = sticky_augment(base, terminal, sticky_probability)
    width = n_actions + 1
    labels = [(c[0], c[1], bool(k), None if e == n_actions else e) for c, k in index for e in range(width)]
    labels += [(-1, -1, False, None)] * (2 * width)
    goal_mask = np.zeros(n_base * width, dtype=bool)
    goal_mask[goal_state * width : (goal_state + 1) * width] = True
    start = index[(start_cell, 0)] * width + n_actions

    # Keep the states reachable from the start (breadth-first over the support of the table).
    reachable = np.zeros(n_base * width, dtype=bool)
    reachable[start] = True
    frontier = [start]
    while frontier:
        successors = np.flatnonzero(transitions[frontier].sum(axis=(0, 1)) > 0)
        new = successors[~reachable[successors]]
        reachable[new] = True
        frontier = [int(s) for s in new]
    keep = np.flatnonzero(reachable)
    transitions = np.ascontiguousarray(transitions[np.ix_(keep, np.arange(n_actions), keep)])
    goal_mask, aug_terminal = goal_mask[keep], aug_terminal[keep]
    # MiniGrid's reward, paid once on entering the goal at step t + 1 (the absorbing terminals pay nothing).
    scale = 1.0 - 0.9 * np.arange(1, horizon + 1) / horizon
    goal_probability = transitions[:, :, goal_mask].sum(axis=2) * ~aug_terminal[:, None]
    rewards = scale[:, None, None] * goal_probability[None]
    initial = np.zeros(len(keep))
    initial[np.searchsorted(keep, start)] = 1.0
    mdp = TabularMDP(transitions, rewards, initial, aug_terminal, int(horizon))
    return mdp, goal_mask, [labels[i] for i in keep]


def policy_return(mdp: TabularMDP, actions: np.ndarray) -> float:
    """Exact expected return of a deterministic policy by a forward pass over the table.

    Args:
        mdp: The MDP.
        actions: Action per state, shape ``(S,)`` (stationary) or ``(T, S)`` (one row per step).

    Returns:
        ``E[sum_t r_t]`` from the initial distribution.
    """
    actions = np.asarray(actions)
    if actions.shape not in ((mdp.n_states,), (mdp.horizon, mdp.n_states)):
        raise ValueError(f"actions must have shape ({mdp.n_states},) or ({mdp.horizon}, {mdp.n_states}), got {actions.shape}")
    table = np.broadcast_to(actions, (mdp.horizon, mdp.n_states))
    states = np.arange(mdp.n_states)
    distribution, total = mdp.initial.copy(), 0.0
    for t in range(mdp.horizon):
        total += float(distribution @ mdp.rewards[t, states, table[t]])
        distribution = distribution @ mdp.transitions[states, table[t]]
    return total


def _spec(name: str, horizon: int, description: str, *rows: str) -> GridworldSpec:
    return GridworldSpec(name, tuple(rows), horizon, description)


# Ordered by their effective horizon with sticky actions (6.9 to 15.5): the registry the SQIRL benchmark sweeps.
GRIDWORLDS: dict[str, GridworldSpec] = {
    spec.name: spec
    for spec in (
        _spec("LavaGap-5x5", 30, "lava column with one gap", "#####", "#S.L#", "#..L#", "#...#", "#..G#", "#####"),
        _spec("Empty-4x4", 20, "2x2 room, goal in the far corner", "####", "#S.#", "#.G#", "####"),
        _spec("Corridor-8", 30, "one-cell corridor, goal at the end", "##########", "#S......G#", "##########"),
        _spec("Empty-5x5", 30, "3x3 room, goal in the far corner", "#####", "#S..#", "#...#", "#..G#", "#####"),
        _spec(
            "DoorKey-5x5",
            50,
            "fetch the key, open the door, reach the goal",
            "#####",
            "#SD.#",
            "#K#.#",
            "#.#G#",
            "#####",
        ),
        _spec("Empty-6x6", 40, "4x4 room, goal in the far corner", "######", "#S...#", "#....#", "#....#", "#...G#", "######"),
        _spec(
            "Empty-8x8",
            60,
            "6x6 room, goal in the far corner",
            "########",
            "#S.....#",
            "#......#",
            "#......#",
            "#......#",
            "#......#",
            "#.....G#",
            "########",
        ),
        _spec(
            "LavaGap-7x7",
            50,
            "lava wall with one gap",
            "#######",
            "#S....#",
            "#.....#",
            "#LLL.L#",
            "#.....#",
            "#....G#",
            "#######",
        ),
        _spec(
            "LavaCrossing-7x7",
            60,
            "two lava rivers with one crossing each",
            "#######",
            "#S.L..#",
            "#..L..#",
            "#..L.L#",
            "#....L#",
            "#.LL..#",
            "#...LG#",
            "#######",
        ),
        _spec(
            "DoorKey-6x6",
            80,
            "key behind a wall, door to the goal room",
            "######",
            "#S.#.#",
            "#..D.#",
            "#K.#.#",
            "#..#G#",
            "######",
        ),
        _spec(
            "FourRooms-9x9",
            80,
            "four rooms joined by one-cell doorways",
            "#########",
            "#S..#...#",
            "#.......#",
            "#...#...#",
            "##.###.##",
            "#...#...#",
            "#.......#",
            "#...#..G#",
            "#########",
        ),
        _spec(
            "DoorKey-8x8",
            120,
            "far key, locked door, goal in the far corner",
            "########",
            "#S..#..#",
            "#...#..#",
            "#...D..#",
            "#...#..#",
            "#...#..#",
            "#K..#.G#",
            "########",
        ),
    )
}


class TabularGridworldEnv(gym.Env[np.int64, np.int64]):
    """A MiniGrid-like gridworld with sticky actions whose exact transition table is exposed as ``mdp``.

    ## Description
    The agent walks a grid to the green goal square; lava ends the episode without reward; a locked
    door opens only once the key has been picked up. With probability ``sticky_probability`` (0.25 by
    default) each step repeats the previously executed action instead of the chosen one (Machado et
    al., 2018). ``env.mdp`` is the exact :class:`TabularMDP` the env samples from, so optimal and random
    returns, the effective horizon (:func:`palaestra.envs.control.effective_horizon.effective_horizon`)
    and any policy's exact return (:func:`policy_return`) are computable.

    ## Action Space
    ``Discrete(4)``: 0 up, 1 right, 2 down, 3 left.

    ## Observation Space
    ``Discrete(n)``: the index of the state (cell, key held, previously executed action) in ``env.mdp``.
    ``env.decode(obs)`` returns the readable ``(row, col, has_key, previous_action)``.

    ## Rewards
    ``1 - 0.9 * step_count / max_steps`` on entering the goal (MiniGrid's reward), 0 otherwise.

    ## Starting State
    The ``S`` cell, without the key, with no previous action.

    ## Episode End
    Terminates on entering the goal or lava; truncated after ``max_steps`` steps (``horizon``), which the
    registry also sets as ``max_episode_steps``.

    ## Arguments
    | Argument           | Default | Meaning                                                             |
    |--------------------|---------|---------------------------------------------------------------------|
    | layout             | -       | a registry name (``"Empty-5x5"``) or a tuple of layout rows         |
    | horizon            | None    | episode length; default: the registry's for a name (required else)  |
    | sticky_probability | 0.25    | probability of repeating the previously executed action             |
    | render_mode        | None    | ``"ansi"`` (text grid) or ``"rgb_array"`` (16 pixels per cell)      |

    ## Version History
    * v0: Initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}  # noqa: RUF012  (gymnasium.Env declares it as a plain attribute)

    def __init__(
        self,
        layout: str | tuple[str, ...] | list[str] = "Empty-5x5",
        horizon: int | None = None,
        sticky_probability: float = 0.25,
        render_mode: str | None = None,
    ):
        if isinstance(layout, str):
            if layout not in GRIDWORLDS:
                raise ValueError(f"unknown gridworld {layout!r}; expected one of {sorted(GRIDWORLDS)} or a tuple of rows")
            spec = GRIDWORLDS[layout]
            rows, horizon = spec.layout, spec.horizon if horizon is None else horizon
        else:
            rows = tuple(layout)
            if horizon is None:
                raise ValueError("horizon is required when layout is given as rows")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        p = sticky_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"sticky_probability must be a number in [0, 1), got {p!r}")
        self.layout = rows
        self.grid = _parse_layout(rows)
        self.horizon = int(horizon)  # type: ignore[arg-type]
        self.sticky_probability = float(p)
        self.render_mode = render_mode
        self.mdp, self._goal, self._labels = _build(rows, self.horizon, self.sticky_probability)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.Discrete(self.mdp.n_states)
        self._state = 0
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.int64, dict[str, Any]]:
        """Start a new episode at the ``S`` cell."""
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.initial))
        self._steps = 0
        return np.int64(self._state), {}

    def step(self, action: Any) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        """Sample the next state from the table; reward MiniGrid's time-discounted 1 on reaching the goal."""
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"action must be an integer in [0, 4), got {action!r}")
        a = int(action)
        probabilities = self.mdp.transitions[self._state, a]
        next_state = int(self.np_random.choice(self.mdp.n_states, p=probabilities))
        terminated = bool(self.mdp.terminal[next_state])
        reward = 1.0 - 0.9 * (self._steps + 1) / self.horizon if self._goal[next_state] else 0.0
        self._state = next_state
        self._steps += 1
        truncated = not terminated and self._steps >= self.horizon
        return np.int64(next_state), float(reward), terminated, truncated, {}

    def render(self) -> str | np.ndarray | None:
        """Text (``"ansi"``) or an RGB image, 16 pixels per cell (``"rgb_array"``), with the agent drawn as ``A``/red."""
        if self.render_mode is None:
            return None
        grid = self.grid.copy()
        if not self.mdp.terminal[self._state]:
            row, col, _, _ = self.decode(self._state)
            grid[row, col] = "A"
        if self.render_mode == "ansi":
            return "\n".join("".join(row) for row in grid)
        palette = {"#": 80, ".": 0, "S": 0, "G": (0, 200, 0), "L": (255, 128, 0), "K": (255, 215, 0), "D": (139, 69, 19)}
        palette["A"] = (220, 0, 0)
        image = np.zeros((*grid.shape, 3), dtype=np.uint8)
        for char, colour in palette.items():
            image[grid == char] = colour
        return np.kron(image, np.ones((16, 16, 1), dtype=np.uint8))

    def decode(self, state: int) -> tuple[int, int, bool, int | None]:
        """Readable ``(row, col, has_key, previous_action)`` of a non-terminal state index."""
        if not 0 <= int(state) < self.mdp.n_states or self.mdp.terminal[int(state)]:
            raise ValueError(f"state must be a non-terminal state index in [0, {self.mdp.n_states}), got {state!r}")
        return self._labels[int(state)]
