"""PROPS: Proximal Robust On-Policy Sampling.

Paper: Corrado & Hanna, "On-Policy Policy Gradient Reinforcement Learning Without On-Policy Sampling",
https://arxiv.org/abs/2311.08290. Reference code (read for understanding, not copied):
https://github.com/NicholasCorrado/PPOROS/tree/1e16b0e77f5aca188ed929f8e4256f0d6162049a/PROPS
(``ppo_props_continuous.py``, ``ppo_props_discrete.py``; re-read at the repository's head
a0c8708529047f85dcf98f90d5ea264dd43aeba2, where noted below), and the authors' later discrete rewrite
NicholasCorrado/PROPS, ``ppo_discrete.py`` at d5d91bd48b209bebe945c61b2a6b31f71cb71436.

On-policy policy gradients need on-policy *data*, not on-policy *sampling*: a finite batch drawn from the target
policy pi_theta has *sampling error* (its empirical action distribution differs from pi_theta). PROPS collects data
with a separate behaviour policy pi_phi that is re-fitted every ``props_n_steps`` env steps to raise the probability of
actions the buffer has under-sampled so far, and it keeps the last ``buffer_batches`` target batches, so that the
buffer as a whole looks more on-policy than any i.i.d. batch. The target update is SB3's PPO update run on the whole
buffer with log-probabilities and values recomputed under the current target, as if the data were on-policy.

Differences from the paper's code:

* The target update is SB3's :class:`~stable_baselines3.PPO` update (SB3 stops an epoch early at
  ``approx_kl > 1.5 * target_kl``; the reference code at ``approx_kl > target_kl``).
* The KL regulariser of the behaviour objective is KL(pi_phi || pi_theta) in closed form (summed over action
  dimensions) for both discrete and continuous actions; the continuous reference code uses this direction averaged
  over dimensions, the discrete one a one-sample estimate of KL(pi_theta || pi_phi).
* Episodes cut by a time limit are bootstrapped with ``gamma * V(terminal observation)`` under the *current* critic at
  each target update (SB3's treatment of truncation, recomputed because the buffer outlives the critic), and GAE never
  runs across an episode boundary. The reference depends on the commit: at 1e16b0e both PPOROS scripts store only
  ``terminated`` as the done flag, so the last step of a truncated episode bootstraps with the value of the next
  episode's first observation (the vector env has already reset) and GAE runs on into that episode; at a0c8708 and in
  the PROPS rewrite the flag is ``terminated or truncated``, i.e. truncation is treated as terminal (no bootstrap).
* The behaviour refit that follows a target update is anchored to the *updated* target: the ratio
  ``pi_phi / pi_theta``, the KL regulariser and the ``delta_PROPS`` early stop use the target that pi_phi has just
  been reset to, as Alg. 2 reads and as the PROPS rewrite does (it recomputes the target's log-probabilities right
  before every refit). PPOROS (both commits, both scripts) computes the target's log-probabilities and its
  means/stds (logits) once, *before* the PPO update, and reuses them for the refit after it: pi_phi starts at the new
  target but is measured against the old one, so its ratio starts at ``pi_new / pi_old`` instead of 1 and the early
  stop can fire on the target's own move. Refits between target updates are the same in all three.
* Behaviour minibatches hold ``len(data) // props_n_minibatches`` samples, so every epoch takes
  ``props_n_minibatches`` steps (as in the PROPS rewrite). PPOROS (both commits) fixes the minibatch size at
  ``(b * n - m) // props_num_minibatches`` (its size once the buffer is full) and takes ``min(that, len(data))``:
  while the buffer fills it takes fewer, larger steps per epoch; once it is full (``len(data) = b * n - m``) the two
  rules coincide.
* The behaviour Adam uses ``eps = 1e-5``, as PPOROS's discrete script (both commits), its continuous script at
  a0c8708 and the PROPS rewrite do; the continuous script at 1e16b0e uses torch's default ``1e-8``. The target's
  Adam is SB3's (``eps = 1e-5``), as in the reference.
* The sampling error's empirical policy pi_D is fitted by full-batch L-BFGS on the target's output layer with the hidden
  layers frozen (the reference code: Adam minibatches for 250 epochs), which is deterministic and converges in
  milliseconds; the plain mean of Sec. 1.5 of the paper is logged, not the advantage-weighted variant.
* With :class:`~stable_baselines3.common.vec_env.VecNormalize`, observations are stored normalised with the statistics
  of their collection time (the reference code re-normalises the whole buffer at each update).
"""

