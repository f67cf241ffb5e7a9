"""Evaluate any :class:`~palaestra.protocol.Policy` on any Gymnasium env or SB3 VecEnv."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from palaestra.protocol import Policy

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

__all__ = ["EvaluationResult", "bootstrap_ci", "evaluate", "iqm_with_ci"]


@dataclass(frozen=True)
class EvaluationResult:
    """Per-episode outcomes of an evaluation and the mean return with its bootstrap confidence interval.

    Attributes:
        returns: Undiscounted return of each episode, shape ``(n_episodes,)``.
        lengths: Number of steps of each episode, shape ``(n_episodes,)``.
        successes: The env's final ``info["is_success"]`` per episode, or ``None`` when the env never reports it.
        mean: Mean return.
        ci_low: Lower end of the confidence interval of the mean return.
        ci_high: Upper end of the confidence interval of the mean return.
        confidence_level: Coverage of the interval (0.95 by default).
    """

    returns: np.ndarray = field(repr=False)
    lengths: np.ndarray = field(repr=False)
    successes: np.ndarray | None = field(repr=False)
    mean: float
    ci_low: float
    ci_high: float
    confidence_level: float = 0.95

    @property
    def std(self) -> float:
        """Standard deviation of the returns (as SB3's ``evaluate_policy`` reports it)."""
        return float(np.std(self.returns))

    @property
    def success_rate(self) -> float | None:
        """Fraction of successful episodes, or ``None`` when the env does not report success."""
        return None if self.successes is None else float(np.mean(self.successes))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python summary, suitable for JSON."""
        return {
            "n_episodes": len(self.returns),
            "mean_return": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence_level": self.confidence_level,
            "std_return": self.std,
            "mean_length": float(np.mean(self.lengths)),
            "success_rate": self.success_rate,
            "returns": self.returns.tolist(),
            "lengths": self.lengths.tolist(),
        }

    def __str__(self) -> str:
        text = (
            f"mean return {self.mean:.2f} ({self.confidence_level:.0%} CI {self.ci_low:.2f} to {self.ci_high:.2f}) "
            f"over {len(self.returns)} episodes, mean length {np.mean(self.lengths):.1f}"
        )
        return text if self.successes is None else f"{text}, success rate {self.success_rate:.0%}"


def bootstrap_ci(values: np.ndarray, confidence_level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean (``scipy.stats.bootstrap``, 10 000 resamples).

    A sample of fewer than two values, or of identical values, has the degenerate interval ``(mean, mean)``.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(values))
    if values.size < 2 or np.all(values == values[0]):
        return mean, mean
    from scipy import stats  # imported here: `import palaestra` (and so every gym.make) stays fast

    result = stats.bootstrap(
        (values,), np.mean, confidence_level=confidence_level, n_resamples=10_000, method="percentile", rng=seed
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def iqm_with_ci(scores: np.ndarray, reps: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Interquartile mean of a ``(runs, tasks)`` score matrix and its 95% stratified-bootstrap CI (rliable).

    The bootstrap resamples runs within each task (Agarwal et al., 2021). rliable draws from NumPy's global
    generator: it is seeded with ``seed`` for the call and then put back as it was.

    Returns:
        ``(iqm, ci_low, ci_high)``.
    """
    try:
        from rliable import library, metrics
    except ImportError:
        raise ImportError('the IQM needs rliable: pip install "palaestra[bench]"') from None

    def iqm(matrix: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(matrix)])

    saved = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        point, interval = library.get_interval_estimates({"scores": np.asarray(scores, np.float64)}, iqm, reps=reps)
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    (low,), (high,) = interval["scores"]
    return float(point["scores"][0]), float(low), float(high)


