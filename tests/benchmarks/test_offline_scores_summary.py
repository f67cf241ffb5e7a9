import json

import pytest

from benchmarks import offline_scores_summary


def run(env_id, algo, scores):
    return {"env_id": env_id, "algo": algo, "eval_history": [{"normalized_score": s} for s in scores]}


def test_score_cell_reads_last_ci_and_late_mean():
    assert offline_scores_summary.score_cell([]) == "-"
    one = [run("a", "td3bc", [0.0, 10.0, 20.0])]
    assert offline_scores_summary.score_cell(one) == "20.0 / 10.0 (1 seed)"
    same = [run("a", "td3bc", [0.0, 4.0]), run("a", "td3bc", [2.0, 4.0]), run("a", "td3bc", [6.0, 4.0])]
    assert offline_scores_summary.score_cell(same) == "4.0 [4.0, 4.0] / 3.3"  # late: mean of 2, 3 and 5


def test_main_writes_the_table_between_the_readme_markers(tmp_path):
    payload = {
        "args": {"tasks": ["hopper"], "kinds": ["medium"]},  # a run selection: the summary shows both kinds
        "data_scores": {"hopper-medium-v0": 29.94},
        "runs": [run("hopper-medium-v0", "iql", [10.0, 30.0]), run("hopper-medium-v0", "iql", [20.0, 50.0])],
    }
    (tmp_path / "scores.json").write_text(json.dumps(payload))
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- offline-scores-mujoco:start -->\nold\n<!-- offline-scores-mujoco:end -->\nafter\n")
    offline_scores_summary.main(["scores"], tmp_path, readme)
    text = readme.read_text()
    assert "old" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert "| hopper-medium-v0 | 29.9 | - | 40.0 [30.0, 50.0] / 27.5 (2 seeds) |" in text
    assert "| hopper-medium-replay-v0 | - | - | - |" in text
    with pytest.raises(SystemExit):
        offline_scores_summary.main(["nothing"], tmp_path, readme)
