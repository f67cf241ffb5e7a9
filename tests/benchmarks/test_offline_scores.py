import json

import pytest

from benchmarks import offline_scores

TINY = ["--tasks", "pendulum", "--kinds", "medium", "--algos", "td3bc", "--steps", "20", "--eval-freq", "10",
        "--eval-episodes", "1", "--dataset-size", "2000", "--name", "scores", "--section", "Scores"]  # fmt: skip


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n")
    return tmp_path, readme


def test_parallel_runs_fill_the_table_and_a_rerun_resumes_without_training(dirs, monkeypatch):
    results_dir, readme = dirs
    offline_scores.main([*TINY, "--seeds", "0", "1", "--jobs", "2"], results_dir, readme)
    runs = json.loads((results_dir / "scores.json").read_text())["runs"]
    assert sorted(run["seed"] for run in runs) == [0, 1]
    assert all([entry["step"] for entry in run["eval_history"]] == [10.0, 20.0] for run in runs)
    assert "| pendulum-medium-v0 |" in readme.read_text() and "| td3bc | 2 |" in readme.read_text()
    assert (results_dir / "scores.png").exists()

    def no_training(*args):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(offline_scores, "train_run", no_training)
    offline_scores.main([*TINY, "--seeds", "0", "1"], results_dir, readme)


def test_other_settings_do_not_overwrite_saved_runs(dirs):
    results_dir, readme = dirs
    offline_scores.main([*TINY, "--seeds", "0"], results_dir, readme)
    saved = (results_dir / "scores.json").read_text()
    with pytest.raises(SystemExit, match="steps: saved 20, now 30"):
        offline_scores.main([*TINY, "--seeds", "0", "--steps", "30"], results_dir, readme)
    assert (results_dir / "scores.json").read_text() == saved


def test_jobs_must_be_positive(dirs):
    with pytest.raises(SystemExit):
        offline_scores.main([*TINY, "--jobs", "0"], *dirs)
