import json

import pytest

from benchmarks import offline_scores
from benchmarks.harness import run_each

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

    def no_training(**run):
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


def test_report_only_rewrites_the_table_but_not_the_results(dirs):
    results_dir, readme = dirs
    offline_scores.main([*TINY, "--seeds", "0"], results_dir, readme)
    saved = (results_dir / "scores.json").read_text()
    readme.write_text("# Benchmarks\n")
    offline_scores.main([*TINY, "--seeds", "0", "--report-only"], results_dir, readme)
    assert (results_dir / "scores.json").read_text() == saved
    assert "| pendulum-medium-v0 |" in readme.read_text()


def test_a_failed_run_on_ray_is_named_after_the_others_are_saved(dirs):
    args = offline_scores.parse_args(TINY)
    good = {"args": args, "env_id": "pendulum-medium-v0", "size": 2000, "algo": "td3bc", "seed": 0}
    saved = []
    with pytest.raises(RuntimeError, match=r"1 run\(s\) failed \(bad: KeyError: 'no-such-agent'\)"):
        run_each(offline_scores.train_run, {"good": good, "bad": {**good, "algo": "no-such-agent"}}, saved.append, jobs=2)
    assert [run["seed"] for run in saved] == [0]


def test_jobs_must_be_positive(dirs):
    with pytest.raises(SystemExit):
        offline_scores.main([*TINY, "--jobs", "0"], *dirs)


def test_table_reports_the_last_evaluation_and_the_mean_of_the_last_five(dirs):
    results_dir, readme = dirs
    args = offline_scores.parse_args([*TINY, "--seeds", "0", "1"])

    def run(seed, scores):
        history = [{"step": 10.0 * (i + 1), "mean_return": 0.0, "normalized_score": s} for i, s in enumerate(scores)]
        return {"env_id": "pendulum-medium-v0", "algo": "td3bc", "seed": seed, "eval_history": history}

    # seed 0: last 5 = 50, 0, 50, 0, 50 -> 30; seed 1: last 5 = 10 x 5 -> 10; last evaluations 50 and 10
    payload = {
        "runs": [run(0, [99.0, 50.0, 0.0, 50.0, 0.0, 50.0]), run(1, [0.0, 10.0, 10.0, 10.0, 10.0, 10.0])],
        "data_scores": {"pendulum-medium-v0": 12.0},
    }
    body = offline_scores.report(args, payload, results_dir, readme)
    row = next(line for line in body.splitlines() if line.startswith("| pendulum-medium-v0"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:5] == ["pendulum-medium-v0", "12.0", "td3bc", "2", "30.0"]
    assert cells[6:] == ["20.0", "99.0"]


def test_more_seeds_resume_the_same_file(dirs, monkeypatch):
    results_dir, readme = dirs
    offline_scores.main([*TINY, "--seeds", "0"], results_dir, readme)
    trained = []
    real_train_run = offline_scores.train_run
    monkeypatch.setattr(offline_scores, "train_run", lambda **run: trained.append(run) or real_train_run(**run))
    offline_scores.main([*TINY, "--seeds", "0", "1"], results_dir, readme)
    assert [run["seed"] for run in trained] == [1]  # seed 0 was kept, not trained again
    payload = json.loads((results_dir / "scores.json").read_text())
    assert payload["args"]["seeds"] == [0, 1] and "| td3bc | 2 |" in readme.read_text()


def test_two_invocations_on_one_file_keep_each_others_runs(dirs, monkeypatch):
    results_dir, readme = dirs
    offline_scores.main([*TINY, "--seeds", "0"], results_dir, readme)
    saved_by_first = json.loads((results_dir / "scores.json").read_text())
    # A second invocation loaded the file before the first saved seed 0; it trains seed 1 and must keep seed 0.
    monkeypatch.setattr(offline_scores, "load_resumable", lambda *args, **kwargs: {"args": saved_by_first["args"]})
    offline_scores.main([*TINY, "--seeds", "1"], results_dir, readme)
    runs = json.loads((results_dir / "scores.json").read_text())["runs"]
    assert sorted(run["seed"] for run in runs) == [0, 1]


def _stale_iql_file(results_dir, seeds=(0,)):
    """A results file whose IQL runs on pendulum-medium predate IQL's revision 2 (no recorded revision)."""
    args = offline_scores.parse_args([*TINY, "--algos", "iql", "--seeds", *map(str, seeds)])
    history = [{"step": 10.0, "mean_return": 0.0, "normalized_score": 5.0}, {"step": 20.0, "mean_return": 0.0,
               "normalized_score": 7.0}]  # fmt: skip
    runs = [{"env_id": "pendulum-medium-v0", "algo": "iql", "seed": seed, "eval_history": history} for seed in seeds]
    payload = {"args": offline_scores.run_settings(args), "runs": runs, "data_scores": {"pendulum-medium-v0": 1.0}}
    (results_dir / "scores.json").write_text(json.dumps(payload))


def test_runs_of_an_earlier_agent_revision_are_named_and_never_mixed_with_new_seeds(dirs, monkeypatch):
    results_dir, readme = dirs
    _stale_iql_file(results_dir)
    offline_scores.main([*TINY, "--algos", "iql", "--seeds", "0", "--report-only"], results_dir, readme)
    assert "not retrained yet: iql on pendulum-medium-v0" in readme.read_text()
    saved = (results_dir / "scores.json").read_text()
    with pytest.raises(SystemExit, match="iql on pendulum-medium-v0 were trained by an earlier revision"):
        offline_scores.main([*TINY, "--algos", "iql", "--seeds", "0", "1"], results_dir, readme)
    assert (results_dir / "scores.json").read_text() == saved  # nothing was trained or written


def test_retrain_stale_trains_the_row_again_with_the_current_revision(dirs):
    results_dir, readme = dirs
    _stale_iql_file(results_dir)
    offline_scores.main([*TINY, "--algos", "iql", "--seeds", "0", "--retrain-stale"], results_dir, readme)
    (run,) = json.loads((results_dir / "scores.json").read_text())["runs"]
    assert run["revision"] == offline_scores.AGENT_REVISIONS["iql"][0] and run["config"]["expectile"] == 0.7
    assert "not retrained yet" not in readme.read_text()


def test_retrain_stale_keeps_the_dropped_runs_out_after_each_save(dirs):
    results_dir, readme = dirs
    _stale_iql_file(results_dir, seeds=(0, 1))
    offline_scores.main([*TINY, "--algos", "iql", "--seeds", "0", "--retrain-stale"], results_dir, readme)
    runs = json.loads((results_dir / "scores.json").read_text())["runs"]
    assert [(run["seed"], run.get("revision")) for run in runs] == [(0, offline_scores.AGENT_REVISIONS["iql"][0])]


def test_iql_runs_use_corls_per_dataset_preset(monkeypatch):
    from palaestra.agents.offline import iql

    seen = {}

    class Recorder(iql.IQL):
        def __init__(self, env, **kwargs):
            seen.update(kwargs)
            raise RuntimeError("built")

    monkeypatch.setattr(iql, "IQL", Recorder)
    monkeypatch.setattr("palaestra.agents.offline.IQL", Recorder)
    monkeypatch.setattr("gymnasium.make", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="built"):
        offline_scores.train_run(offline_scores.parse_args([]), "hopper-medium-v0", None, "iql", 0)
    # CORL's configs/offline/iql/hopper/medium_v2.yaml: normalize_reward, iql_deterministic, tau 0.001
    assert seen["deterministic_actor"] is True and seen["tau"] == 0.001 and seen["normalize_reward"] is True
