import json
import math
import warnings

import gymnasium as gym
import pytest

from palaestra.cli import main

TOY_ID = "palaestra-test/CapitalSearch-v0"


@pytest.fixture(scope="module", autouse=True)
def _register_toy_env():
    gym.register(TOY_ID, entry_point="tests.agents.llm.toy_env:CapitalSearchEnv")
    yield
    gym.registry.pop(TOY_ID, None)


SMALL = ["group_size=2", "n_prompts=1", "sft_steps=3", "sft_episodes=8", "eval_questions=2", "max_new_tokens=8"]


@pytest.mark.parametrize("algo", ["grpo", "igpo", "gigpo"])
def test_train_then_eval_through_the_cli(tmp_path, capsys, algo):
    out = tmp_path / algo
    argv = ["train", "--algo", algo, "--env", TOY_ID, "--model", "tiny", "--timesteps", "2", "--out", str(out),
            "--no-progress-bar", "--hyperparams", *SMALL, "max_length=128", "eval_splits=('train',)"]  # fmt: skip
    assert main(argv) == 0
    metadata = json.loads((out / "palaestra.json").read_text())
    assert metadata["algo"] == algo and metadata["hyperparams"]["model"] == "tiny"
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "agent.json").is_file()
    progress = (out / "progress.csv").read_text().splitlines()
    header = progress[0].split(",")
    losses = [
        float(row.split(",")[header.index("train/loss")]) for row in progress[1:] if row.split(",")[header.index("train/loss")]
    ]
    assert losses and all(math.isfinite(x) for x in losses)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["env_id"] == TOY_ID


def test_cli_rejects_a_missing_model_path(tmp_path, capsys):
    argv = ["train", "--algo", "grpo", "--env", TOY_ID, "--model", str(tmp_path / "missing"), "--timesteps", "1",
            "--out", str(tmp_path / "o"), "--no-progress-bar"]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "does not exist" in error and "Traceback" not in error


def test_cpu_smoke_on_tool_search(tmp_path):
    pytest.importorskip("bm25s")
    out = tmp_path / "ts"
    argv = ["train", "--algo", "grpo", "--env", "ToolSearch-v0", "--model", "tiny", "--timesteps", "2", "--out", str(out),
            "--no-progress-bar", "--env-kwargs", "hops=1", "top_k=1", "max_doc_chars=80",
            "--hyperparams", *SMALL, "max_length=256", "eval_splits=('dev',)"]  # fmt: skip
    assert main(argv) == 0
    assert (out / "model" / "agent.json").is_file()


def test_no_progress_bar_shows_no_transformers_bar_and_no_deprecation_warning(tmp_path, capfd):
    out = tmp_path / "quiet"
    argv = ["train", "--algo", "grpo", "--env", TOY_ID, "--model", "tiny", "--timesteps", "1", "--out", str(out),
            "--no-progress-bar", "--hyperparams", *SMALL, "max_length=128", "eval_splits=('train',)"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
        assert main(["eval", "--checkpoint", str(out), "--episodes", "2"]) == 0
    captured = capfd.readouterr()
    for noise in ("Loading weights", "Writing model shards", "it/s", "past_key_values"):
        assert noise not in captured.err, captured.err
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    assert captured.out.count("\n") == 2  # the train line and the eval line


def test_igpo_on_an_env_without_gold_answers_is_one_line_before_the_model_is_built(tmp_path, capsys):
    gym.register("palaestra-test/GoToRoom-v0", entry_point="tests.agents.llm.toy_env:GoToRoomEnv")
    try:
        out = tmp_path / "igpo"
        argv = ["train", "--algo", "igpo", "--env", "palaestra-test/GoToRoom-v0", "--model", "tiny", "--timesteps", "1",
                "--out", str(out), "--no-progress-bar"]  # fmt: skip
        assert main(argv) == 2
    finally:
        gym.registry.pop("palaestra-test/GoToRoom-v0", None)
    error = capsys.readouterr().err
    assert "IGPO needs" in error and "gold answer" in error and "Traceback" not in error
    assert error.strip().count("\n") == 0, error
    assert not out.exists()
