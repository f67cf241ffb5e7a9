import json

import numpy as np
import pytest

from benchmarks import harness
from benchmarks.harness import markdown_table, render_readme_section, write_results
from benchmarks.plotting import plot_learning_curves


def test_write_results_adds_machine_facts_atomically(tmp_path):
    path = write_results("demo", {"value": 1.5}, results_dir=tmp_path)
    payload = json.loads(path.read_text())
    assert payload["value"] == 1.5
    assert payload["machine"]["cores"] >= 1 and "torch" in payload["machine"]["packages"]
    assert list(tmp_path.iterdir()) == [path]
    with pytest.raises(ValueError, match="result name"):
        write_results("../escape", {}, results_dir=tmp_path)


def test_readme_sections_are_appended_then_replaced(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nintro\n")
    render_readme_section("speed", markdown_table(["env", "ratio"], [["A", 1.0456]]), readme)
    render_readme_section("other", "x", readme)
    render_readme_section("speed", markdown_table(["env", "ratio"], [["B", 0.5]]), readme)
    text = readme.read_text()
    assert "| B | 0.5 |" in text and "| A |" not in text
    assert text.index("## speed") < text.index("## other") and text.startswith("# Benchmarks\n\nintro")


def test_plot_learning_curves_writes_a_png(tmp_path):
    x = np.arange(5)
    path = plot_learning_curves({"ppo": (x, np.arange(15.0).reshape(3, 5))}, tmp_path / "curve.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="y has 4 points per seed but x has 5"):
        plot_learning_curves({"bad": (x, np.zeros((3, 4)))}, tmp_path / "bad.png")


def test_load_resumable_continues_only_runs_made_with_the_same_settings(tmp_path):
    settings = {"steps": 10, "seeds": [0, 1]}
    assert harness.load_resumable("bench", settings, results_dir=tmp_path) == {"args": settings}
    harness.write_results("bench", {"args": settings, "runs": [1]}, results_dir=tmp_path)
    assert harness.load_resumable("bench", settings, results_dir=tmp_path)["runs"] == [1]
    assert harness.load_resumable("bench", settings, fresh=True, results_dir=tmp_path) == {"args": settings}
    changed = {**settings, "steps": 20}
    with pytest.raises(SystemExit, match=r"other settings \(steps: saved 10, now 20\).*--fresh"):
        harness.load_resumable("bench", changed, results_dir=tmp_path)
    assert harness.load_resumable("bench", changed, fresh=True, results_dir=tmp_path) == {"args": changed}
    more_seeds = {**settings, "seeds": [0, 1, 2]}
    with pytest.raises(SystemExit, match="seeds: saved"):
        harness.load_resumable("bench", more_seeds, results_dir=tmp_path)
    resumed = harness.load_resumable("bench", more_seeds, results_dir=tmp_path, selection=("seeds",))
    assert resumed["args"] == more_seeds and resumed["runs"] == [1]


def test_compare_means_needs_disjoint_confidence_intervals():
    assert harness.compare_means([10.0, 11.0, 12.0], [1.0, 2.0, 3.0]) == "above (CIs disjoint)"
    assert harness.compare_means([1.0, 2.0, 3.0], [10.0, 11.0, 12.0]) == "below (CIs disjoint)"
    assert harness.compare_means([1.0, 5.0, 9.0], [4.0, 5.0, 6.0]) == "level with (CIs overlap)"


class _CountingAgent:
    """Stands in for an offline agent: ``learn`` calls the callback after every step."""

    seed = 0

    def __init__(self) -> None:
        self.num_timesteps = 0
        self.learn_calls = 0

    def learn(self, steps, callback):
        self.learn_calls += 1
        for _ in range(steps):
            self.num_timesteps += 1
            callback(self)

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return 0, None


def test_train_with_evaluations_evaluates_on_schedule_in_one_learn_call():
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    env.get_normalized_score = lambda mean_return: mean_return / 100.0
    agent = _CountingAgent()
    run = harness.train_with_evaluations(agent, env, steps=30, eval_every=10, n_episodes=2)
    assert agent.learn_calls == 1 and len(run["curve"]) == 3 and run["steps_per_second"] > 0
    assert all(score > 0 for score in run["curve"])  # 100 x normalised return of always pushing left
    assert run["final_score"] == pytest.approx(sum(run["curve"][-2:]) / 2)
