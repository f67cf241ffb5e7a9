import json

import numpy as np
import pytest

from benchmarks import offline_scores_summary


def run(env_id, algo, scores, revision=None):
    history = [{"normalized_score": s} for s in scores]
    revision = offline_scores_summary.AGENT_REVISIONS[algo][0] if revision is None else revision
    return {"env_id": env_id, "algo": algo, "revision": revision, "eval_history": history}


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
    assert "| IQM over the 2 datasets |  | - | - |" in text  # IQL has 2 seeds on one dataset and none on the other
    with pytest.raises(SystemExit):
        offline_scores_summary.main(["nothing"], tmp_path, readme)
    (tmp_path / "again.json").write_text(json.dumps(payload))
    with pytest.raises(SystemExit):  # hopper twice would count its runs twice in the IQM
        offline_scores_summary.main(["scores", "again"], tmp_path, readme)


def test_a_cell_an_earlier_agent_revision_trained_is_marked_and_the_change_named(tmp_path):
    payload = {"args": {"tasks": ["hopper"]}, "runs": [run("hopper-medium-v0", "iql", [1.0, 2.0], revision=1)]}
    table = offline_scores_summary.summary_table([payload], ["medium"])
    assert "| hopper-medium-v0 | - | - | 2.0 / 1.5 (1 seed) † |" in table
    assert table.endswith(f"(IQL: {offline_scores_summary.AGENT_REVISIONS['iql'][1]}); not retrained yet.")
    assert "†" not in offline_scores_summary.summary_table(
        [{**payload, "runs": [run("hopper-medium-v0", "iql", [1.0])]}], ["medium"]
    )


def test_final_scores_is_a_seeds_by_datasets_matrix_only_when_every_dataset_has_as_many_seeds():
    on_a = [run("a", "iql", [0.0, 1.0]), run("a", "iql", [0.0, 2.0])]
    on_b = [run("b", "iql", [3.0]), run("b", "iql", [4.0])]
    np.testing.assert_array_equal(offline_scores_summary.final_scores([on_a, on_b]), [[1.0, 3.0], [2.0, 4.0]])
    assert offline_scores_summary.final_scores([on_a, on_b[:1]]) is None
    assert offline_scores_summary.final_scores([[], []]) is None  # an agent with no run


def test_iqm_cell_trims_a_quarter_at_each_end():
    scores = np.arange(1.0, 9.0).reshape(4, 2)  # 8 runs: the IQM is the mean of 3, 4, 5 and 6
    point = offline_scores_summary.iqm_cell(scores, reps=200).split(" [")[0]
    assert point == "4.5"
    assert offline_scores_summary.iqm_cell(np.full((3, 2), 7.0), reps=200) == "7.0 [7.0, 7.0]"
    assert offline_scores_summary.iqm_cell(None) == "-"


def test_iqm_cell_is_reproducible_and_leaves_numpys_global_generator_alone():
    scores = np.random.default_rng(1).normal(size=(3, 6))
    np.random.seed(5)  # noqa: NPY002
    expected_next = np.random.rand()  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    first = offline_scores_summary.iqm_cell(scores, reps=500)
    assert np.random.rand() == expected_next  # noqa: NPY002
    assert offline_scores_summary.iqm_cell(scores, reps=500) == first


def test_the_page_it_writes_holds_the_markers():
    text = offline_scores_summary.PROJECT_README.read_text()
    assert "<!-- offline-scores-mujoco:start -->" in text and "<!-- offline-scores-mujoco:end -->" in text
