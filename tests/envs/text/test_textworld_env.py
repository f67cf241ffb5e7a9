import math
import os
import sys
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import DependencyNotInstalled, ResetNeeded
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import palaestra  # noqa: F401

pytest.importorskip("textworld")

from palaestra.envs.text.textworld_env import COMMAND_CHARSET, TextWorldEnv, generate_game


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tw_games")
    generate_game(0, cache_dir=directory)
    return directory


@pytest.fixture
def env(cache_dir):
    env = gym.make(
        "TextWorld-v0", cache_dir=cache_dir, request_infos=["admissible_commands", "walkthrough"], render_mode="ansi"
    )
    yield env
    env.close()


def test_check_env(env):
    check_env(env.unwrapped)


def test_walkthrough_wins_with_score_deltas(env):
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["score"] == 0 and not info["won"]
    assert info["walkthrough"] and set(info["admissible_commands"]) >= {"look", "inventory"}
    total = 0.0
    for command in info["walkthrough"]:
        obs, reward, terminated, truncated, info = env.step(command)
        assert env.observation_space.contains(obs)
        total += reward
    assert terminated and not truncated and info["won"] and info["is_success"]
    assert total == info["score"] == info["max_score"] >= 1
    assert "> " + info["walkthrough"][0] in env.render()
    with pytest.raises(ResetNeeded):
        env.step("look")


def test_same_seed_same_transcript(env):
    def run(seed):
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        transcript = [obs]
        for _ in range(8):
            command = info["admissible_commands"][int(rng.integers(len(info["admissible_commands"])))]
            obs, reward, terminated, truncated, info = env.step(command)
            transcript.append((command, obs, reward))
            if terminated or truncated:
                break
        return transcript

    assert run(3) == run(3)


def test_truncation_and_anchor(cache_dir):
    env = TextWorldEnv(cache_dir=cache_dir, max_steps=2, request_infos=["anchor"])
    _, info = env.reset(seed=0)
    description, inventory = info["anchor"]
    assert "-=" in description and "carrying" in inventory
    assert env.step("look")[3] is False
    _, reward, terminated, truncated, info = env.step("xyzzy")
    assert truncated and not terminated and reward == 0.0 and info["anchor"][0] == description
    env.close()


def test_existing_game_file_and_cache(cache_dir):
    path = generate_game(0, cache_dir=cache_dir)
    stamp = path.stat().st_mtime_ns
    assert generate_game(0, cache_dir=cache_dir) == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    env = gym.make("TextWorld-v0", game_files=str(path))
    obs, info = env.reset(seed=1)
    assert info["game_file"] == str(path) and len(obs) > 0
    with pytest.raises(ValueError, match="game_index"):
        env.reset(options={"game_index": 1})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"seed": 1})
    env.close()


def test_anchor_only_on_request(cache_dir):
    env = TextWorldEnv(cache_dir=cache_dir)
    _, info = env.reset(seed=0)
    assert "anchor" not in info and "description" not in info
    assert not env._infos.description and not env._infos.inventory  # textworld runs no extra look/inventory
    assert "anchor" not in env.step("look")[4]
    env.close()


def test_llm_trainer_requests_the_anchor(cache_dir):
    trainer = pytest.importorskip("palaestra.agents.llm.trainer")
    settings = SimpleNamespace(env_id="TextWorld-v0", env_kwargs={"cache_dir": cache_dir})
    env = trainer.MultiTurnAgent._make_env(settings)  # the env every GiGPO rollout steps
    _, info = env.reset(seed=0)
    assert "-=" in info["anchor"][0] and "carrying" in info["anchor"][1] and info["policy_commands"]
    env.close()


def test_llm_trainer_adds_the_anchor_to_the_infos_a_user_requests(cache_dir):
    trainer = pytest.importorskip("palaestra.agents.llm.trainer")
    kwargs = {"cache_dir": cache_dir, "request_infos": ("admissible_commands",)}
    env = trainer.MultiTurnAgent._make_env(SimpleNamespace(env_id="TextWorld-v0", env_kwargs=kwargs))
    _, info = env.reset(seed=0)
    assert info["admissible_commands"] and info["policy_commands"] and "-=" in info["anchor"][0]
    env.close()


def test_disabled_file_verbs_write_nothing(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env.reset(seed=0)
    commands = ("save", "SCRIPT on", "restore", "look. save", "look then save", "me, save", "transcripx", "noscript")
    for command in commands:
        obs, reward, _terminated, _truncated, info = env.step(command)
        assert obs == "That command is not available in this environment.\n" and reward == 0.0 and info["moves"] == 0
    assert os.listdir(tmp_path) == []


def test_bad_actions_and_arguments(env, cache_dir):
    with pytest.raises(ResetNeeded):
        TextWorldEnv(cache_dir=cache_dir).step("look")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="must be a str"):
        env.step(1)
    with pytest.raises(ValueError, match="at most 200"):
        env.step("a" * 201)
    with pytest.raises(ValueError, match="charset"):
        env.step("look\nlook")
    with pytest.raises(ValueError, match="charset"):
        env.step("\\q")
    with pytest.raises(ValueError, match="unknown info request"):
        TextWorldEnv(cache_dir=cache_dir, request_infos=["secret"])
    with pytest.raises(ValueError, match=r"\.z8 or \.ulx"):
        TextWorldEnv(game_files=str(cache_dir / "x.json"))
    with pytest.raises(FileNotFoundError):
        TextWorldEnv(game_files=str(cache_dir / "missing.z8"))
    with pytest.raises(ValueError, match="max_steps"):
        TextWorldEnv(cache_dir=cache_dir, max_steps=0)
    with pytest.raises(ValueError, match="nb_rooms"):
        generate_game(0, nb_rooms=0, cache_dir=cache_dir)