def evaluate(
    policy: Policy,
    env: gym.Env | VecEnv,
    n_episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    confidence_level: float = 0.95,
) -> EvaluationResult:
    """Run ``policy`` for ``n_episodes`` episodes and summarise the returns.

    The first reset is seeded with ``seed`` (a VecEnv is seeded with ``env.seed(seed)``, copy ``i``
    getting ``seed + i``) and later episodes continue from that random stream, exactly as SB3's
    ``evaluate_policy`` does on a VecEnv seeded the same way, so both give the same episodes. As in SB3,
    when the env is wrapped in ``Monitor`` the episode statistics it reports in ``info["episode"]`` are used.
    A policy whose ``predict`` takes ``action_masks`` (sb3-contrib's ``MaskablePPO``) gets the env's
    ``action_masks()`` at every step, as sb3-contrib's own ``evaluate_policy`` gives them.

    Args:
        policy: Anything with SB3's ``predict`` signature (SB3 models, palaestra agents, ...).
        env: A Gymnasium env, or an SB3 ``VecEnv`` whose copies share the episodes as in ``evaluate_policy``.
        n_episodes: Number of episodes (>= 1).
        seed: Seed of the first reset and of the bootstrap.
        deterministic: Ask the policy for its deterministic action.
        confidence_level: Coverage of the bootstrap interval of the mean return, in (0, 1).

    Returns:
        The per-episode returns, lengths and successes with the mean return and its confidence interval.

    Raises:
        TypeError: If ``policy`` has no ``predict`` method or ``env`` is neither a Gymnasium env nor a VecEnv.
        ValueError: If ``n_episodes < 1`` or ``confidence_level`` is not in (0, 1).
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must have SB3's predict(observation, state, episode_start, deterministic), got {policy!r}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be an integer >= 1, got {n_episodes!r}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")
    from stable_baselines3.common.vec_env import VecEnv  # imported here: it pulls in torch

    if isinstance(env, VecEnv):
        returns, lengths, successes = _run_vec_env(policy, env, int(n_episodes), seed, deterministic)
    elif isinstance(env, gym.Env):
        returns, lengths, successes = _run_single_env(policy, env, int(n_episodes), seed, deterministic)
    else:
        raise TypeError(f"env must be a gymnasium.Env or a stable_baselines3 VecEnv, got {type(env).__name__}")
    returns_array = np.asarray(returns, dtype=np.float64)
    ci_low, ci_high = bootstrap_ci(returns_array, confidence_level, seed)
    return EvaluationResult(
        returns=returns_array,
        lengths=np.asarray(lengths, dtype=np.int64),
        successes=None if all(s is None for s in successes) else np.asarray([bool(s) for s in successes]),
        mean=float(np.mean(returns_array)),
        ci_low=ci_low,
        ci_high=ci_high,
        confidence_level=confidence_level,
    )


_Outcomes = tuple[list[float], list[int], list[Any]]


def _takes_action_masks(policy: Policy) -> bool:
    """Whether ``policy.predict`` takes ``action_masks`` (sb3-contrib's ``MaskablePPO`` does)."""
    import inspect

    try:
        return "action_masks" in inspect.signature(policy.predict).parameters
    except (TypeError, ValueError):
        return False


def _mask_function(env: gym.Env) -> Callable[[], np.ndarray] | None:
    """The env's ``action_masks`` (``CandidateActions`` offers one), or ``None``."""
    try:
        return env.get_wrapper_attr("action_masks")  # type: ignore[no-any-return]
    except AttributeError:
        return None


def _run_single_env(policy: Policy, env: gym.Env, n_episodes: int, seed: int, deterministic: bool) -> _Outcomes:
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[Any] = []
    state = None
    masks_of = _mask_function(env) if _takes_action_masks(policy) else None
    for episode in range(n_episodes):
        observation, info = env.reset(seed=seed if episode == 0 else None)
        episode_start = np.ones((1,), dtype=bool)
        total, length, done = 0.0, 0, False
        while not done:
            masks = {} if masks_of is None else {"action_masks": masks_of()}
            action, state = policy.predict(
                observation, state=state, episode_start=episode_start, deterministic=deterministic, **masks
            )
            observation, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            episode_start = np.zeros((1,), dtype=bool)
        if "episode" in info:  # Monitor's statistics, as SB3 uses them
            total, length = float(info["episode"]["r"]), int(info["episode"]["l"])
        returns.append(total)
        lengths.append(length)
        successes.append(info.get("is_success"))
    return returns, lengths, successes


def _run_vec_env(policy: Policy, env: VecEnv, n_episodes: int, seed: int, deterministic: bool) -> _Outcomes:
    # Same episode bookkeeping as SB3's evaluate_policy, so both agree episode by episode.
    n_envs = env.num_envs
    targets = np.array([(n_episodes + i) // n_envs for i in range(n_envs)], dtype=int)
    counts = np.zeros(n_envs, dtype=int)
    current_returns = np.zeros(n_envs)
    current_lengths = np.zeros(n_envs, dtype=int)
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[Any] = []
    env.seed(seed)
    observations = env.reset()
    states = None
    episode_starts = np.ones((n_envs,), dtype=bool)
    takes_masks = _takes_action_masks(policy)
    while (counts < targets).any():
        masks = {"action_masks": np.stack(env.env_method("action_masks"))} if takes_masks else {}
        actions, states = policy.predict(
            observations, state=states, episode_start=episode_starts, deterministic=deterministic, **masks
        )
        observations, rewards, dones, infos = env.step(actions)
        current_returns += rewards
        current_lengths += 1
        for i in range(n_envs):
            if counts[i] >= targets[i]:
                continue
            episode_starts[i] = dones[i]
            if not dones[i]:
                continue
            if "episode" in infos[i]:
                returns.append(float(infos[i]["episode"]["r"]))
                lengths.append(int(infos[i]["episode"]["l"]))
            else:
                returns.append(float(current_returns[i]))
                lengths.append(int(current_lengths[i]))
            successes.append(infos[i].get("is_success"))
            counts[i] += 1
            current_returns[i] = 0.0
            current_lengths[i] = 0
    return returns, lengths, successes
