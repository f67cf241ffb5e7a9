"""Policy-guided diffusion: a trajectory diffusion model of the offline data, guided toward a target policy.

Jackson, Matthews, Lu, Ellis, Whiteson & Foerster, "Policy-Guided Diffusion", 2024 (authors' JAX code:
github.com/EmptyJackson/policy-guided-diffusion, ``diffusion/edm.py``, ``models/diffusion.py``,
``diffusion/rollout_generator.py``). A diffusion model learns the behaviour distribution of whole
sub-trajectories (windows of ``horizon`` steps with channels ``[s, arctanh(a), r, done]``, each normalised to
zero mean and unit variance); at sampling time the gradient of the target policy's log-likelihood of the
generated actions is added to the action channels, so samples follow approximately
``p_behaviour(tau) * prod_t pi(a_t | s_t)^lambda`` (paper Section 4).

This module holds the generative part:

* EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"):
  preconditioning (their Table 1: ``c_skip``, ``c_out``, ``c_in``, ``c_noise``), training noise
  ``ln sigma ~ N(P_mean, P_std^2)`` and loss weight ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``,
  the ``rho`` noise schedule (eq. 5) and the stochastic Heun sampler (Algorithm 2), with the authors'
  settings (``sigma_data = 1``, ``sigma_min = 0.002``, ``sigma_max = 80``, ``rho = 7``, ``S_churn = 80``,
  ``S_tmin = 0.05``, ``S_tmax = 50``, ``S_noise = 1.003``);
* a 1-D temporal U-Net over the window (channels = features), sized down for CPU by default
  (``features=32``, 2 levels); ``paper_size=True`` gives the authors' 1024 features and 3 levels;
* policy guidance on the action channels before every denoising step but the last, with the authors'
  schedule ``lambda_i = coeff * ((1 - i / N) + c_cos * sin(pi (i + 1) / N))``, ``c_cos = 0.3``, and an
  optional normalisation of the gradient; deterministic actors (TD3+BC) are read as ``N(mu(s), I)``.

Checked against the authors' code (github.com/EmptyJackson/policy-guided-diffusion, commit
9da606ca16389c626fab7cef2a07ca82d74fd14f):

* windows (``environments/dataset.py``, ``_assemble_dataset``): as theirs, the strided windows plus every
  window that ends on a terminal or starts an episode, minus every window that ends on a time-out
  (:func:`trajectory_windows`);
* EMA (``train_diffusion.py``, ``util/jax.py`` ``ema_update``; ``--ema_decay 0.995 --ema_update_every 10``):
  **departure in the default**. Their rule is available (``TrajectoryDiffusion.fit(..., ema_decay=0.995)``),
  but off by default: at CPU budgets the average still holds much of the random initial weights (see
  :meth:`TrajectoryDiffusion.fit` for the measurement);
* sampler (``diffusion/edm.py`` ``sample_trajectory``): **departure**. Their Euler predictor steps from the
  point before the churn noise (``noised_traj + (next_sigma - sigma_hat) * d``) while its slope ``d`` and their
  Heun corrector use the churned point; palaestra steps from the churned point, as EDM's Algorithm 2 (line 7,
  ``x_{i+1} = x_hat_i + (t_{i+1} - t_hat_i) d_i``) and Karras' code do (github.com/NVlabs/edm, commit
  008a4e5316c8e3bfe61a62f874bddba254295afb, ``generate.py`` line 52, ``x_next = x_hat + (t_next - t_hat) * d_cur``):
  theirs evaluates the corrector's slope at a point the churn never reached, so the step is no longer Heun's
  second-order rule. ``edm_sampler(..., euler_from_churned=False)`` reproduces their rule;
* guidance normalisation: **departure in the default**. The agents normalise the guidance gradient
  (``normalize_guidance=True``) where the authors' flag ``--normalize_action_guidance`` is off by default
  (``util/args.py``): the raw gradient of ``log pi`` grows with the window, the action size and the actor's
  sharpness (IQL's Gaussian is far narrower than TD3+BC's unit Gaussian), so one ``guidance_coeff`` fits every
  agent and task only once normalised. :meth:`TrajectoryDiffusion.sample` keeps the authors' default (off).
  Their normalisation divides by the Frobenius norm of each window's action block, as palaestra's does (they
  add their ``1e-8`` after the division, palaestra to the norm).

Deviation from the authors' U-Net: the decoder's up-sampling convolution uses kernel 3 with padding (the
authors use kernel 2), so lengths stay exact for any window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from palaestra.agents.offline.common import OfflineAgent, build_offline_agent, mlp
from palaestra.agents.offline.iql import IQL
from palaestra.agents.offline.td3_bc import TD3BC

__all__ = [
    "GUIDANCE_COSINE",
    "PGD",
    "PGDIQL",
    "EnsembleWorldModel",
    "TemporalUNet",
    "TrajectoryDiffusion",
    "build_pgd",
    "build_pgd_iql",
    "deterministic_policy_log_prob",
    "edm_loss_weight",
    "edm_preconditioning",
    "edm_sampler",
    "edm_sigma_schedule",
    "ema_update",
    "guidance_schedule",
    "policy_log_prob",
    "trajectory_windows",
    "window_starts",
]

#: The authors' cosine bump of the guidance schedule (``c_cos``).
GUIDANCE_COSINE = 0.3
_ACTION_CLIP = 0.999


# --- EDM pieces (pure functions) ---------------------------------------------------------------------
def edm_preconditioning(sigma: torch.Tensor, sigma_data: float = 1.0) -> tuple[torch.Tensor, ...]:
    """EDM's ``(c_skip, c_out, c_in, c_noise)`` (Karras et al. 2022, Table 1).

    ``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``, ``c_in = 1 / sqrt(s^2 + sd^2)``,
    ``c_noise = ln(s) / 4``.
    """
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), 1.0 / total.sqrt(), sigma.log() / 4.0


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2`` (Karras et al. 2022, Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_sigma_schedule(n_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """``sigma_i = (s_max^(1/rho) + i / (N - 1) (s_min^(1/rho) - s_max^(1/rho)))^rho``, ``i < N``, then 0 (eq. 5).

    Returns:
        ``N + 1`` noise levels, from ``sigma_max`` down to ``sigma_min`` and a final 0.
    """
    if n_steps < 2:
        raise ValueError(f"the sampler needs n_steps >= 2, got {n_steps}")
    i = torch.arange(n_steps, dtype=torch.float64)
    sigmas = (sigma_max ** (1 / rho) + i / (n_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)]).float()


def guidance_schedule(coeff: float, n_steps: int, cosine: float = GUIDANCE_COSINE) -> torch.Tensor:
    """The guidance strength of each denoising step: ``coeff * ((1 - i / N) + cosine * sin(pi (i + 1) / N))``.

    Raises:
        ValueError: If ``coeff < 0`` (guidance would push away from the target policy).
    """
    if coeff < 0:
        raise ValueError(f"the guidance coefficient must be >= 0, got {coeff}")
    i = torch.arange(n_steps, dtype=torch.float32)
    return coeff * ((1.0 - i / n_steps) + cosine * torch.sin(math.pi * (i + 1) / n_steps))


def edm_sampler(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    n_steps: int,
    generator: torch.Generator | None = None,
    guidance: Callable[[torch.Tensor], torch.Tensor] | None = None,
    guidance_scales: torch.Tensor | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    s_churn: float = 80.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.003,
    euler_from_churned: bool = True,
) -> torch.Tensor:
    """EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2) with optional additive guidance.

    Args:
        denoise: ``D(x; sigma)`` with ``sigma`` of shape ``(batch,)``.
        noise: Standard normal start, shape ``(batch, ...)``; scaled by ``sigma_max``.
        n_steps: Denoising steps ``N``.
        generator: Seeds the churn noise.
        guidance: Maps ``x`` to the guidance displacement direction (same shape as ``x``).
        guidance_scales: ``lambda_i`` per step (:func:`guidance_schedule`); guidance is applied before every
            step but the last.
        sigma_min: Smallest noise level.
        sigma_max: Largest noise level.
        rho: Schedule curvature.
        s_churn: Total stochasticity.
        s_tmin: Churn only at ``sigma >= s_tmin``.
        s_tmax: Churn only at ``sigma <= s_tmax``.
        s_noise: Noise inflation of the churn.
        euler_from_churned: Take the Euler predictor from the churned point ``x_hat`` (EDM's Algorithm 2, line
            7); ``False`` takes it from the point before the churn, as the PGD authors' ``diffusion/edm.py`` does
            (the corrector starts from ``x_hat`` either way).

    Returns:
        The samples.
    """
    sigmas = edm_sigma_schedule(n_steps, sigma_min, sigma_max, rho).to(noise.device)
    x = noise * sigmas[0]
    batch = len(x)
    for i in range(n_steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if guidance is not None and guidance_scales is not None and i < n_steps - 1:
            x = x + guidance_scales[i] * guidance(x)
        gamma = min(s_churn / n_steps, math.sqrt(2.0) - 1.0) if s_tmin <= float(sigma) <= s_tmax else 0.0
        sigma_hat = sigma * (1.0 + gamma)
        x_hat = x
        if gamma > 0:
            eps = torch.randn(x.shape, generator=generator, device=x.device)
            x_hat = x + (sigma_hat**2 - sigma**2).sqrt() * s_noise * eps
        d = (x_hat - denoise(x_hat, sigma_hat.expand(batch))) / sigma_hat
        x_next = (x_hat if euler_from_churned else x) + (sigma_next - sigma_hat) * d
        if sigma_next > 0:  # Heun's second-order correction
            d_next = (x_next - denoise(x_next, sigma_next.expand(batch))) / sigma_next
            x_next = x_hat + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
        x = x_next
    return x


@torch.no_grad()
def ema_update(average: list[torch.Tensor], weights: list[torch.Tensor], step: int, decay: float, every: int) -> None:
    """The authors' EMA step (``util/jax.py`` ``ema_update``), in place.

    After optimiser step ``step`` (counted from 1), ``average <- decay * average + (1 - decay) * weights`` if
    ``step % every == 0``; otherwise ``average`` is unchanged.
    """
    if step % every:
        return
    for mean, weight in zip(average, weights, strict=True):
        mean.mul_(decay).add_(weight.detach(), alpha=1.0 - decay)


# --- data --------------------------------------------------------------------------------------------
def trajectory_windows(data: dict[str, np.ndarray], horizon: int, stride: int, max_action: np.ndarray) -> np.ndarray:
    """Windows of ``horizon`` consecutive steps inside one episode, channels ``[s, arctanh(a / max_a), r, done]``.

    Episodes end at terminals or time-outs; a window never crosses an episode boundary, so ``done`` can only be
    set at its last step (a true termination; time-outs are never dones). The windows are the authors'
    (``environments/dataset.py``, ``_assemble_dataset``): of the starts whose window has no episode end before
    its last step, every ``stride``-th (counted over all such starts, in order), plus every start of a window
    ending on a terminal and every episode's first step, minus every start of a window ending on a time-out.
    Windows are returned in order of their first row.

    Args:
        data: ``get_dataset()`` arrays (``observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts``).
        horizon: Window length ``L`` (``L - 1`` transitions).
        stride: Step between window starts.
        max_action: Per-dimension action bound.

    Returns:
        Array of shape ``(n_windows, L, obs_dim + action_dim + 2)``.

    Raises:
        ValueError: If no window is left (no episode is at least ``horizon`` long), or ``horizon``/``stride`` are
            below 2/1.
    """
    if horizon < 2 or stride < 1:
        raise ValueError(f"need horizon >= 2 and stride >= 1, got horizon={horizon}, stride={stride}")
    observations = np.asarray(data["observations"], np.float32).reshape(len(data["observations"]), -1)
    actions = np.asarray(data["actions"], np.float32).reshape(len(data["actions"]), -1) / max_action
    terminals = np.asarray(data["terminals"], bool)
    channels = np.concatenate(
        [
            observations,
            np.arctanh(np.clip(actions, -_ACTION_CLIP, _ACTION_CLIP)),
            np.asarray(data["rewards"], np.float32)[:, None],
            terminals.astype(np.float32)[:, None],
        ],
        axis=1,
    )
    timeouts = np.asarray(data.get("timeouts", np.zeros(len(channels), bool)), bool)
    starts = window_starts(terminals, timeouts, horizon, stride)
    if len(starts) == 0:
        raise ValueError(f"no episode in the dataset has {horizon} steps; use a shorter horizon")
    return channels[starts[:, None] + np.arange(horizon)].astype(np.float32)


def window_starts(terminals: np.ndarray, timeouts: np.ndarray, horizon: int, stride: int) -> np.ndarray:
    """First rows of :func:`trajectory_windows`' windows, sorted (the authors' selection rule)."""
    ends = np.asarray(terminals, bool) | np.asarray(timeouts, bool)
    n = len(ends)
    if n < horizon:
        return np.zeros(0, dtype=np.int64)
    # a window starting at k holds rows k .. k + L - 1; no episode may end on its first L - 1 rows
    ends_before = np.concatenate([[0], np.cumsum(ends[:-1])])  # ends_before[k] = ends among rows < k
    first = np.arange(n - horizon + 1)
    valid = first[ends_before[first + horizon - 1] == ends_before[first]]
    last = valid + horizon - 1
    episode_first = np.concatenate([[True], ends[:-1]])[valid]
    chosen = np.zeros(len(valid), dtype=bool)
    chosen[::stride] = True
    chosen |= np.asarray(terminals, bool)[last] | episode_first
    chosen &= ~np.asarray(timeouts, bool)[last]
    return valid[chosen]


# --- network -----------------------------------------------------------------------------------------
class _Block(nn.Module):
    def __init__(self, in_width: int, width: int, embed: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(in_width, width, 3, padding=1), nn.Conv1d(width, width, 3, padding=1)
        self.time = nn.Linear(embed, width)
        self.norm1, self.norm2 = nn.GroupNorm(min(8, width), width), nn.GroupNorm(min(8, width), width)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x) + self.time(embedding)[:, :, None]))
        return F.relu(self.norm2(self.conv2(x)))


class TemporalUNet(nn.Module):
    """A 1-D U-Net over the window's time axis (the authors' ``models/diffusion.py`` layout).

    Args:
        channels: Features per step (``obs_dim + action_dim + 2``).
        features: Width of the first level (level ``i`` has ``features * 2^i``).
        levels: Number of resolution levels (max-pooling by 2 between them).
    """

    def __init__(self, channels: int, features: int = 32, levels: int = 2) -> None:
        super().__init__()
        if features % 8:
            raise ValueError(f"features must be a multiple of 8 (GroupNorm(8) and features/8 frequencies), got {features}")
        self.n_frequencies = features // 8
        self.time_mlp = nn.Sequential(nn.Linear(2 * self.n_frequencies, features), nn.SiLU(), nn.Linear(features, features))
        widths = [features * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        in_width = channels
        for width in widths:
            self.down.append(_Block(in_width, width, features))
            in_width = width
        self.up_convs, self.up = nn.ModuleList(), nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.up_convs.append(nn.Conv1d(in_width, width, 3, padding=1))
            self.up.append(_Block(2 * width, width, features))
            in_width = width
        self.out = nn.Conv1d(in_width, channels, 1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """``F(x, c_noise)`` for ``x`` of shape ``(batch, L, channels)`` and ``c_noise`` of shape ``(batch,)``."""
        frequencies = torch.exp(-math.log(10_000.0) * torch.arange(self.n_frequencies, device=x.device) / self.n_frequencies)
        angles = c_noise[:, None] * frequencies
        embedding = self.time_mlp(torch.cat([angles.sin(), angles.cos()], dim=1))
        h, skips = x.transpose(1, 2), []
        for index, block in enumerate(self.down):
            h = block(h, embedding)
            if index < len(self.down) - 1:
                skips.append(h)
                h = F.max_pool1d(h, 2, ceil_mode=True)
        for conv, block in zip(self.up_convs, self.up, strict=True):
            skip = skips.pop()
            h = conv(F.interpolate(h, size=skip.shape[-1], mode="nearest"))
            h = block(torch.cat([h, skip], dim=1), embedding)
        return self.out(h).transpose(1, 2)


# --- guidance ----------------------------------------------------------------------------------------
def deterministic_policy_log_prob(policy: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``log N(a; mu(s), I)`` up to a constant, per step, for a palaestra offline agent with a deterministic actor.

    The authors treat deterministic actors (TD3+BC) as unit-variance Gaussians around their output.

    Args:
        policy: An agent with ``normalize_observation`` semantics (``obs_mean``/``obs_std``), ``max_action``
            and ``_act`` (palaestra's :class:`~palaestra.agents.offline.common.OfflineAgent`).

    Returns:
        ``log_prob(observations, actions)`` on raw (env-unit) tensors of shape ``(batch, L, dim)`` giving ``(batch, L)``.
    """
    mean, std = torch.as_tensor(policy.obs_mean), torch.as_tensor(policy.obs_std)

    def log_prob(observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        flat = observations.reshape(-1, observations.shape[-1])
        mu = policy._act((flat - mean) / std, True).reshape(actions.shape)
        return -0.5 * (actions - mu).pow(2).sum(-1)

    return log_prob


def policy_log_prob(policy: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The guidance log-likelihood of an offline agent's actor, per step, on raw (env-unit) tensors.

    A Gaussian actor (IQL's ``actor.distribution``) gives its own ``log pi(a / max_action | s)``; a deterministic
    actor (TD3+BC) is read as ``N(mu(s), I)`` (:func:`deterministic_policy_log_prob`), as the authors do.
    """
    distribution = getattr(getattr(policy, "actor", None), "distribution", None)
    if not callable(distribution):
        return deterministic_policy_log_prob(policy)
    mean, std = torch.as_tensor(policy.obs_mean), torch.as_tensor(policy.obs_std)
    max_action = torch.as_tensor(policy.max_action)

    def log_prob(observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        flat = (observations.reshape(-1, observations.shape[-1]) - mean) / std
        scaled = (actions / max_action).reshape(-1, actions.shape[-1])
        return distribution(flat).log_prob(scaled).sum(-1).reshape(actions.shape[:-1])

    return log_prob


# --- the model ---------------------------------------------------------------------------------------
class TrajectoryDiffusion(nn.Module):
    """An EDM diffusion model of a dataset's ``horizon``-step windows, with policy-guided sampling.

    Args:
        obs_dim: State size.
        action_dim: Action size.
        max_action: Per-dimension action bound.
        horizon: Window length ``L``.
        features: U-Net width (authors: 1024).
        levels: U-Net levels (authors: 3).
        paper_size: Use the authors' 1024 features and 3 levels (GPU-sized).
        sigma_data: EDM's ``sigma_data`` (1: the channels are standardised).
        p_mean: Mean of ``ln sigma`` in training.
        p_std: Standard deviation of ``ln sigma`` in training.
    """

    # buffers (saved with the weights)
    max_action: torch.Tensor
    channel_mean: torch.Tensor
    channel_std: torch.Tensor
    fitted: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        max_action: np.ndarray,
        horizon: int = 16,
        features: int = 32,
        levels: int = 2,
        paper_size: bool = False,
        sigma_data: float = 1.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
    ) -> None:
        super().__init__()
        if paper_size:
            features, levels = 1024, 3
        self.obs_dim, self.action_dim, self.horizon = obs_dim, action_dim, horizon
        self.channels = obs_dim + action_dim + 2
        self.config = {"features": features, "levels": levels, "sigma_data": sigma_data, "p_mean": p_mean, "p_std": p_std}
        self.sigma_data, self.p_mean, self.p_std = sigma_data, p_mean, p_std
        self.net = TemporalUNet(self.channels, features, levels)
        self.register_buffer("max_action", torch.as_tensor(np.asarray(max_action, np.float32)).reshape(action_dim))
        self.register_buffer("channel_mean", torch.zeros(self.channels))
        self.register_buffer("channel_std", torch.ones(self.channels))
        self.register_buffer("fitted", torch.zeros(()))  # set to 1 by fit(), saved with the weights

    # --- EDM denoiser and loss ------------------------------------------------------------------------
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`` (Karras et al. 2022, eq. 7)."""
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, self.sigma_data)
        shape = (-1, 1, 1)
        return c_skip.view(shape) * x + c_out.view(shape) * self.net(c_in.view(shape) * x, c_noise)

    def loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``E lambda(sigma) ||D(x + sigma n; sigma) - x||^2`` on normalised windows, mean over elements (EDM eq. 8)."""
        ln_sigma = self.p_mean + self.p_std * torch.randn(len(windows), generator=generator, device=windows.device)
        sigma = ln_sigma.exp()
        noise = torch.randn(windows.shape, generator=generator, device=windows.device)
        denoised = self.denoise(windows + sigma.view(-1, 1, 1) * noise, sigma)
        return (edm_loss_weight(sigma, self.sigma_data).view(-1, 1, 1) * (denoised - windows).pow(2)).mean()

    # --- normalisation --------------------------------------------------------------------------------
    def set_normalization(self, windows: np.ndarray) -> None:
        """Per-channel mean and standard deviation over all window steps."""
        flat = windows.reshape(-1, self.channels)
        self.channel_mean.copy_(torch.as_tensor(flat.mean(0)))
        self.channel_std.copy_(torch.as_tensor(flat.std(0) + 1e-6))

    def decode(self, samples: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised samples to ``observations``, ``actions``, ``rewards``, ``dones`` (env units), each ``(batch, L, .)``."""
        raw = samples * self.channel_std + self.channel_mean
        o, a = self.obs_dim, self.action_dim
        return {
            "observations": raw[..., :o],
            "actions": self.max_action * torch.tanh(raw[..., o : o + a]),
            "rewards": raw[..., o + a],
            "dones": (raw[..., o + a + 1] > 0.5).float(),
        }

    # --- sampling -------------------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        n_steps: int = 32,
        generator: torch.Generator | None = None,
        log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        guidance_coeff: float = 0.0,
        normalize_guidance: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Sample ``n`` windows, optionally guided by a target policy's log-likelihood (the paper's Section 4).

        Args:
            n: Number of windows.
            n_steps: Heun steps (authors: 256).
            generator: Seeds the start noise and the churn.
            log_prob: ``log pi(a | s)`` per step on raw tensors (e.g. :func:`deterministic_policy_log_prob`).
            guidance_coeff: ``coeff`` of :func:`guidance_schedule` (0: unguided).
            normalize_guidance: Divide the gradient by its norm over each window's action block.

        Returns:
            The decoded windows (see :meth:`decode`).

        Raises:
            ValueError: If ``guidance_coeff < 0``, or it is positive without ``log_prob``.
        """
        scales = guidance_schedule(guidance_coeff, n_steps)
        if guidance_coeff > 0 and log_prob is None:
            raise ValueError("guidance_coeff > 0 needs the target policy's log_prob")
        device = self.channel_mean.device
        o, a = self.obs_dim, self.action_dim

        def guidance(x: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                actions = x[..., o : o + a].detach().requires_grad_(True)
                raw_obs = x[..., :o].detach() * self.channel_std[:o] + self.channel_mean[:o]
                raw_actions = self.max_action * torch.tanh(
                    actions * self.channel_std[o : o + a] + self.channel_mean[o : o + a]
                )
                (gradient,) = torch.autograd.grad(log_prob(raw_obs, raw_actions).sum(), actions)  # type: ignore[misc]
            if normalize_guidance:
                gradient = gradient / (gradient.flatten(1).norm(dim=1).view(-1, 1, 1) + 1e-8)
            return F.pad(gradient, (o, 2))

        noise = torch.randn((n, self.horizon, self.channels), generator=generator, device=device)
        with torch.no_grad():
            samples = edm_sampler(
                self.denoise,
                noise,
                n_steps,
                generator,
                guidance if guidance_coeff > 0 else None,
                scales,
            )
        return self.decode(samples)

    # --- training -------------------------------------------------------------------------------------
    @classmethod
    def from_dataset(
        cls, data: dict[str, np.ndarray], max_action: np.ndarray, horizon: int = 16, stride: int = 4, **kwargs: Any
    ) -> tuple[TrajectoryDiffusion, np.ndarray]:
        """A model normalised on a ``get_dataset()`` dictionary's windows, and those windows (normalised).

        Args:
            data: ``get_dataset()`` arrays.
            max_action: Per-dimension action bound.
            horizon: Window length (authors: 32; the CPU default 16).
            stride: Step between window starts (authors: 8).
            **kwargs: :class:`TrajectoryDiffusion` arguments (``features``, ``levels``, ``paper_size``, ...).
        """
        obs_dim = int(np.prod(np.asarray(data["observations"]).shape[1:]))
        action_dim = int(np.prod(np.asarray(data["actions"]).shape[1:]))
        windows = trajectory_windows(data, horizon, stride, np.asarray(max_action, np.float32))
        model = cls(obs_dim, action_dim, max_action, horizon, **kwargs)
        model.set_normalization(windows)
        normalised = (windows - model.channel_mean.numpy()) / model.channel_std.numpy()
        return model, normalised.astype(np.float32)

    def fit(
        self,
        windows: np.ndarray,
        steps: int,
        batch_size: int = 32,
        lr: float = 2e-3,
        seed: int = 0,
        ema_decay: float | None = None,
        ema_every: int = 10,
    ) -> list[float]:
        """Adam with the authors' warm-up-cosine schedule (start 0.1 x peak, 10% warm-up) on normalised windows.

        With ``ema_decay`` the model ends with the exponential moving average of its weights, which the authors
        sample from (``train_diffusion.py`` saves the EMA state; ``util/jax.py`` ``ema_update``): it starts at the
        initial weights and, after every ``ema_every``-th optimiser step, becomes ``ema_decay * average +
        (1 - ema_decay) * weights`` (:func:`ema_update`); ``ema_decay=0.995, ema_every=10`` are their settings.
        **Departure: off by default.** The average keeps ``ema_decay^(steps / ema_every)`` of the random initial
        weights, which vanishes in the authors' long runs (10,000 epochs) but not at CPU budgets: 37% after 2000
        steps, 8% after 5000. On ``pendulum-medium-v0`` (10k transitions, windows of 16, width 32) the average
        after 2000 steps had a denoising loss of 0.57 against 0.26 for the last weights, and its samples a one-step
        dynamics error of 1.04 against 0.077; after 5000 steps 0.28 against 0.23, and 0.056 against 0.024.

        Args:
            windows: Normalised windows (:meth:`from_dataset`).
            steps: Optimiser steps.
            batch_size: Windows per step.
            lr: Peak learning rate.
            seed: Seeds the batches and the noise.
            ema_decay: The average's decay (authors: 0.995); ``None`` (default) keeps the last weights.
            ema_every: Optimiser steps between updates of the average (authors: 10).

        Returns:
            The loss every 50 steps (of the trained weights, not the average).
        """
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if ema_every < 1:
            raise ValueError(f"ema_every must be >= 1, got {ema_every}")
        generator = torch.Generator().manual_seed(seed)
        data = torch.as_tensor(windows)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        warmup = max(1, steps // 10)
        average = [p.detach().clone() for p in self.parameters()] if ema_decay is not None else None

        def schedule(step: int) -> float:
            if step < warmup:
                return 0.1 + 0.9 * step / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        losses = []
        for step in range(steps):
            index = torch.randint(len(data), (batch_size,), generator=generator)
            loss = self.loss(data[index], generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if average is not None and ema_decay is not None:
                ema_update(average, list(self.parameters()), step + 1, ema_decay, ema_every)
            if step % 50 == 0 or step == steps - 1:
                losses.append(float(loss.detach()))
        if average is not None:
            with torch.no_grad():
                for parameter, value in zip(self.parameters(), average, strict=True):
                    parameter.copy_(value)
        self.fitted.fill_(1.0)
        return losses

    # --- persistence ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write weights, normalisation and architecture."""
        torch.save(
            {
                "algorithm": "PGD-diffusion",
                "dims": [self.obs_dim, self.action_dim, self.horizon],
                "config": self.config,
                "state_dict": self.state_dict(),
            },
            Path(path) if Path(path).suffix else Path(path).with_suffix(".pt"),
        )

    @classmethod
    def load(cls, path: str | Path, horizon: int | None = None) -> TrajectoryDiffusion:
        """Rebuild a saved model.

        Args:
            path: File written by :meth:`save`.
            horizon: The window length the caller needs; checked against the checkpoint's.

        Raises:
            ValueError: If the file is not a PGD diffusion model or was trained for another horizon.
        """
        checkpoint = torch.load(Path(path) if Path(path).suffix else Path(path).with_suffix(".pt"), weights_only=True)
        if checkpoint.get("algorithm") != "PGD-diffusion":
            raise ValueError(f"{path} holds a {checkpoint.get('algorithm')!r} checkpoint, not a PGD diffusion model")
        obs_dim, action_dim, trained_horizon = checkpoint["dims"]
        if horizon is not None and horizon != trained_horizon:
            raise ValueError(f"{path} was trained on windows of {trained_horizon} steps, not the requested {horizon}")
        state = checkpoint["state_dict"]
        model = cls(obs_dim, action_dim, state["max_action"].numpy(), trained_horizon, **checkpoint["config"])
        model.load_state_dict(state)
        return model


# --- the autoregressive baseline --------------------------------------------------------------------
class EnsembleWorldModel(nn.Module):
    """PGD's baseline: an ensemble of Gaussian MLP dynamics models rolled out autoregressively (MBPO/MOPO style).

    Each member maps normalised ``(s, a)`` to a diagonal Gaussian over ``(s' - s, r)`` (normalised), trained
    by Gaussian negative log-likelihood on bootstrap-free uniform minibatches (each member its own). A
    rollout picks a random member per step and uses its mean (or a sample). The authors' exact architecture
    was not checked; this follows the usual MBPO/MOPO layout, sized for CPU (5 members of 2x128).

    Args:
        obs_dim: State size.
        action_dim: Action size.
        members: Ensemble size.
        hidden_sizes: Hidden widths of each member.
    """

    # buffers: input and target normalisation, set by fit()
    in_mean: torch.Tensor
    in_std: torch.Tensor
    out_mean: torch.Tensor
    out_std: torch.Tensor

    def __init__(self, obs_dim: int, action_dim: int, members: int = 5, hidden_sizes: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.members = nn.ModuleList(mlp(obs_dim + action_dim, hidden_sizes, 2 * (obs_dim + 1)) for _ in range(members))
        for name, size in (
            ("in_mean", obs_dim + action_dim),
            ("in_std", obs_dim + action_dim),
            ("out_mean", obs_dim + 1),
            ("out_std", obs_dim + 1),
        ):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

    def _predict(self, member: int, observations: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (torch.cat([observations, actions], -1) - self.in_mean) / self.in_std
        mean, log_var = self.members[member](x).chunk(2, dim=-1)
        return mean, log_var.clamp(-10.0, 4.0)

    def fit(
        self, data: dict[str, np.ndarray], steps: int = 2000, batch_size: int = 256, lr: float = 1e-3, seed: int = 0
    ) -> list[float]:
        """Gaussian NLL of ``(s' - s, r)`` for every member; returns the mean loss every 100 steps.

        Rows whose ``has_next_observation`` is false (terminal rows of an imported D4RL file, whose stored next
        state is a copy of the state) are left out: their ``s' - s`` is no transition of the dynamics.
        """
        rows = np.asarray(data.get("has_next_observation", np.ones(len(data["rewards"]), bool)), bool)
        if not rows.any():
            raise ValueError("no row of the dataset has a real next state to fit the dynamics on")
        observations = torch.as_tensor(np.asarray(data["observations"], np.float32)[rows])
        actions = torch.as_tensor(np.asarray(data["actions"], np.float32)[rows])
        targets = torch.cat(
            [
                torch.as_tensor(np.asarray(data["next_observations"], np.float32)[rows]) - observations,
                torch.as_tensor(np.asarray(data["rewards"], np.float32)[rows])[:, None],
            ],
            1,
        )
        inputs = torch.cat([observations, actions], 1)
        self.in_mean.copy_(inputs.mean(0))
        self.in_std.copy_(inputs.std(0) + 1e-6)
        self.out_mean.copy_(targets.mean(0))
        self.out_std.copy_(targets.std(0) + 1e-6)
        normalised = (targets - self.out_mean) / self.out_std
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        history = []
        for step in range(steps):
            loss = torch.zeros(())
            for member in range(len(self.members)):
                index = torch.randint(len(inputs), (batch_size,), generator=generator)
                mean, log_var = self._predict(member, observations[index], actions[index])
                loss = loss + (((mean - normalised[index]) ** 2) * torch.exp(-log_var) + log_var).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % 100 == 0 or step == steps - 1:
                history.append(float(loss.detach()) / len(self.members))
        return history

    @torch.no_grad()
    def rollout(
        self,
        start: torch.Tensor,
        policy: Callable[[torch.Tensor], torch.Tensor],
        horizon: int,
        generator: torch.Generator | None = None,
        sample: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Roll ``horizon`` steps from raw states ``start`` under ``policy`` (raw states -> raw actions).

        Returns:
            ``observations`` ``(batch, horizon + 1, obs_dim)``, ``actions`` and ``rewards`` ``(batch, horizon, .)``.
        """
        observations, actions, rewards = [start], [], []
        state = start
        for _ in range(horizon):
            action = policy(state)
            member = int(torch.randint(len(self.members), (1,), generator=generator))
            mean, log_var = self._predict(member, state, action)
            if sample:
                mean = mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=generator)
            delta = mean * self.out_std + self.out_mean
            state = state + delta[:, : self.obs_dim]
            observations.append(state)
            actions.append(action)
            rewards.append(delta[:, self.obs_dim])
        return {
            "observations": torch.stack(observations, 1),
            "actions": torch.stack(actions, 1),
            "rewards": torch.stack(rewards, 1),
        }


# --- the agent ---------------------------------------------------------------------------------------
class _PolicyGuidedData(OfflineAgent):
    """Training on mostly synthetic, policy-guided batches (the authors' ``train_agent.py`` loop), for any base agent.

    Before the first gradient step a :class:`TrajectoryDiffusion` model is fitted on the dataset's windows
    (``diffusion_steps`` steps). A pool of ``pool_windows`` windows is then generated, unguided the first
    time and afterwards guided by the current actor (:func:`policy_log_prob`), and regenerated every
    ``regenerate_every`` agent steps; each batch takes ``round(synthetic_ratio * batch_size)`` transitions
    from the pool (authors: 240 of 256) and the rest from the real data. Synthetic rewards get the base agent's
    reward scale (IQL's ``1000 / return spread``), so real and synthetic rewards share units.

    Hyperparameters besides the base agent's: ``horizon`` (16; authors 32), ``stride`` (4; authors 8),
    ``features`` (32; authors 1024), ``levels`` (2; authors 3), ``diffusion_steps`` (5000),
    ``diffusion_batch_size`` (32), ``diffusion_lr`` (2e-3), ``sampling_steps`` (32; authors 256),
    ``guidance_coeff`` (0.1; 0 gives the paper's unguided-diffusion baseline), ``normalize_guidance`` (True),
    ``synthetic_ratio`` (240/256), ``pool_windows`` (512), ``regenerate_every`` (10000, as the authors').
    """

    GUIDED_DEFAULTS: ClassVar[dict[str, Any]] = {
        "horizon": 16,
        "stride": 4,
        "features": 32,
        "levels": 2,
        "diffusion_steps": 5000,
        "diffusion_batch_size": 32,
        "diffusion_lr": 2e-3,
        "sampling_steps": 32,
        "guidance_coeff": 0.1,
        "normalize_guidance": True,
        "synthetic_ratio": 240 / 256,
        "pool_windows": 512,
        "regenerate_every": 10_000,
    }

    def _build(self) -> None:
        c = self.config
        if c["guidance_coeff"] < 0:
            raise ValueError(f"the guidance coefficient must be >= 0, got {c['guidance_coeff']}")
        if not 0.0 <= c["synthetic_ratio"] <= 1.0:
            raise ValueError(f"synthetic_ratio must be in [0, 1], got {c['synthetic_ratio']}")
        for name in ("regenerate_every", "pool_windows", "sampling_steps"):
            if c[name] < 1:
                raise ValueError(f"{name} must be >= 1, got {c[name]}")
        super()._build()  # type: ignore[safe-super]  # a mixin: the base agent (TD3BC, IQL) follows in the MRO
        self.diffusion = TrajectoryDiffusion(
            self.obs_dim, self.action_dim, self.max_action.cpu().numpy(), c["horizon"], c["features"], c["levels"]
        ).to(self.device)
        self._pool: dict[str, torch.Tensor] | None = None
        self._pool_generations = 0

    def _modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        return {**super()._modules(), "diffusion": self.diffusion}  # type: ignore[safe-super]  # as in _build

    def _set_data(self, data: dict[str, np.ndarray], raw: dict[str, np.ndarray]) -> None:
        super()._set_data(data, raw)
        self._raw = raw

    def fit_diffusion(self, steps: int | None = None) -> list[float]:
        """Fit the trajectory diffusion model on the dataset's windows (done by :meth:`learn` if not yet)."""
        c = self.config
        fresh, windows = TrajectoryDiffusion.from_dataset(
            self._raw, self.max_action.cpu().numpy(), c["horizon"], c["stride"], features=c["features"], levels=c["levels"]
        )
        self.diffusion.channel_mean.copy_(fresh.channel_mean)
        self.diffusion.channel_std.copy_(fresh.channel_std)
        losses = self.diffusion.fit(
            windows,
            steps if steps is not None else c["diffusion_steps"],
            c["diffusion_batch_size"],
            c["diffusion_lr"],
            self.seed,
        )
        return losses

    def _on_learn_start(self, total_timesteps: int) -> None:
        super()._on_learn_start(total_timesteps)
        if not bool(self.diffusion.fitted):
            self.fit_diffusion()

    @torch.no_grad()
    def regenerate_pool(self) -> None:
        """Sample a new synthetic pool, guided by the current actor after the first generation."""
        c = self.config
        coeff = c["guidance_coeff"] if self._pool_generations > 0 else 0.0
        windows = self.diffusion.sample(
            c["pool_windows"], c["sampling_steps"], self.generator, policy_log_prob(self), coeff, c["normalize_guidance"]
        )
        obs = (windows["observations"] - self._obs_mean_t) / self._obs_std_t
        rewards = windows["rewards"] * float(c.get("reward_scale", 1.0))  # the base agent's reward units
        self._pool = {  # transitions t = 0 .. L-2 of every window
            "observations": obs[:, :-1].reshape(-1, self.obs_dim),
            "actions": windows["actions"][:, :-1].reshape(-1, self.action_dim),
            "rewards": rewards[:, :-1].reshape(-1, 1),
            "next_observations": obs[:, 1:].reshape(-1, self.obs_dim),
            "not_dones": 1.0 - windows["dones"][:, :-1].reshape(-1, 1),
        }
        self._pool_generations += 1

    def sample(self) -> dict[str, torch.Tensor]:
        """``synthetic_ratio`` of the batch from the synthetic pool (regenerated on schedule), the rest real."""
        c = self.config
        if self._pool is None or self.num_timesteps % c["regenerate_every"] == 0:
            self.regenerate_pool()
        assert self._pool is not None
        real = super().sample()
        n_synthetic = round(c["synthetic_ratio"] * self.batch_size)
        pool_size = len(self._pool["rewards"])
        index = torch.randint(pool_size, (n_synthetic,), generator=self.generator, device=self.device)
        return {key: torch.cat([self._pool[key][index], real[key][n_synthetic:]]) for key in real}


class PGD(_PolicyGuidedData, TD3BC):
    """TD3+BC on policy-guided synthetic data (see :class:`_PolicyGuidedData` for the loop and hyperparameters)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {**TD3BC.DEFAULTS, **_PolicyGuidedData.GUIDED_DEFAULTS}


class PGDIQL(_PolicyGuidedData, IQL):
    """IQL on policy-guided synthetic data, guided by IQL's own Gaussian actor (research notes Sec. 5.8)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {**IQL.DEFAULTS, **_PolicyGuidedData.GUIDED_DEFAULTS}

    def _build(self) -> None:
        if self.config["deterministic_actor"]:
            raise ValueError(
                "pgd-iql guides its synthetic data with the log-density of IQL's Gaussian actor; "
                "deterministic_actor=True gives it none (use --algo pgd for a deterministic actor)"
            )
        super()._build()


def build_pgd(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> PGD:
    """``palaestra train --algo pgd`` builder (the env id names the dataset)."""
    return build_offline_agent(PGD, env_id, env_kwargs, seed, hyperparams)  # type: ignore[return-value]


def build_pgd_iql(env_id: str, env_kwargs: dict[str, Any], seed: int, hyperparams: dict[str, Any]) -> PGDIQL:
    """``palaestra train --algo pgd-iql`` builder (the env id names the dataset)."""
    return build_offline_agent(PGDIQL, env_id, env_kwargs, seed, hyperparams)  # type: ignore[return-value]
