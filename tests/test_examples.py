"""The teaching examples in examples/ run on small budgets and show what their docstrings say."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_examples_folder_holds_the_scripts_tested_here() -> None:
    assert {path.stem for path in EXAMPLES.glob("*.py")} == {"write_a_policy", "offline_rl", "tool_agent"}


def test_write_a_policy_pd_controller_balances_where_p_and_random_fall(capsys) -> None:
    table = load_example("write_a_policy").main(["--episodes", "3"])
    assert table["PD (angle, spin)"]["nominal"] == 500.0
    assert table["PD (angle, spin)"]["long heavy pole"] == 500.0
    for condition in table["random"]:
        assert table["random"][condition] < table["P (angle)"][condition] < table["PD (angle, spin)"][condition]
    assert "long heavy pole" in capsys.readouterr().out


def test_offline_rl_scores_the_data_and_both_agents(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    scores = load_example("offline_rl").main(["--steps", "50", "--dataset-size", "1000", "--episodes", "2"])
    assert set(scores) == {"data", "TD3+BC", "IQL"}
    assert all(np.isfinite(score) for score in scores.values())
    assert scores["data"] == pytest.approx(4.60, abs=0.01)  # the first 1,000 steps of the recorded replay buffer
    assert "1000 transitions" in capsys.readouterr().out


def test_tool_agent_oracle_answers_every_question_and_random_none(capsys) -> None:
    rates = load_example("tool_agent").main(["--episodes", "4"])
    assert rates["oracle"] == {1: 1.0, 2: 1.0}
    assert rates["random"] == {1: 0.0, 2: 0.0}
    out = capsys.readouterr().out
    assert "<search>" in out and "<answer>" in out
