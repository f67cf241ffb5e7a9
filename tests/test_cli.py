import json
import subprocess
import sys

import pytest
from sb3_contrib import MaskablePPO

from palaestra.cli import UsageError, main, parse_assignments


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ppo"
    status = main(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            "RobustCartPole-v0",
            "--timesteps",
            "512",
            "--seed",
            "1",
            "--out",
            str(out),
            "--hyperparams",
            "n_steps=256",
            "batch_size=64",
            "--no-progress-bar",
        ]
    )
    assert status == 0
    return out


def test_list_prints_every_id(capsys):
    assert main(["list"]) == 0
    assert "RobustCartPole-v0" in capsys.readouterr().out
    assert main(["list", "--json"]) == 0
    assert "RobustPendulum-v0" in json.loads(capsys.readouterr().out)


def test_train_writes_checkpoint_metadata_and_logs(checkpoint):
    assert (checkpoint / "model.zip").is_file()
    metadata = json.loads((checkpoint / "palaestra.json").read_text())
    assert metadata["algo"] == "ppo" and metadata["env_id"] == "RobustCartPole-v0" and metadata["seed"] == 1
    assert metadata["hyperparams"] == {"n_steps": 256, "batch_size": 64}
    assert "time/total_timesteps" in (checkpoint / "progress.csv").read_text()
    assert list(checkpoint.glob("events.out.tfevents.*")), "no TensorBoard log"


def test_eval_nominal_and_perturbed(checkpoint, capsys):
    assert main(["eval", "--checkpoint", str(checkpoint), "--episodes", "3", "--json"]) == 0
    nominal = json.loads(capsys.readouterr().out)
    assert nominal["n_episodes"] == 3 and nominal["env_id"] == "RobustCartPole-v0"
    assert "normalized_score" not in nominal  # only offline envs have a D4RL reference
    perturbation = ["--perturbation", "length=3.0", "masspole=3"]
    assert main(["eval", "--checkpoint", str(checkpoint), "--episodes", "3", "--json", *perturbation]) == 0
    perturbed = json.loads(capsys.readouterr().out)
    assert perturbed["env_kwargs"] == {"perturbation": {"length": 3.0, "masspole": 3}}
    assert perturbed["returns"] != nominal["returns"]
    assert main(["eval", "--checkpoint", str(checkpoint), "--episodes", "2"]) == 0
    assert "mean return" in capsys.readouterr().out


def test_eval_of_a_bare_zip_needs_the_algorithm(checkpoint, capsys):
    zip_path = str(checkpoint / "model.zip")
    assert main(["eval", "--checkpoint", zip_path, "--algo", "ppo", "--env", "RobustCartPole-v0", "--episodes", "1"]) == 0
    assert main(["eval", "--checkpoint", zip_path, "--env", "RobustCartPole-v0"]) == 2
    assert "pass --algo" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--algo", "ppo2", "--env", "RobustCartPole-v0", "--out", "{tmp}"],
            "unknown algorithm 'ppo2'; expected one of",
        ),
        (["train", "--algo", "ppo", "--env", "CartPol-v9", "--out", "{tmp}"], "cannot make env 'CartPol-v9'"),
        (["train", "--algo", "sac", "--env", "RobustCartPole-v0", "--out", "{tmp}"], "sac needs a Box action space"),
        (["train", "--algo", "dqn", "--env", "RobustPendulum-v0", "--out", "{tmp}"], "dqn needs a Discrete action space"),
        (
            ["train", "--algo", "ppo", "--env", "RobustCartPole-v0", "--out", "{tmp}", "--env-kwargs", "mass=2"],
            "RobustCartPole-v0 does not take the keyword argument 'mass'",
        ),
        (
            ["train", "--algo", "ppo", "--env", "RobustCartPole-v0", "--out", "{tmp}", "--hyperparams", "n_step=3"],
            "unknown hyperparameter 'n_step' for ppo; did you mean 'n_steps'?",
        ),
        (
            ["train", "--algo", "ppo", "--env", "RobustCartPole-v0", "--out", "{tmp}", "--timesteps", "0"],
            "--timesteps must be >= 1",
        ),
        (["eval", "--checkpoint", "{tmp}/missing"], "does not exist"),
        (["eval", "--checkpoint", "{tmp}"], "is not a palaestra checkpoint"),
        (["bench", "--env", "CartPol-v9"], "cannot make env 'CartPol-v9'"),
        (["bench", "--env", "CartPole-v1", "--steps", "0"], "--steps and --repeats must be >= 1, got 0 and 5"),
        (["bench", "--env", "CartPole-v1", "--seed", "-1"], "--seed must be >= 0, got -1"),
        (["bench", "--env", "CartPole-v1", "ToolSearch-v0"], "ToolSearch-v0 takes text messages"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_checkpoint_errors(checkpoint, capsys):
    assert main(["eval", "--checkpoint", str(checkpoint), "--algo", "sac"]) == 2
    assert "holds a 'ppo' agent, not 'sac'" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(checkpoint), "--perturbation", "colour=2"]) == 2
    assert "unknown perturbation parameter 'colour'" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(checkpoint), "--env", "RobustPendulum-v0"]) == 2
    assert "but the checkpoint expects" in capsys.readouterr().err
    argv = ["train", "--algo", "ppo", "--env", "RobustCartPole-v0", "--out", str(checkpoint)]
    assert main(argv) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_parse_assignments():
    assert parse_assignments(["a=1", "b=0.5", "c=relu", "d=[1, 2]", "e=True"], "x") == {
        "a": 1,
        "b": 0.5,
        "c": "relu",
        "d": [1, 2],
        "e": True,
    }
    with pytest.raises(UsageError, match="--hyperparams must be given as key=value, got 'lr'"):
        parse_assignments(["lr"], "--hyperparams")