from __future__ import annotations

import copy
import io
import pathlib
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    kl_divergence,
)
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BaseModel, BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

__all__ = ["PROPS", "RollingRolloutBuffer", "SamplingErrorCallback", "props_behavior_loss", "sampling_error"]

SelfPROPS = TypeVar("SelfPROPS", bound="PROPS")


# --- Pure functions: the behaviour objective and the sampling error ------------------------------------------------


def props_behavior_loss(log_ratio: th.Tensor, kl: th.Tensor, clip_range: float, kl_coef: float) -> th.Tensor:
    """The PROPS behaviour objective to *minimise* (paper Eq. 5; Alg. 2, line 10).

    ``mean(max(r, clip(r, 1 - eps, 1 + eps))) + lambda * mean(KL)`` with ``r = pi_phi(a|s) / pi_theta(a|s)``: the PPO
    clipped surrogate with every advantage set to -1. While ``r > 1 - eps`` the gradient lowers the probability of
    the sampled (already over-represented) action; below ``1 - eps`` the term is flat, so no action is pushed to zero.

    Args:
        log_ratio: ``log pi_phi(a|s) - log pi_theta(a|s)`` per sample, shape ``(batch,)``.
        kl: ``KL(pi_phi(.|s) || pi_theta(.|s))`` per sample, shape ``(batch,)``.
        clip_range: ``eps_PROPS`` > 0.
        kl_coef: ``lambda`` >= 0, weight of the KL regulariser.

    Returns:
        The scalar loss.
    """
    ratio = th.exp(log_ratio)
    clipped = th.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return th.max(ratio, clipped).mean() + kl_coef * kl.mean()


