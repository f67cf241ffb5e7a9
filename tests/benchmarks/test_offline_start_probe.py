import json

import numpy as np

from benchmarks import offline_start_probe


def test_data_starts_counts_episode_starts_and_opening_actions():
    data = {
        "actions": np.array([[1.0], [0.0], [3.0], [0.0], [0.0]], dtype=np.float32),
        "rewards": np.zeros(5, dtype=np.float32),
        "terminals": np.array([False, True, False, False, False]),
        "timeouts": np.array([False, False, False, False, True]),
    }
    starts = offline_start_probe.data_starts(data)
    assert starts["episodes"] == 2 and starts["start_fraction"] == 0.4 and starts["shortest_episode"] == 2
    assert starts["opening_action_mean"] == [2.0] and starts["opening_action_std"] == [1.0]


def test_tiny_probe_writes_checkpoints_and_the_readme_section(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n")
    argv = ["--task", "pendulum", "--steps", "20", "--every", "10", "--episodes", "2", "--behaviour-episodes", "2",
            "--dataset-size", "2000", "--name", "probe"]  # fmt: skip
    offline_start_probe.main(argv, tmp_path, readme)
    payload = json.loads((tmp_path / "probe.json").read_text())
    assert [c["step"] for c in payload["checkpoints"]] == [10, 20]
    episodes = payload["checkpoints"][0]["episodes"]
    assert [e["length"] for e in episodes] == [200, 200] and payload["checkpoints"][0]["early_falls"] == 0
    assert episodes[0]["torso_angle"] is None  # classic control has no MuJoCo pose
    assert payload["behaviour_lengths"] == {"sampled": [200, 200], "deterministic": [200, 200]}
    assert "| 20 |" in readme.read_text() and "0/2" in readme.read_text()


class FallingEnv:
    """Terminates after ``seed`` steps with reward 1 per step; normalised score = return / 10."""

    def __init__(self):
        self.unwrapped = self

    def reset(self, seed):
        self.left = seed
        return np.zeros(1), {}

    def step(self, action):
        self.left -= 1
        return np.zeros(1), 1.0, self.left == 0, False, {}

    def get_normalized_score(self, value):
        return value / 10


def test_probe_counts_terminations_within_the_early_limit_as_falls():
    result = offline_start_probe.probe(lambda o: np.array([0.5]), FallingEnv(), range(2, 6), early=3)
    assert [e["length"] for e in result["episodes"]] == [2, 3, 4, 5]
    assert result["early_falls"] == 2 and result["mean_return"] == 3.5 and result["normalized_score"] == 35.0
    assert result["episodes"][0]["first_action"] == [0.5]


def test_fall_angles_range_over_early_falls_only():
    episodes = [
        {"terminated": True, "length": 9, "torso_angle": -1.1},
        {"terminated": True, "length": 12, "torso_angle": -1.02},
        {"terminated": True, "length": 300, "torso_angle": 1.5},  # a late fall
        {"terminated": False, "length": 5, "torso_angle": 0.0},  # truncated, not a fall
    ]
    assert offline_start_probe.fall_angles({"episodes": episodes}, early=20) == "-1.10 to -1.02"
    assert offline_start_probe.fall_angles({"episodes": episodes[2:]}, early=20) == "-"
