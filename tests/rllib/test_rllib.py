"""palaestra's envs train under RLlib's PPO as they are, registered with a creator that calls ``gym.make``.

ray[rllib] pins an older Gymnasium than palaestra's main venv has, so these tests run in a venv of their own:
``scripts/test-rllib`` (``make test-rllib``) creates it and runs them. Elsewhere the module is skipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import pytest

pytest.importorskip("ray.rllib", reason="needs ray[rllib], which scripts/test-rllib installs in .venv-rllib")

# after the skip: the main venv has ray[tune] but not rllib's dependencies
import ray
from ray import tune
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    EPISODE_RETURN_MEAN,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "rllib.md"
# The page's example is fenced as a code-block directive: tests/test_readme.py checks ```python blocks in the main
# venv, which has no rllib; this module runs it where rllib is installed.
EXAMPLE_FENCE = "```{code-block} python"

pytestmark = [
    pytest.mark.slow,
    # RLlib registers its own single-agent wrapper id again for every algorithm it builds
    pytest.mark.filterwarnings("ignore:.*Overriding environment rllib-single-agent-env-v0:UserWarning"),
]


def make_palaestra_env(env_id: str, config: dict) -> gym.Env:
    """What a user registers: import palaestra (which registers its ids) in the env runner, then ``gym.make``."""
    import palaestra  # noqa: F401

    return gym.make(env_id, **config)


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize(
    ("env_id", "space"),
    [("RobustCartPole-v0", gym.spaces.Discrete), ("RobustPendulum-v0", gym.spaces.Box)],
)
def test_ppo_trains_one_iteration(ray_session, env_id: str, space: type) -> None:
    assert isinstance(make_palaestra_env(env_id, {}).action_space, space)
    name = f"palaestra-{env_id}"
    tune.register_env(name, lambda config: make_palaestra_env(env_id, dict(config)))
    config = (
        PPOConfig()
        .environment(name, env_config={"action_noise": 0.05})  # the creator passes env_config to gym.make
        .framework("torch")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
        .learners(num_learners=0)
        .training(train_batch_size_per_learner=400, minibatch_size=100, num_epochs=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    runners = result[ENV_RUNNER_RESULTS]
    assert runners[NUM_ENV_STEPS_SAMPLED_LIFETIME] >= 400
    # 400 steps hold finished episodes of both envs (random cart-pole episodes last tens of steps, pendulum's 200).
    assert math.isfinite(runners[EPISODE_RETURN_MEAN])


def page_examples(markdown: str) -> list[str]:
    """The bodies of the page's ``{code-block} python`` blocks, in order."""
    blocks, lines, opened = [], [], False
    for line in markdown.splitlines():
        if opened and line.startswith("```"):
            blocks.append("\n".join(lines) + "\n")
            opened = False
        elif opened:
            lines.append(line)
        elif line.strip() == EXAMPLE_FENCE:
            opened, lines = True, []
    return blocks


def test_the_pages_example_trains_and_prints_its_returns(ray_session, capsys) -> None:
    [example] = page_examples(PAGE.read_text())
    exec(compile(example, str(PAGE), "exec"), {"__name__": "rllib_page_example"})
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [int(iteration) for iteration, _ in printed] == list(range(5))
    returns = [float(value) for _, value in printed]
    assert all(math.isfinite(value) for value in returns), returns
