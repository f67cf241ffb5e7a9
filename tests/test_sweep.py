"""``palaestra sweep``: bad input stops before any trial (one line, exit 2); a real 2 x 2 sweep on a local Ray."""

from __future__ import annotations

import builtins
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from palaestra import sweep as sweeping
from palaestra.cli import main

BASE = ["sweep", "--algo", "ppo", "--env", "RobustCartPole-v0", "--seeds", "2", "--timesteps", "1024"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err


@pytest.fixture
def no_ray_start(monkeypatch):
    """Fail the test if a sweep would start Ray (every error here must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a trial was started")

    monkeypatch.setattr(sweeping, "run_trials", refuse)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--grid", "learning_rat=1e-3,3e-4"], "unknown hyperparameter 'learning_rat' for ppo; did you mean 'learning_rate'"),
        (["--grid", "learning_rate=1e-3,fast"], "learning_rate='fast' has the wrong type for ppo"),
        (["--grid", "gamma=0.9,1.5"], "gamma=1.5 is out of range for ppo"),
        (["--grid", "learning_rate"], "--grid takes key=value1,value2,..., got 'learning_rate'"),
        (["--grid", "gamma=0.9", "gamma=0.99"], "--grid names 'gamma' twice"),
        (["--grid", "gamma=0.9,0.99", "--hyperparams", "gamma=0.9"], "gamma is both swept (--grid) and fixed"),
        (["--env", "NoSuchEnv-v0"], "cannot make env 'NoSuchEnv-v0'"),
        (["--algo", "sac", "--env", "ToolSearch-v0"], "sac cannot train on ToolSearch-v0"),
        (["--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial must be >= 1, got 0"),
        (["--address", "not an address"], "--address must be auto, local, host:port or ray://host:port"),
    ],
)
def test_bad_input_is_one_line_and_starts_no_trial(extra, fragment, tmp_path, capsys, no_ray_start):
    out = tmp_path / "sweep"
    status, err = run([*BASE, "--out", str(out), *extra], capsys)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err and fragment in err, err
    assert not out.exists()  # nothing written


def test_an_unreachable_cluster_is_named(tmp_path, capsys, no_ray_start):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status, err = run([*BASE, "--out", str(tmp_path / "s"), "--address", f"ray://127.0.0.1:{port}"], capsys)
    assert status == 2 and f"cannot reach a Ray cluster at ray://127.0.0.1:{port}" in err and err.count("\n") == 1


def test_missing_ray_names_the_pip_command(tmp_path, capsys, monkeypatch, no_ray_start):
    real_import = builtins.__import__

    def without_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_ray)
    status, err = run([*BASE, "--out", str(tmp_path / "s")], capsys)
    assert status == 2 and 'pip install "palaestra[distributed]"' in err and err.count("\n") == 1


def test_an_out_dir_of_something_else_or_another_sweep_is_refused(tmp_path, capsys, no_ray_start):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    status, err = run([*BASE, "--out", str(other)], capsys)
    assert status == 2 and "is not a palaestra sweep" in err
    saved = tmp_path / "saved"
    saved.mkdir()
    spec = sweeping.SweepSpec("ppo", ("RobustCartPole-v0",), seeds=2, timesteps=2048)
    (saved / sweeping.SETTINGS_FILE).write_text(json.dumps(spec.settings()))
    status, err = run([*BASE, "--out", str(saved)], capsys)
    assert status == 2 and "timesteps: saved 2048, now 1024" in err
    assert (other / "notes.txt").read_text() == "mine" and sorted(p.name for p in saved.iterdir()) == ["sweep.json"]


def test_parse_grid_reads_literals_and_keeps_bracketed_commas_together():
    grid = sweeping.parse_grid(["learning_rate=1e-3,3e-4", "net_arch=[64,64],[256,256]", "activation=tanh,'relu'"])
    assert grid == {"learning_rate": [0.001, 0.0003], "net_arch": [[64, 64], [256, 256]], "activation": ["tanh", "relu"]}


def test_points_are_the_grids_product_and_every_trial_has_its_own_run_directory(tmp_path):
    spec = sweeping.SweepSpec("ppo", ("A-v0", "B-v0"), seeds=2, timesteps=10, grid={"x": [1, 2], "y": ["a", "b"]})
    assert spec.points() == [{"x": 1, "y": "a"}, {"x": 1, "y": "b"}, {"x": 2, "y": "a"}, {"x": 2, "y": "b"}]
    configs = sweeping.trial_configs(spec, tmp_path, threads=1)
    assert len(configs) == 2 * 4 * 2 and len({c["run_dir"] for c in configs}) == len(configs)
    assert configs[1]["name"] == "A-v0 x=1 y='a' seed 1" and configs[1]["hyperparams"] == {"x": 1, "y": "a"}


def _outcome(env, point, seed, value=None, error=None):
    metrics = {} if value is None else {"mean_return": value, "evaluated": True}
    config = {"env": env, "point": point, "seed": seed, "run_dir": f"/runs/{env}/{seed}"}
    return sweeping.TrialOutcome(f"{env} {point} {seed}", config, metrics, error)


def test_summary_means_ci_errors_and_iqm_follow_their_definitions():
    spec = sweeping.SweepSpec("ppo", ("A-v0", "B-v0"), seeds=4, timesteps=10, grid={"x": [1, 2]})
    values = {"A-v0": [1.0, 2.0, 3.0, 10.0], "B-v0": [4.0, 5.0, 6.0, 7.0]}
    outcomes = [_outcome(env, {"x": 1}, seed, v) for env, vs in values.items() for seed, v in enumerate(vs)]
    outcomes += [_outcome("A-v0", {"x": 2}, 0, error="ValueError: boom"), _outcome("A-v0", {"x": 2}, 1, 5.0)]
    payload = sweeping.summarize(spec, outcomes)
    first = payload["configs"][0]
    assert first["mean"] == pytest.approx(4.0) and first["finished"] == 4 and first["errors"] == []
    low, high = first["ci"]
    assert low < 4.0 < high
    failed = payload["configs"][1]
    assert failed["finished"] == 1 and failed["errors"] == ["seed 0: ValueError: boom"]
    # IQM of the 8 scores {1, 2, 3, 10, 4, 5, 6, 7}: the middle half {3, 4, 5, 6} averages 4.5
    assert payload["iqm"][0]["iqm"] == pytest.approx(np.mean([3.0, 4.0, 5.0, 6.0]))
    assert "iqm" not in payload["iqm"][1]  # x=2 has not finished every seed of every env
    table = sweeping.render_markdown(payload)
    assert "| A-v0 | x=1 | 4/4 | 4.00 |" in table and "seed 0: ValueError: boom" in table and "IQM" in table


@pytest.mark.slow
def test_a_2x2_sweep_on_a_local_ray_reports_a_failed_trial_and_resumes_without_training(tmp_path, capsys):
    """Two configs x two seeds on a 2-CPU local Ray; batch_size=1 is accepted up front but PPO refuses it."""
    out = tmp_path / "sweep"
    argv = [*BASE, "--out", str(out), "--grid", "batch_size=1,64", "--hyperparams", "n_steps=512", "--num-cpus", "2"]
    assert main(argv) == 1  # some trials failed
    printed = capsys.readouterr().out
    assert printed.count("] finished ") == 2 and printed.count("] failed ") == 2
    payload = json.loads((out / "results.json").read_text())
    statuses = sorted((t["point"]["batch_size"], t["status"]) for t in payload["trials"])
    assert statuses == [(1, "failed"), (1, "failed"), (64, "finished"), (64, "finished")]
    good = next(c for c in payload["configs"] if c["point"] == {"batch_size": 64})
    assert good["finished"] == 2 and np.isfinite(good["mean"]) and good["ci"][0] <= good["mean"] <= good["ci"][1]
    assert "`batch_size` must be greater than 1" in (out / "results.md").read_text()
    assert (out / "learning_curves.png").stat().st_size > 0
    for trial in payload["trials"]:
        assert (Path(trial["run_dir"]) / "palaestra.json").is_file() == (trial["status"] == "finished")
    trained = {t["run_dir"]: (Path(t["run_dir"]) / "model.zip").stat().st_mtime_ns for t in payload["trials"]
               if t["status"] == "finished"}  # fmt: skip

    assert main(argv) == 1  # the same command again: nothing is trained, the table is the same
    printed = capsys.readouterr().out
    assert "] finished " not in printed and "] failed " not in printed
    assert json.loads((out / "results.json").read_text())["configs"] == payload["configs"]
    assert {run: (Path(run) / "model.zip").stat().st_mtime_ns for run in trained} == trained