def test_missing_dependency_is_named(monkeypatch, cache_dir):
    monkeypatch.setitem(sys.modules, "textworld", None)
    with pytest.raises(DependencyNotInstalled, match=r'pip install "palaestra\[text\]"'):
        TextWorldEnv(cache_dir=cache_dir)


_FUZZ = {}


@settings(max_examples=40, deadline=None)
@given(command=st.text(alphabet=COMMAND_CHARSET, max_size=60))
def test_any_command_inside_the_space_is_accepted(cache_dir, command):
    if "env" not in _FUZZ:
        _FUZZ["env"] = TextWorldEnv(cache_dir=cache_dir, max_steps=1000)
        _FUZZ["env"].reset(seed=0)
    env = _FUZZ["env"]
    obs, reward, terminated, truncated, _ = env.step(command)
    assert env.observation_space.contains(obs) and np.isfinite(reward)
    if terminated or truncated:
        env.reset()


_NOT_AVAILABLE = "That command is not available in this environment.\n"


@pytest.mark.parametrize("command", ["quit", "Q", "look. quit", "look then q", "me, quit"])
def test_quit_ends_the_episode(env, command):
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(command)
    assert obs == "You have quit the game.\n" and terminated and not truncated and reward == 0.0
    assert not info["won"] and not info["lost"] and info["moves"] == 0
    with pytest.raises(ResetNeeded):
        env.step("yes")
    env.reset()
    assert "-=" in env.step("look")[0]  # a real reply, not "Please answer yes or no"


def test_restart_and_undo_leave_the_episode_running(cache_dir):
    env = TextWorldEnv(cache_dir=cache_dir, request_infos=["walkthrough", "policy_commands"])
    _, info = env.reset(seed=0)
    walkthrough = info["walkthrough"]
    env.step(walkthrough[0])
    for command in ("restart", "yes", "undo", "look then restart", "yes"):
        obs, reward, terminated, _truncated, info = env.step(command)
        assert "TextWorld" not in obs and not terminated and reward == 0.0  # no intro banner: no restart
        assert info["moves"] == 1 and "Please answer" not in obs
        if command != "yes":
            assert obs == _NOT_AVAILABLE
    assert info["policy_commands"] == walkthrough[1:]  # the quest tracking is where the game is
    for command in walkthrough[1:]:
        _, _, terminated, _, info = env.step(command)
    assert terminated and info["won"]
    env.close()


@pytest.mark.parametrize("mode", ["superbrief", "short", "brief", "verbose", "notify off"])
def test_printing_modes_do_not_change_later_observations(cache_dir, mode):
    env = TextWorldEnv(cache_dir=cache_dir, request_infos=["admissible_commands", "anchor"])

    def there_and_back(prefix):
        _, info = env.reset(seed=0)
        if prefix:
            assert env.step(prefix)[0] == _NOT_AVAILABLE
        go = next(c for c in info["admissible_commands"] if c.startswith("go "))
        back = {"go west": "go east", "go east": "go west", "go north": "go south", "go south": "go north"}[go]
        return [env.step(go)[::4] for go in (go, back)]

    assert there_and_back(mode) == there_and_back(None)
    env.close()


@pytest.mark.parametrize(
    "command",
    ["print_state", "enable print state option", "tw-extra-infos inventory", "tw-trace-actions", "restrict commands"],
)
def test_textworld_framework_commands_are_not_available(env, command):
    env.reset(seed=0)
    assert env.step(command)[0] == _NOT_AVAILABLE
    obs = env.step("look")[0]
    assert "-= " in obs and "STATE START" not in obs and "<inventory>" not in obs


def test_read_only_meta_verbs_reach_the_game(env):
    env.reset(seed=0)
    assert env.step("score")[0].startswith("You have so far scored 0 out of a possible 1")
    assert "Standard Rules" in env.step("version")[0]
    assert env.step("verify")[0] != _NOT_AVAILABLE


@pytest.mark.slow
def test_gigpo_rollouts_group_by_the_textworld_anchor(cache_dir):
    trainer = pytest.importorskip("palaestra.agents.llm.trainer")
    agent = trainer.GiGPO(
        "TextWorld-v0",
        env_kwargs={"cache_dir": cache_dir, "max_steps": 3},
        group_size=2,
        n_prompts=1,
        max_new_tokens=6,
        max_length=1024,  # the intro alone is a few hundred tokens
        sft_steps=0,
        eval_splits=(None,),
    )
    groups, _ = agent.collect()
    anchors = [anchor for episode in groups[0] for anchor in episode.anchors]
    assert anchors and all(isinstance(a, tuple) and "-=" in a[0] and "carrying" in a[1] for a in anchors)
    agent.train_step()
    assert math.isfinite(agent._last_stats["train/loss"])
