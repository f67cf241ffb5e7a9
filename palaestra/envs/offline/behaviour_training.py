"""Train the behaviour policies of a D4RL-style dataset for any Gymnasium env, resumably, with Stable-Baselines3.

D4RL made its Gym-MuJoCo data from SAC runs (Fu et al. 2020, Sec. 5 and App. C): the ``expert`` policy is a
fully trained SAC agent; the ``medium`` policy comes from a second run stopped early, at about a third of the
expert's performance; ``medium-replay`` is that second run's replay buffer up to the medium policy. The same
recipe is used here for any env with flat ``Box`` observations:

* ``Box`` actions train SB3's SAC with its default hyperparameters (as palaestra's shipped MuJoCo policies),
  except a replay buffer as long as the run (SB3's default of 1M would be saved at every checkpoint);
* ``Discrete`` actions train SB3's DQN with rl-baselines3-zoo's ``CartPole-v1`` hyperparameters
  (``hyperparams/dqn.yml``), since SB3's defaults are Atari's (a 10,000-step target update) and barely learn a
  small env in 100k steps. The data are then collected epsilon-greedily with DQN's final epsilon, DQN's own
  behaviour policy.

Each run evaluates its deterministic policy every ``eval_every`` steps on ``eval_episodes`` episodes and
checkpoints the model, its replay buffer and its evaluation curve in its folder, so that an interrupted run
resumes from its last evaluation when the command is run again. (A resumed run continues from the checkpoint's
weights and buffer, but the env and sampler states are fresh, so it is not bit-identical to a run that was
never interrupted.)

* expert run (:func:`train_expert`): the snapshot with the best evaluation return is the expert;
* medium run (:func:`train_medium`): a fresh run with another seed that stops at the first evaluation whose
  return reaches ``target`` (a third of the way from a random policy's return to the expert's); the medium
  policy is its evaluated snapshot closest to the target (the last one, or the one before it when the return
  jumped past the target), and medium-replay its replay buffer up to that snapshot's step, whole episodes only.
  If the budget ends first, the closest snapshot so far is taken and the manifest says the target was missed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

__all__ = [
    "DQN_HYPERPARAMS",
    "BehaviourRun",
    "TrainingSettings",
    "algorithm_for",
    "evaluate_return",
    "load_behaviour_model",
    "replay_episodes",
    "train_expert",
    "train_medium",
]

#: rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1 (the zoo's tuned DQN for a small discrete env).
DQN_HYPERPARAMS: dict[str, Any] = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
    "policy_kwargs": {"net_arch": [256, 256]},
}


@dataclass(frozen=True)
class TrainingSettings:
    """How the behaviour runs train and evaluate.

    Attributes:
        steps: Env steps of each run (the medium run usually stops earlier).
        eval_every: Env steps between evaluations (and checkpoints).
        eval_episodes: Episodes per evaluation (deterministic policy).
        seed: Seed of the expert run; the medium run uses ``seed + 1``.
        hyperparams: Overrides of the algorithm's hyperparameters.
    """

    steps: int = 100_000
    eval_every: int = 5_000
    eval_episodes: int = 5
    seed: int = 0
    hyperparams: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_every > self.steps:
            raise ValueError(f"eval-every ({self.eval_every}) must not exceed the training steps ({self.steps})")


def algorithm_for(action_space: gym.Space) -> str:
    """``"sac"`` for Box actions, ``"dqn"`` for Discrete ones."""
    return "sac" if isinstance(action_space, gym.spaces.Box) else "dqn"


def _algorithm_class(name: str) -> Any:
    from stable_baselines3 import DQN, SAC

    return {"sac": SAC, "dqn": DQN}[name]


def evaluate_return(model: Any, env_id: str, episodes: int, seed: int, env_kwargs: dict[str, Any] | None = None) -> float:
    """Mean undiscounted return of ``model``'s deterministic policy, or of uniform random actions if ``model`` is None.

    Episode ``k`` resets with seed ``seed + k``; random actions come from the action space seeded with ``seed``.
    """
    env = gym.make(env_id, **(env_kwargs or {}))
    env.action_space.seed(seed)
    returns = []
    for k in range(episodes):
        observation, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            action = env.action_space.sample() if model is None else model.predict(observation, deterministic=True)[0]
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2))
    os.replace(partial, path)


def _save_model(model: Any, path: Path) -> None:
    """``model.save`` to ``path`` (a ``.zip``), atomically."""
    partial = path.with_name(path.stem + ".partial.zip")
    model.save(partial)
    os.replace(partial, path)


@dataclass
class BehaviourRun:
    """One SB3 training run in its own folder: ``checkpoint.zip``, ``replay_buffer.pkl`` and ``state.json``.

    ``state.json`` holds the evaluation curve (``[step, return]`` pairs), the kept snapshots (``best`` or
    ``closest``: their step and return; their weights are ``<name>.zip``), the seconds trained and whether the
    run is finished.
    """

    folder: Path
    env_id: str
    settings: TrainingSettings
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    report: Callable[[str], None] | None = None  # called with one line per evaluation

    @property
    def state_path(self) -> Path:
        """Where the run's state is saved."""
        return self.folder / "state.json"

    def state(self) -> dict[str, Any] | None:
        """The saved state, or None if the run never reached its first evaluation."""
        return json.loads(self.state_path.read_text()) if self.state_path.is_file() else None

    def train(self, seed: int, target: float | None = None) -> dict[str, Any]:
        """Train (or resume) to ``settings.steps``, stopping early at the first evaluation reaching ``target``.

        Returns:
            The final state (see the class docstring).
        """
        state = self.state()
        if state is not None and state["finished"]:
            return state
        model, state = self._model_and_state(seed, state)
        remaining = self.settings.steps - model.num_timesteps
        started = time.time()
        if remaining > 0:
            callback = _EvaluationCallback(self, state, target, started)
            model.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=state["curve"] == [])
        state["finished"] = True
        state["steps"] = int(model.num_timesteps)
        _write_json(self.state_path, state)
        return state

    def _model_and_state(self, seed: int, state: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        env = gym.make(self.env_id, **self.env_kwargs)
        name = algorithm_for(env.action_space)
        algorithm = _algorithm_class(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        if state is not None and (self.folder / "checkpoint.zip").is_file():
            model = algorithm.load(self.folder / "checkpoint.zip", env=env, device="cpu")
            model.load_replay_buffer(self.folder / "replay_buffer.pkl")
            return model, state
        # a buffer longer than the run is never filled (SAC's default is 1M): size it to the run
        defaults = {**(DQN_HYPERPARAMS if name == "dqn" else {}), "buffer_size": min(self.settings.steps, 1_000_000)}
        hyperparams = {**defaults, **self.settings.hyperparams}
        model = algorithm("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hyperparams)
        return model, {"algorithm": name, "hyperparams": hyperparams, "seed": seed, "curve": [], "snapshots": {},
                       "seconds": 0.0, "finished": False}  # fmt: skip

    def keep(self, model: Any, state: dict[str, Any], name: str, step: int, mean_return: float) -> None:
        """Keep ``model`` as the snapshot ``name`` (``best`` or ``closest``)."""
        _save_model(model, self.folder / f"{name}.zip")
        state["snapshots"][name] = {"step": step, "return": mean_return}

    def checkpoint(self, model: Any, state: dict[str, Any]) -> None:
        """Save what resuming needs: the model, its replay buffer, then the state (written last)."""
        _save_model(model, self.folder / "checkpoint.zip")
        partial = self.folder / "replay_buffer.partial.pkl"
        model.save_replay_buffer(partial)
        os.replace(partial, self.folder / "replay_buffer.pkl")
        _write_json(self.state_path, state)


class _EvaluationCallback(BaseCallback):
    """Evaluate every ``eval_every`` steps, keep the best and the closest-to-target snapshots, checkpoint."""

    def __init__(self, run: BehaviourRun, state: dict[str, Any], target: float | None, started: float) -> None:
        super().__init__()
        self.run, self.state, self.target, self.started = run, state, target, started
        self.seconds_before = state["seconds"]

    def _on_step(self) -> bool:
        step = int(self.model.num_timesteps)
        if step % self.run.settings.eval_every and step != self.run.settings.steps:
            return True
        settings = self.run.settings
        mean_return = evaluate_return(self.model, self.run.env_id, settings.eval_episodes, 10_000 + settings.seed,
                                      self.run.env_kwargs)  # fmt: skip
        self.state["curve"].append([step, mean_return])
        snapshots = self.state["snapshots"]
        if "best" not in snapshots or mean_return > snapshots["best"]["return"]:
            self.run.keep(self.model, self.state, "best", step, mean_return)
        reached = False
        if self.target is not None:
            closest = snapshots.get("closest")
            if closest is None or abs(mean_return - self.target) < abs(closest["return"] - self.target):
                self.run.keep(self.model, self.state, "closest", step, mean_return)
            reached = mean_return >= self.target
        self.state["seconds"] = self.seconds_before + time.time() - self.started
        self.run.checkpoint(self.model, self.state)
        if self.run.report is not None:
            self.run.report(
                f"  step {step}/{settings.steps}: mean return {mean_return:.1f} over {settings.eval_episodes} episodes "
                f"(best {snapshots['best']['return']:.1f}"
                + (f", target {self.target:.1f})" if self.target is not None else ")")
            )
        return not reached


def train_expert(
    folder: Path, env_id: str, settings: TrainingSettings, report: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The expert run: its best evaluated snapshot is ``folder/best.zip``. Returns the run's state."""
    return BehaviourRun(folder, env_id, settings, report=report).train(settings.seed)


def train_medium(
    folder: Path, env_id: str, settings: TrainingSettings, target: float, report: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The medium run, stopped at the first evaluation reaching ``target``; its medium policy is ``folder/closest.zip``."""
    return BehaviourRun(folder, env_id, settings, report=report).train(settings.seed + 1, target)


def load_behaviour_model(path: Path, algorithm: str) -> Any:
    """Load a snapshot written by a :class:`BehaviourRun` (``algorithm``: ``sac`` or ``dqn``)."""
    return _algorithm_class(algorithm).load(path, device="cpu")


def replay_episodes(path: Path, upto: int, action_space: gym.Space, algorithm: str) -> dict[str, np.ndarray]:
    """The first ``upto`` transitions of a saved SB3 replay buffer as whole episodes, in Minari's layout.

    Returns ``observations`` (T+1 rows per episode), ``actions`` (in the env's units: SAC stores them rescaled
    to [-1, 1]), ``rewards``, ``terminations``, ``truncations`` and ``episode_lengths``.

    Raises:
        RuntimeError: If no episode ends within the first ``upto`` transitions.
    """
    from stable_baselines3.common.save_util import load_from_pkl

    buffer = load_from_pkl(path)
    n = min(upto, buffer.buffer_size if buffer.full else buffer.pos)
    dones = buffer.dones[:n, 0].astype(bool)
    ends = np.flatnonzero(dones)
    if len(ends) == 0:
        raise RuntimeError(f"no episode of the medium run ends within its first {n} steps, so medium-replay is empty")
    n = int(ends[-1]) + 1  # whole episodes only
    starts = np.concatenate([[0], ends[:-1] + 1])
    observations = []
    for start, end in zip(starts, ends, strict=True):
        observations.append(buffer.observations[start : end + 1, 0])
        observations.append(buffer.next_observations[end : end + 1, 0])
    actions = buffer.actions[:n, 0]
    if algorithm == "sac":
        low, high = action_space.low, action_space.high  # type: ignore[attr-defined]
        actions = low + 0.5 * (actions + 1.0) * (high - low)
    else:
        actions = actions.reshape(n)
    timeouts = buffer.timeouts[:n, 0].astype(bool)
    return {
        "observations": np.concatenate(observations),
        "actions": actions.astype(action_space.dtype),
        "rewards": buffer.rewards[:n, 0].astype(np.float64),
        "terminations": dones[:n] & ~timeouts,
        "truncations": timeouts,
        "episode_lengths": (ends - starts + 1).astype(np.int64),
    }
