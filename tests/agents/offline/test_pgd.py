"""Policy-guided diffusion: EDM pieces by hand, the sampler with an exact denoiser, guidance, windows, persistence."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import palaestra  # noqa: F401
from palaestra.agents.offline import TD3BC
from palaestra.agents.offline.pgd import (
    PGD,
    PGDIQL,
    EnsembleWorldModel,
    TemporalUNet,
    TrajectoryDiffusion,
    deterministic_policy_log_prob,
    edm_loss_weight,
    edm_preconditioning,
    edm_sampler,
    edm_sigma_schedule,
    ema_update,
    guidance_schedule,
    policy_log_prob,
    trajectory_windows,
    window_starts,
)
from palaestra.cli import main

# The PGD authors' code, read at github.com/EmptyJackson/policy-guided-diffusion commit
# 9da606ca16389c626fab7cef2a07ca82d74fd14f; EDM's reference code at github.com/NVlabs/edm commit
# 008a4e5316c8e3bfe61a62f874bddba254295afb. The rules below are transcriptions, not copies.


@pytest.fixture(autouse=True)
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


# --- EDM by hand -------------------------------------------------------------------------------------
def test_edm_preconditioning_and_loss_weight_by_hand():
    c_skip, c_out, c_in, c_noise = edm_preconditioning(torch.tensor([1.0, 2.0]), sigma_data=1.0)
    torch.testing.assert_close(c_skip, torch.tensor([0.5, 0.2]))
    torch.testing.assert_close(c_out, torch.tensor([1 / math.sqrt(2), 2 / math.sqrt(5)]))
    torch.testing.assert_close(c_in, torch.tensor([1 / math.sqrt(2), 1 / math.sqrt(5)]))
    torch.testing.assert_close(c_noise, torch.tensor([0.0, math.log(2.0) / 4]))
    # lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2: 2 at sigma = 1, 5/4 at sigma = 2
    torch.testing.assert_close(edm_loss_weight(torch.tensor([1.0, 2.0])), torch.tensor([2.0, 1.25]))
    # the weighting makes the loss of the trivial denoiser F = 0 equal to 1 at every sigma when x ~ N(0, sd^2)
    # (the effective target has unit variance: lambda * c_out^2 = 1)
    torch.testing.assert_close(
        edm_loss_weight(torch.tensor([0.3])) * edm_preconditioning(torch.tensor([0.3]))[1] ** 2, torch.ones(1)
    )


def test_sigma_schedule_endpoints_and_monotone():
    sigmas = edm_sigma_schedule(8)
    assert sigmas.shape == (9,)
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-2].item() == pytest.approx(0.002) and sigmas[-1] == 0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    with pytest.raises(ValueError, match="n_steps >= 2"):
        edm_sigma_schedule(1)


def test_guidance_schedule_by_hand_and_negative_coefficients_rejected():
    scales = guidance_schedule(2.0, 4, cosine=0.3)
    expected = [2.0 * ((1 - i / 4) + 0.3 * math.sin(math.pi * (i + 1) / 4)) for i in range(4)]
    torch.testing.assert_close(scales, torch.tensor(expected))
    assert torch.all(guidance_schedule(0.0, 4) == 0)
    with pytest.raises(ValueError, match=r"guidance coefficient must be >= 0, got -0\.1"):
        guidance_schedule(-0.1, 4)


def test_heun_sampler_with_the_exact_denoiser_of_a_gaussian_recovers_it():
    # data N(mu, s^2): the ideal denoiser is D(x; sigma) = mu + (x - mu) s^2 / (s^2 + sigma^2)
    mu, s = 1.5, 0.5

    def denoise(x, sigma):
        sigma = sigma.view(-1, 1)
        return mu + (x - mu) * s**2 / (s**2 + sigma**2)

    generator = torch.Generator().manual_seed(0)
    samples = edm_sampler(denoise, torch.randn(4000, 1, generator=generator), 32, generator)
    assert samples.mean().item() == pytest.approx(mu, abs=0.05)
    assert samples.std().item() == pytest.approx(s, abs=0.05)


def test_guidance_moves_samples_toward_the_target():
    def denoise(x, sigma):  # standard normal data
        return x / (1 + sigma.view(-1, 1) ** 2)

    def toward_two(x):  # grad of log N(x; 2, 1)
        return 2.0 - x

    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(2000, 1, generator=generator)
    plain = edm_sampler(denoise, noise, 32, torch.Generator().manual_seed(1))
    guided = edm_sampler(denoise, noise, 32, torch.Generator().manual_seed(1), toward_two, guidance_schedule(0.3, 32))
    assert plain.mean().abs().item() < 0.1
    assert guided.mean().item() > plain.mean().item() + 0.3


# --- data and model ----------------------------------------------------------------------------------
def test_windows_stay_inside_episodes_and_encode_actions_in_arctanh_space():
    n = 12
    data = {
        "observations": np.arange(n, dtype=np.float32)[:, None],
        "actions": np.full((n, 1), 2.0, np.float32),
        "rewards": np.ones(n, np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }
    data["terminals"][4] = True  # episode 0..4 ends in a termination
    data["timeouts"][9] = True  # episode 5..9 is cut by the time limit; 10..11 is too short
    windows = trajectory_windows(data, horizon=3, stride=1, max_action=np.array([2.0], np.float32))
    starts = windows[:, 0, 0].tolist()
    assert starts == [0, 1, 2, 5, 6]  # 7..9 ends on the time-out: dropped, as the authors do
    assert np.all(np.diff(windows[:, :, 0], axis=1) == 1)  # consecutive steps of one episode
    assert windows[2, -1, -1] == 1.0 and windows[:, :-1, -1].sum() == 0  # done only at a window's last step
    assert windows[3:, :, -1].sum() == 0  # time-outs are not dones
    assert windows[0, 0, 1] == pytest.approx(np.arctanh(0.999), rel=1e-5)  # a = max_action clipped before arctanh
    with pytest.raises(ValueError, match="no episode in the dataset has 6 steps"):
        trajectory_windows(data, horizon=6, stride=1, max_action=np.array([2.0], np.float32))


def test_unet_shapes_for_any_window_length():
    net = TemporalUNet(channels=6, features=16, levels=3)
    for length in (16, 15, 7):
        out = net(torch.randn(3, length, 6), torch.zeros(3))
        assert out.shape == (3, length, 6)
    with pytest.raises(ValueError, match="multiple of 8"):
        TemporalUNet(6, features=12)
    assert TrajectoryDiffusion(3, 1, np.array([2.0]), paper_size=True).config["features"] == 1024


def _pendulum():
    env = gym.make("pendulum-medium-v0", dataset_size=2000, progress=False)
    return env, env.get_dataset()


def test_diffusion_trains_samples_guides_and_round_trips(tmp_path):
    env, data = _pendulum()
    torch.manual_seed(0)
    model, windows = TrajectoryDiffusion.from_dataset(data, env.action_space.high, horizon=8, stride=4, features=16)
    assert windows.shape[1:] == (8, 3 + 1 + 2)
    assert abs(windows.mean()) < 0.05

    def radius_error():  # pendulum observations are (cos, sin, velocity): cos^2 + sin^2 = 1 on the data
        observations = model.sample(32, n_steps=8, generator=torch.Generator().manual_seed(0))["observations"]
        return (observations[..., :2].norm(dim=-1) - 1).abs().median().item()

    untrained = radius_error()
    losses = model.fit(windows, steps=300, batch_size=64, lr=2e-3)
    assert np.mean(losses[-3:]) < 0.7 * losses[0]
    samples = model.sample(16, n_steps=8, generator=torch.Generator().manual_seed(0))
    assert samples["observations"].shape == (16, 8, 3) and samples["actions"].shape == (16, 8, 1)
    assert torch.all(samples["actions"].abs() <= 2.0)
    assert radius_error() < 0.7 * untrained, untrained  # 0.61x with torch 2.13 and this seed

    agent = TD3BC(env, seed=0, eval_freq=0, hidden_sizes=(16,))
    log_prob = deterministic_policy_log_prob(agent)

    def mean_log_prob(coeff):
        out = model.sample(64, n_steps=8, generator=torch.Generator().manual_seed(1), log_prob=log_prob, guidance_coeff=coeff)
        return log_prob(out["observations"], out["actions"]).mean().item()

    assert mean_log_prob(1.0) > mean_log_prob(0.0)  # guidance raises the target policy's likelihood
    with pytest.raises(ValueError, match="guidance coefficient must be >= 0"):
        model.sample(2, n_steps=4, log_prob=log_prob, guidance_coeff=-1.0)
    with pytest.raises(ValueError, match="needs the target policy's log_prob"):
        model.sample(2, n_steps=4, guidance_coeff=1.0)

    model.save(tmp_path / "diffusion")
    loaded = TrajectoryDiffusion.load(tmp_path / "diffusion", horizon=8)
    x, sigma = torch.randn(2, 8, 6), torch.tensor([0.5, 2.0])
    torch.testing.assert_close(loaded.denoise(x, sigma), model.denoise(x, sigma))
    with pytest.raises(ValueError, match="trained on windows of 8 steps, not the requested 32"):
        TrajectoryDiffusion.load(tmp_path / "diffusion", horizon=32)


# --- the agent ---------------------------------------------------------------------------------------
TINY = {
    "hidden_sizes": (16,),
    "horizon": 4,
    "stride": 2,
    "features": 8,
    "levels": 1,
    "diffusion_steps": 5,
    "sampling_steps": 2,
    "pool_windows": 8,
    "regenerate_every": 3,
}


def test_pgd_agent_mixes_synthetic_and_real_batches_and_regenerates_the_pool(tmp_path):
    env = gym.make("pendulum-medium-v0", dataset_size=400, progress=False)
    agent = PGD(env, seed=0, eval_freq=0, batch_size=16, synthetic_ratio=0.75, **TINY)
    assert not bool(agent.diffusion.fitted)
    agent.learn(1)
    assert bool(agent.diffusion.fitted) and agent._pool_generations == 1
    assert len(agent._pool["rewards"]) == 8 * (4 - 1)  # L - 1 transitions per window
    batch = agent.sample()
    pool_rows = {tuple(row.tolist()) for row in agent._pool["observations"]}
    from_pool = [tuple(row.tolist()) in pool_rows for row in batch["observations"]]
    assert all(from_pool[:12]) and not any(from_pool[12:])  # 12 = 0.75 * 16 synthetic, then real
    agent.learn(6)  # batches for steps 1..6; regenerated (guided by the current actor) before steps 3 and 6
    assert agent._pool_generations == 3
    agent.save(tmp_path / "pgd")
    loaded = PGD.load(tmp_path / "pgd", env=env)
    assert bool(loaded.diffusion.fitted)
    torch.testing.assert_close(loaded.diffusion.channel_mean, agent.diffusion.channel_mean)
    observations = env.get_dataset()["observations"][:3]
    np.testing.assert_allclose(loaded.predict(observations)[0], agent.predict(observations)[0])


def test_pgd_bad_input_and_cli(tmp_path):
    env = gym.make("pendulum-medium-v0", dataset_size=400, progress=False)
    with pytest.raises(ValueError, match="guidance coefficient must be >= 0"):
        PGD(env, guidance_coeff=-0.5, **TINY)
    with pytest.raises(ValueError, match="synthetic_ratio must be in"):
        PGD(env, synthetic_ratio=1.5, **TINY)
    out = tmp_path / "pgd"
    args = ["train", "--algo", "pgd", "--env", "pendulum-medium-v0", "--timesteps", "3", "--out", str(out)]
    hyper = [f"{key}={value}" for key, value in TINY.items()]
    env_kwargs = ["--env-kwargs", "dataset_size=400", "progress=False", "--no-progress-bar"]
    assert main([*args, "--hyperparams", *hyper, *env_kwargs]) == 0
    assert main(["eval", "--checkpoint", str(out), "--episodes", "1"]) == 0


def test_ensemble_world_model_learns_one_step_dynamics_and_rolls_out():
    _, data = _pendulum()
    torch.manual_seed(0)
    model = EnsembleWorldModel(3, 1, members=3, hidden_sizes=(64, 64))
    history = model.fit(data, steps=400, batch_size=128)
    assert history[-1] < history[0]
    observations = torch.as_tensor(data["observations"][:200])
    rollout = model.rollout(observations, lambda s: torch.as_tensor(data["actions"][:200]), horizon=1)
    predicted = rollout["observations"][:, 1]
    truth = torch.as_tensor(data["next_observations"][:200])
    assert (predicted - truth).pow(2).mean() < 0.2 * (observations - truth).pow(2).mean()  # beats "nothing moves"
    longer = model.rollout(observations[:4], lambda s: torch.zeros(len(s), 1), horizon=5, sample=True)
    assert longer["observations"].shape == (4, 6, 3) and longer["rewards"].shape == (4, 5)


def test_policy_log_prob_uses_the_gaussian_actor_of_iql_and_the_unit_gaussian_of_td3bc():
    env = gym.make("pendulum-medium-v0", dataset_size=400, progress=False)
    iql = PGDIQL(env, seed=0, eval_freq=0, **TINY)
    observations = torch.as_tensor(env.get_dataset()["observations"][:6], dtype=torch.float32).reshape(2, 3, 3)
    actions = torch.full((2, 3, 1), 0.5)
    normalised = (observations.reshape(-1, 3) - torch.as_tensor(iql.obs_mean)) / torch.as_tensor(iql.obs_std)
    expected = iql.actor.distribution(normalised).log_prob(actions.reshape(-1, 1) / 2.0).sum(-1).reshape(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(policy_log_prob(iql)(observations, actions), expected)
    td3bc = PGD(env, seed=0, eval_freq=0, **TINY)
    with torch.no_grad():
        torch.testing.assert_close(
            policy_log_prob(td3bc)(observations, actions), deterministic_policy_log_prob(td3bc)(observations, actions)
        )


def test_pgd_iql_trains_on_reward_scaled_synthetic_batches_and_round_trips(tmp_path):
    env = gym.make("pendulum-medium-v0", dataset_size=400, progress=False)
    agent = PGDIQL(env, seed=0, eval_freq=0, batch_size=16, **TINY)
    agent.learn(4)
    assert agent._pool_generations == 2 and agent.config["reward_scale"] != 1.0
    # synthetic rewards carry IQL's reward scale, so real and synthetic rewards share units
    scale = agent.config["reward_scale"]
    agent.generator.manual_seed(5)
    agent.regenerate_pool()
    scaled = agent._pool["rewards"].clone()
    agent.config["reward_scale"] = 1.0
    agent.generator.manual_seed(5)
    agent.regenerate_pool()
    torch.testing.assert_close(scaled, agent._pool["rewards"] * scale)
    agent.config["reward_scale"] = scale
    agent.save(tmp_path / "pgd_iql")
    loaded = PGDIQL.load(tmp_path / "pgd_iql", env=env)
    observations = env.get_dataset()["observations"][:3]
    np.testing.assert_allclose(loaded.predict(observations)[0], agent.predict(observations)[0])
    out = tmp_path / "cli"
    args = ["train", "--algo", "pgd-iql", "--env", "pendulum-medium-v0", "--timesteps", "2", "--out", str(out)]
    hyper = [f"{key}={value}" for key, value in TINY.items()]
    assert (
        main([*args, "--hyperparams", *hyper, "--env-kwargs", "dataset_size=400", "progress=False", "--no-progress-bar"]) == 0
    )


# --- against the authors' rules ----------------------------------------------------------------------
def _toy_denoiser(x, sigma):
    """A nonlinear stand-in for a trained D(x; sigma)."""
    sigma = sigma.view(-1, 1)
    return torch.tanh(x) / (1 + sigma**2) + 0.1 * x / (1 + sigma)


def _reference_heun(denoise, noise, n_steps, generator, from_churned):
    """The stochastic Heun loop with sigma_max 80, sigma_min 0.002, rho 7, S_churn 80, S_tmin 0.05, S_tmax 50,
    S_noise 1.003. Per step i: gamma = min(S_churn / N, sqrt(2) - 1) when S_tmin <= sigma_i <= S_tmax, else 0;
    sigma_hat = sigma_i (1 + gamma); x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise eps;
    d = (x_hat - D(x_hat; sigma_hat)) / sigma_hat. Euler predictor x' = base + (sigma_{i+1} - sigma_hat) d, with
    base = x_hat in EDM (Algorithm 2 line 7; NVlabs/edm generate.py line 52) and base = x, the point before the
    churn, in the PGD authors' diffusion/edm.py (``noised_traj + (next_sigma - sigma_hat) * denoised_over_sigma``).
    If sigma_{i+1} > 0, both correct from x_hat: x_hat + (sigma_{i+1} - sigma_hat) (d + d') / 2 with
    d' = (x' - D(x'; sigma_{i+1})) / sigma_{i+1}; otherwise the predictor is the step."""
    inv_rho = 1 / 7.0
    sigmas = [(80.0**inv_rho + i / (n_steps - 1) * (0.002**inv_rho - 80.0**inv_rho)) ** 7.0 for i in range(n_steps)]
    sigmas = torch.tensor([*sigmas, 0.0], dtype=torch.float32)
    x = noise * sigmas[0]
    for i in range(n_steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        gamma = min(80.0 / n_steps, math.sqrt(2) - 1) if 0.05 <= float(sigma) <= 50.0 else 0.0
        sigma_hat = sigma * (1 + gamma)
        x_hat = x + (sigma_hat**2 - sigma**2).sqrt() * 1.003 * torch.randn(x.shape, generator=generator) if gamma else x
        d = (x_hat - denoise(x_hat, sigma_hat.expand(len(x)))) / sigma_hat
        predicted = (x_hat if from_churned else x) + (sigma_next - sigma_hat) * d
        if sigma_next > 0:
            d_next = (predicted - denoise(predicted, sigma_next.expand(len(x)))) / sigma_next
            predicted = x_hat + (sigma_next - sigma_hat) * (d + d_next) / 2
        x = predicted
    return x


def test_sampler_follows_edm_algorithm_2_and_reproduces_the_authors_predictor_on_request():
    noise = torch.randn(500, 1, generator=torch.Generator().manual_seed(0))
    ours = edm_sampler(_toy_denoiser, noise, 32, torch.Generator().manual_seed(1))
    edm = _reference_heun(_toy_denoiser, noise, 32, torch.Generator().manual_seed(1), from_churned=True)
    torch.testing.assert_close(ours, edm, rtol=1e-4, atol=1e-4)
    authors = _reference_heun(_toy_denoiser, noise, 32, torch.Generator().manual_seed(1), from_churned=False)
    theirs = edm_sampler(_toy_denoiser, noise, 32, torch.Generator().manual_seed(1), euler_from_churned=False)
    torch.testing.assert_close(theirs, authors, rtol=1e-4, atol=1e-4)
    assert (ours - theirs).abs().mean().item() > 0.02  # the two rules differ wherever the churn is on


def _authors_window_starts(terminals, timeouts, horizon, stride):
    """The authors' window starts (environments/dataset.py, _assemble_dataset), transcribed: done = terminal or
    time-out; a start k is valid if rows k .. k + L - 2 hold no done; take every stride-th valid start (over the
    whole dataset, in order), add the valid starts whose window's last row k + L - 1 is a terminal, and the valid
    starts that are an episode's first row (row 0 or the row after a done); remove the starts whose window's last
    row is a time-out."""
    done = terminals | timeouts
    n = len(done)
    valid = [k for k in range(n - horizon + 1) if not done[k : k + horizon - 1].any()]
    episode_first = {0} | {int(i) + 1 for i in np.flatnonzero(done)}
    starts = set(valid[::stride])
    starts |= {k for k in valid if terminals[k + horizon - 1] or k in episode_first}
    starts -= {int(i) - (horizon - 1) for i in np.flatnonzero(timeouts)}
    return sorted(starts)


def test_windows_are_the_authors_strided_terminal_and_episode_start_windows_without_time_outs():
    rng = np.random.default_rng(3)
    n = 400
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    ends = np.sort(rng.choice(n, 40, replace=False))
    terminals[ends[::2]] = True
    timeouts[ends[1::2]] = True
    timeouts[-1] = True
    for horizon, stride in ((4, 3), (8, 4), (2, 1), (6, 8)):
        expected = _authors_window_starts(terminals, timeouts, horizon, stride)
        assert window_starts(terminals, timeouts, horizon, stride).tolist() == expected
    # counted: with L = 4, every terminal after an episode of >= 4 steps ends a window, no time-out does
    starts = np.asarray(window_starts(terminals, timeouts, 4, 3))
    lengths = np.diff(np.concatenate([[-1], np.flatnonzero(terminals | timeouts)]))
    long_terminals = np.flatnonzero(terminals)[lengths[terminals[np.flatnonzero(terminals | timeouts)]] >= 4]
    assert set(starts + 3) & set(np.flatnonzero(terminals)) == set(long_terminals)
    assert not set(starts + 3) & set(np.flatnonzero(timeouts))


def _authors_ema(initial, trajectory, decay, every):
    """The authors' EMA (util/jax.py ema_update, applied after each optimiser step of train_diffusion.py): start at
    the initial weights; after optimiser step k (from 1), if k is a multiple of ``every``, average <- decay *
    average + (1 - decay) * weights."""
    average = [w.clone() for w in initial]
    for k, weights in enumerate(trajectory, start=1):
        if k % every == 0:
            average = [decay * a + (1 - decay) * w for a, w in zip(average, weights, strict=True)]
    return average


def test_ema_update_is_the_authors_rule():
    initial = [torch.zeros(3), torch.ones(2)]
    trajectory = [[torch.full((3,), float(k)), torch.full((2,), -float(k))] for k in range(1, 26)]
    average = [w.clone() for w in initial]
    for k, weights in enumerate(trajectory, start=1):
        ema_update(average, weights, k, 0.9, 10)
    for ours, theirs in zip(average, _authors_ema(initial, trajectory, 0.9, 10), strict=True):
        torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(average[0], torch.full((3,), 0.9 * 0.1 * 10 + 0.1 * 20))  # updates at 10 and 20 only


def test_fit_ends_on_the_moving_average_of_the_weights(monkeypatch):
    import palaestra.agents.offline.pgd as pgd

    model = TrajectoryDiffusion(2, 1, np.ones(1, np.float32), horizon=4, features=8, levels=1)
    initial = [p.detach().clone() for p in model.parameters()]
    trajectory, real_update = [], pgd.ema_update

    def recording_update(average, weights, step, decay, every):
        trajectory.append([w.detach().clone() for w in weights])
        real_update(average, weights, step, decay, every)

    monkeypatch.setattr(pgd, "ema_update", recording_update)
    windows = np.random.default_rng(0).standard_normal((16, 4, 5)).astype(np.float32)
    model.fit(windows, steps=30, batch_size=4, ema_decay=0.8, ema_every=10)
    assert len(trajectory) == 30
    for ours, theirs in zip(model.parameters(), _authors_ema(initial, trajectory, 0.8, 10), strict=True):
        torch.testing.assert_close(ours.detach(), theirs)
    assert not torch.equal(next(model.parameters()).detach(), trajectory[-1][0])  # not the last weights


def test_normalised_guidance_is_the_authors_unit_norm_per_window(monkeypatch):
    """Authors' diffusion/edm.py: the gradient of sum_t log pi over the window's action block, divided by its
    Frobenius norm when --normalize_action_guidance is set (off by default in util/args.py; palaestra's agents
    turn it on, see the module docstring)."""
    import palaestra.agents.offline.pgd as pgd

    model = TrajectoryDiffusion(2, 1, np.full(1, 2.0, np.float32), horizon=5, features=8, levels=1)
    seen = {}

    def one_guidance_call(denoise, noise, n_steps, generator, guidance, scales):
        seen["x"], seen["g"] = noise, guidance(noise)
        return noise

    monkeypatch.setattr(pgd, "edm_sampler", one_guidance_call)

    def log_prob(observations, actions):  # log N(a; 0.5 s_0, 0.3^2) up to a constant
        return -0.5 * ((actions - 0.5 * observations[..., :1]) / 0.3).pow(2).sum(-1)

    for normalise in (True, False):
        model.sample(3, 4, torch.Generator().manual_seed(0), log_prob, 0.1, normalize_guidance=normalise)
        x = seen["x"].clone()
        actions = x[..., 2:3].clone().requires_grad_(True)
        raw_actions = 2.0 * torch.tanh(actions)
        (gradient,) = torch.autograd.grad(log_prob(x[..., :2], raw_actions).sum(), actions)
        if normalise:
            gradient = gradient / gradient.flatten(1).norm(dim=1).view(-1, 1, 1)
        torch.testing.assert_close(seen["g"][..., 2:3], gradient, rtol=1e-5, atol=1e-6)
        assert seen["g"][..., :2].abs().sum() == 0 and seen["g"][..., 3:].abs().sum() == 0
    assert PGD.GUIDED_DEFAULTS["normalize_guidance"] is True


def test_pgd_iql_refuses_a_deterministic_actor():
    env = gym.make("pendulum-medium-v0", dataset_size=400, progress=False)
    with pytest.raises(ValueError, match="deterministic_actor=True gives it none"):
        PGDIQL(env, seed=0, eval_freq=0, deterministic_actor=True, **TINY)