def test_console_script_reports_user_errors_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "palaestra.cli", "train", "--algo", "nope", "--env", "RobustCartPole-v0", "--out", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("palaestra train: error: unknown algorithm 'nope'; expected one of [")
    assert result.stderr.count("\n") == 1 and "'ppo'" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "palaestra.cli", "train"], capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_bench_prints_steps_per_second_and_ratios_to_the_first_env(capsys):
    argv = ["bench", "--env", "CartPole-v1", "RobustCartPole-v0", "--env", "CartPole-v1", "--steps", "50", "--repeats", "2"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "CartPole-v1"  # header: time vs the first env
    assert [line.split()[0] for line in lines[1:3]] == ["CartPole-v1", "RobustCartPole-v0"]  # a repeated id once
    assert lines[1].split()[-1] == "1.00"
    assert "2 interleaved rounds of 50" in lines[3]


def test_bench_json(capsys):
    assert main(["bench", "--env", "RobustPendulum-v0", "--steps", "20", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 20 and result["repeats"] == 1 and result["seed"] == 0
    row = result["envs"]["RobustPendulum-v0"]
    assert row["time_ratio"] == 1.0 and row["steps_per_s"] == pytest.approx(1.0 / row["median_s"])
    assert len(row["per_call_s"]) == 1


def test_sb3_trains_on_a_text_env_through_its_candidate_actions(tmp_path, capsys):
    out = tmp_path / "mppo"
    argv = ["train", "--algo", "maskable-ppo", "--env", "ToolSearch-v0", "--timesteps", "256", "--out", str(out),
            "--no-progress-bar", "--env-kwargs", "hops=1", "top_k=1", "--hyperparams", "n_steps=128",
            "batch_size=32"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "ToolSearch-v0 has text observations and actions: maskable-ppo chooses among its candidate messages "
        "(palaestra.wrappers.CandidateActions over info['candidates'], each scored by one shared network "
        "(palaestra.agents.candidate_policy))"
    )
    assert type(MaskablePPO.load(out / "model.zip").policy).__name__ == "MaskableCandidateScorerPolicy"
    assert json.loads((out / "palaestra.json").read_text())["candidate_actions"] == {
        "key": "candidates",
        "invalid_action": "error",  # MaskablePPO never picks a masked index
    }
    for split in ("train", "hot"):  # eval wraps the env the same way and hands MaskablePPO the masks
        assert main(["eval", "--checkpoint", str(out), "--episodes", "3", "--env-kwargs", f"split={split!r}", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["n_episodes"] == 3
