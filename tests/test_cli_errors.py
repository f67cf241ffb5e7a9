"""The command line's user errors, across every registered algorithm: one line on stderr, exit 2 (130 for Ctrl-C),
no traceback, and nothing left behind by a run that never started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from palaestra.agents import ALGORITHMS
from palaestra.agents.hyperparams import RANGES, accepted_hyperparams
from palaestra.cli import CANDIDATE_ALGOS, main

#: An env each algorithm trains on, by family and action space.
FITTING_ENV = {"baseline": "RobustCartPole-v0", "online": "RobustCartPole-v0", "offline": "pendulum-medium-v0"}
#: An env of another family, that the algorithm cannot train on, and what the error says.
WRONG_FAMILY = {
    "baseline": ("ToolSearch-v0", "observations and actions are text"),
    "online": ("ToolSearch-v0", "observations and actions are text"),
    "offline": ("RobustPendulum-v0", "learns from a dataset and RobustPendulum-v0 has none"),
    "llm": ("RobustCartPole-v0", "needs a Text action space"),
}


def fitting_env(name: str) -> str:
    spec = ALGORITHMS[name]
    if spec.family == "llm":
        return "ToolSearch-v0"
    if spec.action_spaces == ("Box",):
        return "RobustPendulum-v0" if spec.family != "offline" else "pendulum-medium-v0"
    return FITTING_ENV[spec.family]


def numeric_hyperparam(name: str) -> str:
    """A hyperparameter of the algorithm that takes a number."""
    accepted = accepted_hyperparams(ALGORITHMS[name].load_class())
    return next(key for key, hint in accepted.items() if hint in (int, float) or str(hint).startswith("float"))


def ranged_hyperparam(name: str) -> str | None:
    accepted = set(accepted_hyperparams(ALGORITHMS[name].load_class())) | set(ALGORITHMS[name].extra_hyperparams)
    return next((key for key in RANGES if key in accepted), None)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    err = capsys.readouterr().err
    return status, err


def assert_one_line(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def train_argv(algo: str, env: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--algo", algo, "--env", env, "--timesteps", "10", "--out", str(out), "--no-progress-bar", *extra]


MISTAKES = ["unknown-name", "wrong-type", "bool-for-number", "wrong-family"]


@pytest.mark.parametrize("mistake", MISTAKES)
@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algorithm_refuses_the_usual_mistakes_in_one_line(algo, mistake, tmp_path, capsys):
    out = tmp_path / "run"
    env = fitting_env(algo)
    if mistake == "unknown-name":
        argv, expected = train_argv(algo, env, out, "--hyperparams", "no_such_knob=1"), ["unknown hyperparameter"]
    elif mistake == "wrong-type":
        key = numeric_hyperparam(algo)
        argv, expected = train_argv(algo, env, out, "--hyperparams", f"{key}=abc"), [f"{key}='abc' has the wrong type"]
    elif mistake == "bool-for-number":
        key = numeric_hyperparam(algo)
        argv, expected = train_argv(algo, env, out, "--hyperparams", f"{key}=True"), [f"{key}=True has the wrong type"]
    else:
        other, message = WRONG_FAMILY[ALGORITHMS[algo].family]
        if algo in CANDIDATE_ALGOS:  # they train on a text env through its candidate actions
            if ALGORITHMS[algo].action_spaces != ("Discrete",):
                pytest.skip(f"{algo} trains on every family of env")
            other, message = "RobustPendulum-v0", "needs a Discrete action space"
        argv, expected = train_argv(algo, other, out), [message]
    status, err = run(argv, capsys)
    assert status == 2
    assert_one_line(err, *expected)
    assert not out.exists(), "a failed start left its output directory behind"


@pytest.mark.parametrize("algo", sorted(name for name in ALGORITHMS if ranged_hyperparam(name)))
def test_out_of_range_values_are_refused(algo, tmp_path, capsys):
    key = ranged_hyperparam(algo)
    bad = "-1" if key not in ("gamma", "gae_lambda") else "1.5"
    status, err = run(train_argv(algo, fitting_env(algo), tmp_path / "run", "--hyperparams", f"{key}={bad}"), capsys)
    assert status == 2
    assert_one_line(err, f"{key}={bad} is out of range", "expected")


@pytest.mark.parametrize("algo", sorted(name for name, spec in ALGORITHMS.items() if spec.family != "llm"))
def test_model_is_for_llm_agents_only(algo, tmp_path, capsys):
    status, err = run(train_argv(algo, fitting_env(algo), tmp_path / "run", "--model", "tiny"), capsys)
    assert status == 2
    assert_one_line(err, "--model is for the LLM agents", f"{algo} takes no model")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hyperparams", "learning_rate=abc"], "learning_rate='abc' has the wrong type for ppo"),
        (["--hyperparams", "n_steps=-5"], "n_steps=-5 is out of range for ppo: expected an integer >= 1"),
        (["--hyperparams", "batch_size=0"], "batch_size=0 is out of range"),
        (["--hyperparams", "gamma=1.5"], "gamma=1.5 is out of range for ppo: expected a number in [0, 1]"),
        (["--hyperparams", "lerning_rate=0.1"], "did you mean 'learning_rate'?"),
        (["--hyperparams", "seed=3"], "'seed' is not a hyperparameter of ppo"),
        (["--hyperparams", "n_steps=1"], "`n_steps * n_envs` must be greater than 1"),  # SB3's own assert, one line
        (["--env-kwargs", "length=True"], "CartPoleParams.length must be a finite number > 0, got True"),
        (["--env-kwargs", "mass=2"], "RobustCartPole-v0 does not take the keyword argument 'mass'"),
    ],
)
def test_sb3_settings_errors(argv, message, tmp_path, capsys):
    status, err = run(train_argv("ppo", "RobustCartPole-v0", tmp_path / "run", *argv), capsys)
    assert status == 2
    assert_one_line(err, message)
    assert not (tmp_path / "run").exists()


def test_wrong_family_messages_point_the_right_way(tmp_path, capsys):
    status, err = run(train_argv("sac", "ToolSearch-v0", tmp_path / "a"), capsys)
    assert status == 2
    assert_one_line(err, "Stable-Baselines3 does not take", "grpo, igpo, gigpo", "ppo, dqn, maskable-ppo")
    assert "render_mode" not in err
    status, err = run(train_argv("td3bc", "RobustPendulum-v0", tmp_path / "b"), capsys)
    assert status == 2
    assert_one_line(err, "use an offline id such as pendulum-medium-v0")
    assert "dataset=" not in err


def test_perturbation_on_an_env_without_physical_parameters_is_one_plain_line(tmp_path, capsys):
    out = tmp_path / "ppo"
    assert main(train_argv("ppo", "CartPole-v1", out, "--hyperparams", "n_steps=16", "batch_size=16")) == 0
    status, err = run(["eval", "--checkpoint", str(out), "--perturbation", "length=2"], capsys)
    assert status == 2
    assert_one_line(err, "CartPole-v1 has no physical parameters to perturb", "RobustCartPole-v0")
    assert "was raised from" not in err


# --- checkpoints -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ppo"
    assert main(train_argv("ppo", "RobustCartPole-v0", out, "--hyperparams", "n_steps=16", "batch_size=16")) == 0
    return out


@pytest.mark.parametrize("algo", ["sac", "td3", "dqn", "td3bc", "iql", "props"])
def test_a_bare_zip_loaded_as_another_algorithm_is_one_line(ppo_run, algo, capsys):
    argv = ["eval", "--checkpoint", str(ppo_run / "model.zip"), "--algo", algo, "--env", "RobustCartPole-v0"]
    status, err = run(argv, capsys)
    assert status == 2
    assert_one_line(err, f"cannot load '{ppo_run / 'model.zip'}' as {algo}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "{tmp}/missing"], "does not exist"),
        (["--checkpoint", "{tmp}"], "is not a palaestra checkpoint"),
        (["--checkpoint", "{run}", "--algo", "sac"], "holds a 'ppo' agent, not 'sac'"),
        (["--checkpoint", "{run}", "--env", "RobustPendulum-v0"], "but the checkpoint expects"),
        (["--checkpoint", "{run}", "--cdsa", "{run}"], "holds a 'ppo' agent, not 'cdsa-score'"),
    ],
)
def test_missing_or_foreign_checkpoints(ppo_run, tmp_path, capsys, argv, message):
    filled = [arg.replace("{tmp}", str(tmp_path)).replace("{run}", str(ppo_run)) for arg in argv]
    status, err = run(["eval", *filled], capsys)
    assert status == 2
    assert_one_line(err, message)


# --- interruptions -------------------------------------------------------------------------------------------------
def interrupt_after(monkeypatch: pytest.MonkeyPatch, cls: Any, steps: int) -> None:
    """Make ``cls.learn`` train ``steps`` steps (0: none), then raise KeyboardInterrupt as Ctrl-C would."""
    original = cls.learn

    def learn(self, total_timesteps, **kwargs):
        if steps:
            original(self, total_timesteps=steps, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(cls, "learn", learn)


def test_ctrl_c_during_training_keeps_the_model_so_far_and_says_so(tmp_path, capsys, monkeypatch):
    from stable_baselines3 import PPO

    interrupt_after(monkeypatch, PPO, 32)
    out = tmp_path / "run"
    status, err = run(train_argv("ppo", "RobustCartPole-v0", out, "--hyperparams", "n_steps=16", "batch_size=16"), capsys)
    assert status == 130
    assert_one_line(err, "interrupted after 32 of 10 steps", f"saved the model trained so far and its logs in {out}")
    metadata = json.loads((out / "palaestra.json").read_text())
    assert metadata["interrupted"] is True and metadata["timesteps_trained"] == 32
    assert (out / "model.zip").is_file()
    assert main(["eval", "--checkpoint", str(out), "--episodes", "1"]) == 0


def test_ctrl_c_before_the_first_step_writes_nothing(tmp_path, capsys, monkeypatch):
    from stable_baselines3 import PPO

    interrupt_after(monkeypatch, PPO, 0)
    out = tmp_path / "run"
    status, err = run(train_argv("ppo", "RobustCartPole-v0", out), capsys)
    assert status == 130
    assert_one_line(err, "interrupted before the first training step; nothing was written")
    assert not out.exists()


def test_sigint_to_the_console_script_exits_130_with_one_line(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "palaestra.cli", *train_argv("ppo", "CartPole-v1", out, "--timesteps", "10000000")]
    process = subprocess.Popen(
        argv,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        # a test run in the background (nohup, `cmd &`) inherits an ignored SIGINT; a user's terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "progress.csv").is_file():
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert_one_line(err, "interrupted after", "saved the model trained so far")
    assert (out / "model.zip").is_file()


# --- output directories --------------------------------------------------------------------------------------------
def test_ppo_reports_the_steps_it_trained_not_the_steps_asked_for(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv("ppo", "CartPole-v1", out, "--timesteps", "100")) == 0
    printed = capsys.readouterr().out
    assert "for 2048 steps (--timesteps 100 rounded up to whole rollouts of n_steps x n_envs = 2048 x 1" in printed
    metadata = json.loads((out / "palaestra.json").read_text())
    assert metadata["timesteps"] == 100 and metadata["timesteps_trained"] == 2048


def test_logs_of_an_unfinished_run_are_refused_then_replaced_by_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "progress.csv").write_text("time/total_timesteps\n16\n")
    (out / "events.out.tfevents.1.host.1.0").write_bytes(b"old")
    (out / "notes.txt").write_text("the user's own file")
    argv = train_argv("ppo", "RobustCartPole-v0", out, "--hyperparams", "n_steps=16", "batch_size=16")
    status, err = run(argv, capsys)
    assert status == 2
    assert_one_line(err, "holds the logs of an earlier run that did not finish", "--overwrite")
    assert main([*argv, "--overwrite"]) == 0
    assert len(list(out.glob("events.out.tfevents.*"))) == 1, "a second TensorBoard file beside the old one"
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert main([*argv, "--overwrite"]) == 0
    assert len(list(out.glob("events.out.tfevents.*"))) == 1


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(tmp_path, capsys, ppo_run):
    out = tmp_path / "run"
    assert main(train_argv("ppo", "RobustCartPole-v0", out, "--hyperparams", "n_steps=16", "batch_size=16")) == 0
    before = sorted(p.name for p in out.iterdir())
    status, _ = run(train_argv("ppo", "RobustCartPole-v0", out, "--overwrite", "--hyperparams", "n_steps=1"), capsys)
    assert status == 2
    assert sorted(p.name for p in out.iterdir()) == before


# --- offline: evaluation, --stochastic, datasets -------------------------------------------------------------------
@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if previous is None:
        del os.environ["MINARI_DATASETS_PATH"]
    else:
        os.environ["MINARI_DATASETS_PATH"] = previous


@pytest.fixture(scope="module")
def hopper_run(minari_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "td3bc"
    argv = ["train", "--algo", "td3bc", "--env", "hopper-medium-v0", "--env-kwargs", "dataset_size=2000"]
    assert main([*argv, "--timesteps", "20", "--out", str(out), "--no-progress-bar"]) == 0
    return out


@pytest.mark.parametrize("env", [[], ["--env", "Hopper-v5"]])
def test_eval_takes_an_offline_mujoco_checkpoint_whatever_the_dtype(hopper_run, env, capsys):
    """The agent stores a float32 box; Hopper-v5 declares float64: same shape and bounds, so it evaluates."""
    assert main(["eval", "--checkpoint", str(hopper_run), "--episodes", "1", "--json", *env]) == 0
    assert json.loads(capsys.readouterr().out)["n_episodes"] == 1


def test_eval_still_refuses_another_shape(hopper_run, capsys):
    status, err = run(["eval", "--checkpoint", str(hopper_run), "--env", "Walker2d-v5"], capsys)
    assert status == 2
    assert_one_line(err, "Walker2d-v5 observes Box", "but the checkpoint expects")


def test_stochastic_is_refused_for_a_deterministic_actor(hopper_run, capsys):
    status, err = run(["eval", "--checkpoint", str(hopper_run), "--stochastic"], capsys)
    assert status == 2
    assert_one_line(err, "td3bc's actor is deterministic, so --stochastic would change no action")


def test_stochastic_is_refused_for_iqls_deterministic_actor_preset(minari_root, tmp_path, capsys):
    """CORL's hopper-medium config gives IQL a deterministic actor (applied from the env id)."""
    out = tmp_path / "iql"
    argv = ["train", "--algo", "iql", "--env", "hopper-medium-v0", "--env-kwargs", "dataset_size=2000"]
    assert main([*argv, "--timesteps", "5", "--out", str(out), "--no-progress-bar"]) == 0
    status, err = run(["eval", "--checkpoint", str(out), "--stochastic"], capsys)
    assert status == 2
    assert_one_line(err, "iql's actor is deterministic")


