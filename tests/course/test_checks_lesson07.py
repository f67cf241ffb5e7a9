"""Lesson 7's checks: pass on the right answer, say what was expected on a wrong-typed one, fail on a wrong value."""

from __future__ import annotations

import pytest

pytest.importorskip("bm25s")

import gymnasium as gym

from palaestra.agents.text_baselines import OracleSearchPolicy
from palaestra.course.checks import FAIL, PASS
from palaestra.course.checks.lesson07 import check_answer_metrics, check_episode_return, check_search_policy
from palaestra.envs.text.rewards import exact_match, token_f1


def test_answer_metrics(capsys):
    assert check_answer_metrics(exact_match, token_f1)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_answer_metrics(lambda p, a: None, token_f1)
    assert "returned None; expected a number" in capsys.readouterr().out
    assert not check_answer_metrics(exact_match, lambda p, a: [1.0, 0.0])
    assert "expected a single number, got list" in capsys.readouterr().out
    no_articles = lambda p, a: float(any(p.lower() == g.lower() for g in a))  # noqa: E731  (forgets normalisation)
    assert not check_answer_metrics(no_articles, token_f1)
    out = capsys.readouterr().out
    assert out.startswith(FAIL) and "expected 1" in out
    assert not check_answer_metrics(exact_match, lambda p, a: 1 / 0)
    assert "raised ZeroDivisionError" in capsys.readouterr().out


def test_episode_return(capsys):
    settings = {"reward_type": "f1", "step_cost": 0.05, "invalid_action_penalty": 0.1}
    env = gym.make("ToolSearch-v0", request_infos=["answers"], **settings)
    _, info = env.reset(seed=3, options={"split": "dev", "hops": 1})
    gold = info["answers"][0]
    messages = ["hello", f"<answer> {gold.split()[0]} </answer>"]
    right = token_f1(gold.split()[0], info["answers"]) - 0.05 * 2 - 0.1
    assert check_episode_return(right, messages, seed=3, options={"split": "dev", "hops": 1}, **settings)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_episode_return([right], messages, seed=3, options={"split": "dev", "hops": 1}, **settings)
    assert "expected a single number" in capsys.readouterr().out
    assert not check_episode_return(right + 0.05, messages, seed=3, options={"split": "dev", "hops": 1}, **settings)
    assert capsys.readouterr().out.startswith(FAIL)


class _Answerer:
    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return "<answer> unknown </answer>", state


class _Crasher:
    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return None, state


def test_search_policy(capsys):
    env = gym.make("ToolSearch-v0", split="dev", hops=1)
    assert check_search_policy(OracleSearchPolicy(env), n_questions=5)
    assert capsys.readouterr().out.startswith(PASS)
    assert not check_search_policy(_Answerer(), n_questions=5)
    assert "searched; search the entity first" in capsys.readouterr().out
    assert not check_search_policy(_Crasher(), n_questions=5)
    assert "raised TypeError" in capsys.readouterr().out