def sampling_error(policy: ActorCriticPolicy, observations: th.Tensor, actions: th.Tensor, max_iter: int = 100) -> float:
    """Sampling error of the data ``(observations, actions)`` with respect to ``policy`` (paper Sec. 3, Eq. 3).

    ``KL(pi_D || pi_theta)`` estimated as ``mean_{(s,a) in D} [log pi_D(a|s) - log pi_theta(a|s)]``, where ``pi_D`` is
    the maximum-likelihood ("empirical") policy of the data. As in the paper (after ROS, Zhong et al. 2022), ``pi_D``
    is the target policy with its hidden layers frozen and its output layer (and Gaussian log-std) refitted by maximum
    likelihood on ``D``. It starts at ``pi_theta``, so the estimate is >= 0 and 0 when ``pi_theta`` already is the MLE.
    With one observation repeated it is the exact KL between the empirical action frequencies and ``pi_theta``.

    Args:
        policy: An SB3 actor-critic policy with a categorical or diagonal-Gaussian action distribution.
        observations: Observations as the policy takes them, shape ``(N, *obs_shape)``.
        actions: Actions, shape ``(N,)`` (discrete) or ``(N, action_dim)`` (continuous).
        max_iter: L-BFGS iterations of the maximum-likelihood fit.

    Returns:
        The sampling error in nats (a float >= 0 up to optimiser tolerance).

    Raises:
        ValueError: If ``policy`` has another action distribution, or the sizes of the inputs disagree.
    """
    if len(observations) != len(actions) or len(actions) == 0:
        raise ValueError(f"need as many observations as actions (>= 1), got {len(observations)} and {len(actions)}")
    action_dist = policy.action_dist
    if not isinstance(action_dist, CategoricalDistribution | DiagGaussianDistribution):
        raise ValueError(
            f"sampling_error supports categorical and diagonal-Gaussian policies, got {type(action_dist).__name__}"
        )
    with th.no_grad():
        features = BaseModel.extract_features(policy, observations, policy.pi_features_extractor)
        latent = policy.mlp_extractor.forward_actor(features)  # frozen hidden layers
        target_log_prob = policy.get_distribution(observations).log_prob(actions)
    head = copy.deepcopy(policy.action_net)
    parameters: list[th.Tensor] = list(head.parameters())
    empirical = copy.copy(action_dist)
    if isinstance(empirical, DiagGaussianDistribution):
        log_std = policy.log_std.detach().clone().requires_grad_(True)
        parameters.append(log_std)
        gaussian = empirical

        def log_likelihood() -> th.Tensor:
            # The log-std range of SB3's SAC keeps the fit finite when an action dimension is (nearly) constant in D.
            return gaussian.proba_distribution(head(latent), th.clamp(log_std, -20.0, 2.0)).log_prob(actions)

    else:
        categorical = empirical

        def log_likelihood() -> th.Tensor:
            return categorical.proba_distribution(action_logits=head(latent)).log_prob(actions)

    optimizer = th.optim.LBFGS(parameters, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> th.Tensor:
        optimizer.zero_grad()
        loss = -log_likelihood().mean()
        loss.backward()
        return loss

    with th.enable_grad():
        optimizer.step(closure)
    with th.no_grad():
        return float((log_likelihood() - target_log_prob).mean())


def _flat_actions(actions: np.ndarray, action_space: spaces.Space, device: th.device) -> th.Tensor:
    tensor = th.as_tensor(actions, device=device)
    return tensor.long().flatten() if isinstance(action_space, spaces.Discrete) else tensor.float()


# --- The buffer of the last b target batches -----------------------------------------------------------------------


class RollingRolloutBuffer(RolloutBuffer):
    """SB3's :class:`RolloutBuffer` turned into a FIFO of the last ``capacity`` steps (PROPS's buffer D, Alg. 2).

    Transitions are kept oldest first in ``[0, pos)``; :meth:`make_room` evicts the oldest ones. Rewards are stored
    without the time-limit bootstrap, which :meth:`training_buffer` adds with the current critic; values and
    log-probabilities stored by :meth:`add` are those of the sampling policy and are never used for training.
    """

    def __init__(self, capacity: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(capacity, *args, **kwargs)

    def reset(self) -> None:
        """Empty the buffer."""
        super().reset()
        self.timeouts = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.timeout_observations = np.zeros_like(self.observations)

    def make_room(self, n_steps: int) -> int:
        """Evict the oldest steps so that ``n_steps`` more fit; return how many were evicted."""
        n_evict = max(0, self.pos + n_steps - self.buffer_size)
        if n_evict:
            for array in (self.observations, self.actions, self.rewards, self.episode_starts, self.values, self.log_probs):
                array[: self.pos - n_evict] = array[n_evict : self.pos].copy()
            self.timeouts[: self.pos - n_evict] = self.timeouts[n_evict : self.pos].copy()
            self.timeout_observations[: self.pos - n_evict] = self.timeout_observations[n_evict : self.pos].copy()
            self.timeouts[self.pos - n_evict :] = False
            self.pos -= n_evict
            self.full = False
        return n_evict

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Append one step of every env (SB3's :meth:`RolloutBuffer.add`), clearing its time-limit flags."""
        self.timeouts[self.pos] = False
        super().add(*args, **kwargs)

    def mark_timeout(self, env_index: int, terminal_observation: Any) -> None:
        """Record that the last step of env ``env_index`` hit a time limit in ``terminal_observation``."""
        self.timeouts[self.pos - 1, env_index] = True
        self.timeout_observations[self.pos - 1, env_index] = np.asarray(terminal_observation).reshape(self.obs_shape)

    def transitions(self, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Observations and actions of steps ``[start, pos)``, flattened over envs (step-major order)."""
        observations = self.observations[start : self.pos].reshape(-1, *self.obs_shape)
        actions = self.actions[start : self.pos].reshape(-1, self.action_dim)
        return observations, actions

    def training_buffer(self, policy: ActorCriticPolicy, last_obs: np.ndarray, last_dones: np.ndarray) -> RolloutBuffer:
        """A full SB3 :class:`RolloutBuffer` of everything stored, scored by ``policy`` (Alg. 2, lines 13-15).

        Values and log-probabilities are recomputed under the current target, time-limit bootstraps use its critic,
        and GAE is computed over the ordered buffer with the bootstrap from the live observation ``last_obs``.
        """
        if self.pos == 0:
            raise RuntimeError("the buffer is empty: collect rollouts before training")
        size = self.pos
        buffer = RolloutBuffer(
            size,
            self.observation_space,
            self.action_space,
            device=self.device,
            gae_lambda=self.gae_lambda,
            gamma=self.gamma,
            n_envs=self.n_envs,
        )
        buffer.observations[:] = self.observations[:size]
        buffer.actions[:] = self.actions[:size]
        buffer.episode_starts[:] = self.episode_starts[:size]
        buffer.rewards[:] = self.rewards[:size]
        observations, actions = self.transitions()
        with th.no_grad():
            values, log_probs, _ = policy.evaluate_actions(
                obs_as_tensor(observations, self.device), _flat_actions(actions, self.action_space, self.device)
            )
            buffer.values[:] = values.cpu().numpy().reshape(size, self.n_envs)
            buffer.log_probs[:] = log_probs.cpu().numpy().reshape(size, self.n_envs)
            if self.timeouts[:size].any():
                # SB3 bootstraps an episode cut by a time limit with gamma * V(terminal obs) (SB3 issue #633).
                terminal = obs_as_tensor(self.timeout_observations[:size][self.timeouts[:size]], self.device)
                terminal_values = policy.predict_values(terminal).cpu().numpy().flatten()
                buffer.rewards[self.timeouts[:size]] += self.gamma * terminal_values
            last_values = policy.predict_values(obs_as_tensor(last_obs, self.device))
        buffer.pos, buffer.full = size, True
        buffer.compute_returns_and_advantage(last_values=last_values, dones=np.asarray(last_dones))
        return buffer


# --- The algorithm ---------------------------------------------------------------------------------------------------


class PROPS(PPO):
    """Proximal Robust On-Policy Sampling (PROPS): PPO trained on data from an adaptive behaviour policy.

    Every ``props_n_steps`` (m) steps the behaviour policy pi_phi is reset to the target pi_theta and re-fitted on the
    buffer to make under-sampled actions more likely (clipped objective + KL regulariser, :func:`props_behavior_loss`);
    every ``n_steps`` (n) steps the target is updated by PPO on the last ``buffer_batches`` (b) batches. The target is
    ``self.policy`` (used by ``predict``); the behaviour policy ``self.behavior_policy`` only collects data.

    Defaults are the reference code's PPO settings with the paper's tuned PROPS settings for Hopper (Appendix; ``n =
    2048, m = 256, b = 2``, both learning rates 1e-3, ``delta_PROPS = 0.05``, ``lambda = 0.3``, ``eps_PROPS = 0.3``),
    and 32 PPO minibatches over the ``b * n`` buffer.

    Args:
        policy: SB3 policy alias (``"MlpPolicy"``, ``"CnnPolicy"``) or an :class:`ActorCriticPolicy` subclass; the
            behaviour policy has the same class.
        env: The environment (or its id).
        learning_rate: Target (PPO) learning rate, constant or a schedule of the remaining progress.
        n_steps: Steps per env between target updates (n).
        batch_size: PPO minibatch size over the ``b * n * n_envs`` buffer.
        n_epochs: PPO epochs per target update.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        clip_range: PPO clip range.
        clip_range_vf: Value clip range (the reference code clips values with the policy clip range).
        normalize_advantage: Normalise advantages per minibatch.
        ent_coef: Entropy bonus coefficient.
        vf_coef: Value loss coefficient.
        max_grad_norm: Global gradient-norm clip of the PPO update.
        target_kl: PPO early-stopping KL (``None``: no early stop).
        buffer_batches: Number of target batches kept in the buffer (b >= 1).
        props_n_steps: Steps per env between behaviour updates (m); must divide ``n_steps``.
        props_learning_rate: Adam learning rate of the behaviour update.
        props_clip_range: ``eps_PROPS`` of the clipped behaviour objective.
        props_kl_coef: ``lambda``, the weight of the KL regulariser.
        props_target_kl: ``delta_PROPS``: the behaviour update stops once the k3 KL estimate between pi_phi and
            pi_theta on a minibatch exceeds it (``None``: no early stop).
        props_n_epochs: Epochs of each behaviour update.
        props_n_minibatches: Minibatches per behaviour epoch (size ``len(data) // props_n_minibatches``; the PPOROS
            rule differs while the buffer fills, see the module docstring).
        props_max_grad_norm: Global gradient-norm clip of the behaviour update.
        adaptive_sampling: ``False`` collects with the target policy itself (the paper's "PPO-Buffer" ablation:
            the b-batch buffer without the adaptive behaviour policy).
        log_sampling_error: Log ``train/sampling_error`` of the buffer at every target update (:func:`sampling_error`).
        stats_window_size: Episodes averaged for the ``rollout/`` statistics.
        tensorboard_log: TensorBoard log directory.
        policy_kwargs: Keyword arguments of the policy class (shared by target and behaviour policies).
        verbose: 0 silent, 1 info, 2 debug.
        seed: Random seed.
        device: Torch device.
        _init_setup_model: Build the networks now (SB3 convention; ``load`` passes ``False``).

    Raises:
        ValueError: On an argument outside its range (named in the message), an unsupported observation or action
            space, or ``props_n_steps`` not dividing ``n_steps``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": ActorCriticPolicy, "CnnPolicy": ActorCriticCnnPolicy}
    rollout_buffer: RollingRolloutBuffer
    behavior_policy: ActorCriticPolicy

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = 0.2,
        normalize_advantage: bool = True,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        target_kl: float | None = 0.03,
        buffer_batches: int = 2,
        props_n_steps: int = 256,
        props_learning_rate: float = 1e-3,
        props_clip_range: float = 0.3,
        props_kl_coef: float = 0.3,
        props_target_kl: float | None = 0.05,
        props_n_epochs: int = 16,
        props_n_minibatches: int = 16,
        props_max_grad_norm: float = 0.5,
        adaptive_sampling: bool = True,
        log_sampling_error: bool = True,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        # Argument checks come first (before SB3 builds anything), each naming the bad value.
        _check_int("buffer_batches", buffer_batches, 1)
        _check_int("n_steps", n_steps, 1)
        _check_int("props_n_steps", props_n_steps, 1)
        if n_steps % props_n_steps != 0:
            raise ValueError(f"props_n_steps (m) must divide n_steps (n), got m={props_n_steps} and n={n_steps}")
        _check_int("props_n_epochs", props_n_epochs, 1)
        _check_int("props_n_minibatches", props_n_minibatches, 1)
        _check_positive("props_learning_rate", props_learning_rate)
        _check_positive("props_clip_range", props_clip_range)
        _check_positive("props_max_grad_norm", props_max_grad_norm)
        if not props_kl_coef >= 0:
            raise ValueError(f"props_kl_coef (lambda) must be >= 0, got {props_kl_coef!r}")
        if props_target_kl is not None:
            _check_positive("props_target_kl", props_target_kl)
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        # ``load`` builds the object without an env; its spaces are checked when they are known.
        action_space, observation_space = getattr(self, "action_space", None), getattr(self, "observation_space", None)
        if action_space is not None and not isinstance(action_space, spaces.Discrete | spaces.Box):
            raise ValueError(f"PROPS supports Discrete and Box action spaces, got {action_space}")
        if isinstance(observation_space, spaces.Dict):
            raise ValueError(f"PROPS does not support Dict observation spaces, got {observation_space}")
        self.buffer_batches = buffer_batches
        self.props_n_steps = props_n_steps
        self.props_learning_rate = props_learning_rate
        self.props_clip_range = props_clip_range
        self.props_kl_coef = props_kl_coef
        self.props_target_kl = props_target_kl
        self.props_n_epochs = props_n_epochs
        self.props_n_minibatches = props_n_minibatches
        self.props_max_grad_norm = props_max_grad_norm
        self.adaptive_sampling = adaptive_sampling
        self.log_sampling_error = log_sampling_error
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        # Buffer D holds the last b target batches, b * n steps per env (Alg. 2, line 1).
        self.rollout_buffer = RollingRolloutBuffer(
            self.buffer_batches * self.n_steps,
            self.observation_space,
            self.action_space,
            device=self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
        )
        # Behaviour policy pi_phi: same architecture as the target, initialised to it (Alg. 2, line 1).
        self.behavior_policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs
        ).to(self.device)
        self.behavior_policy.load_state_dict(self.policy.state_dict())
        self.behavior_optimizer = th.optim.Adam(self.behavior_policy.parameters(), lr=self.props_learning_rate, eps=1e-5)
        self._behavior_rng = np.random.default_rng(self.seed)

    # -- behaviour update -----------------------------------------------------------------------------------------

    def _update_behavior(self) -> None:
        """Reset pi_phi to pi_theta and re-fit it on the buffer (Alg. 2, lines 8-11).

        The oldest steps that the next ``props_n_steps`` collection steps will evict are left out: they will not be
        in the buffer at the next target update.
        """
        self.behavior_policy.load_state_dict(self.policy.state_dict())
        buffer = self.rollout_buffer
        start = max(0, buffer.pos + self.props_n_steps - buffer.buffer_size)
        observations, actions = buffer.transitions(start)
        if len(observations) == 0:
            return
        stats = self.fit_behavior(
            th.as_tensor(observations, device=self.device), _flat_actions(actions, self.action_space, self.device)
        )
        for key, value in stats.items():
            self.logger.record(f"train/behavior_{key}", value)

    def fit_behavior(self, observations: th.Tensor, actions: th.Tensor) -> dict[str, float]:
        """Minimise the PROPS objective over ``(observations, actions)`` starting from the current ``behavior_policy``.

        The objective is anchored to the current target ``self.policy`` (its log-probabilities and distributions are
        computed here, once): after a target update, the updated one (PPOROS anchors to the pre-update target; see
        the module docstring).

        Args:
            observations: Buffer observations, shape ``(N, *obs_shape)``.
            actions: Buffer actions, shape ``(N,)`` (discrete) or ``(N, action_dim)``.

        Returns:
            Statistics of the update: mean loss, last k3 KL estimate, clip fraction, gradient steps taken.
        """
        self.behavior_policy.set_training_mode(True)
        with th.no_grad():
            target_all = self.policy.get_distribution(observations)
            target_log_prob = target_all.log_prob(actions)
        n_samples = len(observations)
        minibatch = max(1, n_samples // self.props_n_minibatches)
        losses, clip_fractions, approx_kl, n_updates = [], [], 0.0, 0
        for _ in range(self.props_n_epochs):
            order = th.as_tensor(self._behavior_rng.permutation(n_samples), device=self.device)
            stop = False
            for start in range(0, n_samples, minibatch):
                index = order[start : start + minibatch]
                obs, act = observations[index], actions[index]
                behavior = self.behavior_policy.get_distribution(obs)
                log_ratio = behavior.log_prob(act) - target_log_prob[index]
                with th.no_grad():
                    # k3 estimator of KL(pi_theta || pi_phi) on the minibatch (Schulman's approximation);
                    # stop the whole update once it exceeds delta_PROPS (Alg. 2, line 11).
                    approx_kl = float(((th.exp(log_ratio) - 1) - log_ratio).mean())
                    if self.props_target_kl is not None and approx_kl > self.props_target_kl:
                        stop = True
                        break
                    clip_fractions.append(float((th.abs(th.exp(log_ratio) - 1) > self.props_clip_range).float().mean()))
                target = _select(target_all, index)
                loss = props_behavior_loss(log_ratio, _kl(behavior, target), self.props_clip_range, self.props_kl_coef)
                self.behavior_optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.behavior_policy.parameters(), self.props_max_grad_norm)
                self.behavior_optimizer.step()
                losses.append(loss.item())
                n_updates += 1
            if stop:
                break
        self.behavior_policy.set_training_mode(False)
        return {
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "approx_kl": approx_kl,
            "clip_fraction": float(np.mean(clip_fractions)) if clip_fractions else 0.0,
            "n_updates": float(n_updates),
        }

    # -- data collection --------------------------------------------------------------------------------------------

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """Collect ``n_rollout_steps`` per env with the behaviour policy, re-fitting it every ``props_n_steps``.

        Follows SB3's :meth:`OnPolicyAlgorithm.collect_rollouts` (callbacks, episode statistics, time-limit handling),
        but appends to the rolling buffer instead of refilling it, and samples from pi_phi (Alg. 2, lines 3-11).
        The behaviour re-fit that falls on a target update is done at the end of :meth:`train`.
        """
        if not isinstance(rollout_buffer, RollingRolloutBuffer):
            raise TypeError(f"PROPS collects into a RollingRolloutBuffer, got {type(rollout_buffer).__name__}")
        if self._last_obs is None:
            raise RuntimeError("no previous observation: call learn(), which resets the env, before collect_rollouts")
        self.policy.set_training_mode(False)
        self.behavior_policy.set_training_mode(False)
        sampler = self.behavior_policy if self.adaptive_sampling else self.policy
        callback.on_rollout_start()

        n_steps = 0
        while n_steps < n_rollout_steps:
            if n_steps % self.props_n_steps == 0:
                if n_steps > 0 and self.adaptive_sampling:
                    self._update_behavior()
                rollout_buffer.make_room(self.props_n_steps)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions, values, log_probs = sampler(obs_tensor)
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if sampler.squash_output:
                    clipped_actions = sampler.unscale_action(clipped_actions)
                else:
                    # The Gaussian is unbounded; the env gets the action clipped to its bounds (as in SB3).
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1

            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs)  # type: ignore[arg-type]
            for index, done in enumerate(dones):
                terminal_obs = infos[index].get("terminal_observation")
                if done and terminal_obs is not None and infos[index].get("TimeLimit.truncated", False):
                    rollout_buffer.mark_timeout(index, terminal_obs)
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    # -- target update --------------------------------------------------------------------------------------------

    def train(self) -> None:
        """PPO on the whole buffer, treated as on-policy data for the current target (Alg. 2, lines 12-16).

        Log-probabilities, values and advantages of every stored step are recomputed under the current pi_theta, so
        the PPO ratio starts at 1 and no importance correction for pi_phi or older targets is made: that is the
        method. Afterwards pi_phi is reset to the new target and re-fitted (the behaviour update at step ``t = n``).
        """
        storage = self.rollout_buffer
        training = storage.training_buffer(self.policy, self._last_obs, self._last_episode_starts)  # type: ignore[arg-type]
        if self.log_sampling_error:
            observations, actions = storage.transitions()
            self.logger.record(
                "train/sampling_error",
                sampling_error(
                    self.policy,
                    th.as_tensor(observations, device=self.device),
                    _flat_actions(actions, self.action_space, self.device),
                ),
            )
        self.logger.record("train/buffer_size", storage.pos * storage.n_envs)
        self.rollout_buffer = training  # type: ignore[assignment]
        try:
            super().train()
        finally:
            self.rollout_buffer = storage
        if self.adaptive_sampling:
            self._update_behavior()

    def learn(
        self: SelfPROPS,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PROPS",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPROPS:
        """Train for ``total_timesteps`` env steps (SB3's :meth:`OnPolicyAlgorithm.learn`)."""
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    # -- saving ---------------------------------------------------------------------------------------------------

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> PROPS:
        """Load a PROPS checkpoint (SB3's :meth:`BaseAlgorithm.load`).

        Raises:
            ValueError: If ``path`` holds a checkpoint of another algorithm (it has no PROPS hyperparameters).
        """
        data, _, _ = load_from_zip_file(path, custom_objects=custom_objects, device="cpu")
        if data is None or "props_n_steps" not in data:
            raise ValueError(
                f"{path} is not a PROPS checkpoint (it has no PROPS hyperparameters such as props_n_steps); "
                "load it with the class that saved it"
            )
        if isinstance(path, io.BufferedIOBase):
            path.seek(0)
        return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "behavior_policy", "behavior_optimizer", "_behavior_rng"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "behavior_policy", "behavior_optimizer"], variables


def _select(distribution: Distribution, index: th.Tensor) -> Distribution:
    """The rows ``index`` of a batched categorical or diagonal-Gaussian SB3 distribution (no network call)."""
    if isinstance(distribution, CategoricalDistribution):
        logits = distribution.distribution.logits[index]
        return CategoricalDistribution(logits.shape[-1]).proba_distribution(action_logits=logits)
    if isinstance(distribution, DiagGaussianDistribution):
        normal = distribution.distribution
        selected = DiagGaussianDistribution(normal.loc.shape[-1])
        return selected.proba_distribution(normal.loc[index], th.log(normal.scale[index]))
    raise ValueError(f"expected a categorical or diagonal-Gaussian distribution, got {type(distribution).__name__}")


def _kl(behavior: Distribution, target: Distribution) -> th.Tensor:
    """``KL(pi_phi(.|s) || pi_theta(.|s))`` per state, summed over independent action dimensions."""
    kl = kl_divergence(behavior, target)
    return kl.sum(dim=-1) if kl.dim() > 1 else kl


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


# --- Measuring the sampling error of any on-policy algorithm's data ------------------------------------------------


class SamplingErrorCallback(BaseCallback):
    """Record :func:`sampling_error` of the rollout buffer w.r.t. the current policy at the end of every rollout.

    Works for SB3's PPO/A2C (the buffer is the last batch) and for :class:`PROPS` (the whole b-batch buffer). The
    values are logged as ``rollout/sampling_error`` and kept in :attr:`history` as ``(num_timesteps, value)``.

    Raises:
        TypeError: At the start of ``learn`` when the algorithm is not on-policy (it has no rollout buffer).
    """

    def __init__(self, max_iter: int = 100, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.max_iter = max_iter
        self.history: list[tuple[int, float]] = []

    def _init_callback(self) -> None:
        if not isinstance(self.model, OnPolicyAlgorithm):
            raise TypeError(
                f"SamplingErrorCallback needs an on-policy algorithm (PPO, A2C, PROPS), got {type(self.model).__name__}"
            )
        self._on_policy_model = self.model

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        model = self._on_policy_model
        buffer = model.rollout_buffer
        size = buffer.pos if isinstance(buffer, RollingRolloutBuffer) else buffer.buffer_size
        observations = buffer.observations[:size].reshape(-1, *buffer.obs_shape)
        actions = buffer.actions[:size].reshape(-1, buffer.action_dim)
        value = sampling_error(
            model.policy,
            th.as_tensor(observations, device=model.device),
            _flat_actions(actions, model.action_space, model.device),
            max_iter=self.max_iter,
        )
        self.history.append((model.num_timesteps, value))
        self.logger.record("rollout/sampling_error", value)