def test_a_score_model_is_not_evaluated_as_a_policy(minari_root, tmp_path, capsys):
    out = tmp_path / "score"
    argv = ["train", "--algo", "cdsa-score", "--env", "hopper-medium-v0", "--env-kwargs", "dataset_size=2000"]
    assert main([*argv, "--timesteps", "5", "--out", str(out), "--no-progress-bar"]) == 0
    status, err = run(["eval", "--checkpoint", str(out)], capsys)
    assert status == 2
    assert_one_line(err, "holds a cdsa-score model, which is not a policy", f"--cdsa {out}")


def test_missing_data_is_one_line_naming_the_command(minari_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PALAESTRA_OFFLINE_GENERATE", "0")
    status, err = run(train_argv("td3bc", "pendulum-expert-v0", tmp_path / "a"), capsys)
    assert status == 2
    assert_one_line(err, "generation is disabled", "palaestra collect --env pendulum-expert-v0")
    status, err = run(train_argv("iql", "hopper-medium-v0", tmp_path / "b", "--env-kwargs", "source=minari"), capsys)
    assert status == 2
    assert_one_line(err, "minari download mujoco/hopper/medium-v0")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def corrupt_truncated(data: Path) -> None:
    path = data / "main_data.hdf5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_scrambled(data: Path) -> None:
    import random

    path = data / "main_data.hdf5"
    raw = bytearray(path.read_bytes())
    rng = random.Random(0)
    raw[2048:] = bytes(rng.randrange(256) for _ in range(len(raw) - 2048))
    path.write_bytes(bytes(raw))


def corrupt_metadata(data: Path) -> None:
    (data / "metadata.json").write_text('{"broken')


@pytest.mark.parametrize(
    ("corrupt", "file"),
    [(corrupt_truncated, "main_data.hdf5"), (corrupt_scrambled, "main_data.hdf5"), (corrupt_metadata, "metadata.json")],
)
def test_a_corrupt_dataset_names_the_dataset_the_file_and_the_repair(minari_root, tmp_path, capsys, corrupt, file):
    argv = ["collect", "--env", "pendulum-random-v0", "--size", "300", "--no-progress-bar"]
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    data = minari_root / "palaestra" / "pendulum" / "random-n300-s0-v0" / "data"
    corrupt(data)
    out = tmp_path / "run"
    status, err = run(train_argv("td3bc", "pendulum-random-v0", out, "--env-kwargs", "dataset_size=300"), capsys)
    assert status == 2
    repair = "palaestra collect --env pendulum-random-v0 --size 300 --overwrite"
    assert_one_line(err, "dataset 'palaestra/pendulum/random-n300-s0-v0' is unreadable", str(data / file), repair)
    assert "cannot build" not in err
    assert not out.exists()
    assert main([*argv, "--overwrite"]) == 0  # the repair the message names works
    assert main(train_argv("td3bc", "pendulum-random-v0", out, "--env-kwargs", "dataset_size=300")) == 0


def test_collect_refuses_an_existing_dataset_before_generating_it(minari_root, capsys, monkeypatch):
    from palaestra.envs.offline import generation

    argv = ["collect", "--env", "pendulum-random-v0", "--size", "200", "--no-progress-bar"]
    assert main(argv) == 0

    def no_rollouts(*args, **kwargs):
        raise AssertionError("generated data for a dataset that already exists")

    monkeypatch.setattr(generation, "rollout_episodes", no_rollouts)
    status, err = run(argv, capsys)
    assert status == 2
    assert_one_line(err, "already exists", "--overwrite")


def test_ctrl_c_in_collect_says_what_was_kept(minari_root, capsys, monkeypatch):
    from palaestra.envs.offline import generation

    original = generation.rollout_episodes
    calls = []

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(generation, "rollout_episodes", interrupt_second)
    argv = ["collect", "--env", "pendulum-random-v0", "pendulum-medium-v0", "--size", "150", "--overwrite"]
    status, err = run([*argv, "--no-progress-bar"], capsys)
    assert status == 130
    assert_one_line(err, "interrupted while generating pendulum-medium-v0; nothing of it was written", "random-n150-s0-v0")
    assert not (minari_root / "palaestra" / "pendulum" / "medium-n150-s0-v0").exists()
    assert not list(minari_root.glob(".palaestra-tmp-*"))
